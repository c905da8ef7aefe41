// Exact bin-seeded mean-shift on the CPU.
//
// A dense seeds x points scan per iteration would cost S * N * D per round. Instead:
//   * points are grouped by their bandwidth-sized bins (the seeding bins), and the bins by a
//     ball tree built on their means; a leaf holds whole bins (up to 256 points), every node
//     keeps the sum, count, mean and bounding radius of its points;
//   * a window query walks the tree: a node whose bounding ball lies inside the window adds its
//     precomputed sum and count, one outside it is skipped, only straddling leaves are opened;
//   * inside a straddling leaf the points are ordered by (an upper bound of) their distance rho
//     to the leaf mean, so the points that the triangle inequality already decides
//     (rho < |dist(q, mean) - bandwidth|) form a suffix, taken whole through precomputed suffix
//     sums or skipped; the rest get a float32 distance (offsets from the leaf mean, 8 lanes
//     with AVX2) and only those within a relative 1e-5 of the boundary get sklearn's float64
//     test;
//   * seeds climb in lock-step batches of spatially close seeds (one tree walk per batch), with
//     dynamic scheduling over threads; a seed stops as soon as it has converged, and the live
//     seeds of a group are repacked into full batches after every iteration.
// Every shortcut keeps a safety margin larger than its rounding error, so whether a point is in
// a window is always the answer of sklearn's float64 test sum_d (x_d - q_d)^2 <= bandwidth^2;
// sums may be associated differently, which moves means by a few ulps.
//
// This file is compiled twice (baseline x86-64 and AVX2, see mean_shift_core_avx2.cpp); the
// entry point in mean_shift_dispatch.cpp picks one at run time.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "../center_index.h"
#include "../hash.h"
#include "../mean_shift.h"
#include "../mean_shift_post.h"
#include "mean_shift_core.h"
#include "recycling_allocator.h"

#ifndef PANONET_MS_ISA
#define PANONET_MS_ISA baseline
#endif

namespace panonet::ms::PANONET_MS_ISA {
namespace {

constexpr int kBatch = 8;            // seeds sharing one window query (vector lanes)
constexpr int64_t kMaxGroup = 128;   // seeds packed into batches together (see climb)
// Relative guard band of the float32 squared-distance test.
constexpr double kFloatGuard = 1e-5;
using Mask = uint32_t;

uint64_t hash_doubles(const double* v, int64_t D) {
  uint64_t h = 0;
  for (int64_t d = 0; d < D; ++d) {
    const double x = v[d] == 0.0 ? 0.0 : v[d];  // -0 and +0 are one key
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof(bits));
    h += bits * (0x9e3779b97f4a7c15ULL + 2 * static_cast<uint64_t>(d));
  }
  return mix64(h);
}

// Open-addressing map from D-double keys to dense ids in order of first insertion.
class KeyTable {
 public:
  // Starts small and doubles at half load: there are usually far fewer bins than points, and
  // a table sized for the points (MBs) made every probe a cache miss.
  explicit KeyTable(int64_t D) : D_(D) { slots_.assign(1024, -1); }

  // Id of key (inserting it if new) and whether it was new.
  std::pair<int64_t, bool> insert(const double* key, uint64_t hash) {
    const uint64_t mask = slots_.size() - 1;
    for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
      const int64_t id = slots_[i];
      if (id < 0) {
        const int64_t fresh = size();
        slots_[i] = fresh;
        keys_.insert(keys_.end(), key, key + D_);
        hashes_.push_back(hash);
        if (2 * (fresh + 1) > static_cast<int64_t>(slots_.size())) grow();
        return {fresh, true};
      }
      // Bin keys are canonical (integral or infinite, never -0 or NaN), so equal keys are
      // equal bytes; memcmp is vectorized, the element loop was not (3 % at 100k points).
      if (hashes_[id] == hash &&
          std::memcmp(keys_.data() + id * D_, key, D_ * sizeof(double)) == 0) {
        return {id, false};
      }
    }
  }

  const double* key(int64_t id) const { return keys_.data() + id * D_; }
  int64_t size() const { return static_cast<int64_t>(keys_.size() / D_); }

 private:
  void grow() {
    slots_.assign(2 * slots_.size(), -1);
    const uint64_t mask = slots_.size() - 1;
    for (int64_t id = 0; id < size(); ++id) {
      uint64_t i = hashes_[id] & mask;
      while (slots_[i] >= 0) i = (i + 1) & mask;
      slots_[i] = id;
    }
  }

  int64_t D_;
  std::vector<int64_t> slots_;
  std::vector<double> keys_;
  std::vector<uint64_t> hashes_;
};

// Bins of size `bandwidth`, in order of first appearance: bin id per point and count per bin.
struct Bins {
  RecycledVector<int64_t> of_point;
  std::vector<int64_t> count;
  KeyTable table;
};

Bins make_bins(const double* points, int64_t n, int64_t D, double bandwidth) {
  RecycledVector<double> keys(n * D);
  RecycledVector<uint64_t> hashes(n);
  at::parallel_for(0, n, 2048, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      double* k = keys.data() + i * D;
      for (int64_t d = 0; d < D; ++d) k[d] = bin_key(points[i * D + d], bandwidth);
      hashes[i] = hash_doubles(k, D);
    }
  });
  Bins bins{RecycledVector<int64_t>(n), {}, KeyTable(D)};
  for (int64_t i = 0; i < n; ++i) {
    const auto [id, fresh] = bins.table.insert(keys.data() + i * D, hashes[i]);
    if (fresh) bins.count.push_back(0);
    bins.of_point[i] = id;
    ++bins.count[id];
  }
  return bins;
}

// Points grouped by bin, bins in the leaf order of a ball tree over them, the points of a leaf
// by decreasing distance to the leaf mean. "Position" below means an index in that order.
struct Index {
  int64_t n = 0, D = 0;
  RecycledVector<double> xs;      // n x D: coordinates
  RecycledVector<float> offsets;  // n x D: coordinates minus the leaf mean, float32
  RecycledVector<double> rho;     // n: distance to the leaf mean (decreasing within a leaf)
  RecycledVector<double> suffix;  // n x D: sum of xs from a position to the end of its leaf
  RecycledVector<int64_t> order;  // position -> original point index
  struct Node {
    int64_t begin, end;   // positions
    int64_t left, right;  // children, -1 for a leaf
    double radius;        // every point of the node lies within radius of its center
  };
  std::vector<Node> nodes;
  std::vector<double> centers;  // nodes x D: mean of the node's points
  // nodes x D: bounding box of the node's points. Balls alone prune poorly when windows are
  // tiny next to the spread of the points (an untrained embedding: every point its own
  // cluster), since sibling balls overlap; the box of the other side of a split does not.
  std::vector<double> box_lo, box_hi;
  std::vector<double> sums;     // nodes x D
  std::vector<int64_t> leaves;
  std::vector<int64_t> bin_first;  // bin -> position of its first point
  int64_t root = -1;
  double margin = 0;  // slack on decisions taken from bounds, above their rounding error
  // The float32 prefilter needs bandwidth^2 well inside float32's normal range.
  bool float_ok = false;
};

class IndexBuilder {
 public:
  IndexBuilder(const double* points, int64_t n, int64_t D, const Bins& bins, double bandwidth)
      : points_(points), D_(D), bins_(bins) {
    ix_.n = n;
    ix_.D = D;
    ix_.float_ok = bandwidth >= 1e-15 && bandwidth <= 1e15;
    const int64_t nb = static_cast<int64_t>(bins.count.size());
    // Points grouped by bin (counting sort) and the bin means, which the tree is built on.
    bin_start_.assign(nb + 1, 0);
    for (int64_t b = 0; b < nb; ++b) bin_start_[b + 1] = bin_start_[b] + bins.count[b];
    by_bin_.resize(n);
    std::vector<int64_t> fill(bin_start_.begin(), bin_start_.end() - 1);
    for (int64_t i = 0; i < n; ++i) by_bin_[fill[bins.of_point[i]]++] = i;
    // One gather of the points into bin order; every later pass reads them sequentially. The
    // reads are random (a bin's points are scattered), so they are prefetched a few ahead:
    // without that this pass and the two that followed were bound by memory latency.
    // The same pass finds the largest coordinate magnitude, which scales the bound margin.
    binned_.resize(n * D);
    const double scale = at::parallel_reduce(
        0, n, 4096, 0.0,
        [&](int64_t j0, int64_t j1, double partial) {
          constexpr int64_t kAhead = 16;
          for (int64_t j = j0; j < j1; ++j) {
            if (j + kAhead < j1) {
              const double* ahead = points_ + by_bin_[j + kAhead] * D;
              __builtin_prefetch(ahead);
              __builtin_prefetch(ahead + D - 1);
            }
            const double* p = points_ + by_bin_[j] * D;
            double* q = binned_.data() + j * D;
            for (int64_t d = 0; d < D; ++d) {
              q[d] = p[d];
              partial = std::max(partial, std::fabs(p[d]));
            }
          }
          return partial;
        },
        [](double a, double b) { return std::max(a, b); });
    bin_center_.assign(nb * D, 0.0);
    at::parallel_for(0, nb, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double* c = bin_center_.data() + b * D;
        for (int64_t j = bin_start_[b]; j < bin_start_[b + 1]; ++j) {
          const double* p = binned_.data() + j * D;
          for (int64_t d = 0; d < D; ++d) c[d] += p[d];
        }
        for (int64_t d = 0; d < D; ++d) c[d] /= static_cast<double>(bins_.count[b]);
      }
    });

    // Tree structure over the bins; leaves are groups of whole bins.
    std::vector<int64_t> bin_ids(nb);
    std::iota(bin_ids.begin(), bin_ids.end(), 0);
    ix_.bin_first.resize(nb);
    ix_.nodes.reserve(2 * nb);
    if (nb > 0) ix_.root = build(bin_ids.data(), bin_ids.data() + nb);
    const int64_t num_nodes = static_cast<int64_t>(ix_.nodes.size());
    ix_.centers.assign(num_nodes * D, 0.0);
    ix_.sums.assign(num_nodes * D, 0.0);
    ix_.box_lo.assign(num_nodes * D, INFINITY);
    ix_.box_hi.assign(num_nodes * D, -INFINITY);

    // Leaves: points in bin order, then sorted by decreasing distance to the leaf mean.
    ix_.order.resize(n);
    ix_.rho.resize(n);
    ix_.xs.resize(D * n);
    ix_.offsets.resize(D * n);
    ix_.suffix.resize(D * n);
    const int64_t num_leaves = static_cast<int64_t>(ix_.leaves.size());
    at::parallel_for(0, num_leaves, 16, [&](int64_t l0, int64_t l1) {
      std::vector<int64_t> from;
      std::vector<uint32_t> keys;
      std::vector<double> acc;
      for (int64_t l = l0; l < l1; ++l) finish_leaf(l, from, keys, acc);
    });
    // Internal nodes after their children (children are created after their parent).
    for (int64_t id = num_nodes - 1; id >= 0; --id) {
      Index::Node& node = ix_.nodes[id];
      if (node.left < 0) continue;
      double* s = ix_.sums.data() + id * D;
      double* c = ix_.centers.data() + id * D;
      for (int64_t d = 0; d < D; ++d) {
        s[d] = ix_.sums[node.left * D + d] + ix_.sums[node.right * D + d];
        c[d] = s[d] / static_cast<double>(node.end - node.begin);
        ix_.box_lo[id * D + d] = std::min(ix_.box_lo[node.left * D + d], ix_.box_lo[node.right * D + d]);
        ix_.box_hi[id * D + d] = std::max(ix_.box_hi[node.left * D + d], ix_.box_hi[node.right * D + d]);
      }
      // Bounded over the node's leaves rather than its two children: one level of slack only.
      double r = 0;
      for (int64_t l = leaf_first_[id]; l < leaf_last_[id]; ++l) {
        const int64_t leaf = ix_.leaves[l];
        r = std::max(r, std::sqrt(sq_dist(c, ix_.centers.data() + leaf * D, D)) +
                            ix_.nodes[leaf].radius);
      }
      node.radius = r;
    }
    ix_.margin = bound_margin(scale, D);
  }

  Index take() { return std::move(ix_); }

 private:
  // Leaves hold whole bins and at most this many points (unless a single bin holds more): long
  // enough vector loops, and few enough nodes per query.
  // 256: 9 % faster than 96 at 100k points and bandwidth 0.5, the same at 0.7 (interleaved
  // A/B over 64 to 384 points).
  static constexpr int64_t kLeafPoints = 256;
  // Resolution of the ordering of a leaf's points by rho (see finish_leaf).
  static constexpr int kRhoBuckets = 256;

  // Structure of the subtree over bins [lo, hi) (reordered in place into leaf order); positions
  // are handed out as leaves are created, left to right. Returns the node id.
  int64_t build(int64_t* lo, int64_t* hi) {
    const int64_t D = D_;
    const int64_t id = static_cast<int64_t>(ix_.nodes.size());
    ix_.nodes.push_back({next_position_, next_position_, -1, -1, 0.0});
    leaf_first_.push_back(static_cast<int64_t>(ix_.leaves.size()));
    leaf_last_.push_back(0);
    int64_t points = 0;
    for (const int64_t* b = lo; b < hi; ++b) points += bins_.count[*b];
    if (hi - lo == 1 || points <= kLeafPoints) {
      for (const int64_t* b = lo; b < hi; ++b) {
        ix_.bin_first[*b] = next_position_;
        leaf_bins_.insert(leaf_bins_.end(), *b);
        next_position_ += bins_.count[*b];
      }
      ix_.nodes[id].end = next_position_;
      leaf_bin_range_.emplace_back(static_cast<int64_t>(leaf_bins_.size()) - (hi - lo),
                                   static_cast<int64_t>(leaf_bins_.size()));
      ix_.leaves.push_back(id);
      leaf_last_[id] = static_cast<int64_t>(ix_.leaves.size());
      return id;
    }
    // Split on the widest spread of the bin centers, at the median.
    int64_t axis = 0;
    double widest = -1;
    for (int64_t d = 0; d < D; ++d) {
      double mn = bin_center_[*lo * D + d], mx = mn;
      for (const int64_t* b = lo; b < hi; ++b) {
        mn = std::min(mn, bin_center_[*b * D + d]);
        mx = std::max(mx, bin_center_[*b * D + d]);
      }
      if (mx - mn > widest) {
        widest = mx - mn;
        axis = d;
      }
    }
    int64_t* mid = lo + (hi - lo) / 2;
    std::nth_element(lo, mid, hi, [&](int64_t a, int64_t b) {
      return bin_center_[a * D + axis] < bin_center_[b * D + axis];
    });
    const int64_t left = build(lo, mid);
    const int64_t right = build(mid, hi);
    ix_.nodes[id].left = left;
    ix_.nodes[id].right = right;
    ix_.nodes[id].end = next_position_;
    leaf_last_[id] = static_cast<int64_t>(ix_.leaves.size());
    return id;
  }

  // Sum, mean, radius and the per-position arrays of leaf l (node ix_.leaves[l]).
  //
  // The scan only needs an upper bound of each point's distance rho to the leaf mean (a point
  // is decided when rho < |dist - bw| - margin), non-increasing along the leaf. So rho is
  // rounded up to float32 and the points are counting-sorted into 256 buckets of its bits
  // (a few % of rho wide); a position stores its bucket's upper edge. A full sort of the
  // (rho, index) pairs took 40 % of the index build.
  // from, keys, acc: the calling thread's scratch.
  void finish_leaf(int64_t l, std::vector<int64_t>& from, std::vector<uint32_t>& keys,
                   std::vector<double>& acc) {
    const int64_t D = D_;
    const int64_t id = ix_.leaves[l];
    const Index::Node& node = ix_.nodes[id];
    double* s = ix_.sums.data() + id * D;
    double* c = ix_.centers.data() + id * D;
    from.clear();
    for (int64_t k = leaf_bin_range_[l].first; k < leaf_bin_range_[l].second; ++k) {
      const int64_t b = leaf_bins_[k];
      for (int64_t j = bin_start_[b]; j < bin_start_[b + 1]; ++j) {
        const double* p = binned_.data() + j * D;
        for (int64_t d = 0; d < D; ++d) s[d] += p[d];
        from.push_back(j);
      }
    }
    if (from.empty()) return;  // (leaves hold whole, non-empty bins)
    const double cnt = static_cast<double>(node.end - node.begin);
    for (int64_t d = 0; d < D; ++d) c[d] = s[d] / cnt;
    keys.resize(from.size());
    // rho rounded up to float32, as bits (non-negative floats order as their bits).
    double radius = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t t = 0; t < from.size(); ++t) {
      const double rho = std::sqrt(sq_dist(binned_.data() + from[t] * D, c, D));
      radius = std::max(radius, rho);
      const float up = static_cast<float>(rho);
      uint32_t bits;
      std::memcpy(&bits, &up, sizeof(bits));
      // Rounded down: the next float up (rho is finite and >= 0, so that is bits + 1).
      bits += static_cast<double>(up) < rho ? 1 : 0;
      keys[t] = bits;
      lo = std::min(lo, bits);
      hi = std::max(hi, bits);
    }
    ix_.nodes[id].radius = radius;
    // Counting sort into kRhoBuckets buckets of the bit range, largest first. Each position
    // stores its bucket's upper edge: an upper bound of its rho, non-increasing along the leaf.
    int shift = 0;
    while (((hi - lo) >> shift) >= kRhoBuckets) ++shift;
    uint32_t next[kRhoBuckets] = {};
    for (size_t t = 0; t < from.size(); ++t) ++next[(keys[t] - lo) >> shift];
    int64_t position = node.begin;
    for (int k = kRhoBuckets - 1; k >= 0; --k) {
      const uint32_t count = next[k];
      next[k] = static_cast<uint32_t>(position - node.begin);
      position += count;
    }
    for (size_t t = 0; t < from.size(); ++t) {
      const uint32_t bucket = (keys[t] - lo) >> shift;
      const int64_t j = node.begin + next[bucket]++;
      const uint64_t edge_bits =
          std::min<uint64_t>(hi, lo + ((static_cast<uint64_t>(bucket) + 1) << shift) - 1);
      const uint32_t edge32 = static_cast<uint32_t>(edge_bits);
      float edge;
      std::memcpy(&edge, &edge32, sizeof(edge));
      const int64_t src = from[t];
      const double* p = binned_.data() + src * D;
      ix_.order[j] = by_bin_[src];
      ix_.rho[j] = edge;
      for (int64_t d = 0; d < D; ++d) {
        ix_.xs[j * D + d] = p[d];
        ix_.offsets[j * D + d] = static_cast<float>(p[d] - c[d]);
        ix_.box_lo[id * D + d] = std::min(ix_.box_lo[id * D + d], p[d]);
        ix_.box_hi[id * D + d] = std::max(ix_.box_hi[id * D + d], p[d]);
      }
    }
    // Row by row (sequential writes); per coordinate the same sums as a column-wise loop.
    acc.assign(D, 0.0);
    for (int64_t j = node.end - 1; j >= node.begin; --j) {
      const double* x = ix_.xs.data() + j * D;
      double* suffix = ix_.suffix.data() + j * D;
      for (int64_t d = 0; d < D; ++d) {
        acc[d] += x[d];
        suffix[d] = acc[d];
      }
    }
  }

  const double* points_;
  int64_t D_;
  const Bins& bins_;
  Index ix_;
  RecycledVector<int64_t> by_bin_;
  RecycledVector<double> binned_;  // n x D: the points in bin order (by_bin_)
  std::vector<int64_t> bin_start_;
  std::vector<double> bin_center_;
  std::vector<int64_t> leaf_first_, leaf_last_;  // per node: its leaves in ix_.leaves
  std::vector<int64_t> leaf_bins_;                // bins of the leaves, leaf after leaf
  std::vector<std::pair<int64_t, int64_t>> leaf_bin_range_;  // per leaf: range in leaf_bins_
  int64_t next_position_ = 0;
};

// kBatch lanes of float32 / float64 (GCC/Clang vector extensions: one AVX register of floats).
typedef float Lanes __attribute__((vector_size(kBatch * sizeof(float))));
typedef double LanesD __attribute__((vector_size(kBatch * sizeof(double))));
typedef int32_t LanesI __attribute__((vector_size(kBatch * sizeof(int32_t))));

// Bit k set where lane k of a -1/0 mask is set.
inline int lane_bits(LanesI v) {
#if defined(__AVX__)
  return _mm256_movemask_ps(_mm256_castsi256_ps(reinterpret_cast<__m256i>(v)));
#else
  int bits = 0;
  for (int k = 0; k < kBatch; ++k) bits |= (v[k] != 0) << k;
  return bits;
#endif
}

// a * b + c, fused in the AVX2 + FMA build. Only for the float32 prefilter, whose guard band
// covers either rounding; sklearn's float64 test stays unfused (-ffp-contract=off).
inline Lanes fused_multiply_add(Lanes a, Lanes b, Lanes c) {
#if defined(__FMA__)
  return reinterpret_cast<Lanes>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a),
                                                 reinterpret_cast<__m256>(b),
                                                 reinterpret_cast<__m256>(c)));
#else
  return a * b + c;
#endif
}

// acc += x * take, take 0.0 or 1.0 per lane: x * take is exact, so fused or not the sums are
// the same.
inline void add_product(LanesD& acc, double x, const LanesD& take) {
#if defined(__FMA__)
  static_assert(sizeof(LanesD) == 2 * sizeof(__m256d));
  __m256d* a = reinterpret_cast<__m256d*>(&acc);
  const __m256d* t = reinterpret_cast<const __m256d*>(&take);
  const __m256d xv = _mm256_set1_pd(x);
  a[0] = _mm256_fmadd_pd(xv, t[0], a[0]);
  a[1] = _mm256_fmadd_pd(xv, t[1], a[1]);
#else
  acc += x * take;
#endif
}

// Heap arrays of lane vectors, aligned by hand. std::vector<Lanes> would be one template
// instantiation shared by the baseline and AVX2 translation units, which disagree on the type's
// alignment (16 vs 32 bytes); the linker keeps one, and aligned AVX stores then fault.
class LaneArray {
 public:
  template <typename V>
  V* get(int64_t count) {
    bytes_.resize(count * sizeof(V) + kAlign);
    const auto addr = reinterpret_cast<uintptr_t>(bytes_.data());
    return reinterpret_cast<V*>((addr + kAlign - 1) & ~uintptr_t(kAlign - 1));
  }

 private:
  static constexpr uintptr_t kAlign = 64;
  std::vector<unsigned char> bytes_;
};

// Per-thread buffers of the window queries.
struct Scratch {
  std::vector<std::pair<int64_t, Mask>> stack;
  LaneArray q_offset;  // D Lanes: each seed's mean minus the leaf mean, lane k = seed k
  LaneArray acc;       // D LanesD: window sums gathered in one leaf
  LaneArray means;     // D LanesD: the seeds' means, lane k = seed k
  const LanesD* means_t = nullptr;
};

// Adds to the sums / counts of the seeds in `straddle` (means: kBatch x D, dist: distance of
// each to the leaf mean) the points of leaf `id` within their windows. The seeds sit in the
// vector lanes: each point is loaded once for all of them. kD: the dimension when known at
// compile time (loops unrolled, the seeds' offsets kept in registers), 0 for any D.
template <int kD>
void scan_leaf(const Index& ix, int64_t id, const double* means, Mask straddle, const double* dist,
               double bw, double* sums, int64_t* counts, Scratch& s) {
  const int64_t D = kD > 0 ? kD : ix.D;
  const Index::Node& node = ix.nodes[id];
  const double* c = ix.centers.data() + id * D;
  const double bw2 = bw * bw;
  // Points with rho < |dist - bw| (less the margin) lie entirely inside (dist < bw) or outside
  // the seed's window; with rho decreasing they form the suffix from split[k].
  int64_t split[kBatch];
  int64_t scan_end = node.begin;
  for (int k = 0; k < kBatch; ++k) {
    split[k] = node.begin;  // lanes not straddling: nothing to scan
    if (!(straddle >> k & 1)) continue;
    const double t = std::fabs(dist[k] - bw) - ix.margin;
    split[k] = node.end;
    if (t > 0) {
      split[k] = std::partition_point(ix.rho.begin() + node.begin, ix.rho.begin() + node.end,
                                      [t](double r) { return r >= t; }) -
                 ix.rho.begin();
    }
    if (split[k] < node.end && dist[k] < bw) {
      double* sk = sums + k * D;
      const double* suffix = ix.suffix.data() + split[k] * D;
      for (int64_t d = 0; d < D; ++d) sk[d] += suffix[d];
      counts[k] += node.end - split[k];
    }
    scan_end = std::max(scan_end, split[k]);
  }
  if (scan_end == node.begin) return;

  // Offsets of the means from the leaf mean; idle lanes far away.
  constexpr int kRegs = kD > 0 ? kD : 1;
  Lanes q_reg[kRegs];
  Lanes* q = kD > 0 ? q_reg : s.q_offset.get<Lanes>(D);
  // Sums of the points taken in this leaf, lane k = seed k (a masked add over all lanes: adding
  // lane by lane only for the lanes that take a point measured slower).
  LanesD* acc = s.acc.get<LanesD>(D);
  for (int64_t d = 0; d < D; ++d) acc[d] = LanesD{};
  LanesI live_until;  // lane k scans positions below split[k]
  for (int k = 0; k < kBatch; ++k) live_until[k] = static_cast<int32_t>(split[k] - node.begin);
  for (int64_t d = 0; d < D; ++d) {
    q[d] = __builtin_convertvector(s.means_t[d] - c[d], Lanes);
    for (int k = 0; k < kBatch; ++k) {
      if (!(straddle >> k & 1)) q[d][k] = 1e18f;
    }
  }
  // float32 distances are certainly inside below lo and outside above hi. Their error is below
  // 2^-23 (bw + 2 r) for a leaf of radius r, so the guard band covers leaves up to r = 16 bw;
  // wider leaves (and extreme bandwidths) test every point in float64.
  const bool exact_all = !(ix.float_ok && node.radius <= 16 * bw);
  const float lo = static_cast<float>(bw2 * (1 - kFloatGuard));
  const float hi = static_cast<float>(bw2 * (1 + kFloatGuard));
  // Not from the float32 distances, which may be inf or NaN for huge coordinates.
  const LanesI all_exact = LanesI{} + (exact_all ? -1 : 0);
  LanesI inside_count = {};
  for (int64_t j = node.begin; j < scan_end; ++j) {
    const float* xo = ix.offsets.data() + j * D;
    // Two partial sums (even and odd coordinates): two chains of dependent FMAs of half the
    // length, 7-8 % faster at 100k points (interleaved A/B; three or four were not better).
    Lanes d2 = {}, d2_odd = {};
    int64_t d = 0;
    for (; d + 1 < D; d += 2) {
      const Lanes diff = xo[d] - q[d];
      d2 = fused_multiply_add(diff, diff, d2);
      const Lanes diff_odd = xo[d + 1] - q[d + 1];
      d2_odd = fused_multiply_add(diff_odd, diff_odd, d2_odd);
    }
    if (d < D) {
      const Lanes diff = xo[d] - q[d];
      d2 = fused_multiply_add(diff, diff, d2);
    }
    d2 += d2_odd;
    // Lane masks (-1 / 0), computed for all lanes at once.
    const LanesI live = static_cast<int32_t>(j - node.begin) < live_until;
    LanesI in = live & ~all_exact & (d2 <= lo);
    const LanesI unsure = live & (all_exact | ((d2 > lo) & (d2 <= hi)));
    const int unsure_bits = lane_bits(unsure);
    int in_bits = lane_bits(in);
    const double* x = ix.xs.data() + j * D;
    if (unsure_bits) {  // rare: within the guard band (or every point of a too-wide leaf)
      for (int k = 0; k < kBatch; ++k) {
        if (!(unsure_bits >> k & 1)) continue;
        double e = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double diff = x[d] - means[k * D + d];
          e += diff * diff;
        }
        in[k] = e <= bw2 ? -1 : 0;
        in_bits |= (e <= bw2) << k;
      }
    }
    if (!in_bits) continue;
    inside_count -= in;
    const LanesD take = __builtin_convertvector(-in, LanesD);  // 1.0 / 0.0
    for (int64_t d = 0; d < D; ++d) add_product(acc[d], x[d], take);
  }
  for (int k = 0; k < kBatch; ++k) {
    if (!(straddle >> k & 1)) continue;
    counts[k] += inside_count[k];
    double* sk = sums + k * D;
    for (int64_t d = 0; d < D; ++d) sk[d] += acc[d][k];
  }
}

// For the seeds in `mask` (means: kBatch x D), sums and counts of the points within bandwidth.
template <int kD>
void window_batch(const Index& ix, const double* means, Mask mask, double bw, double* sums,
                  int64_t* counts, Scratch& s) {
  const int64_t D = kD > 0 ? kD : ix.D;
  LanesD* means_t = s.means.get<LanesD>(D);
  for (int64_t d = 0; d < D; ++d) {
    for (int k = 0; k < kBatch; ++k) means_t[d][k] = (mask >> k & 1) ? means[k * D + d] : 0.0;
  }
  s.means_t = means_t;
  for (int k = 0; k < kBatch; ++k) {
    if (!(mask >> k & 1)) continue;
    std::fill(sums + k * D, sums + (k + 1) * D, 0.0);
    counts[k] = 0;
  }
  if (ix.root < 0) return;
  const double bw2 = bw * bw;
  s.stack.clear();
  s.stack.emplace_back(ix.root, mask);
  double dist[kBatch];
  while (!s.stack.empty()) {
    const auto [id, live] = s.stack.back();
    s.stack.pop_back();
    const Index::Node& node = ix.nodes[id];
    const double* c = ix.centers.data() + id * D;
    const double far = bw + node.radius + ix.margin;
    const double near = bw - node.radius - ix.margin;
    const double far2 = far * far, near2 = near > 0 ? near * near : -1.0;
    // Squared distances of all lanes at once (per lane the same sum, in the same order, as
    // sq_dist).
    LanesD d2v = {};
    for (int64_t d = 0; d < D; ++d) {
      const LanesD diff = means_t[d] - c[d];
      d2v += diff * diff;
    }
    Mask straddle = 0;
    for (int k = 0; k < kBatch; ++k) {
      if (!(live >> k & 1)) continue;
      const double d2 = d2v[k];
      if (d2 > far2) continue;  // the node lies outside this seed's window
      if (d2 <= near2) {        // inside it
        const double* ns = ix.sums.data() + id * D;
        double* sk = sums + k * D;
        for (int64_t d = 0; d < D; ++d) sk[d] += ns[d];
        counts[k] += node.end - node.begin;
        continue;
      }
      dist[k] = d2;
      straddle |= Mask(1) << k;
    }
    // Lanes the ball leaves undecided: skip the node if its box lies outside the window
    // (interval_gap: "> bw^2" is exact without slack).
    if (straddle) {
      const double* lo = ix.box_lo.data() + id * D;
      const double* hi = ix.box_hi.data() + id * D;
      for (int k = 0; k < kBatch; ++k) {
        if (!(straddle >> k & 1)) continue;
        double g2 = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double gap = interval_gap(means_t[d][k], lo[d], hi[d]);
          g2 += gap * gap;
        }
        if (g2 > bw2) straddle &= ~(Mask(1) << k);
      }
    }
    if (!straddle) continue;
    if (node.left < 0) {
      // Only a leaf's scan needs the distances themselves: no square roots at internal nodes
      // (2 % of the op at 100k points, bandwidth 0.5, interleaved A/B).
      for (int k = 0; k < kBatch; ++k) {
        if (straddle >> k & 1) dist[k] = std::sqrt(dist[k]);
      }
      scan_leaf<kD>(ix, id, means, straddle, dist, bw, sums, counts, s);
    } else {
      s.stack.emplace_back(node.right, straddle);
      s.stack.emplace_back(node.left, straddle);
    }
  }
}

using WindowFn = void (*)(const Index&, const double*, Mask, double, double*, int64_t*,
                         Scratch&);

// The embedding sizes in common use get loops unrolled at compile time.
WindowFn window_fn(int64_t D) {
  switch (D) {
    case 2: return &window_batch<2>;
    case 3: return &window_batch<3>;
    case 4: return &window_batch<4>;
    case 8: return &window_batch<8>;
    case 12: return &window_batch<12>;
    case 16: return &window_batch<16>;
    default: return &window_batch<0>;
  }
}

// Runs fn(i) for i in [0, n) on the intra-op pool with dynamic scheduling.
template <typename F>
void dynamic_for(int64_t n, const F& fn) {
  const int64_t threads = at::in_parallel_region()
                              ? 1
                              : std::min<int64_t>(at::get_num_threads(), std::max<int64_t>(n, 1));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  });
}

// Climbs every seed (S x D); returns per seed its final mean and the size of its last window
// (0: dropped, no point within bandwidth). Batches of seeds adjacent in tree order climb
// together.
void climb(const Index& ix, const std::vector<double>& seeds, const std::vector<int64_t>& position,
           const Params& params, std::vector<double>& final_mean,
           std::vector<int64_t>& final_count) {
  const int64_t D = ix.D;
  const int64_t S = static_cast<int64_t>(position.size());
  const double bw = params.bandwidth;
  std::vector<int64_t> seed_order(S);
  std::iota(seed_order.begin(), seed_order.end(), 0);
  std::sort(seed_order.begin(), seed_order.end(),
            [&](int64_t a, int64_t b) { return position[a] < position[b]; });
  final_mean.assign(S * D, 0.0);
  final_count.assign(S, 0);
  const WindowFn window_batch = window_fn(D);
  // Seeds climb in groups of adjacent seeds; after every iteration a group packs its live seeds
  // into full batches. Half the bin seeds of typical embeddings have an empty window and stop
  // at once, and fixed batches of 8 then ran their later iterations half empty (a batch costs
  // about the same with 4 live lanes as with 8). Up to 128 seeds per group, but at least four
  // groups per thread for the dynamic scheduling.
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t group_size =
      std::clamp<int64_t>(S / (4 * threads) / kBatch * kBatch, kBatch, kMaxGroup);
  dynamic_for((S + group_size - 1) / group_size, [&](int64_t group) {
    thread_local Scratch scratch;
    // The group's live seeds, packed: seed ids and their means (kBatch x D per batch).
    const int64_t first = group * group_size, size = std::min<int64_t>(group_size, S - first);
    std::vector<int64_t> seed_of(size);
    std::vector<double> means(size * D), sums(kBatch * D), old(D);
    for (int64_t i = 0; i < size; ++i) {
      seed_of[i] = seed_order[first + i];
      std::copy_n(seeds.data() + seed_of[i] * D, D, means.data() + i * D);
    }
    int64_t counts[kBatch];
    int64_t live = size;
    for (int64_t it = 0; live > 0; ++it) {
      int64_t kept = 0;  // seeds still climbing after this iteration, packed in front
      for (int64_t b = 0; b < live; b += kBatch) {
        const int lanes = static_cast<int>(std::min<int64_t>(kBatch, live - b));
        const Mask mask = (Mask(1) << lanes) - 1;
        double* mb = means.data() + b * D;
        window_batch(ix, mb, mask, bw, sums.data(), counts, scratch);
        for (int k = 0; k < lanes; ++k) {
          const int64_t i = b + k;
          double* mk = means.data() + i * D;
          bool done = counts[k] == 0;  // an empty window drops the seed
          if (!done) {
            std::copy_n(mk, D, old.data());
            for (int64_t d = 0; d < D; ++d) {
              mk[d] = sums[k * D + d] / static_cast<double>(counts[k]);
            }
            done = converged(sq_dist(mk, old.data(), D), bw) || it == params.max_iter;
          }
          if (done) {
            final_count[seed_of[i]] = counts[k];
            std::copy_n(mk, D, final_mean.data() + seed_of[i] * D);
          } else {
            if (kept != i) {
              std::copy_n(mk, D, means.data() + kept * D);
              seed_of[kept] = seed_of[i];
            }
            ++kept;
          }
        }
      }
      live = kept;
    }
  });
}

// Nearest center per point (lowest rank on ties), -1 beyond bandwidth unless cluster_all.
// Whole leaves are decided at once when their bounding ball leaves no doubt; the centers are
// searched through an index (a scan of all of them made this O(N K)).
void assign_labels(const Index& ix, const double* C, int64_t K, const Params& params,
                   std::vector<int64_t>& labels) {
  const int64_t D = ix.D;
  const double bw = params.bandwidth, m = ix.margin;
  const CenterIndex centers(C, K, D);
  at::parallel_for(0, static_cast<int64_t>(ix.leaves.size()), 16, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      const Index::Node& node = ix.nodes[ix.leaves[l]];
      const double* c = ix.centers.data() + ix.leaves[l] * D;
      double best_d2, second_d2;
      const int64_t best = centers.nearest2(c, &best_d2, &second_d2);
      const double best_dist = std::sqrt(best_d2), runner_up = std::sqrt(second_d2);
      const double r = node.radius;
      int64_t whole = -2;  // -2: decide point by point
      if (best_dist + r + m < runner_up - r - m) {
        if (params.cluster_all || best_dist + r + m <= bw) {
          whole = best;
        } else if (best_dist - r - m > bw) {
          whole = -1;
        }
      }
      for (int64_t j = node.begin; j < node.end; ++j) {
        int64_t label = whole;
        if (label == -2) {
          double d2;
          const int64_t arg = centers.nearest(ix.xs.data() + j * D, &d2);
          label = (params.cluster_all || std::sqrt(d2) <= bw) ? arg : -1;
        }
        labels[ix.order[j]] = label;
      }
    }
  });
}

}  // namespace

Result mean_shift(const double* points, int64_t n, int64_t D, const Params& params) {
  Result result;
  result.labels.assign(n, -1);
  if (n == 0) return result;
  const double bw = params.bandwidth;

  Bins bins = make_bins(points, n, D, bw);
  Index ix = IndexBuilder(points, n, D, bins, bw).take();

  // Seeds, as sklearn.cluster.get_bin_seeds / MeanShift.fit choose them, each with the tree
  // position of its bin (or point) so that batches are spatially coherent.
  std::vector<double> seeds;
  std::vector<int64_t> position;
  if (params.bin_seeding) {
    for (int64_t b = 0; b < bins.table.size(); ++b) {
      if (bins.count[b] < params.min_bin_freq) continue;
      const double* key = bins.table.key(b);
      for (int64_t d = 0; d < D; ++d) seeds.push_back(seed_coord(key[d], bw));
      position.push_back(ix.bin_first[b]);
    }
  }
  if (!params.bin_seeding || static_cast<int64_t>(position.size()) == n) {
    seeds.assign(points, points + n * D);
    position.assign(n, 0);
    for (int64_t j = 0; j < n; ++j) position[ix.order[j]] = j;
  }
  const int64_t S = static_cast<int64_t>(position.size());

  std::vector<double> final_mean;
  std::vector<int64_t> final_count;
  climb(ix, seeds, position, params, final_mean, final_count);

  result.centers = select_centers(final_mean.data(), final_count.data(), S, D, bw);
  result.num_centers = static_cast<int64_t>(result.centers.size() / D);
  if (result.num_centers > 0) {
    assign_labels(ix, result.centers.data(), result.num_centers, params, result.labels);
  }
  return result;
}

}  // namespace panonet::ms::PANONET_MS_ISA
