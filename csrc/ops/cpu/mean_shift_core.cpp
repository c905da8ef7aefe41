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
//
// Exactness. sklearn puts a point in a window by the float64 test sum_d (x_d - q_d)^2 <= bw^2,
// summed in order d = 0..D-1 (here compiled with -ffp-contract=off: no fused multiply-adds in
// it). Every shortcut decides a point only where that test certainly agrees:
//   1. Balls. Every point of a node lies within radius r of the node's center c. The node is
//      inside the window when dist(q, c) <= bw - r - margin and outside when dist(q, c) >
//      bw + r + margin. The margin (mean_shift.h bound_margin: 64 (D + 2) eps (scale + 1), scale
//      the largest |coordinate| of the points) exceeds the rounding error of every distance and
//      radius computed here for coordinates up to scale, so such a decision is the test's.
//   2. Boxes. A node is outside when the squared gaps between q and the node's bounding box,
//      summed in sq_dist's order, exceed bw^2 (mean_shift.h interval_gap). Rounding is
//      monotone: each rounded gap is <= the rounded |x_d - q_d| of every point of the box, so the
//      sum is a lower bound of every point's float64 test value, exact without slack.
//   3. Decided suffixes (the radius rule). Within a leaf, points are ordered by an upper bound
//      of their distance rho to the leaf mean. By the triangle inequality a point with
//      rho < |dist(q, mean) - bw| - margin is on the same side of the window's boundary as the
//      leaf mean; with rho non-increasing those points are a suffix, added through precomputed
//      suffix sums (dist < bw) or skipped.
//   4. The float32 prefilter. The remaining points get a float32 squared distance from their
//      offsets to the leaf mean. Its error is below 2^-23 (bw + 2 r) for a leaf of radius r,
//      so with the relative guard band kFloatGuard = 1e-5, values below bw^2 (1 - 1e-5) are
//      certainly inside and above bw^2 (1 + 1e-5) certainly outside, for leaves up to r = 16 bw
//      and bandwidths in float32's normal range (Index::float_ok). Points in the band, wider
//      leaves and extreme bandwidths get sklearn's float64 test itself.
//   5. Suppression and labels search the centers through a k-d tree (../center_index.h) that
//      rules candidates out by the box bound of 2 only and computes sq_dist for the others.
// Sums are associated differently from sklearn's (node and suffix sums), which moves a mean by a
// few ulps: the decisions are sklearn's, the means equal to rounding.
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
#include "mean_shift_index.h"
#include "mean_shift_isa.h"
#include "mean_shift_key_table.h"
#include "mean_shift_lanes.h"
#include "recycling_allocator.h"

namespace panonet::ms::PANONET_MS_ISA {
namespace {

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
  // Sums of the points taken in this leaf, lane k = seed k (a masked add over all lanes).
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
    // length.
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
      // Only a leaf's scan needs the distances themselves: no square roots at internal nodes.
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
