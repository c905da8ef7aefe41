// Batched exact mean-shift on the GPU, without waiting for it (mean_shift_core.cuh).
//
//   1. bins: each point's bin key round(x / bandwidth) and a 64-bit hash of (group, key); a
//      stable sort by hash, then each point is given the first position of its run with the same
//      group and key (mean_shift_bins.h: colliding hashes stay apart) and a stable sort by that
//      makes every bin a run; bins are then ordered by their first point, which is sklearn's
//      seed order, group after group;
//   2. per bin: sum, count, mean and bounding radius; points copied into bin order, within a bin
//      by decreasing distance rho to its center, with suffix sums to the bin's end;
//   3. seeds: bins with >= min_bin_freq points, or a group's points where sklearn falls back,
//      each group's in its own range of seed slots;
//   4. climb (mean_shift_climb.cuh): warps take seeds in turn. The lanes test the bins of the
//      seed's group that are within reach of the mean on the group's axes of widest and second
//      widest spread (the group's bins sorted by column on the second and coordinate on the
//      first, a range of each column found by binary search: mean_shift_grid.h) against the
//      window (bounding ball inside: add the bin's sum; outside: skip); in a straddling bin the
//      points that the triangle inequality with the bin's center decides are a suffix (rho
//      below |dist - bw| less the margin: mean_shift.h first_decided), added whole or skipped,
//      and the rest are scanned by all 32 lanes with sklearn's float64 test. Warp sums are reduced in a fixed order and broadcast from lane 0,
//      so all lanes agree bit for bit and loop together;
//   5. centers: dedupe, ranking and suppression on the device (mean_shift_select.cu), the
//      suppression's search indexed like the climb's;
//   6. labels: nearest center, one thread per point, searching the group's centers sorted on
//      the group's axis (nearest_by_projection).
// How many bins, seeds and centers there are is known on the device only: buffers have one
// slot per point, kernels read the counts from device memory, and bins, seeds and centers past
// the counts carry the group id G, which every kernel skips.
// The file is compiled with --fmad=false: distances are the same float64 arithmetic as sklearn's
// KD-tree and the CPU kernel, so the same points fall in the same windows.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cfloat>
#include <limits>
#include <vector>

#include "../ceil_div.h"
#include "../cpu/mean_shift_core.h"
#include "../mean_shift.h"
#include "../mean_shift_bins.h"
#include "../mean_shift_projection.h"
#include "mean_shift_climb.cuh"
#include "mean_shift_core.cuh"

namespace panonet::ms::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxCudaD = 64;  // wider embeddings use the CPU implementation
constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
constexpr int64_t kMaxClimbBlocks = 8192;  // grids of the warp-per-item kernels

int grid(int64_t n) { return static_cast<int>(std::max<int64_t>(1, ceil_div(n, kThreads))); }

// Per point: its bin key (D doubles; 0 for points of no group, which all share one bin) and a
// hash of (group, key).
__global__ void bin_keys_kernel(const double* x, int64_t N, int64_t D, const int32_t* group_of,
                                int32_t G, const double* group_bw, double* keys, int64_t* hashes) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  const int32_t g = group_of[i];
  for (int64_t d = 0; d < D; ++d) keys[i * D + d] = g < G ? bin_key(x[i * D + d], group_bw[g]) : 0.0;
  hashes[i] = static_cast<int64_t>(bin_hash(g, keys + i * D, D, 64));
}

// first[p]: the first position of p's run of equal hashes holding p's group and key.
__global__ void first_same_bin_kernel(const int64_t* perm, const int64_t* run_lo,
                                      const int32_t* group_of, const double* keys, int64_t N,
                                      int64_t D, int64_t* first) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= N) return;
  first[p] = first_same_bin(perm, group_of, keys, D, run_lo[p], p);
}

// Bins as runs (in order of the sort by hash): each run's start position and first point.
__global__ void bin_runs_kernel(const int64_t* first_sorted, const int64_t* run_of,
                                const int64_t* perm, int64_t N, int64_t* run_start,
                                int64_t* run_first) {
  const int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (q >= N || (q > 0 && first_sorted[q] == first_sorted[q - 1])) return;
  run_start[run_of[q]] = q;
  run_first[run_of[q]] = perm[q];
}

// inverse[perm[i]] = i.
__global__ void invert_kernel(const int64_t* perm, int64_t n, int64_t* inverse) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) inverse[perm[i]] = i;
}

// Group of each bin slot: that of its first point, G past the last bin.
__global__ void bin_group_kernel(const int64_t* bin_first_point, const int32_t* group_of,
                                 int64_t N, int32_t G, int32_t* bin_group) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= N) return;
  const int64_t i = bin_first_point[b];
  bin_group[b] = i == kNone ? G : group_of[i];
}

// Copies the points into bin order (bins ordered by first appearance).
__global__ void gather_points_kernel(const double* x, const int64_t* perm, const int64_t* run_of,
                                     const int64_t* run_start, const int64_t* bin_of_run,
                                     const int64_t* bin_start, int64_t N, int64_t D, double* xb) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= N) return;
  const int64_t r = run_of[p];
  const int64_t slot = bin_start[bin_of_run[r]] + (p - run_start[r]);
  for (int64_t d = 0; d < D; ++d) xb[slot * D + d] = x[perm[p] * D + d];
}

// Per bin slot: sum, mean and bounding radius of its points (zeros for the bin of the points
// of no group, and past the last bin). Warps take bins in turn; the lanes stride over the bin's
// points and their sums are reduced in a fixed order (a trained embedding puts thousands of
// points in one bin, which one thread per bin summed serially).
__global__ void bin_stats_kernel(const double* xb, const int64_t* bin_start,
                                 const int32_t* bin_group, int32_t G, int64_t R, int64_t D,
                                 double* sums, double* centers, double* radius) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t b = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5; b < R;
       b += stride) {  // warp-uniform
    const int64_t s0 = bin_start[b], s1 = bin_group[b] < G ? bin_start[b + 1] : s0;
    const double n = static_cast<double>(s1 - s0);
    for (int64_t d = 0; d < D; ++d) {
      double acc = 0;
      for (int64_t p = s0 + lane; p < s1; p += 32) acc += xb[p * D + d];
      const double total = warp_total(acc);
      if (lane == 0) {
        sums[b * D + d] = total;
        centers[b * D + d] = s1 > s0 ? total / n : 0.0;
      }
    }
    __syncwarp();  // the centers, written by lane 0, are read by every lane below
    double r2 = 0;
    for (int64_t p = s0 + lane; p < s1; p += 32) {
      r2 = fmax(r2, sq_dist(xb + p * D, centers + b * D, D));
    }
    for (int o = 16; o > 0; o >>= 1) r2 = fmax(r2, __shfl_down_sync(kFull, r2, o));
    if (lane == 0) radius[b] = sqrt(r2);
  }
}

// Per point position p (bin order): its bin, and its distance to the bin's center.
__global__ void rho_kernel(const double* xb, const int64_t* bin_start, const double* bin_center,
                           const int32_t* bin_group, int32_t G, int64_t N, int64_t D,
                           int64_t* position_bin, double* rho) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= N) return;
  int64_t lo = 0, hi = N;  // largest b with bin_start[b] <= p
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (bin_start[mid] <= p) lo = mid; else hi = mid;
  }
  position_bin[p] = lo;
  rho[p] = bin_group[lo] < G ? sqrt(sq_dist(xb + p * D, bin_center + lo * D, D)) : 0.0;
}

// suffix[p] = sum of xb over positions p .. end of p's bin. Warps take bins in turn and walk
// them from the end in chunks of 32 positions: a reverse scan within the chunk (shuffles, a
// fixed order) plus the total of the later chunks.
__global__ void suffix_kernel(const double* xb, const int64_t* bin_start,
                              const int32_t* bin_group, int32_t G, int64_t R, int64_t D,
                              double* suffix) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t b = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5; b < R;
       b += stride) {  // warp-uniform
    if (bin_group[b] >= G) continue;
    const int64_t s0 = bin_start[b], s1 = bin_start[b + 1];
    for (int64_t d = 0; d < D; ++d) {
      double carry = 0;
      for (int64_t end = s1; end > s0; end -= 32) {
        const int64_t p = end - 32 + lane;
        double v = p >= s0 ? xb[p * D + d] : 0.0;
        for (int o = 1; o < 32; o <<= 1) {
          const double later = __shfl_down_sync(kFull, v, o);
          if (lane + o < 32) v += later;
        }
        if (p >= s0) suffix[p * D + d] = v + carry;
        carry += __shfl_sync(kFull, v, 0);
      }
    }
  }
}

// Seed slots of the groups seeded by bins: group g's eligible bins, in bin order, take slots
// seed_lo[g] + 0, 1, ...; code = the bin.
__global__ void bin_seeds_kernel(const int32_t* bin_group, const int64_t* bin_count,
                                 const int64_t* eligible_before, const int64_t* group_bin_lo,
                                 const bool* use_points, const int64_t* seed_lo, int32_t G,
                                 int64_t R, int64_t min_bin_freq, int64_t* code,
                                 int32_t* seed_group) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= R) return;
  const int32_t g = bin_group[b];
  if (g >= G || use_points[g] || bin_count[b] < min_bin_freq) return;
  const int64_t slot = seed_lo[g] + eligible_before[b] - eligible_before[group_bin_lo[g]];
  code[slot] = b;
  seed_group[slot] = g;
}

// Seed slots of the groups seeded by their points: code = -(point + 1).
__global__ void point_seeds_kernel(const int32_t* group_of, const int64_t* lo,
                                   const bool* use_points, const int64_t* seed_lo, int32_t G,
                                   int64_t N, int64_t* code, int32_t* seed_group) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  const int32_t g = group_of[i];
  if (g >= G || !use_points[g]) return;
  const int64_t slot = seed_lo[g] + (i - lo[g]);
  code[slot] = -(i + 1);
  seed_group[slot] = g;
}

// Nearest center of the point's group (lowest index on ties); -1 beyond bandwidth unless
// cluster_all, and -1 for a point of no group or a group without centers. The group's centers
// are sorted by their coordinate on the group's axis (rows, keys, rank), and the search only
// computes the distances that can still matter (nearest_by_projection): an untrained embedding
// has as many centers as points, and a scan of all of them was O(N K).
__global__ void labels_kernel(const double* x, const int32_t* group_of, int32_t G, int64_t N,
                              int64_t D, const int64_t* center_lo, const double* rows,
                              const double* keys, const int64_t* rank, const int64_t* axis,
                              const double* group_bw, bool cluster_all, int64_t* labels) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  const int32_t g = group_of[i];
  if (g >= G) {
    labels[i] = -1;
    return;
  }
  const int64_t lo = center_lo[g], K = center_lo[g + 1] - lo;
  double best;
  int64_t visited;
  int64_t arg = nearest_by_projection(x + i * D, rows + lo * D, keys + lo, rank + lo, K, D,
                                      axis[g], &best, &visited);
  if (arg >= 0 && !cluster_all && sqrt(best) > group_bw[g]) arg = -1;
  labels[i] = arg;
}

// The CPU implementation, group by group, for embeddings wider than kMaxCudaD (waits for the
// GPU).
GroupsResult on_cpu(const Groups& groups, int64_t G, const GroupParams& params) {
  const at::Tensor host = groups.points.cpu(), lo = groups.lo.cpu();
  const at::Tensor bw = groups.bandwidth.cpu();
  const int64_t N = host.size(0), D = host.size(1);
  at::Tensor labels = at::full({N}, -1, host.options().dtype(at::kLong));
  std::vector<int64_t> center_lo{0};
  std::vector<double> all_centers;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t a = lo.data_ptr<int64_t>()[g], n = lo.data_ptr<int64_t>()[g + 1] - a;
    const Result r = ms::mean_shift(host.data_ptr<double>() + a * D, n, D,
                                    {bw.data_ptr<double>()[g], params.bin_seeding,
                                     params.min_bin_freq, params.max_iter, params.cluster_all});
    std::copy(r.labels.begin(), r.labels.end(), labels.data_ptr<int64_t>() + a);
    all_centers.insert(all_centers.end(), r.centers.begin(), r.centers.end());
    center_lo.push_back(center_lo.back() + r.num_centers);
  }
  const auto device = groups.points.device();
  GroupsResult out;
  out.labels = labels.to(device);
  out.center_lo = at::tensor(center_lo, at::TensorOptions().dtype(at::kLong)).to(device);
  out.centers = at::tensor(all_centers, at::TensorOptions().dtype(at::kDouble))
                    .reshape({center_lo.back(), D})
                    .to(device);
  return out;
}

}  // namespace

GroupsResult mean_shift_groups(const Groups& groups, int64_t G, const GroupParams& params) {
  const at::Tensor& x = groups.points;
  const c10::cuda::CUDAGuard guard(x.device());
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t N = x.size(0), D = x.size(1);
  const auto f64 = x.options();
  const auto i64 = x.options().dtype(at::kLong);
  const auto i32 = x.options().dtype(at::kInt);
  if (N == 0 || G == 0) {
    return {at::full({N}, -1, i64), at::zeros({G + 1}, i64), at::empty({0, D}, f64)};
  }
  if (D > kMaxCudaD) return on_cpu(groups, G, params);
  const int32_t G32 = static_cast<int32_t>(G);
  const int32_t* group_of = groups.group_of.data_ptr<int32_t>();
  const at::Tensor& group_bw = groups.bandwidth;
  // The bound margin (mean_shift.h bound_margin) of each group, from its own rows: the rows of
  // no group (stuff pixels, say) do not widen it, and a non-finite value left unchecked spoils
  // its group only.
  const int blocks = grid(N);
  at::Tensor scale_bits = at::zeros({G}, i64);  // bits of 0.0
  group_scale_kernel<<<blocks, kThreads, 0, stream>>>(
      x.data_ptr<double>(), N, D, group_of, G32,
      reinterpret_cast<unsigned long long*>(scale_bits.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor margin = (scale_bits.view(at::kDouble) + 1.0) *
                            (64.0 * static_cast<double>(D + 2) * DBL_EPSILON);

  // 1. Bins: runs of one hash, split by key, then ordered by first point.
  at::Tensor keys = at::empty({N, D}, f64);
  at::Tensor hashes = at::empty({N}, i64);
  bin_keys_kernel<<<blocks, kThreads, 0, stream>>>(x.data_ptr<double>(), N, D, group_of, G32,
                                                   group_bw.data_ptr<double>(),
                                                   keys.data_ptr<double>(), hashes.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto [sorted_hash, by_hash] = at::sort(hashes, /*stable=*/true, 0, false);
  // The first position of each position's run of equal hashes: a binary search per position
  // (not cummax of the run starts: torch scans a 1-D tensor in one slow pass).
  const at::Tensor run_lo = at::searchsorted(sorted_hash, sorted_hash);
  at::Tensor first = at::empty({N}, i64);
  first_same_bin_kernel<<<blocks, kThreads, 0, stream>>>(
      by_hash.data_ptr<int64_t>(), run_lo.data_ptr<int64_t>(), group_of,
      keys.data_ptr<double>(), N, D, first.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto [first_sorted, by_first] = at::sort(first, /*stable=*/true, 0, false);
  const at::Tensor perm = by_hash.index_select(0, by_first);
  at::Tensor is_start = at::ones({N}, x.options().dtype(at::kBool));
  if (N > 1) is_start.narrow(0, 1, N - 1).copy_(first_sorted.narrow(0, 1, N - 1).ne(first_sorted.narrow(0, 0, N - 1)));
  const at::Tensor run_of = at::cumsum(is_start, 0, at::kLong) - 1;
  at::Tensor run_start = at::full({N + 1}, N, i64);
  at::Tensor run_first = at::full({N}, kNone, i64);
  bin_runs_kernel<<<blocks, kThreads, 0, stream>>>(
      first_sorted.data_ptr<int64_t>(), run_of.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), N,
      run_start.data_ptr<int64_t>(), run_first.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor run_count = run_start.narrow(0, 1, N) - run_start.narrow(0, 0, N);
  const at::Tensor bin_order = std::get<1>(at::sort(run_first, /*stable=*/true, 0, false));
  at::Tensor bin_of_run = at::empty({N}, i64);
  invert_kernel<<<blocks, kThreads, 0, stream>>>(bin_order.data_ptr<int64_t>(), N,
                                                 bin_of_run.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor bin_first_point = run_first.index_select(0, bin_order);
  const at::Tensor bin_count = run_count.index_select(0, bin_order);
  const at::Tensor bin_start = exclusive_counts(bin_count);
  at::Tensor bin_group = at::empty({N}, i32);
  bin_group_kernel<<<blocks, kThreads, 0, stream>>>(bin_first_point.data_ptr<int64_t>(), group_of,
                                                    N, G32, bin_group.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // 2. Points in bin order and per-bin statistics.
  at::Tensor xb = at::empty({N, D}, f64);
  gather_points_kernel<<<blocks, kThreads, 0, stream>>>(
      x.data_ptr<double>(), perm.data_ptr<int64_t>(), run_of.data_ptr<int64_t>(),
      run_start.data_ptr<int64_t>(), bin_of_run.data_ptr<int64_t>(),
      bin_start.data_ptr<int64_t>(), N, D, xb.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor bin_sum = at::empty({N, D}, f64), bin_center = at::empty({N, D}, f64);
  at::Tensor bin_radius = at::empty({N}, f64);
  const int warp_blocks = static_cast<int>(std::min(ceil_div(N * 32, kThreads), kMaxClimbBlocks));
  bin_stats_kernel<<<warp_blocks, kThreads, 0, stream>>>(
      xb.data_ptr<double>(), bin_start.data_ptr<int64_t>(), bin_group.data_ptr<int32_t>(), G32,
      N, D, bin_sum.data_ptr<double>(), bin_center.data_ptr<double>(),
      bin_radius.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Each bin's points by decreasing distance rho to its center (stable sorts: by rho, then by
  // bin), and their suffix sums to the bin's end, for the climb's decided suffixes.
  at::Tensor position_bin = at::empty({N}, i64), rho_unsorted = at::empty({N}, f64);
  rho_kernel<<<blocks, kThreads, 0, stream>>>(
      xb.data_ptr<double>(), bin_start.data_ptr<int64_t>(), bin_center.data_ptr<double>(),
      bin_group.data_ptr<int32_t>(), G32, N, D, position_bin.data_ptr<int64_t>(),
      rho_unsorted.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor by_rho = std::get<1>(at::sort(rho_unsorted, /*stable=*/true, 0, true));
  const at::Tensor rho_order = by_rho.index_select(
      0, std::get<1>(at::sort(position_bin.index_select(0, by_rho), /*stable=*/true, 0, false)));
  xb = xb.index_select(0, rho_order);
  const at::Tensor rho = rho_unsorted.index_select(0, rho_order);
  at::Tensor suffix = at::empty({N, D}, f64);
  suffix_kernel<<<warp_blocks, kThreads, 0, stream>>>(
      xb.data_ptr<double>(), bin_start.data_ptr<int64_t>(), bin_group.data_ptr<int32_t>(), G32,
      N, D, suffix.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor group_bin_lo = at::searchsorted(bin_group, at::arange(G + 1, i32));
  // Bins of each group indexed for the climb (mean_shift_grid.h): sorted by (group, cell, key)
  // (stable sorts: by key, then by group and cell).
  at::Tensor group_axis = at::empty({G}, i64), group_cell_axis = at::empty({G}, i64);
  at::Tensor group_cell_lo = at::empty({G}, f64), group_max_radius = at::empty({G}, f64);
  group_axis_kernel<<<G, kAxisThreads, 0, stream>>>(
      bin_center.data_ptr<double>(), bin_radius.data_ptr<double>(),
      group_bin_lo.data_ptr<int64_t>(), D, group_axis.data_ptr<int64_t>(),
      group_cell_axis.data_ptr<int64_t>(), group_cell_lo.data_ptr<double>(),
      group_max_radius.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor bin_key = at::empty({N}, f64), bin_cell = at::empty({N}, f64);
  at::Tensor bin_group_cell = at::empty({N}, i64);
  bin_grid_kernel<<<blocks, kThreads, 0, stream>>>(
      bin_center.data_ptr<double>(), bin_group.data_ptr<int32_t>(), G32, N, D,
      group_axis.data_ptr<int64_t>(), group_cell_axis.data_ptr<int64_t>(),
      group_cell_lo.data_ptr<double>(), group_bw.data_ptr<double>(),
      group_max_radius.data_ptr<double>(), margin.data_ptr<double>(), bin_key.data_ptr<double>(),
      bin_cell.data_ptr<double>(), bin_group_cell.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor by_key = std::get<1>(at::sort(bin_key, /*stable=*/true, 0, false));
  const at::Tensor bin_by_grid = by_key.index_select(
      0, std::get<1>(at::sort(bin_group_cell.index_select(0, by_key), /*stable=*/true, 0, false)));
  const at::Tensor sorted_key = bin_key.index_select(0, bin_by_grid);
  const at::Tensor sorted_cell = bin_cell.index_select(0, bin_by_grid);

  // 3. Seeds: group g takes slots [seed_lo[g], seed_lo[g + 1]).
  const at::Tensor eligible = bin_group.lt(G).logical_and(bin_count.ge(params.min_bin_freq));
  const at::Tensor eligible_before = exclusive_counts(eligible);
  const at::Tensor eligible_per_group =
      eligible_before.index_select(0, group_bin_lo.narrow(0, 1, G)) -
      eligible_before.index_select(0, group_bin_lo.narrow(0, 0, G));
  const at::Tensor points_per_group = groups.lo.narrow(0, 1, G) - groups.lo.narrow(0, 0, G);
  const at::Tensor use_points = params.bin_seeding
                                    ? eligible_per_group.eq(points_per_group)
                                    : at::ones({G}, x.options().dtype(at::kBool));
  const at::Tensor seed_lo =
      at::cat({at::zeros({1}, i64),
               at::cumsum(at::where(use_points, points_per_group, eligible_per_group), 0)});
  at::Tensor code = at::zeros({N}, i64);
  at::Tensor seed_group = at::full({N}, G, i32);
  bin_seeds_kernel<<<blocks, kThreads, 0, stream>>>(
      bin_group.data_ptr<int32_t>(), bin_count.data_ptr<int64_t>(),
      eligible_before.data_ptr<int64_t>(), group_bin_lo.data_ptr<int64_t>(),
      use_points.data_ptr<bool>(), seed_lo.data_ptr<int64_t>(), G32, N, params.min_bin_freq,
      code.data_ptr<int64_t>(), seed_group.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  point_seeds_kernel<<<blocks, kThreads, 0, stream>>>(
      group_of, groups.lo.data_ptr<int64_t>(), use_points.data_ptr<bool>(),
      seed_lo.data_ptr<int64_t>(), G32, N, code.data_ptr<int64_t>(),
      seed_group.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // 4. Climb.
  at::Tensor final_mean = at::empty({N, D}, f64);
  at::Tensor final_count = at::zeros({N}, i64);
  const ClimbInputs in{code.data_ptr<int64_t>(), seed_group.data_ptr<int32_t>(),
                       seed_lo.data_ptr<int64_t>() + G, D, x.data_ptr<double>(),
                       keys.data_ptr<double>(), bin_first_point.data_ptr<int64_t>(),
                       group_bin_lo.data_ptr<int64_t>(), group_bw.data_ptr<double>(),
                       group_axis.data_ptr<int64_t>(), group_cell_axis.data_ptr<int64_t>(),
                       group_cell_lo.data_ptr<double>(), group_max_radius.data_ptr<double>(),
                       bin_by_grid.data_ptr<int64_t>(), sorted_key.data_ptr<double>(),
                       sorted_cell.data_ptr<double>(),
                       bin_center.data_ptr<double>(), bin_radius.data_ptr<double>(),
                       bin_sum.data_ptr<double>(), bin_start.data_ptr<int64_t>(),
                       xb.data_ptr<double>(), rho.data_ptr<double>(), suffix.data_ptr<double>(),
                       margin.data_ptr<double>(), params.max_iter};
  auto climb = [&](auto tag) {
    constexpr int kMaxD = decltype(tag)::value;
    climb_kernel<kMaxD><<<warp_blocks, kThreads, 0, stream>>>(
        in, final_mean.data_ptr<double>(), final_count.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (D <= 4) climb(std::integral_constant<int, 4>{});
  else if (D <= 8) climb(std::integral_constant<int, 8>{});
  else if (D <= 16) climb(std::integral_constant<int, 16>{});
  else if (D <= 32) climb(std::integral_constant<int, 32>{});
  else climb(std::integral_constant<int, 64>{});

  // 5-6. Centers, then labels.
  const SelectedCenters c = select_centers(final_mean, final_count, seed_group, G, group_bw,
                                           group_axis, group_cell_axis, group_cell_lo, margin);
  GroupsResult out{at::empty({N}, i64), c.center_lo, c.centers};
  labels_kernel<<<blocks, kThreads, 0, stream>>>(
      x.data_ptr<double>(), group_of, G32, N, D, c.center_lo.data_ptr<int64_t>(),
      c.rows.data_ptr<double>(), c.keys.data_ptr<double>(), c.rank.data_ptr<int64_t>(),
      group_axis.data_ptr<int64_t>(), group_bw.data_ptr<double>(), params.cluster_all,
      out.labels.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace panonet::ms::cuda
