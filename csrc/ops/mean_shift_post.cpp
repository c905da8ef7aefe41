#include "mean_shift_post.h"

#include <algorithm>
#include <cstring>

#include "center_index.h"
#include "mean_shift.h"

namespace panonet::ms {

std::vector<double> select_centers(const double* final_mean, const int64_t* final_count,
                                   int64_t S, int64_t D, double bandwidth) {
  // Distinct means in order of first appearance (open addressing on a hash of the means; -0
  // and +0 are one key, as Python's == has it).
  std::vector<int64_t> first_seed, intensity;
  std::vector<int64_t> slots(16, -1);
  auto hash = [D](const double* v) {
    uint64_t h = 0x632be59bd9b4e019ULL;
    for (int64_t d = 0; d < D; ++d) {
      const double x = v[d] == 0.0 ? 0.0 : v[d];
      uint64_t bits;
      std::memcpy(&bits, &x, sizeof(bits));
      h = (h ^ bits) * 0x9e3779b97f4a7c15ULL;
      h ^= h >> 29;
    }
    return h;
  };
  for (int64_t i = 0; i < S; ++i) {
    if (final_count[i] == 0) continue;
    const double* m = final_mean + i * D;
    if (2 * (first_seed.size() + 1) > slots.size()) {  // grow at half load
      slots.assign(2 * slots.size(), -1);
      for (size_t u = 0; u < first_seed.size(); ++u) {
        size_t t = hash(final_mean + first_seed[u] * D) & (slots.size() - 1);
        while (slots[t] >= 0) t = (t + 1) & (slots.size() - 1);
        slots[t] = static_cast<int64_t>(u);
      }
    }
    size_t t = hash(m) & (slots.size() - 1);
    while (slots[t] >= 0 && !same_center(final_mean + first_seed[slots[t]] * D, m, D)) {
      t = (t + 1) & (slots.size() - 1);
    }
    if (slots[t] < 0) {
      slots[t] = static_cast<int64_t>(first_seed.size());
      first_seed.push_back(i);
      intensity.push_back(0);
    }
    intensity[slots[t]] = final_count[i];
  }
  const int64_t K0 = static_cast<int64_t>(first_seed.size());
  auto mean_of = [&](int64_t u) { return final_mean + first_seed[u] * D; };
  // Sorted as (size, first coordinate, id) records, the whole means read only on ties of
  // both: a comparator reading rows at random was bound by cache misses at 500k centers.
  struct Key {
    int64_t size;
    double first;
    int64_t u;
  };
  std::vector<Key> keys(K0);
  for (int64_t u = 0; u < K0; ++u) keys[u] = {intensity[u], mean_of(u)[0], u};
  std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
    if (a.size != b.size || a.first != b.first) {
      return a.size != b.size ? a.size > b.size : a.first > b.first;
    }
    return ranks_before(a.size, mean_of(a.u), b.size, mean_of(b.u), D);
  });
  std::vector<int64_t> rank(K0);
  for (int64_t a = 0; a < K0; ++a) rank[a] = keys[a].u;

  // Ranked means, then greedy suppression: each kept center removes the later ones within
  // bandwidth, found through an index (the scan of every later center was O(K^2)).
  std::vector<double> ranked(K0 * D);
  for (int64_t a = 0; a < K0; ++a) std::copy_n(mean_of(rank[a]), D, ranked.data() + a * D);
  const CenterIndex near(ranked.data(), K0, D);
  const double bw2 = bandwidth * bandwidth;
  std::vector<char> keep(K0, 1);
  std::vector<double> centers;
  for (int64_t a = 0; a < K0; ++a) {
    if (!keep[a]) continue;
    const double* ca = ranked.data() + a * D;
    centers.insert(centers.end(), ca, ca + D);
    near.for_each_within(ca, bw2, a, [&](int64_t b) { keep[b] = 0; });
  }
  return centers;
}

GridAxes grid_axes(const double* rows, int64_t K, int64_t D) {
  GridAxes axes;
  if (K == 0) return axes;
  // Each row read once (a pass per coordinate read the K x D rows D times); per coordinate the
  // same min/max over k in ascending order as before.
  std::vector<double> lo(rows, rows + D), hi(rows, rows + D);
  for (int64_t k = 1; k < K; ++k) {
    const double* r = rows + k * D;
    for (int64_t d = 0; d < D; ++d) {
      lo[d] = std::min(lo[d], r[d]);
      hi[d] = std::max(hi[d], r[d]);
    }
  }
  for (int64_t d = 0; d < D; ++d) axes.offer(d, lo[d], hi[d]);
  return axes;
}

ProjectedCenters project_centers(const double* centers, int64_t K, int64_t D) {
  ProjectedCenters out;
  out.axis = grid_axes(centers, K, D).axis;
  out.rank.resize(K);
  for (int64_t k = 0; k < K; ++k) out.rank[k] = k;
  std::stable_sort(out.rank.begin(), out.rank.end(), [&](int64_t a, int64_t b) {
    return centers[a * D + out.axis] < centers[b * D + out.axis];
  });
  out.rows.resize(K * D);
  out.keys.resize(K);
  for (int64_t j = 0; j < K; ++j) {
    std::copy_n(centers + out.rank[j] * D, D, out.rows.data() + j * D);
    out.keys[j] = out.rows[j * D + out.axis];
  }
  return out;
}

}  // namespace panonet::ms
