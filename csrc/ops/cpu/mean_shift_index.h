// The index of the CPU mean-shift: points grouped by bin, bins in the leaf order of a ball tree
// whose nodes keep sums, bounding radii and boxes; leaves ordered for the decided suffixes.
// Part of the CPU mean-shift core: included by mean_shift_core.cpp only, inside the namespace of
// the instruction set it is compiled for (baseline or AVX2, see mean_shift_core_avx2.cpp).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "../mean_shift.h"
#include "mean_shift_isa.h"
#include "mean_shift_key_table.h"
#include "recycling_allocator.h"

namespace panonet::ms::PANONET_MS_ISA {
namespace {

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
    // Split on the widest spread of the bin centers, at the median. The rows are read in one
    // pass and the median is found among (coordinate, bin) pairs held contiguously: with a pass
    // per coordinate and a comparator reading the rows, every level of a 524k-bin tree read its
    // 50 MB of rows in random order D + log n times.
    span_lo_.assign(bin_center_.begin() + *lo * D, bin_center_.begin() + (*lo + 1) * D);
    span_hi_ = span_lo_;
    for (const int64_t* b = lo; b < hi; ++b) {
      const double* c = bin_center_.data() + *b * D;
      for (int64_t d = 0; d < D; ++d) {
        span_lo_[d] = std::min(span_lo_[d], c[d]);
        span_hi_[d] = std::max(span_hi_[d], c[d]);
      }
    }
    int64_t axis = 0;
    double widest = -1;
    for (int64_t d = 0; d < D; ++d) {
      if (span_hi_[d] - span_lo_[d] > widest) {
        widest = span_hi_[d] - span_lo_[d];
        axis = d;
      }
    }
    int64_t* mid = lo + (hi - lo) / 2;
    split_keys_.resize(hi - lo);
    for (int64_t k = 0; k < hi - lo; ++k) split_keys_[k] = {bin_center_[lo[k] * D + axis], lo[k]};
    std::nth_element(split_keys_.begin(), split_keys_.begin() + (mid - lo), split_keys_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (int64_t k = 0; k < hi - lo; ++k) lo[k] = split_keys_[k].second;
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
  // (a few % of rho wide); a position stores its bucket's upper edge (cheaper than a full sort
  // of the (rho, index) pairs).
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
  std::vector<double> span_lo_, span_hi_;                     // build's scratch
  std::vector<std::pair<double, int64_t>> split_keys_;        // build's scratch
  int64_t next_position_ = 0;
};

}  // namespace
}  // namespace panonet::ms::PANONET_MS_ISA
