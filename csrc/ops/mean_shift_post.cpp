#include "mean_shift_post.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <unordered_map>

#include "mean_shift.h"

namespace panonet::ms {

std::vector<double> select_centers(const double* final_mean, const int64_t* final_count,
                                   int64_t S, int64_t D, double bandwidth) {
  // Distinct means in order of first appearance; the key folds -0 into +0 as Python's == does.
  std::unordered_map<std::string, int64_t> index;
  std::vector<int64_t> first_seed, intensity;
  std::string key(D * sizeof(double), '\0');
  for (int64_t i = 0; i < S; ++i) {
    if (final_count[i] == 0) continue;
    for (int64_t d = 0; d < D; ++d) {
      const double x = final_mean[i * D + d] == 0.0 ? 0.0 : final_mean[i * D + d];
      std::memcpy(&key[d * sizeof(double)], &x, sizeof(double));
    }
    const auto [it, fresh] = index.emplace(key, static_cast<int64_t>(first_seed.size()));
    if (fresh) {
      first_seed.push_back(i);
      intensity.push_back(0);
    }
    intensity[it->second] = final_count[i];
  }
  const int64_t K0 = static_cast<int64_t>(first_seed.size());
  auto mean_of = [&](int64_t u) { return final_mean + first_seed[u] * D; };
  std::vector<int64_t> rank(K0);
  std::iota(rank.begin(), rank.end(), 0);
  std::sort(rank.begin(), rank.end(), [&](int64_t a, int64_t b) {
    return ranks_before(intensity[a], mean_of(a), intensity[b], mean_of(b), D);
  });

  const double bw2 = bandwidth * bandwidth;
  std::vector<char> keep(K0, 1);
  std::vector<double> centers;
  for (int64_t a = 0; a < K0; ++a) {
    if (!keep[a]) continue;
    const double* ca = mean_of(rank[a]);
    centers.insert(centers.end(), ca, ca + D);
    for (int64_t b = a + 1; b < K0; ++b) {
      if (keep[b] && sq_dist(ca, mean_of(rank[b]), D) <= bw2) keep[b] = 0;
    }
  }
  return centers;
}

}  // namespace panonet::ms
