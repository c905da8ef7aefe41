// CUDA kernels of panonet::discriminative_loss and panonet::discriminative_loss_backward.
//
// Forward, per batch:
//   1. id range of each image (one read of the ids), then either a dense table (mark the ids
//      present, inclusive scan, look up each pixel) or, for very wide id ranges, a batched sort;
//      clusters are numbered by image, then by id, exactly as on the CPU;
//   2. cluster sums and counts: each block owns a contiguous range of one image's pixels and
//      accumulates into shared memory, with a warp-level sum when all 32 lanes hit the same
//      cluster (the common case in a segmentation map); the block merges its accumulators into
//      global memory once, so global atomics scale with blocks x clusters, not with pixels;
//   3. the hinge terms of eq. (2), accumulated the same way;
//   4. per-cluster terms (eqs. 3, 4 and the stored gradients), one block per image.
// The backward is one pass over the pixels. The math lives in ../discriminative_loss.h and is
// shared with the CPU kernel, whose tests therefore cover it.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../discriminative_loss.h"
#include "../discriminative_loss_checks.h"

namespace panonet::ops {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;
// Largest dense relabelling table (int32 entries, summed over the images); a wider id range is
// ranked by a sort instead.
constexpr int64_t kMaxTable = int64_t(1) << 24;
// Shared memory a block may use for accumulators without opting in to more.
constexpr int64_t kMaxShared = 48 * 1024;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFullMask, v, o);
  return v;
}

// Blocks along x per image: enough blocks in total to fill the GPU a few times over.
int64_t blocks_per_image(int64_t B, int64_t HW) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::clamp<int64_t>(ceil_div(sms * 8, std::max<int64_t>(B, 1)), 1,
                             std::max<int64_t>(1, ceil_div(HW, kThreads)));
}

// Pixel range [begin, end) of block (blockIdx.x) of its image; a multiple of kThreads long, so
// that every warp iterates in lock-step and warp collectives are safe.
struct BlockRange {
  int64_t begin, end;
};
__device__ inline BlockRange block_range(int64_t HW) {
  const int64_t chunk = ((HW + gridDim.x - 1) / gridDim.x + kThreads - 1) / kThreads * kThreads;
  const int64_t begin = blockIdx.x * chunk;
  return {begin, begin + chunk < HW ? begin + chunk : HW};
}

// ---------------------------------------------------------------------------------------------
// Relabelling.

template <typename id_t>
__global__ void id_range_kernel(const id_t* ids, int64_t HW, int64_t ignore_index,
                                long long* lo, long long* hi) {
  const int64_t b = blockIdx.y;
  const BlockRange r = block_range(HW);
  long long mn = std::numeric_limits<long long>::max();
  long long mx = std::numeric_limits<long long>::min();
  for (int64_t p = r.begin + threadIdx.x; p < r.end; p += blockDim.x) {
    const long long id = ids[b * HW + p];
    if (id == ignore_index) continue;
    mn = id < mn ? id : mn;
    mx = id > mx ? id : mx;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const long long omn = __shfl_down_sync(kFullMask, mn, o);
    const long long omx = __shfl_down_sync(kFullMask, mx, o);
    mn = omn < mn ? omn : mn;
    mx = omx > mx ? omx : mx;
  }
  if ((threadIdx.x & 31) == 0 && mn <= mx) {
    atomicMin(lo + b, mn);
    atomicMax(hi + b, mx);
  }
}

// table[base[b] + id - lo[b]] = 1 for every id present in image b.
template <typename id_t>
__global__ void mark_ids_kernel(const id_t* ids, int64_t HW, int64_t ignore_index,
                                const int64_t* base, const long long* lo, int32_t* table) {
  const int64_t b = blockIdx.y;
  const BlockRange r = block_range(HW);
  for (int64_t base0 = r.begin; base0 < r.end; base0 += blockDim.x) {
    const int64_t p = base0 + threadIdx.x;
    const long long id = p < r.end ? static_cast<long long>(ids[b * HW + p]) : 0;
    // Only the first lane of a run of equal ids stores: most stores of a warp are redundant.
    const long long prev = __shfl_up_sync(kFullMask, id, 1);
    if (p >= r.end || id == ignore_index) continue;
    if ((threadIdx.x & 31) != 0 && prev == id) continue;
    table[base[b] + (id - lo[b])] = 1;
  }
}

// labels = inclusive-scan rank - 1 (a global cluster index), -1 on ignored pixels.
template <typename id_t>
__global__ void lookup_ids_kernel(const id_t* ids, int64_t HW, int64_t ignore_index,
                                  const int64_t* base, const long long* lo, const int32_t* rank,
                                  int32_t* labels) {
  const int64_t b = blockIdx.y;
  const BlockRange r = block_range(HW);
  for (int64_t p = r.begin + threadIdx.x; p < r.end; p += blockDim.x) {
    const long long id = ids[b * HW + p];
    labels[b * HW + p] = id == ignore_index ? -1 : rank[base[b] + (id - lo[b])] - 1;
  }
}

// offsets[b] = number of clusters in images before b (the scan value just before its table).
__global__ void table_offsets_kernel(const int64_t* base, const int32_t* rank, int64_t B,
                                     int64_t* offsets) {
  const int64_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b <= B) offsets[b] = base[b] > 0 ? rank[base[b] - 1] : 0;
}

// Fills labels (B, H, W) int32 and returns offsets (B + 1) int64, both on the GPU.
at::Tensor relabel_cuda(const at::Tensor& ids, int64_t ignore_index, at::Tensor& labels) {
  const int64_t B = ids.size(0), HW = ids.size(1) * ids.size(2);
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto i64 = ids.options().dtype(at::kLong);
  at::Tensor offsets = at::zeros({B + 1}, i64);
  if (B == 0 || HW == 0) {
    labels.fill_(-1);
    return offsets;
  }
  const dim3 grid(blocks_per_image(B, HW), B);

  at::Tensor lo = at::full({B}, std::numeric_limits<int64_t>::max(), i64);
  at::Tensor hi = at::full({B}, std::numeric_limits<int64_t>::min(), i64);
  AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "discriminative_loss_id_range", [&] {
    id_range_kernel<index_t><<<grid, kThreads, 0, stream>>>(
        ids.data_ptr<index_t>(), HW, ignore_index,
        reinterpret_cast<long long*>(lo.data_ptr<int64_t>()),
        reinterpret_cast<long long*>(hi.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor lo_h = lo.cpu(), hi_h = hi.cpu();  // the first of the forward's syncs
  std::vector<int64_t> base(B + 1, 0);
  bool dense = true;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t l = lo_h.data_ptr<int64_t>()[b], h = hi_h.data_ptr<int64_t>()[b];
    // Compare in unsigned arithmetic: h - l overflows int64 for ids spanning the full range.
    const uint64_t width = l <= h ? static_cast<uint64_t>(h) - static_cast<uint64_t>(l) + 1 : 0;
    if (width > static_cast<uint64_t>(kMaxTable) || base[b] + int64_t(width) > kMaxTable) {
      dense = false;
      break;
    }
    base[b + 1] = base[b] + static_cast<int64_t>(width);
  }

  if (dense) {
    at::Tensor base_d = at::tensor(base, i64.device(at::kCPU)).to(ids.device(), true);
    at::Tensor table = at::zeros({std::max<int64_t>(base[B], 1)}, ids.options().dtype(at::kInt));
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "discriminative_loss_mark", [&] {
      mark_ids_kernel<index_t><<<grid, kThreads, 0, stream>>>(
          ids.data_ptr<index_t>(), HW, ignore_index, base_d.data_ptr<int64_t>(),
          reinterpret_cast<const long long*>(lo.data_ptr<int64_t>()), table.data_ptr<int32_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    const at::Tensor rank = at::cumsum(table, 0, at::kInt);
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "discriminative_loss_lookup", [&] {
      lookup_ids_kernel<index_t><<<grid, kThreads, 0, stream>>>(
          ids.data_ptr<index_t>(), HW, ignore_index, base_d.data_ptr<int64_t>(),
          reinterpret_cast<const long long*>(lo.data_ptr<int64_t>()), rank.data_ptr<int32_t>(),
          labels.data_ptr<int32_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    table_offsets_kernel<<<ceil_div(B + 1, kThreads), kThreads, 0, stream>>>(
        base_d.data_ptr<int64_t>(), rank.data_ptr<int32_t>(), B, offsets.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return offsets;
  }

  // Wide id ranges: rank by a row-wise sort. The ignore value sorts into a run of its own, so the
  // first valid element of each run of equal values starts a new cluster.
  const at::Tensor flat = ids.reshape({B, HW}).to(at::kLong);
  const auto [sorted, perm] = at::sort(flat, 1);
  const at::Tensor valid = sorted.ne(ignore_index);
  at::Tensor starts = valid.clone();
  starts.narrow(1, 1, HW - 1).logical_and_(
      sorted.narrow(1, 1, HW - 1).ne(sorted.narrow(1, 0, HW - 1)));
  const at::Tensor global_rank = starts.reshape({-1}).cumsum(0).reshape({B, HW}) - 1;
  const at::Tensor sorted_labels = at::where(valid, global_rank, at::full({}, -1, i64));
  labels.view({B, HW}).scatter_(1, perm, sorted_labels.to(at::kInt));
  offsets.narrow(0, 1, B).copy_(starts.sum(1).cumsum(0));
  return offsets;
}

// ---------------------------------------------------------------------------------------------
// Cluster passes. In "shared" mode (the image's clusters fit in shared memory) a block works on
// shared accumulators and merges them once; otherwise it adds to global memory directly, which is
// then spread over many clusters and no longer a few hot addresses.

// Adds v (this lane's contribution to cluster slot `slot`) to acc[slot]; when the whole warp
// works on one cluster the 32 values are summed with shuffles and added once.
template <typename acc_t>
__device__ inline void add_to_cluster(acc_t* acc, bool uniform, int64_t slot, bool valid, acc_t v) {
  if (uniform) {
    if (!valid) return;  // uniform: every lane agrees on validity
    const acc_t s = warp_sum(v);
    if ((threadIdx.x & 31) == 0) atomicAdd(acc + slot, s);
  } else if (valid) {
    atomicAdd(acc + slot, v);
  }
}

// Pass 1: per cluster, sum of embeddings (acc, K x D) and pixel count (count, K); sets
// *non_finite when any embedding value of the image is NaN or Inf.
template <typename scalar_t, typename acc_t, bool kShared>
__global__ void cluster_sums_kernel(const scalar_t* x, const int32_t* labels,
                                    const int64_t* offsets, int64_t D, int64_t HW, acc_t* sums,
                                    unsigned long long* counts, int* non_finite) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t b = blockIdx.y;
  const int64_t first = offsets[b], C = offsets[b + 1] - first;
  acc_t* s_sums = reinterpret_cast<acc_t*>(smem_raw);
  unsigned int* s_counts = reinterpret_cast<unsigned int*>(s_sums + (kShared ? C * D : 0));
  if (kShared) {
    for (int64_t i = threadIdx.x; i < C * D; i += blockDim.x) s_sums[i] = acc_t(0);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s_counts[i] = 0;
    __syncthreads();
  }
  const BlockRange r = block_range(HW);
  bool finite = true;
  for (int64_t base = r.begin; base < r.end; base += blockDim.x) {
    const int64_t p = base + threadIdx.x;
    const bool in_range = p < r.end;
    const int32_t l = in_range ? labels[b * HW + p] : -1;
    const bool valid = l >= 0;
    const bool uniform = __all_sync(kFullMask, l == __shfl_sync(kFullMask, l, 0));
    const int64_t c = kShared ? l - first : l;  // slot of this pixel's cluster
    for (int64_t d = 0; d < D; ++d) {
      const acc_t v = in_range ? static_cast<acc_t>(x[(b * D + d) * HW + p]) : acc_t(0);
      finite = finite && isfinite(v);
      add_to_cluster(kShared ? s_sums : sums, uniform, c * D + d, valid, v);
    }
    if (kShared) {
      if (valid) atomicAdd(s_counts + c, 1u);
    } else if (valid) {
      atomicAdd(counts + c, 1ull);
    }
  }
  if (!finite) *non_finite = 1;
  if (kShared) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < C * D; i += blockDim.x) {
      if (s_sums[i] != acc_t(0)) atomicAdd(sums + first * D + i, s_sums[i]);
    }
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      if (s_counts[i] != 0) atomicAdd(counts + first + i, static_cast<unsigned long long>(s_counts[i]));
    }
  }
}

template <typename acc_t>
__global__ void means_kernel(const acc_t* sums, const unsigned long long* counts, int64_t K,
                             int64_t D, acc_t* means, int64_t* counts_out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= K * D) return;
  const int64_t k = i / D;
  means[i] = sums[i] / static_cast<acc_t>(counts[k]);
  if (i % D == 0) counts_out[k] = static_cast<int64_t>(counts[k]);
}

// Squared distance of pixel p of image b to mean mu (D values, global or shared).
template <typename scalar_t, typename acc_t>
__device__ inline acc_t sq_dist(const scalar_t* x, int64_t b, int64_t D, int64_t HW, int64_t p,
                                const acc_t* mu) {
  acc_t sq = 0;
  for (int64_t d = 0; d < D; ++d) {
    const acc_t diff = static_cast<acc_t>(x[(b * D + d) * HW + p]) - mu[d];
    sq += diff * diff;
  }
  return sq;
}

// Pass 2: per cluster, sum of f (x - mu) (var_sums, K x D) and of v^2 (v_sq, K).
template <typename scalar_t, typename acc_t, bool kShared>
__global__ void hinge_sums_kernel(const scalar_t* x, const int32_t* labels,
                                  const int64_t* offsets, const acc_t* means, int64_t D,
                                  int64_t HW, acc_t delta_v, acc_t* var_sums, acc_t* v_sq) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t b = blockIdx.y;
  const int64_t first = offsets[b], C = offsets[b + 1] - first;
  acc_t* s_means = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* s_var = s_means + (kShared ? C * D : 0);
  acc_t* s_vsq = s_var + (kShared ? C * D : 0);
  if (kShared) {
    for (int64_t i = threadIdx.x; i < C * D; i += blockDim.x) {
      s_means[i] = means[first * D + i];
      s_var[i] = acc_t(0);
    }
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s_vsq[i] = acc_t(0);
    __syncthreads();
  }
  const acc_t* mu_all = kShared ? s_means : means;
  acc_t* var_acc = kShared ? s_var : var_sums;
  acc_t* vsq_acc = kShared ? s_vsq : v_sq;
  const BlockRange r = block_range(HW);
  for (int64_t base = r.begin; base < r.end; base += blockDim.x) {
    const int64_t p = base + threadIdx.x;
    const bool in_range = p < r.end;
    const int32_t l = in_range ? labels[b * HW + p] : -1;
    const bool valid = l >= 0;
    const bool uniform = __all_sync(kFullMask, l == __shfl_sync(kFullMask, l, 0));
    const int64_t c = kShared ? l - first : l;
    const acc_t* mu = mu_all + (valid ? c : 0) * D;
    acc_t v2 = 0, f = 0;
    if (valid) f = dl::var_factor(sq_dist(x, b, D, HW, p, mu), delta_v, &v2);
    add_to_cluster(vsq_acc, uniform, c, valid, v2);
    for (int64_t d = 0; d < D; ++d) {
      const acc_t term =
          valid ? f * (static_cast<acc_t>(x[(b * D + d) * HW + p]) - mu[d]) : acc_t(0);
      add_to_cluster(var_acc, uniform, c * D + d, valid, term);
    }
  }
  if (kShared) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < C * D; i += blockDim.x) {
      if (s_var[i] != acc_t(0)) atomicAdd(var_sums + first * D + i, s_var[i]);
    }
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      if (s_vsq[i] != acc_t(0)) atomicAdd(v_sq + first + i, s_vsq[i]);
    }
  }
}

// Per-cluster terms and per-image losses; one block per image, a thread per cluster, and a
// fixed-order block reduction (deterministic).
template <typename acc_t>
__global__ void cluster_terms_kernel(const int64_t* offsets, const acc_t* means,
                                     const int64_t* counts, const acc_t* var_sums,
                                     const acc_t* v_sq, int64_t D, acc_t delta_d, acc_t delta_r,
                                     acc_t* mu_grads, acc_t* losses) {
  __shared__ acc_t red[dl::kTerms][kThreads];
  const int64_t b = blockIdx.x;
  const int64_t first = offsets[b], C = offsets[b + 1] - first;
  acc_t tot[dl::kTerms] = {0, 0, 0};
  for (int64_t a = threadIdx.x; a < C; a += blockDim.x) {
    const int64_t k = first + a;
    const auto t = dl::cluster_terms<acc_t>(means + first * D, C, D, a,
                                            static_cast<acc_t>(counts[k]), v_sq[k],
                                            var_sums + k * D, delta_d, delta_r,
                                            mu_grads + k * dl::kTerms * D);
    tot[dl::kVar] += t.var;
    tot[dl::kDist] += t.dist;
    tot[dl::kReg] += t.reg;
  }
  for (int j = 0; j < dl::kTerms; ++j) red[j][threadIdx.x] = tot[j];
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      for (int j = 0; j < dl::kTerms; ++j) red[j][threadIdx.x] += red[j][threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    dl::image_losses<acc_t>(C, red[dl::kVar][0], red[dl::kDist][0], red[dl::kReg][0],
                            losses + b * dl::kTerms);
  }
}

// Shared memory of the two passes for an image with C clusters, or 0 if it does not fit.
int64_t shared_bytes(int64_t c_max, int64_t D, int64_t acc_size, bool hinge_pass) {
  const int64_t bytes = hinge_pass ? (2 * c_max * D + c_max) * acc_size
                                   : c_max * D * acc_size + c_max * int64_t(sizeof(unsigned));
  return bytes <= kMaxShared ? bytes : 0;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& embedding_in, const at::Tensor& instance_ids_in, double delta_v,
    double delta_d, double delta_r, int64_t ignore_index) {
  check_discriminative_loss_inputs(embedding_in, instance_ids_in, delta_v, delta_d, delta_r);
  const c10::cuda::CUDAGuard guard(embedding_in.device());
  const at::Tensor embedding = embedding_in.contiguous();
  const at::Tensor instance_ids = instance_ids_in.contiguous();
  const int64_t B = embedding.size(0), D = embedding.size(1);
  const int64_t HW = embedding.size(2) * embedding.size(3);
  const auto acc_type = embedding.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto acc_opts = embedding.options().dtype(acc_type);
  const auto stream = at::cuda::getCurrentCUDAStream();

  at::Tensor labels = at::empty({B, embedding.size(2), embedding.size(3)},
                                embedding.options().dtype(at::kInt));
  const at::Tensor offsets = relabel_cuda(instance_ids, ignore_index, labels);
  const at::Tensor offsets_h = offsets.cpu();  // cluster counts size the outputs
  const int64_t* off_h = offsets_h.data_ptr<int64_t>();
  const int64_t K = off_h[B];
  int64_t c_max = 0;
  for (int64_t b = 0; b < B; ++b) c_max = std::max(c_max, off_h[b + 1] - off_h[b]);

  at::Tensor losses = at::zeros({B, dl::kTerms}, acc_opts);
  at::Tensor means = at::empty({K, D}, acc_opts);
  at::Tensor mu_grads = at::empty({K, dl::kTerms, D}, acc_opts);
  at::Tensor counts = at::empty({K}, embedding.options().dtype(at::kLong));
  if (B == 0 || HW == 0) return {losses, labels, offsets, means, mu_grads, counts};

  const dim3 grid(blocks_per_image(B, HW), B);
  at::Tensor sums = at::zeros({K, D}, acc_opts);
  at::Tensor counts_acc = at::zeros({K}, embedding.options().dtype(at::kLong));
  at::Tensor var_sums = at::zeros({K, D}, acc_opts);
  at::Tensor v_sq = at::zeros({K}, acc_opts);
  at::Tensor non_finite = at::zeros({1}, embedding.options().dtype(at::kInt));

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, embedding.scalar_type(), "discriminative_loss_cuda", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        const scalar_t* x = embedding.data_ptr<scalar_t>();
        const int32_t* lab = labels.data_ptr<int32_t>();
        const int64_t* off = offsets.data_ptr<int64_t>();
        auto* cnt = reinterpret_cast<unsigned long long*>(counts_acc.data_ptr<int64_t>());

        const int64_t sum_smem = shared_bytes(c_max, D, sizeof(acc_t), false);
        if (sum_smem > 0) {
          cluster_sums_kernel<scalar_t, acc_t, true><<<grid, kThreads, sum_smem, stream>>>(
              x, lab, off, D, HW, sums.data_ptr<acc_t>(), cnt, non_finite.data_ptr<int>());
        } else {
          cluster_sums_kernel<scalar_t, acc_t, false><<<grid, kThreads, 0, stream>>>(
              x, lab, off, D, HW, sums.data_ptr<acc_t>(), cnt, non_finite.data_ptr<int>());
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (non_finite.item<int>() != 0) fail_non_finite_embedding();
        if (K == 0) return;

        means_kernel<acc_t><<<ceil_div(K * D, kThreads), kThreads, 0, stream>>>(
            sums.data_ptr<acc_t>(), cnt, K, D, means.data_ptr<acc_t>(),
            counts.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();

        const int64_t hinge_smem = shared_bytes(c_max, D, sizeof(acc_t), true);
        if (hinge_smem > 0) {
          hinge_sums_kernel<scalar_t, acc_t, true><<<grid, kThreads, hinge_smem, stream>>>(
              x, lab, off, means.data_ptr<acc_t>(), D, HW, static_cast<acc_t>(delta_v),
              var_sums.data_ptr<acc_t>(), v_sq.data_ptr<acc_t>());
        } else {
          hinge_sums_kernel<scalar_t, acc_t, false><<<grid, kThreads, 0, stream>>>(
              x, lab, off, means.data_ptr<acc_t>(), D, HW, static_cast<acc_t>(delta_v),
              var_sums.data_ptr<acc_t>(), v_sq.data_ptr<acc_t>());
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();

        cluster_terms_kernel<acc_t><<<B, kThreads, 0, stream>>>(
            off, means.data_ptr<acc_t>(), counts.data_ptr<int64_t>(), var_sums.data_ptr<acc_t>(),
            v_sq.data_ptr<acc_t>(), D, static_cast<acc_t>(delta_d), static_cast<acc_t>(delta_r),
            mu_grads.data_ptr<acc_t>(), losses.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {losses, labels, offsets, means, mu_grads, counts};
}

// ---------------------------------------------------------------------------------------------
// Backward.

__device__ inline int64_t image_of(const int64_t* offsets, int64_t B, int64_t k) {
  int64_t lo = 0, hi = B;  // largest b with offsets[b] <= k
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (offsets[mid] <= k) lo = mid; else hi = mid;
  }
  return lo;
}

template <typename acc_t>
__global__ void cluster_backward_kernel(const acc_t* grad_losses, const int64_t* offsets,
                                        int64_t B, int64_t K, const int64_t* counts,
                                        const acc_t* mu_grads, int64_t D, acc_t* scale,
                                        acc_t* G) {
  const int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (k >= K) return;
  const int64_t b = image_of(offsets, B, k);
  scale[k] = dl::cluster_backward<acc_t>(grad_losses + b * dl::kTerms, offsets[b + 1] - offsets[b],
                                         static_cast<acc_t>(counts[k]),
                                         mu_grads + k * dl::kTerms * D, D, G + k * D);
}

template <typename scalar_t, typename acc_t>
__global__ void pixel_backward_kernel(const scalar_t* x, const int32_t* labels,
                                      const acc_t* means, const acc_t* scale, const acc_t* G,
                                      int64_t D, int64_t HW, int64_t n, acc_t delta_v,
                                      scalar_t* grad) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t b = i / HW, p = i % HW;
  const int32_t l = labels[i];
  if (l < 0) {
    for (int64_t d = 0; d < D; ++d) grad[(b * D + d) * HW + p] = scalar_t(0);
    return;
  }
  const acc_t* mu = means + l * D;
  acc_t unused;
  const acc_t sf = scale[l] * dl::var_factor(sq_dist(x, b, D, HW, p, mu), delta_v, &unused);
  for (int64_t d = 0; d < D; ++d) {
    const int64_t j = (b * D + d) * HW + p;
    grad[j] = static_cast<scalar_t>(sf * (static_cast<acc_t>(x[j]) - mu[d]) + G[l * D + d]);
  }
}

at::Tensor backward_cuda(const at::Tensor& grad_losses, const at::Tensor& embedding_in,
                         const at::Tensor& labels_in, const at::Tensor& offsets_in,
                         const at::Tensor& means_in, const at::Tensor& mu_grads_in,
                         const at::Tensor& counts_in, double delta_v) {
  check_discriminative_loss_backward_inputs(grad_losses, embedding_in, labels_in, offsets_in,
                                            means_in, mu_grads_in, counts_in);
  const c10::cuda::CUDAGuard guard(embedding_in.device());
  const at::Tensor embedding = embedding_in.contiguous();
  const at::Tensor labels = labels_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const at::Tensor counts = counts_in.contiguous();
  const int64_t B = embedding.size(0), D = embedding.size(1);
  const int64_t HW = embedding.size(2) * embedding.size(3);
  const int64_t K = means_in.size(0);
  const auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor grad = at::empty_like(embedding);
  if (grad.numel() == 0) return grad;

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, embedding.scalar_type(), "discriminative_loss_backward_cuda", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
        const at::Tensor g = grad_losses.to(acc_type).contiguous();
        const at::Tensor means = means_in.to(acc_type).contiguous();
        const at::Tensor mu_grads = mu_grads_in.to(acc_type).contiguous();
        at::Tensor scale = at::empty({K}, means.options());
        at::Tensor G = at::empty({K, D}, means.options());
        if (K > 0) {
          cluster_backward_kernel<acc_t><<<ceil_div(K, kThreads), kThreads, 0, stream>>>(
              g.data_ptr<acc_t>(), offsets.data_ptr<int64_t>(), B, K, counts.data_ptr<int64_t>(),
              mu_grads.data_ptr<acc_t>(), D, scale.data_ptr<acc_t>(), G.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        const int64_t n = B * HW;
        pixel_backward_kernel<scalar_t, acc_t><<<ceil_div(n, kThreads), kThreads, 0, stream>>>(
            embedding.data_ptr<scalar_t>(), labels.data_ptr<int32_t>(), means.data_ptr<acc_t>(),
            scale.data_ptr<acc_t>(), G.data_ptr<acc_t>(), D, HW, n, static_cast<acc_t>(delta_v),
            grad.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) {
  m.impl("discriminative_loss", &forward_cuda);
  m.impl("discriminative_loss_backward", &backward_cuda);
}

}  // namespace panonet::ops
