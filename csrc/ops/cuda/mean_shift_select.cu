// sklearn's center selection on the GPU, for every group at once and without waiting for the
// GPU (../mean_shift_select.h; the host model in ../cpu/mean_shift_gpu_work.cpp runs the same
// steps):
//   1. the seeds sorted by (group, mean, seed index): a run of equal means is one center, whose
//      window size is that of the run's last seed (sklearn's dict keeps the last value);
//   2. the runs' last seeds sorted by (group, window size and mean descending): the rank order;
//   3. each group's ranked centers sorted on its projection axis (for the labels) and indexed
//      on its two axes (../mean_shift_grid.h), and rounds of suppression decisions: a few over
//      all centers at once, then one block per group still open;
//   4. the kept centers compacted, in rank order and in axis order (for the labels).
// Buffers have one slot per seed; the counts (per group) stay on the device. The file is
// compiled with --fmad=false, as the climb: suppression compares the same float64 distances as
// sklearn.
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cub/device/device_merge_sort.cuh>

#include "../ceil_div.h"
#include "../mean_shift.h"
#include "../mean_shift_projection.h"
#include "../mean_shift_select.h"
#include "mean_shift_core.cuh"

namespace panonet::ms::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kSuppressRounds = 3;  // grid-wide rounds before the per-group blocks finish

// A seed (or -1, no seed) takes part when its slot is used and its window was not empty.
struct SeedView {
  const double* mean;
  const int64_t* count;
  const int32_t* group;
  int32_t G;
  int64_t D;

  __device__ bool alive(int64_t s) const { return s >= 0 && group[s] < G && count[s] > 0; }

  // The part of both sort orders below that comes first: live seeds before dead ones (these by
  // index), then by group. -1 or 1 when it decides, 0 for two live seeds of one group.
  __device__ int compare_live_groups(int64_t a, int64_t b) const {
    const bool la = alive(a), lb = alive(b);
    if (la != lb) return la ? -1 : 1;
    if (!la) return a < b ? -1 : (a > b ? 1 : 0);
    return group[a] < group[b] ? -1 : (group[a] > group[b] ? 1 : 0);
  }
};

// Step 1's order: live seeds first, by group, by mean (lexicographic, -0 == +0), by index.
struct ByMean {
  SeedView v;
  __device__ bool operator()(const int64_t& a, const int64_t& b) const {
    const int first = v.compare_live_groups(a, b);
    if (first != 0 || !v.alive(a)) return first < 0;
    const int c = compare_means(v.mean + a * v.D, v.mean + b * v.D, v.D);
    return c != 0 ? c < 0 : a < b;
  }
};

// Step 2's order: live seeds first, by group, then sklearn's rank (ranks_before).
struct ByRank {
  SeedView v;
  __device__ bool operator()(const int64_t& a, const int64_t& b) const {
    const int first = v.compare_live_groups(a, b);
    if (first != 0 || !v.alive(a)) return first < 0;
    if (ranks_before(v.count[a], v.mean + a * v.D, v.count[b], v.mean + b * v.D, v.D)) return true;
    if (ranks_before(v.count[b], v.mean + b * v.D, v.count[a], v.mean + a * v.D, v.D)) return false;
    return a < b;
  }
};

// Sorts keys (int64, on the GPU) in place by `less`, stably, on the current stream; the
// temporary storage comes from PyTorch's caching allocator (capturable in a CUDA graph).
template <typename Less>
void merge_sort(at::Tensor& keys, Less less) {
  const auto stream = at::cuda::getCurrentCUDAStream();
  size_t bytes = 0;
  int64_t* data = keys.data_ptr<int64_t>();
  C10_CUDA_CHECK(cub::DeviceMergeSort::StableSortKeys(nullptr, bytes, data, keys.numel(), less,
                                                       stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(bytes)}, keys.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceMergeSort::StableSortKeys(temp.data_ptr(), bytes, data, keys.numel(),
                                                       less, stream));
}

// The last seed of each run of equal means (in step 1's order) is kept, the others become -1.
__global__ void run_ends_kernel(const int64_t* by_mean, int64_t S, SeedView v, int64_t* last) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= S) return;
  const int64_t s = by_mean[p];
  bool end = v.alive(s);
  if (end && p + 1 < S) {
    const int64_t t = by_mean[p + 1];
    end = !v.alive(t) || v.group[t] != v.group[s] ||
          compare_means(v.mean + s * v.D, v.mean + t * v.D, v.D) != 0;
  }
  last[p] = end ? s : -1;
}

// Per rank slot u: the center's group (G past the last center), its row, its key on the group's
// axis, and its cell and (group, cell) sort key in the suppression's index (mean_shift_grid.h:
// columns as wide as the suppression's reach).
__global__ void ranked_rows_kernel(const int64_t* ranked, int64_t S, SeedView v,
                                   const int64_t* group_axis, const int64_t* group_cell_axis,
                                   const double* group_cell_lo, const double* group_bw,
                                   const double* margin, int32_t* ranked_group, double* rows,
                                   double* keys, double* cells, int64_t* group_cell) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u >= S) return;
  const int64_t s = ranked[u];
  const bool live = v.alive(s);
  const int32_t g = live ? v.group[s] : v.G;
  ranked_group[u] = g;
  for (int64_t d = 0; d < v.D; ++d) rows[u * v.D + d] = live ? v.mean[s * v.D + d] : 0.0;
  double c = 0;
  if (live) {
    const double width = projection_reach(group_bw[g], 0.0, margin[g]);
    c = grid_cell(v.mean[s * v.D + group_cell_axis[g]], width,
                  grid_first_cell(group_cell_lo[g], width));
  }
  keys[u] = live ? v.mean[s * v.D + group_axis[g]] : 0.0;
  cells[u] = c;
  group_cell[u] = (static_cast<int64_t>(g) << 32) | static_cast<int64_t>(c);
}

// Position j of an order of the rank slots (sorted on the axis, or the index's) -> the rank
// (within its group) of the center there, and its key.
__global__ void order_ranks_kernel(const int64_t* at_axis, const int32_t* ranked_group,
                                  const int64_t* u_lo, const double* keys, int64_t S, int32_t G,
                                  int64_t* rank_at, double* sorted_keys) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= S) return;
  const int64_t u = at_axis[j];
  const int32_t g = ranked_group[u];
  rank_at[j] = g < G ? u - u_lo[g] : 0;
  sorted_keys[j] = keys[u];
}

// The suppression index of group g (mean_shift_select.h CenterGrid), its members at [lo, lo + K).
struct SuppressInputs {
  const int64_t* u_lo;  // (G + 1) each group's rank slots
  const double* rows;   // (S, D) in rank order
  const double* cells;  // (S) in the index's order, and the keys and ranks there
  const double* keys;
  const int64_t* rank_at;
  int64_t D;
  const int64_t* group_axis;
  const int64_t* group_cell_axis;
  const double* group_cell_lo;
  const double* group_bw;
  const double* margin;

  __device__ int8_t decide(int64_t g, int64_t a, const int8_t* st, int64_t* distances) const {
    const int64_t lo = u_lo[g], K = u_lo[g + 1] - lo;
    const double bw = group_bw[g];
    const double reach = projection_reach(bw, 0.0, margin[g]);
    const CenterGrid grid{cells + lo, keys + lo, rank_at + lo, group_axis[g], group_cell_axis[g],
                          reach, grid_first_cell(group_cell_lo[g], reach)};
    int64_t searches = 0;
    return suppression_decision(a, rows + lo * D, grid, K, D, bw, st + lo, distances, &searches);
  }
};

// One round of suppression decisions over every group at once, a thread per rank slot. The
// decisions of a round may read states written in the same round; either value is a valid input
// (see ../mean_shift_select.h). In the last round (open != nullptr) a center left undecided
// marks its group open.
__global__ void suppress_round_kernel(SuppressInputs in, const int32_t* ranked_group, int64_t S,
                                      int32_t G, int8_t* status, int32_t* open) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u >= S) return;
  const int32_t g = ranked_group[u];
  if (g >= G || status[u] != kUndecided) return;
  int64_t distances = 0;
  const int8_t s = in.decide(g, u - in.u_lo[g], status, &distances);
  if (s != kUndecided) {
    status[u] = s;
  } else if (open != nullptr) {
    open[g] = 1;
  }
}

// One block per group still open after the rounds above: rounds until every center is decided.
__global__ void suppress_rest_kernel(SuppressInputs in, const int32_t* open, int8_t* status) {
  const int64_t g = blockIdx.x;
  if (!open[g]) return;  // block-uniform
  const int64_t lo = in.u_lo[g], K = in.u_lo[g + 1] - lo;
  int64_t distances = 0;
  for (;;) {
    int waits = 0;
    for (int64_t a = threadIdx.x; a < K; a += blockDim.x) {
      if (status[lo + a] != kUndecided) continue;
      const int8_t s = in.decide(g, a, status, &distances);
      if (s != kUndecided) {
        status[lo + a] = s;
      } else {
        waits = 1;
      }
    }
    if (!__syncthreads_or(waits)) break;
  }
}

// Kept centers compacted in rank order (centers) and in axis order (sorted rows, keys, and the
// rank within the group of each).
__global__ void compact_kernel(const int8_t* status, const int64_t* kept_before,
                               const int64_t* at_axis, const int64_t* kept_before_axis,
                               const int32_t* ranked_group, const double* rows,
                               const double* sorted_keys, const int64_t* center_lo, int64_t S,
                               int64_t D, int32_t G, double* centers, double* out_rows,
                               double* out_keys, int64_t* out_rank) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= S) return;
  if (ranked_group[i] < G && status[i] == kKept) {  // i as a rank slot
    for (int64_t d = 0; d < D; ++d) centers[kept_before[i] * D + d] = rows[i * D + d];
  }
  const int64_t u = at_axis[i];  // i as an axis position
  const int32_t g = ranked_group[u];
  if (g < G && status[u] == kKept) {
    const int64_t pos = kept_before_axis[i];
    for (int64_t d = 0; d < D; ++d) out_rows[pos * D + d] = rows[u * D + d];
    out_keys[pos] = sorted_keys[i];
    out_rank[pos] = kept_before[u] - center_lo[g];
  }
}

}  // namespace

SelectedCenters select_centers(const at::Tensor& final_mean, const at::Tensor& final_count,
                               const at::Tensor& seed_group, int64_t G,
                               const at::Tensor& group_bw, const at::Tensor& group_axis,
                               const at::Tensor& group_cell_axis,
                               const at::Tensor& group_cell_lo, const at::Tensor& margin) {
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t S = final_mean.size(0), D = final_mean.size(1);
  const auto i64 = final_count.options();
  const auto f64 = final_mean.options();
  const SeedView view{final_mean.data_ptr<double>(), final_count.data_ptr<int64_t>(),
                      seed_group.data_ptr<int32_t>(), static_cast<int32_t>(G), D};
  TORCH_INTERNAL_ASSERT(S > 0, "select_centers: expected at least one seed slot");
  const int blocks = static_cast<int>(ceil_div(S, kThreads));

  // 1-2. Distinct means, ranked.
  at::Tensor order = at::arange(S, i64);
  merge_sort(order, ByMean{view});
  at::Tensor ranked = at::empty({S}, i64);
  run_ends_kernel<<<blocks, kThreads, 0, stream>>>(order.data_ptr<int64_t>(), S, view,
                                                   ranked.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  merge_sort(ranked, ByRank{view});
  at::Tensor ranked_group = at::empty({S}, seed_group.options());
  at::Tensor rows = at::empty({S, D}, f64), keys = at::empty({S}, f64);
  at::Tensor cells = at::empty({S}, f64), group_cell = at::empty({S}, i64);
  ranked_rows_kernel<<<blocks, kThreads, 0, stream>>>(
      ranked.data_ptr<int64_t>(), S, view, group_axis.data_ptr<int64_t>(),
      group_cell_axis.data_ptr<int64_t>(), group_cell_lo.data_ptr<double>(),
      group_bw.data_ptr<double>(), margin.data_ptr<double>(), ranked_group.data_ptr<int32_t>(),
      rows.data_ptr<double>(), keys.data_ptr<double>(), cells.data_ptr<double>(),
      group_cell.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor u_lo =
      at::searchsorted(ranked_group, at::arange(G + 1, seed_group.options()));

  // 3. Each group's centers on its axis (stable sorts: by key, then by group), for the labels,
  // and in the suppression's index (by key, then by group and cell); suppression.
  const at::Tensor by_key = std::get<1>(at::sort(keys, /*stable=*/true, 0, false));
  const at::Tensor at_axis = by_key.index_select(
      0, std::get<1>(at::sort(ranked_group.index_select(0, by_key), /*stable=*/true, 0, false)));
  const at::Tensor at_grid = by_key.index_select(
      0, std::get<1>(at::sort(group_cell.index_select(0, by_key), /*stable=*/true, 0, false)));
  at::Tensor rank_at = at::empty({S}, i64), sorted_keys = at::empty({S}, f64);
  order_ranks_kernel<<<blocks, kThreads, 0, stream>>>(
      at_axis.data_ptr<int64_t>(), ranked_group.data_ptr<int32_t>(), u_lo.data_ptr<int64_t>(),
      keys.data_ptr<double>(), S, static_cast<int32_t>(G), rank_at.data_ptr<int64_t>(),
      sorted_keys.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor grid_rank = at::empty({S}, i64), grid_keys = at::empty({S}, f64);
  order_ranks_kernel<<<blocks, kThreads, 0, stream>>>(
      at_grid.data_ptr<int64_t>(), ranked_group.data_ptr<int32_t>(), u_lo.data_ptr<int64_t>(),
      keys.data_ptr<double>(), S, static_cast<int32_t>(G), grid_rank.data_ptr<int64_t>(),
      grid_keys.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor grid_cells = cells.index_select(0, at_grid);
  at::Tensor status = at::zeros({S}, i64.dtype(at::kChar));
  if (G > 0) {
    const SuppressInputs in{u_lo.data_ptr<int64_t>(),     rows.data_ptr<double>(),
                            grid_cells.data_ptr<double>(), grid_keys.data_ptr<double>(),
                            grid_rank.data_ptr<int64_t>(), D,
                            group_axis.data_ptr<int64_t>(), group_cell_axis.data_ptr<int64_t>(),
                            group_cell_lo.data_ptr<double>(), group_bw.data_ptr<double>(),
                            margin.data_ptr<double>()};
    // Rounds over all centers at once (a group of 100k centers is not left to one block), then
    // one block for each group that is still open: the rounds needed are not known on the host.
    at::Tensor open = at::zeros({G}, seed_group.options());
    for (int round = 0; round < kSuppressRounds; ++round) {
      suppress_round_kernel<<<blocks, kThreads, 0, stream>>>(
          in, ranked_group.data_ptr<int32_t>(), S, static_cast<int32_t>(G),
          status.data_ptr<int8_t>(),
          round + 1 == kSuppressRounds ? open.data_ptr<int32_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    suppress_rest_kernel<<<G, kThreads, 0, stream>>>(in, open.data_ptr<int32_t>(),
                                                     status.data_ptr<int8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // 4. Kept centers.
  const at::Tensor kept = status.eq(static_cast<int64_t>(kKept)).logical_and(ranked_group.lt(G));
  const at::Tensor kept_before = exclusive_counts(kept);
  const at::Tensor kept_before_axis = exclusive_counts(kept.index_select(0, at_axis));
  SelectedCenters out;
  out.center_lo = kept_before.index_select(0, u_lo);
  out.centers = at::empty({S, D}, f64);
  out.rows = at::empty({S, D}, f64);
  out.keys = at::empty({S}, f64);
  out.rank = at::empty({S}, i64);
  compact_kernel<<<blocks, kThreads, 0, stream>>>(
      status.data_ptr<int8_t>(), kept_before.data_ptr<int64_t>(), at_axis.data_ptr<int64_t>(),
      kept_before_axis.data_ptr<int64_t>(), ranked_group.data_ptr<int32_t>(),
      rows.data_ptr<double>(), sorted_keys.data_ptr<double>(), out.center_lo.data_ptr<int64_t>(),
      S, D, static_cast<int32_t>(G), out.centers.data_ptr<double>(), out.rows.data_ptr<double>(),
      out.keys.data_ptr<double>(), out.rank.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace panonet::ms::cuda
