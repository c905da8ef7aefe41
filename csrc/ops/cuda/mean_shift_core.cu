// Batched exact mean-shift on the GPU.
//
//   1. bins: each point's bin key round(x / bandwidth) and a 64-bit hash of (group, key); a
//      stable sort by hash makes every bin a run (hash collisions between different keys are
//      detected and sent to the CPU implementation); bins are then ordered by their first point,
//      which is sklearn's seed order, group after group;
//   2. per bin: sum, count, mean and bounding radius; points copied into bin order, within a bin
//      by decreasing distance rho to its center, with suffix sums to the bin's end;
//   3. seeds: bins with >= min_bin_freq points, or a group's points where sklearn falls back;
//   4. climb: one warp per seed. The lanes test the bins of the seed's group that are within
//      reach of the mean on the group's axis of widest spread (the group's bins sorted on it, the
//      range found by binary search: mean_shift_projection.h) against the window (bounding ball
//      inside: add the bin's sum; outside: skip); in a straddling bin the points that the
//      triangle inequality with the bin's center decides are a suffix (rho below |dist - bw|
//      less the margin: mean_shift.h first_decided), added whole or skipped, and the rest are
//      scanned by all 32 lanes with sklearn's float64 test. Warp sums are reduced in a fixed order and broadcast from
//      lane 0, so all lanes agree bit for bit and loop together;
//   5. ranking and suppression of each group's final means on the host (select_centers, shared
//      with the CPU), then nearest-center labels, one thread per point, searching the group's
//      centers sorted on an axis (nearest_by_projection).
// The file is compiled with --fmad=false: distances are the same float64 arithmetic as sklearn's
// KD-tree and the CPU kernel, so the same points fall in the same windows.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../cpu/mean_shift_core.h"
#include "../hash.h"
#include "../mean_shift.h"
#include "../mean_shift_post.h"
#include "../mean_shift_projection.h"
#include "mean_shift_core.cuh"

namespace panonet::ms::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;
constexpr int64_t kMaxCudaD = 64;  // wider embeddings use the CPU implementation

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per point: its bin key (D doubles) and a hash of (group, key).
__global__ void bin_keys_kernel(const double* x, int64_t N, int64_t D, const int32_t* group_of,
                                const double* group_bw, double* keys, int64_t* hashes) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  const int32_t g = group_of[i];
  const double bw = group_bw[g];
  uint64_t h = static_cast<uint64_t>(g) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
  for (int64_t d = 0; d < D; ++d) {
    const double k = bin_key(x[i * D + d], bw);
    keys[i * D + d] = k;
    h += static_cast<uint64_t>(__double_as_longlong(k)) *
         (0x9e3779b97f4a7c15ULL + 2 * static_cast<uint64_t>(d));
  }
  hashes[i] = static_cast<int64_t>(mix64(h));
}

// Sets *collision when a point's (group, key) differs from that of the first point of its run.
__global__ void check_runs_kernel(const int64_t* perm, const int64_t* run_of, const int64_t* run_start,
                                  const int32_t* group_of, const double* keys, int64_t N,
                                  int64_t D, int* collision) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= N) return;
  const int64_t i = perm[p], j = perm[run_start[run_of[p]]];
  bool same = group_of[i] == group_of[j];
  for (int64_t d = 0; same && d < D; ++d) same = keys[i * D + d] == keys[j * D + d];
  if (!same) *collision = 1;
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

// Per bin: sum, mean and bounding radius of its points.
__global__ void bin_stats_kernel(const double* xb, const int64_t* bin_start, int64_t R, int64_t D,
                                 double* sums, double* centers, double* radius) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= R) return;
  double* s = sums + b * D;
  double* c = centers + b * D;
  for (int64_t d = 0; d < D; ++d) s[d] = 0;
  for (int64_t p = bin_start[b]; p < bin_start[b + 1]; ++p) {
    for (int64_t d = 0; d < D; ++d) s[d] += xb[p * D + d];
  }
  const double n = static_cast<double>(bin_start[b + 1] - bin_start[b]);
  for (int64_t d = 0; d < D; ++d) c[d] = s[d] / n;
  double r2 = 0;
  for (int64_t p = bin_start[b]; p < bin_start[b + 1]; ++p) {
    r2 = fmax(r2, sq_dist(xb + p * D, c, D));
  }
  radius[b] = sqrt(r2);
}

// Per point position p (bin order): its bin, and its distance to the bin's center.
__global__ void rho_kernel(const double* xb, const int64_t* bin_start, const double* bin_center,
                           int64_t N, int64_t R, int64_t D, int64_t* position_bin, double* rho) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= N) return;
  int64_t lo = 0, hi = R;  // largest b with bin_start[b] <= p
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (bin_start[mid] <= p) lo = mid; else hi = mid;
  }
  position_bin[p] = lo;
  rho[p] = sqrt(sq_dist(xb + p * D, bin_center + lo * D, D));
}

// suffix[p] = sum of xb over positions p .. end of p's bin (one thread per bin).
__global__ void suffix_kernel(const double* xb, const int64_t* bin_start, int64_t R, int64_t D,
                              double* suffix) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= R) return;
  const int64_t s0 = bin_start[b], s1 = bin_start[b + 1];
  for (int64_t p = s1 - 1; p >= s0; --p) {
    for (int64_t d = 0; d < D; ++d) {
      suffix[p * D + d] = xb[p * D + d] + (p + 1 < s1 ? suffix[(p + 1) * D + d] : 0.0);
    }
  }
}

// Per group (one block each): the axis of widest spread of its bin centers and its largest bin
// radius, for the climb's pruning by projection.
__global__ void group_axis_kernel(const double* bin_center, const double* bin_radius,
                                  const int64_t* group_bin_lo, int64_t D, int64_t* axis,
                                  double* max_radius) {
  __shared__ double lo_s[kThreads], hi_s[kThreads];
  const int64_t g = blockIdx.x, b0 = group_bin_lo[g], b1 = group_bin_lo[g + 1];
  double widest = -1;
  int64_t best = 0;
  for (int64_t d = 0; d < D; ++d) {
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t b = b0 + threadIdx.x; b < b1; b += blockDim.x) {
      lo = fmin(lo, bin_center[b * D + d]);
      hi = fmax(hi, bin_center[b * D + d]);
    }
    lo_s[threadIdx.x] = lo;
    hi_s[threadIdx.x] = hi;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        lo_s[threadIdx.x] = fmin(lo_s[threadIdx.x], lo_s[threadIdx.x + s]);
        hi_s[threadIdx.x] = fmax(hi_s[threadIdx.x], hi_s[threadIdx.x + s]);
      }
      __syncthreads();
    }
    if (hi_s[0] - lo_s[0] > widest) {  // every thread reads the same values
      widest = hi_s[0] - lo_s[0];
      best = d;
    }
    __syncthreads();
  }
  double r = 0;
  for (int64_t b = b0 + threadIdx.x; b < b1; b += blockDim.x) r = fmax(r, bin_radius[b]);
  hi_s[threadIdx.x] = r;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) hi_s[threadIdx.x] = fmax(hi_s[threadIdx.x], hi_s[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    axis[g] = best;
    max_radius[g] = hi_s[0];
  }
}

// Seed coordinates: code >= 0 is a bin (seed = float32(key) * float32(bandwidth)), code < 0 is
// point -(code + 1) itself.
__global__ void seeds_kernel(const int64_t* code, const int32_t* seed_group, const double* group_bw,
                             const int64_t* bin_first_point, const double* keys, const double* x,
                             int64_t S, int64_t D, double* seeds) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= S) return;
  const int64_t c = code[s];
  if (c >= 0) {
    const double bw = group_bw[seed_group[s]];
    const double* key = keys + bin_first_point[c] * D;
    for (int64_t d = 0; d < D; ++d) seeds[s * D + d] = seed_coord(key[d], bw);
  } else {
    for (int64_t d = 0; d < D; ++d) seeds[s * D + d] = x[(-c - 1) * D + d];
  }
}

// Sum over the warp in a fixed order, the result broadcast from lane 0 (all lanes bit-equal).
template <typename T>
__device__ inline T warp_total(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  return __shfl_sync(kFull, v, 0);
}

// sq_dist of a row against a mean held in registers (the first D of kMaxD entries).
template <int kMaxD>
__device__ inline double sq_dist_to(const double* row, const double (&mean)[kMaxD], int64_t D) {
  double d2 = 0;
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) {
    if (d < D) {
      const double diff = row[d] - mean[d];
      d2 += diff * diff;
    }
  }
  return d2;
}

// One warp per seed; see the file comment.
template <int kMaxD>
__global__ void climb_kernel(const double* seeds, const int32_t* seed_group, int64_t S, int64_t D,
                             const int64_t* group_bin_lo, const double* group_bw,
                             const int64_t* group_axis, const double* group_max_radius,
                             const int64_t* bin_by_key, const double* sorted_key,
                             const double* bin_center, const double* bin_radius,
                             const double* bin_sum, const int64_t* bin_start, const double* xb,
                             const double* rho, const double* suffix, double margin,
                             int64_t max_iter, double* final_mean, int64_t* final_count) {
  const int lane = threadIdx.x & 31;
  const int64_t s = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  if (s >= S) return;  // warp-uniform
  const int32_t g = seed_group[s];
  const double bw = group_bw[g], bw2 = bw * bw;
  const int64_t lo = group_bin_lo[g], hi = group_bin_lo[g + 1];
  const int64_t axis = group_axis[g];
  const double reach = projection_reach(bw, group_max_radius[g], margin);
  double mean[kMaxD], old[kMaxD], acc[kMaxD];
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) mean[d] = d < D ? seeds[s * D + d] : 0.0;
  long long last = 0;
  bool dropped = false;
  for (int64_t it = 0;; ++it) {
#pragma unroll
    for (int d = 0; d < kMaxD; ++d) acc[d] = 0.0;
    long long count = 0;
    // Only bins whose center is within reach of the mean on the group's axis can meet the
    // window (mean_shift_projection.h); they are a range of the group's bins sorted on it.
    double ma = 0;
#pragma unroll
    for (int d = 0; d < kMaxD; ++d) ma = d == axis ? mean[d] : ma;
    const int64_t range_lo = lower_index(sorted_key, lo, hi, ma - reach);
    const int64_t range_hi = upper_index(sorted_key, range_lo, hi, ma + reach);
    // Chunks of 32 aligned to the group's start, so that a bin's lane does not depend on the
    // range: seeds with the same window sum it in the same order (bit-identical means).
    for (int64_t base = lo + ((range_lo - lo) & ~int64_t(31)); base < range_hi; base += 32) {
      const int64_t pos = base + lane;
      const bool in_range = pos >= range_lo && pos < range_hi;
      const int64_t b = in_range ? bin_by_key[pos] : -1;
      bool straddle = false;
      double d2 = 0;
      if (in_range) {
        d2 = sq_dist_to<kMaxD>(bin_center + b * D, mean, D);
        const double far = bw + bin_radius[b] + margin;
        const double near = bw - bin_radius[b] - margin;
        if (d2 <= far * far) {
          if (near > 0 && d2 <= near * near) {
#pragma unroll
            for (int d = 0; d < kMaxD; ++d) {
              if (d < D) acc[d] += bin_sum[b * D + d];
            }
            count += bin_start[b + 1] - bin_start[b];
          } else {
            straddle = true;
          }
        }
      }
      // Straddling bins are scanned by the whole warp, one after the other. A bin's points are
      // ordered by decreasing distance to its center: from the first that the triangle
      // inequality decides, the rest are one suffix, taken whole (by lane 0) or not at all.
      unsigned todo = __ballot_sync(kFull, straddle);
      while (todo) {
        const int src = __ffs(todo) - 1;
        todo &= todo - 1;
        const long long sb = __shfl_sync(kFull, static_cast<long long>(b), src);
        const double dist = sqrt(__shfl_sync(kFull, d2, src));
        const int64_t s0 = bin_start[sb], s1 = bin_start[sb + 1];
        const int64_t split = first_decided(rho, s0, s1, dist, bw, margin);
        if (lane == 0 && split < s1 && dist < bw) {
#pragma unroll
          for (int d = 0; d < kMaxD; ++d) {
            if (d < D) acc[d] += suffix[split * D + d];
          }
          count += s1 - split;
        }
        for (int64_t p = s0 + lane; p < split; p += 32) {
          const double* xp = xb + p * D;
          if (sq_dist_to<kMaxD>(xp, mean, D) <= bw2) {
#pragma unroll
            for (int d = 0; d < kMaxD; ++d) {
              if (d < D) acc[d] += xp[d];
            }
            ++count;
          }
        }
      }
    }
    count = warp_total(count);
    if (count == 0) {  // an empty window drops the seed
      dropped = true;
      break;
    }
    last = count;
    double shift = 0;
#pragma unroll
    for (int d = 0; d < kMaxD; ++d) {
      const double total = warp_total(acc[d]);
      old[d] = mean[d];
      mean[d] = d < D ? total / static_cast<double>(count) : 0.0;
      const double diff = mean[d] - old[d];
      shift += d < D ? diff * diff : 0.0;
    }
    if (converged(shift, bw) || it == max_iter) break;
  }
  if (lane == 0) {
    final_count[s] = dropped ? 0 : last;
    for (int64_t d = 0; d < D; ++d) final_mean[s * D + d] = mean[d];
  }
}

// Nearest center of the point's group (lowest index on ties); -1 beyond bandwidth unless
// cluster_all, and -1 for a group without centers. The group's centers are sorted by their
// coordinate on the group's axis (rows, keys, rank: see project_centers), and the search only
// computes the distances that can still matter (nearest_by_projection): an untrained embedding
// has as many centers as points, and a scan of all of them was O(N K).
__global__ void labels_kernel(const double* x, const int32_t* group_of, int64_t N, int64_t D,
                              const int64_t* center_lo, const double* rows, const double* keys,
                              const int64_t* rank, const int64_t* axis, const double* group_bw,
                              bool cluster_all, int64_t* labels) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  const int32_t g = group_of[i];
  const int64_t lo = center_lo[g], K = center_lo[g + 1] - lo;
  double best;
  int64_t visited;
  int64_t arg = nearest_by_projection(x + i * D, rows + lo * D, keys + lo, rank + lo, K, D,
                                      axis[g], &best, &visited);
  if (arg >= 0 && !cluster_all && sqrt(best) > group_bw[g]) arg = -1;
  labels[i] = arg;
}

template <int kMaxD>
void launch_climb(int64_t S, const at::Tensor& seeds, const at::Tensor& seed_group, int64_t D,
                  const at::Tensor& group_bin_lo, const at::Tensor& group_bw,
                  const at::Tensor& group_axis, const at::Tensor& group_max_radius,
                  const at::Tensor& bin_by_key, const at::Tensor& sorted_key,
                  const at::Tensor& bin_center, const at::Tensor& bin_radius,
                  const at::Tensor& bin_sum, const at::Tensor& bin_start, const at::Tensor& xb,
                  const at::Tensor& rho, const at::Tensor& suffix, double margin,
                  int64_t max_iter, at::Tensor& final_mean, at::Tensor& final_count) {
  const auto stream = at::cuda::getCurrentCUDAStream();
  climb_kernel<kMaxD><<<ceil_div(S * 32, kThreads), kThreads, 0, stream>>>(
      seeds.data_ptr<double>(), seed_group.data_ptr<int32_t>(), S, D,
      group_bin_lo.data_ptr<int64_t>(), group_bw.data_ptr<double>(),
      group_axis.data_ptr<int64_t>(), group_max_radius.data_ptr<double>(),
      bin_by_key.data_ptr<int64_t>(), sorted_key.data_ptr<double>(),
      bin_center.data_ptr<double>(), bin_radius.data_ptr<double>(), bin_sum.data_ptr<double>(),
      bin_start.data_ptr<int64_t>(), xb.data_ptr<double>(), rho.data_ptr<double>(),
      suffix.data_ptr<double>(), margin, max_iter, final_mean.data_ptr<double>(),
      final_count.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The CPU implementation, group by group: for embeddings wider than kMaxCudaD and the
// (astronomically rare) hash collision between two bins.
GroupsResult on_cpu(const at::Tensor& points, const std::vector<int64_t>& offsets,
                    const std::vector<double>& bandwidths, const GroupParams& params) {
  const at::Tensor host = points.cpu();
  const int64_t D = points.size(1), G = static_cast<int64_t>(bandwidths.size());
  at::Tensor labels = at::empty({points.size(0)}, host.options().dtype(at::kLong));
  GroupsResult out{labels, {0}, {}};
  std::vector<double> all_centers;
  for (int64_t g = 0; g < G; ++g) {
    const Result r = ms::mean_shift(host.data_ptr<double>() + offsets[g] * D,
                                    offsets[g + 1] - offsets[g], D,
                                    {bandwidths[g], params.bin_seeding, params.min_bin_freq,
                                     params.max_iter, params.cluster_all});
    std::copy(r.labels.begin(), r.labels.end(), labels.data_ptr<int64_t>() + offsets[g]);
    all_centers.insert(all_centers.end(), r.centers.begin(), r.centers.end());
    out.center_offsets.push_back(out.center_offsets.back() + r.num_centers);
  }
  const int64_t K = out.center_offsets.back();
  out.centers = K == 0 ? at::empty({0, D}, points.options())
                       : at::from_blob(all_centers.data(), {K, D}, host.options()).to(points.device());
  out.labels = labels.to(points.device());
  return out;
}

}  // namespace

GroupsResult mean_shift_groups(const at::Tensor& points, const std::vector<int64_t>& offsets,
                               const std::vector<double>& bandwidths, const GroupParams& params) {
  const c10::cuda::CUDAGuard guard(points.device());
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t N = points.size(0), D = points.size(1);
  const int64_t G = static_cast<int64_t>(bandwidths.size());
  const auto f64 = points.options();
  const auto i64 = points.options().dtype(at::kLong);
  const auto i32 = points.options().dtype(at::kInt);
  if (N == 0) {
    return {at::empty({0}, i64), std::vector<int64_t>(G + 1, 0), at::empty({0, D}, f64)};
  }
  if (D > kMaxCudaD) return on_cpu(points, offsets, bandwidths, params);
  const double* x = points.data_ptr<double>();

  // Group of every point, and the bandwidths on the device.
  const at::Tensor offsets_h = at::tensor(offsets, at::TensorOptions().dtype(at::kLong));
  const at::Tensor sizes = (offsets_h.narrow(0, 1, G) - offsets_h.narrow(0, 0, G)).to(points.device());
  const at::Tensor group_of = at::repeat_interleave(at::arange(G, i32), sizes);
  const at::Tensor group_bw = at::tensor(bandwidths, at::TensorOptions().dtype(at::kDouble)).to(points.device());
  const double scale = points.abs().max().item<double>();
  const double margin = bound_margin(scale, D);

  // 1. Bins as runs of equal hashes.
  at::Tensor keys = at::empty({N, D}, f64);
  at::Tensor hashes = at::empty({N}, i64);
  bin_keys_kernel<<<ceil_div(N, kThreads), kThreads, 0, stream>>>(
      x, N, D, group_of.data_ptr<int32_t>(), group_bw.data_ptr<double>(), keys.data_ptr<double>(),
      hashes.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto [sorted_hash, perm] = at::sort(hashes, /*stable=*/true, 0, false);
  at::Tensor is_start = at::ones({N}, points.options().dtype(at::kBool));
  if (N > 1) is_start.narrow(0, 1, N - 1).copy_(sorted_hash.narrow(0, 1, N - 1).ne(sorted_hash.narrow(0, 0, N - 1)));
  const at::Tensor run_of = at::cumsum(is_start, 0) - 1;
  const at::Tensor run_start = at::nonzero(is_start).squeeze(1);
  const int64_t R = run_start.size(0);
  at::Tensor collision = at::zeros({1}, i32);
  check_runs_kernel<<<ceil_div(N, kThreads), kThreads, 0, stream>>>(
      perm.data_ptr<int64_t>(), run_of.data_ptr<int64_t>(), run_start.data_ptr<int64_t>(),
      group_of.data_ptr<int32_t>(), keys.data_ptr<double>(), N, D, collision.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (collision.item<int>() != 0) return on_cpu(points, offsets, bandwidths, params);

  // Bins in order of first appearance (group after group, since groups are contiguous rows).
  const at::Tensor run_first = perm.index_select(0, run_start);  // stable sort: smallest index
  const at::Tensor run_count = at::diff(at::cat({run_start, at::full({1}, N, i64)}));
  const at::Tensor bin_order = std::get<1>(at::sort(run_first, /*stable=*/true, 0, false));
  at::Tensor bin_of_run = at::empty({R}, i64);
  bin_of_run.index_copy_(0, bin_order, at::arange(R, i64));
  const at::Tensor bin_first_point = run_first.index_select(0, bin_order);
  const at::Tensor bin_count = run_count.index_select(0, bin_order);
  const at::Tensor bin_start = at::cat({at::zeros({1}, i64), at::cumsum(bin_count, 0)});
  const at::Tensor bin_group = group_of.index_select(0, bin_first_point);

  // 2. Points in bin order and per-bin statistics.
  at::Tensor xb = at::empty({N, D}, f64);
  gather_points_kernel<<<ceil_div(N, kThreads), kThreads, 0, stream>>>(
      x, perm.data_ptr<int64_t>(), run_of.data_ptr<int64_t>(), run_start.data_ptr<int64_t>(),
      bin_of_run.data_ptr<int64_t>(), bin_start.data_ptr<int64_t>(), N, D, xb.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor bin_sum = at::empty({R, D}, f64), bin_center = at::empty({R, D}, f64);
  at::Tensor bin_radius = at::empty({R}, f64);
  bin_stats_kernel<<<ceil_div(R, kThreads), kThreads, 0, stream>>>(
      xb.data_ptr<double>(), bin_start.data_ptr<int64_t>(), R, D, bin_sum.data_ptr<double>(),
      bin_center.data_ptr<double>(), bin_radius.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Each bin's points by decreasing distance rho to its center (stable sorts: by rho, then by
  // bin), and their suffix sums to the bin's end, for the climb's decided suffixes.
  at::Tensor position_bin = at::empty({N}, i64), rho_unsorted = at::empty({N}, f64);
  rho_kernel<<<ceil_div(N, kThreads), kThreads, 0, stream>>>(
      xb.data_ptr<double>(), bin_start.data_ptr<int64_t>(), bin_center.data_ptr<double>(), N, R,
      D, position_bin.data_ptr<int64_t>(), rho_unsorted.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor by_rho = std::get<1>(at::sort(rho_unsorted, /*stable=*/true, 0, true));
  const at::Tensor rho_order = by_rho.index_select(
      0, std::get<1>(at::sort(position_bin.index_select(0, by_rho), /*stable=*/true, 0, false)));
  xb = xb.index_select(0, rho_order);
  const at::Tensor rho = rho_unsorted.index_select(0, rho_order);
  at::Tensor suffix = at::empty({N, D}, f64);
  suffix_kernel<<<ceil_div(R, kThreads), kThreads, 0, stream>>>(
      xb.data_ptr<double>(), bin_start.data_ptr<int64_t>(), R, D, suffix.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor bins_per_group = at::bincount(bin_group, {}, G);
  const at::Tensor group_bin_lo = at::cat({at::zeros({1}, i64), at::cumsum(bins_per_group, 0)});
  // Bins of each group sorted on the group's axis (stable sorts: by key, then by group), for
  // the climb's pruning by projection.
  at::Tensor group_axis = at::empty({G}, i64);
  at::Tensor group_max_radius = at::empty({G}, f64);
  group_axis_kernel<<<G, kThreads, 0, stream>>>(
      bin_center.data_ptr<double>(), bin_radius.data_ptr<double>(),
      group_bin_lo.data_ptr<int64_t>(), D, group_axis.data_ptr<int64_t>(),
      group_max_radius.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor bin_key = bin_center.gather(1, group_axis.index_select(0, bin_group).unsqueeze(1))
                                 .squeeze(1);
  const at::Tensor by_key = std::get<1>(at::sort(bin_key, /*stable=*/true, 0, false));
  const at::Tensor bin_by_key = by_key.index_select(
      0, std::get<1>(at::sort(bin_group.index_select(0, by_key), /*stable=*/true, 0, false)));
  const at::Tensor sorted_key = bin_key.index_select(0, bin_by_key).contiguous();

  // 3. Seeds, group after group, in sklearn's order within a group.
  const at::Tensor eligible = bin_count.ge(params.min_bin_freq);
  const at::Tensor eligible_per_group =
      at::zeros({G}, i64).index_add_(0, bin_group, eligible.to(at::kLong)).cpu();
  std::vector<char> use_points(G);
  std::vector<int64_t> seed_offsets(G + 1, 0);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t n_g = offsets[g + 1] - offsets[g];
    const int64_t e_g = eligible_per_group.data_ptr<int64_t>()[g];
    use_points[g] = !params.bin_seeding || e_g == n_g;
    seed_offsets[g + 1] = seed_offsets[g] + (use_points[g] ? n_g : e_g);
  }
  const int64_t S = seed_offsets[G];
  const at::Tensor use_points_d =
      at::tensor(std::vector<int64_t>(use_points.begin(), use_points.end()),
                 at::TensorOptions().dtype(at::kLong))
          .to(points.device())
          .to(at::kBool);
  const at::Tensor bin_seeds =
      at::nonzero(eligible.logical_and(use_points_d.index_select(0, bin_group).logical_not()))
          .squeeze(1);
  const at::Tensor point_seeds = at::nonzero(use_points_d.index_select(0, group_of)).squeeze(1);
  const at::Tensor codes_unsorted = at::cat({bin_seeds, -(point_seeds + 1)});
  const at::Tensor groups_unsorted =
      at::cat({bin_group.index_select(0, bin_seeds), group_of.index_select(0, point_seeds)});
  const auto [seed_group, by_group] = at::sort(groups_unsorted, /*stable=*/true, 0, false);
  const at::Tensor codes = codes_unsorted.index_select(0, by_group);
  at::Tensor seeds = at::empty({S, D}, f64);
  if (S > 0) {
    seeds_kernel<<<ceil_div(S, kThreads), kThreads, 0, stream>>>(
        codes.data_ptr<int64_t>(), seed_group.data_ptr<int32_t>(), group_bw.data_ptr<double>(),
        bin_first_point.data_ptr<int64_t>(), keys.data_ptr<double>(), x, S, D,
        seeds.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // 4. Climb.
  at::Tensor final_mean = at::empty({S, D}, f64);
  at::Tensor final_count = at::empty({S}, i64);
  if (S > 0) {
    auto climb = [&](auto tag) {
      constexpr int kMaxD = decltype(tag)::value;
      launch_climb<kMaxD>(S, seeds, seed_group, D, group_bin_lo, group_bw, group_axis,
                          group_max_radius, bin_by_key, sorted_key, bin_center,
                          bin_radius, bin_sum, bin_start, xb, rho, suffix, margin,
                          params.max_iter, final_mean, final_count);
    };
    if (D <= 4) climb(std::integral_constant<int, 4>{});
    else if (D <= 8) climb(std::integral_constant<int, 8>{});
    else if (D <= 16) climb(std::integral_constant<int, 16>{});
    else if (D <= 32) climb(std::integral_constant<int, 32>{});
    else climb(std::integral_constant<int, 64>{});
  }

  // 5. Centers per group on the host, then labels on the device.
  const at::Tensor mean_h = final_mean.cpu(), count_h = final_count.cpu();
  GroupsResult out{at::empty({N}, i64), {0}, {}};
  std::vector<double> all_centers, sorted_rows, sorted_keys;
  std::vector<int64_t> sorted_rank, axis(G);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t s0 = seed_offsets[g], s1 = seed_offsets[g + 1];
    const std::vector<double> c = select_centers(mean_h.data_ptr<double>() + s0 * D,
                                                 count_h.data_ptr<int64_t>() + s0, s1 - s0, D,
                                                 bandwidths[g]);
    const int64_t K_g = static_cast<int64_t>(c.size()) / D;
    const ProjectedCenters pc = project_centers(c.data(), K_g, D);
    axis[g] = pc.axis;
    sorted_rows.insert(sorted_rows.end(), pc.rows.begin(), pc.rows.end());
    sorted_keys.insert(sorted_keys.end(), pc.keys.begin(), pc.keys.end());
    sorted_rank.insert(sorted_rank.end(), pc.rank.begin(), pc.rank.end());
    all_centers.insert(all_centers.end(), c.begin(), c.end());
    out.center_offsets.push_back(out.center_offsets.back() + K_g);
  }
  const int64_t K = out.center_offsets.back();
  out.centers = K == 0 ? at::empty({0, D}, f64)
                       : at::from_blob(all_centers.data(), {K, D},
                                       at::TensorOptions().dtype(at::kDouble))
                             .to(points.device());
  const auto on_device = [&](const auto& v, at::ScalarType t) {
    return at::tensor(v, at::TensorOptions().dtype(t)).to(points.device());
  };
  const at::Tensor center_lo = on_device(out.center_offsets, at::kLong);
  const at::Tensor center_rows = on_device(sorted_rows, at::kDouble);
  const at::Tensor center_keys = on_device(sorted_keys, at::kDouble);
  const at::Tensor center_rank = on_device(sorted_rank, at::kLong);
  const at::Tensor axis_d = on_device(axis, at::kLong);
  labels_kernel<<<ceil_div(N, kThreads), kThreads, 0, stream>>>(
      x, group_of.data_ptr<int32_t>(), N, D, center_lo.data_ptr<int64_t>(),
      center_rows.data_ptr<double>(), center_keys.data_ptr<double>(),
      center_rank.data_ptr<int64_t>(), axis_d.data_ptr<int64_t>(), group_bw.data_ptr<double>(), params.cluster_all,
      out.labels.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace panonet::ms::cuda
