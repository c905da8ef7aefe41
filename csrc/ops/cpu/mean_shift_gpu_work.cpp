// CPU kernel of panonet::_mean_shift_gpu_work: the CUDA mean-shift's algorithm (bins, seeds, the
// climb pruned by projection, center selection, the labels' search; see
// ../cuda/mean_shift_core.cu) run sequentially on the host, with the bins, the window, the
// suppression and the label searches written with the same host/device helpers
// (../mean_shift_bins.h, ../mean_shift.h, ../mean_shift_select.h, ../mean_shift_projection.h),
// counting the work the GPU does. Most development machines have no GPU: this is how a change to the GPU algorithm is
// measured there. The sums are in another order than on the GPU (a few ulps).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "../ceil_div.h"
#include "../hash.h"
#include "../mean_shift.h"
#include "../mean_shift_bins.h"
#include "../mean_shift_grid.h"
#include "../mean_shift_checks.h"
#include "../mean_shift_post.h"
#include "../mean_shift_projection.h"
#include "../mean_shift_select.h"

namespace panonet::ops {
namespace {

using namespace panonet::ms;

uint64_t hash_of_mean(const double* m, int64_t D) {
  uint64_t h = 0x632be59bd9b4e019ULL;
  for (int64_t d = 0; d < D; ++d) {
    uint64_t bits;
    std::memcpy(&bits, m + d, sizeof(bits));
    h = mix64(h ^ bits);
  }
  return h;
}

// n rows (n x D) indexed as the CUDA kernels index them (../mean_shift_grid.h): their order by
// (cell, key), ties by row (the GPU's stable sorts by key, then by cell), and the keys and cells
// in that order.
struct GridIndex {
  std::vector<int64_t> order;
  std::vector<double> keys, cells;
};

GridIndex grid_index(const double* rows, int64_t n, int64_t D, int64_t axis, int64_t cell_axis,
                     double width, double first) {
  GridIndex g;
  std::vector<double> cell(n);
  for (int64_t i = 0; i < n; ++i) cell[i] = grid_cell(rows[i * D + cell_axis], width, first);
  g.order.resize(n);
  for (int64_t i = 0; i < n; ++i) g.order[i] = i;
  std::stable_sort(g.order.begin(), g.order.end(), [&](int64_t a, int64_t b) {
    return cell[a] != cell[b] ? cell[a] < cell[b] : rows[a * D + axis] < rows[b * D + axis];
  });
  for (const int64_t i : g.order) {
    g.keys.push_back(rows[i * D + axis]);
    g.cells.push_back(cell[i]);
  }
  return g;
}

// Indices of the returned counts (documented in csrc/panonet.cpp).
enum Count {
  kSeeds,
  kIterations,
  kBinsFull,
  kBinsProjection,
  kStraddling,
  kPointsTested,
  kLabelDistancesFull,
  kLabelDistancesProjection,
  kPointsStraddling,
  kSuppressionRounds,
  kSuppressionDistances,
  kIterationsMergedPerStep,
  kDistinctMeans,
  kIndexSearches,
  kWarpSteps,
  kLongestClimbSteps,
  kCounts
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> gpu_work_cpu(const at::Tensor& points,
                                                            double bandwidth, bool bin_seeding,
                                                            int64_t min_bin_freq,
                                                            int64_t max_iter,
                                                            int64_t hash_bits) {
  check_mean_shift_inputs(points, bandwidth, min_bin_freq, max_iter);
  TORCH_CHECK_VALUE(hash_bits >= 1 && hash_bits <= 64,
                    "panonet._mean_shift_gpu_work: expected hash_bits in [1, 64], got ", hash_bits);
  const at::Tensor xt = points.to(at::kDouble).contiguous();
  check_all_finite(xt, "panonet._mean_shift_gpu_work: ", "points");
  const double* x = xt.data_ptr<double>();
  const int64_t n = xt.size(0), D = xt.size(1);
  const double bw = bandwidth, bw2 = bw * bw;
  std::vector<int64_t> work(kCounts, 0);

  // 1-2. Bins as the GPU finds them: points sorted by a hash of their key (stable), each given
  // the first position of its run with the same key (collisions stay apart), bins in order of
  // first appearance; per bin its points, sum, center and radius.
  const std::vector<int32_t> group_of(n, 0);
  std::vector<double> point_keys(n * D);
  std::vector<uint64_t> hash(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < D; ++d) point_keys[i * D + d] = bin_key(x[i * D + d], bw);
    hash[i] = bin_hash(0, &point_keys[i * D], D, static_cast<int>(hash_bits));
  }
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return hash[a] < hash[b]; });
  std::vector<int64_t> bin_at(n, -1), first_of_bin;  // bin_at: by the position of a bin's start
  std::vector<std::vector<int64_t>> members_by_start;
  for (int64_t p = 0, run_lo = 0; p < n; ++p) {
    if (p > 0 && hash[perm[p]] != hash[perm[p - 1]]) run_lo = p;
    const int64_t q = first_same_bin(perm.data(), group_of.data(), point_keys.data(), D, run_lo, p);
    if (q == p) {
      bin_at[p] = static_cast<int64_t>(members_by_start.size());
      members_by_start.emplace_back();
      first_of_bin.push_back(perm[p]);
    }
    members_by_start[bin_at[q]].push_back(perm[p]);
  }
  std::vector<int64_t> bin_order(members_by_start.size());
  for (size_t b = 0; b < bin_order.size(); ++b) bin_order[b] = static_cast<int64_t>(b);
  std::sort(bin_order.begin(), bin_order.end(),
            [&](int64_t a, int64_t b) { return first_of_bin[a] < first_of_bin[b]; });
  std::vector<std::vector<int64_t>> members;
  std::vector<std::vector<double>> keys;
  for (const int64_t b : bin_order) {
    members.push_back(std::move(members_by_start[b]));
    const double* k = &point_keys[first_of_bin[b] * D];
    keys.emplace_back(k, k + D);
  }
  const int64_t R = static_cast<int64_t>(members.size());
  std::vector<double> sum(R * D, 0.0), center(R * D), radius(R, 0.0), rho(n);
  double scale = 0;
  for (int64_t b = 0; b < R; ++b) {
    for (const int64_t i : members[b]) {
      for (int64_t d = 0; d < D; ++d) {
        sum[b * D + d] += x[i * D + d];
        scale = std::max(scale, std::fabs(x[i * D + d]));
      }
    }
    for (int64_t d = 0; d < D; ++d) {
      center[b * D + d] = sum[b * D + d] / static_cast<double>(members[b].size());
    }
    for (const int64_t i : members[b]) {
      rho[i] = std::sqrt(sq_dist(x + i * D, &center[b * D], D));
      radius[b] = std::max(radius[b], rho[i]);
    }
  }
  const double margin = bound_margin(scale, D);
  // Each bin's points by decreasing rho (ties: index), with the suffix sums of their coordinates
  // from each position to the bin's end; bin b holds positions [start[b], start[b + 1]).
  std::vector<int64_t> start(R + 1, 0), at_pos;
  std::vector<double> rho_pos, suffix;
  for (int64_t b = 0; b < R; ++b) {
    std::vector<int64_t> m = members[b];
    std::stable_sort(m.begin(), m.end(), [&](int64_t i, int64_t j) { return rho[i] > rho[j]; });
    start[b + 1] = start[b] + static_cast<int64_t>(m.size());
    for (const int64_t i : m) {
      at_pos.push_back(i);
      rho_pos.push_back(rho[i]);
    }
  }
  suffix.assign(n * D, 0.0);
  for (int64_t b = 0; b < R; ++b) {
    for (int64_t p = start[b + 1] - 1; p >= start[b]; --p) {
      for (int64_t d = 0; d < D; ++d) {
        suffix[p * D + d] =
            x[at_pos[p] * D + d] + (p + 1 < start[b + 1] ? suffix[(p + 1) * D + d] : 0.0);
      }
    }
  }

  // 3. Seeds.
  std::vector<double> seeds;
  for (int64_t b = 0; b < R && bin_seeding; ++b) {
    if (static_cast<int64_t>(members[b].size()) < min_bin_freq) continue;
    for (int64_t d = 0; d < D; ++d) seeds.push_back(seed_coord(keys[b][d], bw));
  }
  if (!bin_seeding || static_cast<int64_t>(seeds.size()) == n * D) seeds.assign(x, x + n * D);
  const int64_t S = static_cast<int64_t>(seeds.size()) / D;
  work[kSeeds] = S;

  // The bins indexed as the CUDA kernels index a group's bins (mean_shift_grid.h): sorted by
  // (cell, key) on the axes of widest and second widest spread of their centers (ties: bin
  // order), columns as wide as the climb's reach.
  const GridAxes axes = grid_axes(center.data(), R, D);
  const int64_t axis = axes.axis, cell_axis = axes.cell_axis;
  const double max_radius = R > 0 ? *std::max_element(radius.begin(), radius.end()) : 0.0;
  const double reach = projection_reach(bw, max_radius, margin);
  const double first_cell = grid_first_cell(axes.cell_lo, reach);
  const GridIndex bins = grid_index(center.data(), R, D, axis, cell_axis, reach, first_cell);
  const std::vector<int64_t>& by_grid = bins.order;
  const std::vector<double>& sorted_key = bins.keys;
  const std::vector<double>& sorted_cell = bins.cells;

  // 4. Climb, as one warp of the CUDA kernel does it, bin after bin.
  std::vector<double> final_mean(S * D), mean(D), old(D), acc(D);
  std::vector<int64_t> final_count(S, 0);
  // The means each iteration starts from, as hashes of their bits: seeds at one mean have the
  // same future (merging them would be exact), counted below.
  std::vector<std::vector<uint64_t>> visited(S);
  for (int64_t s = 0; s < S; ++s) {
    std::copy_n(seeds.data() + s * D, D, mean.data());
    int64_t last_count = 0, steps = 0;
    for (int64_t it = 0;; ++it) {
      ++work[kIterations];
      steps += 2;  // the index's searches (a lane each) and the warp's sums
      visited[s].push_back(hash_of_mean(mean.data(), D));
      work[kBinsFull] += R;
      std::fill(acc.begin(), acc.end(), 0.0);
      int64_t count = 0;
      int64_t range_begin[kGridRanges], range_end[kGridRanges];
      const int ranges = grid_ranges(sorted_cell.data(), sorted_key.data(), 0, R, reach,
                                     first_cell, mean[cell_axis], mean[axis], reach, range_begin,
                                     range_end, &work[kIndexSearches]);
      for (int r = 0; r < ranges; ++r) {
        work[kBinsProjection] += range_end[r] - range_begin[r];
        // The warp's chunks of 32 bins, aligned to the group's start (here 0).
        if (range_begin[r] < range_end[r]) {
          steps += ceil_div(range_end[r] - (range_begin[r] & ~int64_t{31}), 32);
        }
      }
      // The undecided points of a chunk's straddling bins, which the warp tests together.
      int64_t chunk = -1, chunk_points = 0;
      bool chunk_straddles = false;
      const auto end_chunk = [&] {
        if (chunk_straddles) steps += 1 + ceil_div(chunk_points, 32);
        chunk_points = 0;
        chunk_straddles = false;
      };
      for (int r = 0; r < ranges; ++r) {
        for (int64_t pos = range_begin[r]; pos < range_end[r]; ++pos) {
          if (pos >> 5 != chunk) {
            end_chunk();
            chunk = pos >> 5;
          }
          const int64_t b = by_grid[pos];
          const double d2 = sq_dist(&center[b * D], mean.data(), D);
          const double far = bw + radius[b] + margin, near = bw - radius[b] - margin;
          if (d2 > far * far) continue;
          if (near > 0 && d2 <= near * near) {
            for (int64_t d = 0; d < D; ++d) acc[d] += sum[b * D + d];
            count += static_cast<int64_t>(members[b].size());
            continue;
          }
          ++work[kStraddling];
          work[kPointsStraddling] += start[b + 1] - start[b];
          // Points decided by the triangle inequality with the bin's center are taken (or not) as
          // one suffix; the others get sklearn's test.
          const double dist = std::sqrt(d2);
          const int64_t split =
              first_decided(rho_pos.data(), start[b], start[b + 1], dist, bw, margin);
          if (split < start[b + 1] && dist < bw) {
            for (int64_t d = 0; d < D; ++d) acc[d] += suffix[split * D + d];
            count += start[b + 1] - split;
          }
          chunk_straddles = true;
          chunk_points += split - start[b];
          for (int64_t p = start[b]; p < split; ++p) {
            const int64_t i = at_pos[p];
            ++work[kPointsTested];
            if (sq_dist(x + i * D, mean.data(), D) <= bw2) {
              for (int64_t d = 0; d < D; ++d) acc[d] += x[i * D + d];
              ++count;
            }
          }
        }
      }
      end_chunk();
      if (count == 0) {  // dropped
        last_count = 0;
        break;
      }
      last_count = count;
      old = mean;
      for (int64_t d = 0; d < D; ++d) mean[d] = acc[d] / static_cast<double>(count);
      if (converged(sq_dist(mean.data(), old.data(), D), bw) || it == max_iter) break;
    }
    final_count[s] = last_count;
    std::copy_n(mean.data(), D, final_mean.data() + s * D);
    work[kWarpSteps] += steps;
    work[kLongestClimbSteps] = std::max(work[kLongestClimbSteps], steps);
  }
  // Iterations if the seeds at one mean at the same step were merged after every step, and the
  // distinct means of all steps (the iterations with a perfect memo of mean -> future).
  std::unordered_set<uint64_t> all, step;
  for (size_t t = 0;; ++t) {
    step.clear();
    for (const auto& v : visited) {
      if (t < v.size()) step.insert(v[t]);
    }
    if (step.empty()) break;
    work[kIterationsMergedPerStep] += static_cast<int64_t>(step.size());
    all.insert(step.begin(), step.end());
  }
  work[kDistinctMeans] = static_cast<int64_t>(all.size());

  // 5. Centers as the GPU selects them (mean_shift_select.h): the surviving seeds sorted by
  // mean (ties: seed order), the last of each run of equal means giving its window size; the
  // distinct means ranked; rounds of suppression; then the labels' search.
  std::vector<int64_t> alive;
  for (int64_t s = 0; s < S; ++s) {
    if (final_count[s] > 0) alive.push_back(s);
  }
  const auto mean_at = [&](int64_t s) { return final_mean.data() + s * D; };
  std::stable_sort(alive.begin(), alive.end(), [&](int64_t a, int64_t b) {
    return compare_means(mean_at(a), mean_at(b), D) < 0;
  });
  std::vector<int64_t> ranked;  // the last seed of each run
  for (size_t p = 0; p < alive.size(); ++p) {
    if (p + 1 == alive.size() || compare_means(mean_at(alive[p]), mean_at(alive[p + 1]), D) != 0) {
      ranked.push_back(alive[p]);
    }
  }
  std::stable_sort(ranked.begin(), ranked.end(), [&](int64_t a, int64_t b) {
    return ranks_before(final_count[a], mean_at(a), final_count[b], mean_at(b), D);
  });
  const int64_t K0 = static_cast<int64_t>(ranked.size());
  // The ranked centers indexed on the bins' two axes, columns as wide as the suppression's reach.
  const double suppress_reach = projection_reach(bw, 0.0, margin);
  const double suppress_first = grid_first_cell(axes.cell_lo, suppress_reach);
  std::vector<double> rows(K0 * D);
  for (int64_t a = 0; a < K0; ++a) std::copy_n(mean_at(ranked[a]), D, rows.data() + a * D);
  const GridIndex centers_index =
      grid_index(rows.data(), K0, D, axis, cell_axis, suppress_reach, suppress_first);
  const CenterGrid grid{centers_index.cells.data(), centers_index.keys.data(),
                        centers_index.order.data(), axis, cell_axis, suppress_reach,
                        suppress_first};
  std::vector<int8_t> status(K0, kUndecided), next;
  for (bool open = K0 > 0; open;) {
    ++work[kSuppressionRounds];
    next = status;  // decisions of a round read the states before it (the GPU's may be newer)
    open = false;
    for (int64_t a = 0; a < K0; ++a) {
      if (status[a] != kUndecided) continue;
      next[a] = suppression_decision(a, rows.data(), grid, K0, D, bw, status.data(),
                                     &work[kSuppressionDistances], &work[kIndexSearches]);
      open |= next[a] == kUndecided;
    }
    status.swap(next);
  }
  std::vector<double> C;
  for (int64_t a = 0; a < K0; ++a) {
    if (status[a] == kKept) C.insert(C.end(), rows.begin() + a * D, rows.begin() + (a + 1) * D);
  }
  const int64_t K = static_cast<int64_t>(C.size()) / D;
  const ProjectedCenters pc = project_centers(C.data(), K, D);
  at::Tensor labels = at::empty({n}, xt.options().dtype(at::kLong));
  for (int64_t i = 0; i < n; ++i) {
    double d2;
    int64_t visited;
    labels.data_ptr<int64_t>()[i] = nearest_by_projection(
        x + i * D, pc.rows.data(), pc.keys.data(), pc.rank.data(), K, D, pc.axis, &d2, &visited);
    work[kLabelDistancesProjection] += visited;
  }
  work[kLabelDistancesFull] = n * K;
  at::Tensor counts = at::tensor(work, xt.options().dtype(at::kLong));
  at::Tensor centers = at::empty({K, D}, xt.options());
  std::copy(C.begin(), C.end(), centers.data_ptr<double>());
  return {counts, labels, centers};
}

#ifdef PANONET_WITH_CUDA
// On a CUDA tensor the model runs on the host all the same; results come back on the CPU.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gpu_work_other(const at::Tensor& points,
                                                              double bandwidth, bool bin_seeding,
                                                              int64_t min_bin_freq,
                                                              int64_t max_iter,
                                                              int64_t hash_bits) {
  return gpu_work_cpu(points.cpu(), bandwidth, bin_seeding, min_bin_freq, max_iter, hash_bits);
}
#endif

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) { m.impl("_mean_shift_gpu_work", &gpu_work_cpu); }
#ifdef PANONET_WITH_CUDA
TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("_mean_shift_gpu_work", &gpu_work_other); }
#endif

}  // namespace panonet::ops
