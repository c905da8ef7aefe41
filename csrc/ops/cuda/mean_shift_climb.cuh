// The climb of the GPU mean-shift and the per-group axis it prunes by (included by
// mean_shift_core.cu only).
#pragma once

#include "../mean_shift.h"
#include "../mean_shift_grid.h"
#include "../mean_shift_projection.h"

namespace panonet::ms::cuda {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kAxisThreads = 256;  // block size of group_axis_kernel

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

// Per group: the largest |coordinate| of its rows (NaN if one is NaN), as the bits of a double
// (for values >= 0 and NaN of sign +, the unsigned order of the bits is the order of the values,
// NaN above all). The lanes of a warp that hold one group reduce among themselves first: a
// group's pixels are mostly neighbours, so one atomic per warp and group instead of one per row.
__global__ void group_scale_kernel(const double* x, int64_t N, int64_t D, const int32_t* group_of,
                                   int32_t G, unsigned long long* scale_bits) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int32_t g = G;
  double m = 0.0;
  if (i < N) {
    g = group_of[i];
    if (g < G) {
      for (int64_t d = 0; d < D; ++d) {
        const double v = fabs(x[i * D + d]);
        if (v > m || v != v) m = v;
        if (m != m) break;
      }
    }
  }
  // Every lane of the warp gets here (no early return), as __match_any_sync needs.
  const unsigned same = __match_any_sync(kFull, g);
  const unsigned long long bits = static_cast<unsigned long long>(__double_as_longlong(m));
  unsigned long long best = bits;
  for (int lane = 0; lane < 32; ++lane) {
    const unsigned long long other = __shfl_sync(kFull, bits, lane);
    if ((same >> lane) & 1u) best = other > best ? other : best;
  }
  if (g < G && (threadIdx.x & 31) == __ffs(same) - 1) atomicMax(scale_bits + g, best);
}

// Per group (one block each): the axes of widest and second widest spread of its bin centers,
// the smallest coordinate on the second (mean_shift_grid.h GridAxes), and its largest bin
// radius, for the climb's and the suppression's index.
__global__ void group_axis_kernel(const double* bin_center, const double* bin_radius,
                                  const int64_t* group_bin_lo, int64_t D, int64_t* axis,
                                  int64_t* cell_axis, double* cell_lo, double* max_radius) {
  __shared__ double lo_s[kAxisThreads], hi_s[kAxisThreads];
  const int64_t g = blockIdx.x, b0 = group_bin_lo[g], b1 = group_bin_lo[g + 1];
  GridAxes axes;
  for (int64_t d = 0; d < D; ++d) {
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t b = b0 + threadIdx.x; b < b1; b += blockDim.x) {
      lo = fmin(lo, bin_center[b * D + d]);
      hi = fmax(hi, bin_center[b * D + d]);
    }
    lo_s[threadIdx.x] = lo;
    hi_s[threadIdx.x] = hi;
    __syncthreads();
    for (int s = kAxisThreads / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        lo_s[threadIdx.x] = fmin(lo_s[threadIdx.x], lo_s[threadIdx.x + s]);
        hi_s[threadIdx.x] = fmax(hi_s[threadIdx.x], hi_s[threadIdx.x + s]);
      }
      __syncthreads();
    }
    axes.offer(d, lo_s[0], hi_s[0]);  // every thread reads the same values
    __syncthreads();
  }
  double r = 0;
  for (int64_t b = b0 + threadIdx.x; b < b1; b += blockDim.x) r = fmax(r, bin_radius[b]);
  hi_s[threadIdx.x] = r;
  __syncthreads();
  for (int s = kAxisThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) hi_s[threadIdx.x] = fmax(hi_s[threadIdx.x], hi_s[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    axis[g] = axes.axis;
    cell_axis[g] = axes.cell_axis;
    cell_lo[g] = axes.cell_lo;
    max_radius[g] = hi_s[0];
  }
}

// Per bin: its key (center on the group's axis), its cell (mean_shift_grid.h; columns as wide
// as the climb's reach) and the sort key (group, cell) of the climb's index, group in the high
// 32 bits. Bins of no group get (G, 0).
__global__ void bin_grid_kernel(const double* bin_center, const int32_t* bin_group, int32_t G,
                                int64_t N, int64_t D, const int64_t* axis,
                                const int64_t* cell_axis, const double* cell_lo,
                                const double* group_bw, const double* max_radius,
                                const double* margin, double* key, double* cell,
                                int64_t* group_cell) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= N) return;
  const int32_t g = bin_group[b];
  double k = 0, c = 0;
  if (g < G) {
    const double width = projection_reach(group_bw[g], max_radius[g], margin[g]);
    k = bin_center[b * D + axis[g]];
    c = grid_cell(bin_center[b * D + cell_axis[g]], width, grid_first_cell(cell_lo[g], width));
  }
  key[b] = k;
  cell[b] = c;
  group_cell[b] = (static_cast<int64_t>(g) << 32) | static_cast<int64_t>(c);
}

// The inputs of the climb, all on the GPU (see mean_shift_core.cu for how they are built).
struct ClimbInputs {
  const int64_t* seed_code;      // (S) a bin b >= 0 (seed at its key), or -(point + 1)
  const int32_t* seed_group;     // (S)
  const int64_t* num_seeds;      // (1) seeds in use
  int64_t D;
  const double* x;               // (N, D) the points
  const double* point_keys;      // (N, D) their bin keys
  const int64_t* bin_first_point;
  const int64_t* group_bin_lo;   // (G + 1)
  const double* group_bw;        // (G)
  const int64_t* group_axis;     // (G) key axis of the index (mean_shift_grid.h)
  const int64_t* group_cell_axis;
  const double* group_cell_lo;
  const double* group_max_radius;
  const int64_t* bin_by_grid;    // bins of each group sorted by (cell, key), their keys, cells
  const double* sorted_key;
  const double* sorted_cell;
  const double* bin_center;
  const double* bin_radius;
  const double* bin_sum;
  const int64_t* bin_start;      // points of bin b: positions [bin_start[b], bin_start[b + 1])
  const double* xb;              // points by position: bin after bin, by decreasing rho
  const double* rho;
  const double* suffix;
  const double* margin;          // (G) bound_margin of each group's points
  int64_t max_iter;
};

// Climbs seed s with the 32 lanes of a warp: the window tests of the file comment of
// mean_shift_core.cu, sums reduced in a fixed order so that all lanes agree bit for bit.
template <int kMaxD>
__device__ void climb_one(const ClimbInputs& in, int64_t s, int lane, double* final_mean,
                          int64_t* final_count) {
  const int64_t D = in.D;
  const int32_t g = in.seed_group[s];
  const double bw = in.group_bw[g], bw2 = bw * bw;
  const int64_t lo = in.group_bin_lo[g], hi = in.group_bin_lo[g + 1];
  const int64_t axis = in.group_axis[g], cell_axis = in.group_cell_axis[g];
  const double margin = in.margin[g];
  const double reach = projection_reach(bw, in.group_max_radius[g], margin);
  const double first_cell = grid_first_cell(in.group_cell_lo[g], reach);
  const int64_t code = in.seed_code[s];
  double mean[kMaxD], old[kMaxD], acc[kMaxD];
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) {
    if (d >= D) {
      mean[d] = 0.0;
    } else if (code >= 0) {
      mean[d] = seed_coord(in.point_keys[in.bin_first_point[code] * D + d], bw);
    } else {
      mean[d] = in.x[(-code - 1) * D + d];
    }
  }
  long long last = 0;
  bool dropped = false;
  for (int64_t it = 0;; ++it) {
#pragma unroll
    for (int d = 0; d < kMaxD; ++d) acc[d] = 0.0;
    long long count = 0;
    // Only bins whose center is within reach of the mean on both axes of the group's index can
    // meet the window (mean_shift_grid.h): a range of keys in each of a few columns.
    double ma = 0, mc = 0;
#pragma unroll
    for (int d = 0; d < kMaxD; ++d) {
      ma = d == axis ? mean[d] : ma;
      mc = d == cell_axis ? mean[d] : mc;
    }
    // The ranges' bounds are independent binary searches: lane i finds bound i (the lanes hold
    // the same mean, so the span is warp-uniform), then each range is read from its two lanes.
    const GridSpan span = grid_span(reach, first_cell, mc, ma, reach);
    const int64_t bound = lane < 2 * span.columns
                              ? grid_bound(in.sorted_cell, in.sorted_key, lo, hi, span, lane)
                              : 0;
    // Chunks of 32 aligned to the group's start, so that a bin's lane does not depend on the
    // ranges (the ranges ascend, so each lane meets its bins in ascending position): seeds
    // whose windows take the same bins, decided the same way, get bit-identical sums.
    for (int r = 0; r < span.columns; ++r) {  // warp-uniform
      const int64_t range_lo = __shfl_sync(kFull, static_cast<long long>(bound), 2 * r);
      const int64_t range_hi = __shfl_sync(kFull, static_cast<long long>(bound), 2 * r + 1);
      if (range_lo >= range_hi) continue;  // warp-uniform
      for (int64_t base = lo + ((range_lo - lo) & ~int64_t(31)); base < range_hi; base += 32) {
        const int64_t pos = base + lane;
        const bool in_range = pos >= range_lo && pos < range_hi;
        const int64_t b = in_range ? in.bin_by_grid[pos] : -1;
        bool straddle = false;
        double d2 = 0;
        if (in_range) {
          d2 = sq_dist_to<kMaxD>(in.bin_center + b * D, mean, D);
          const double far = bw + in.bin_radius[b] + margin;
          const double near = bw - in.bin_radius[b] - margin;
          if (d2 <= far * far) {
            if (near > 0 && d2 <= near * near) {
#pragma unroll
              for (int d = 0; d < kMaxD; ++d) {
                if (d < D) acc[d] += in.bin_sum[b * D + d];
              }
              count += in.bin_start[b + 1] - in.bin_start[b];
            } else {
              straddle = true;
            }
          }
        }
        // Straddling bins: each lane finds its own bin's first point that the triangle
        // inequality decides (a bin's points are ordered by decreasing distance to its center,
        // so the rest are one suffix, taken whole or not at all), then the undecided points of
        // all the chunk's straddling bins get sklearn's test together, 32 at a time (a warp
        // step per bin was most of the climb's steps: bins of a few undecided points each).
        if (__any_sync(kFull, straddle)) {  // warp-uniform
          int64_t s0 = 0, undecided = 0;
          if (straddle) {
            const double dist = sqrt(d2);
            s0 = in.bin_start[b];
            const int64_t s1 = in.bin_start[b + 1];
            const int64_t split = first_decided(in.rho, s0, s1, dist, bw, margin);
            if (split < s1 && dist < bw) {
#pragma unroll
              for (int d = 0; d < kMaxD; ++d) {
                if (d < D) acc[d] += in.suffix[split * D + d];
              }
              count += s1 - split;
            }
            undecided = split - s0;
          }
          // The lanes' undecided points numbered one after the other: lane l's are
          // [end_l - undecided_l, end_l).
          long long end = undecided;
          for (int o = 1; o < 32; o <<= 1) {
            const long long before = __shfl_up_sync(kFull, end, o);
            if (lane >= o) end += before;
          }
          const long long first = end - undecided;
          const long long total = __shfl_sync(kFull, end, 31);
          for (long long q0 = 0; q0 < total; q0 += 32) {  // warp-uniform
            const long long q = q0 + lane;
            // The first lane whose end exceeds q holds point q (ends ascend; q < total, the
            // last lane's end, so one does).
            int owner = 0;
            for (int step = 16; step > 0; step >>= 1) {
              if (__shfl_sync(kFull, end, owner + step - 1) <= q) owner += step;
            }
            const long long from = __shfl_sync(kFull, first, owner);
            const long long bin_s0 = __shfl_sync(kFull, static_cast<long long>(s0), owner);
            if (q < total) {
              const double* xp = in.xb + (bin_s0 + (q - from)) * D;
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
    if (converged(shift, bw) || it == in.max_iter) break;
  }
  // A mean that is not finite (from points left unchecked) drops its seed: the selection's
  // sorts need an order of the means, which NaN does not give.
  bool finite = true;
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) finite = finite && (d >= D || isfinite(mean[d]));
  if (lane == 0) {
    final_count[s] = dropped || !finite ? 0 : last;
    for (int64_t d = 0; d < D; ++d) final_mean[s * D + d] = mean[d];
  }
}

// Warps stride over the seeds; each climbs one seed at a time. See mean_shift_core.cu.
template <int kMaxD>
__global__ void climb_kernel(ClimbInputs in, double* final_mean, int64_t* final_count) {
  const int lane = threadIdx.x & 31;
  const int64_t first = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int64_t stride = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  const int64_t S = *in.num_seeds;
  for (int64_t s = first; s < S; s += stride) {  // warp-uniform
    climb_one<kMaxD>(in, s, lane, final_mean, final_count);
  }
}

}  // namespace panonet::ms::cuda
