// CUDA kernels of panonet::discriminative_loss and panonet::discriminative_loss_backward.
//
// No host synchronization anywhere (unless check_inputs asks for the NaN/Inf flag): the number
// of clusters stays on the device, the per-cluster buffers are sized for one cluster per pixel,
// and the kernels that work per cluster read the true count. Forward, per batch:
//   1. relabel: a hash table of each image's ids (discriminative_loss_relabel.cu); clusters are
//      numbered by
//      image, then by the raster position of their first pixel;
//   2. cluster sums and counts: each block owns a contiguous range of one image's pixels and
//      accumulates into shared memory when the image's clusters fit (decided per block from the
//      count on the device), with a warp-level sum when all 32 lanes hit the same cluster (the
//      common case in a segmentation map); the block merges its accumulators into global memory
//      once, so global atomics scale with blocks x clusters, not with pixels;
//   3. the hinge terms of eq. (2), accumulated the same way;
//   4. per-cluster terms (eqs. 3, 4 and the stored gradients), one block per image.
// The backward is one pass over the pixels. The math lives in ../discriminative_loss.h and is
// shared with the CPU kernel, whose tests therefore cover it.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "../ceil_div.h"
#include "../discriminative_loss.h"
#include "../discriminative_loss_checks.h"
#include "../hash.h"
#include "discriminative_loss_launch.cuh"
#include "discriminative_loss_pixel.cuh"
#include "discriminative_loss_relabel.cuh"

namespace panonet::ops {
namespace {

using namespace loss_cuda;


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
template <int kRegD, typename scalar_t, typename acc_t, bool kShared>
__device__ void cluster_sums_block(const scalar_t* x, const int32_t* labels, int64_t first,
                                   int64_t C, int64_t D, int64_t HW, acc_t* sums,
                                   unsigned long long* counts, int* non_finite) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t b = blockIdx.y;
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
    const PixelEmbedding<kRegD, scalar_t, acc_t> e(x + b * D * HW + p, D, HW, in_range);
    for_each_dim<kRegD>(D, [&](int64_t d) {
      const acc_t v = e[d];
      finite = finite && isfinite(v);
      add_to_cluster(kShared ? s_sums : sums, uniform, c * D + d, valid, v);
    });
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

// Shared memory of the two passes for an image with C clusters.
__host__ __device__ inline int64_t shared_bytes(int64_t C, int64_t D, int64_t acc_size,
                                                bool hinge_pass) {
  return hinge_pass ? (2 * C * D + C) * acc_size : C * D * acc_size + C * int64_t(sizeof(unsigned));
}

// The image's clusters go to shared accumulators when they fit in the block's `smem` bytes.
template <int kRegD, typename scalar_t, typename acc_t>
__global__ void cluster_sums_kernel(const scalar_t* x, const int32_t* labels,
                                    const int64_t* offsets, int64_t D, int64_t HW, int64_t smem,
                                    acc_t* sums, unsigned long long* counts, int* non_finite) {
  const int64_t first = offsets[blockIdx.y], C = offsets[blockIdx.y + 1] - first;
  if (shared_bytes(C, D, sizeof(acc_t), false) <= smem) {
    cluster_sums_block<kRegD, scalar_t, acc_t, true>(x, labels, first, C, D, HW, sums, counts,
                                                     non_finite);
  } else {
    cluster_sums_block<kRegD, scalar_t, acc_t, false>(x, labels, first, C, D, HW, sums, counts,
                                                      non_finite);
  }
}

// Sets the first offsets[B] * width values of each buffer to zero (grid-stride: the count is
// on the device).
template <typename acc_t>
__global__ void zero_clusters_kernel(const int64_t* offsets, int64_t B, int64_t D, acc_t* sums,
                                     acc_t* var_sums, acc_t* v_sq, int64_t* counts) {
  const int64_t K = offsets[B];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < K * D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    sums[i] = acc_t(0);
    var_sums[i] = acc_t(0);
    if (i < K) {
      v_sq[i] = acc_t(0);
      counts[i] = 0;
    }
  }
}

// Means in place of the sums, over the offsets[B] clusters.
template <typename acc_t>
__global__ void means_kernel(const int64_t* offsets, int64_t B, int64_t D, const int64_t* counts,
                             acc_t* sums_to_means) {
  const int64_t K = offsets[B];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < K * D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    sums_to_means[i] /= static_cast<acc_t>(counts[i / D]);
  }
}

// Pass 2: per cluster, sum of f (x - mu) (var_sums, K x D) and of v^2 (v_sq, K).
template <int kRegD, typename scalar_t, typename acc_t, bool kShared>
__device__ void hinge_sums_block(const scalar_t* x, const int32_t* labels, int64_t first,
                                 int64_t C, const acc_t* means, int64_t D, int64_t HW,
                                 acc_t delta_v, acc_t* var_sums, acc_t* v_sq) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t b = blockIdx.y;
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
    const PixelEmbedding<kRegD, scalar_t, acc_t> e(x + b * D * HW + p, D, HW, valid);
    acc_t v2 = 0, f = 0;
    if (valid) f = dl::var_factor(sq_dist(e, D, mu), delta_v, &v2);
    add_to_cluster(vsq_acc, uniform, c, valid, v2);
    for_each_dim<kRegD>(D, [&](int64_t d) {
      const acc_t term = valid ? f * (e[d] - mu[d]) : acc_t(0);
      add_to_cluster(var_acc, uniform, c * D + d, valid, term);
    });
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

template <int kRegD, typename scalar_t, typename acc_t>
__global__ void hinge_sums_kernel(const scalar_t* x, const int32_t* labels,
                                  const int64_t* offsets, const acc_t* means, int64_t D,
                                  int64_t HW, int64_t smem, acc_t delta_v, acc_t* var_sums,
                                  acc_t* v_sq) {
  const int64_t first = offsets[blockIdx.y], C = offsets[blockIdx.y + 1] - first;
  if (shared_bytes(C, D, sizeof(acc_t), true) <= smem) {
    hinge_sums_block<kRegD, scalar_t, acc_t, true>(x, labels, first, C, means, D, HW, delta_v,
                                                   var_sums, v_sq);
  } else {
    hinge_sums_block<kRegD, scalar_t, acc_t, false>(x, labels, first, C, means, D, HW, delta_v,
                                                    var_sums, v_sq);
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

// Blocks of a grid-stride loop over up to n items: enough to fill the GPU, no more.
int64_t stride_blocks(int64_t n) {
  return std::clamp<int64_t>(
      ceil_div(n, kThreads), 1,
      int64_t(8) * at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& embedding_in, const at::Tensor& instance_ids_in, double delta_v,
    double delta_d, double delta_r, int64_t ignore_index, bool check_inputs) {
  check_discriminative_loss_inputs(embedding_in, instance_ids_in, delta_v, delta_d, delta_r);
  // The cluster sums are float atomics: their order, and so the last bits, vary between runs.
  at::globalContext().alertNotDeterministic("panonet::discriminative_loss (CUDA)");
  const c10::cuda::CUDAGuard guard(embedding_in.device());
  const at::Tensor embedding = embedding_in.contiguous();
  const at::Tensor instance_ids = instance_ids_in.contiguous();
  const int64_t B = embedding.size(0), D = embedding.size(1);
  const int64_t HW = embedding.size(2) * embedding.size(3);
  const auto acc_type = embedding.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto acc_opts = embedding.options().dtype(acc_type);
  const auto i64 = embedding.options().dtype(at::kLong);
  const auto stream = at::cuda::getCurrentCUDAStream();

  at::Tensor labels = at::empty({B, embedding.size(2), embedding.size(3)},
                                embedding.options().dtype(at::kInt));
  at::Tensor offsets = at::empty({B + 1}, i64);
  relabel_cuda(instance_ids, ignore_index, labels, offsets);
  // The number of clusters stays on the device: the per-cluster buffers have room for one per
  // pixel, and every kernel reads the true count from offsets.
  const int64_t K = B * HW;
  at::Tensor losses = at::zeros({B, dl::kTerms}, acc_opts);
  at::Tensor means = at::empty({K, D}, acc_opts);  // first the sums
  at::Tensor mu_grads = at::empty({K, dl::kTerms, D}, acc_opts);
  at::Tensor counts = at::empty({K}, i64);
  if (B == 0 || HW == 0) return {losses, labels, offsets, means, mu_grads, counts};

  const dim3 grid(blocks_per_image(B, HW), B);
  at::Tensor var_sums = at::empty({K, D}, acc_opts);
  at::Tensor v_sq = at::empty({K}, acc_opts);
  at::Tensor non_finite = at::zeros({1}, embedding.options().dtype(at::kInt));

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, embedding.scalar_type(), "discriminative_loss_cuda", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        const scalar_t* x = embedding.data_ptr<scalar_t>();
        const int32_t* lab = labels.data_ptr<int32_t>();
        const int64_t* off = offsets.data_ptr<int64_t>();
        auto* cnt = reinterpret_cast<unsigned long long*>(counts.data_ptr<int64_t>());
        // Shared accumulators for images with up to HW clusters, within the budget; an image
        // with more clusters than fit uses global accumulators (decided per block).
        const int64_t sum_smem = std::min(kMaxShared, shared_bytes(HW, D, sizeof(acc_t), false));
        const int64_t hinge_smem = std::min(kMaxShared, shared_bytes(HW, D, sizeof(acc_t), true));
        const int64_t zero_blocks = stride_blocks(K * D);

        zero_clusters_kernel<acc_t><<<zero_blocks, kThreads, 0, stream>>>(
            off, B, D, means.data_ptr<acc_t>(), var_sums.data_ptr<acc_t>(),
            v_sq.data_ptr<acc_t>(), counts.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        const bool regs = D <= kMaxRegD;
        (regs ? cluster_sums_kernel<kMaxRegD, scalar_t, acc_t>
              : cluster_sums_kernel<0, scalar_t, acc_t>)<<<grid, kThreads, sum_smem, stream>>>(
            x, lab, off, D, HW, sum_smem, means.data_ptr<acc_t>(), cnt,
            non_finite.data_ptr<int>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        means_kernel<acc_t><<<zero_blocks, kThreads, 0, stream>>>(
            off, B, D, counts.data_ptr<int64_t>(), means.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        (regs ? hinge_sums_kernel<kMaxRegD, scalar_t, acc_t>
              : hinge_sums_kernel<0, scalar_t, acc_t>)<<<grid, kThreads, hinge_smem, stream>>>(
            x, lab, off, means.data_ptr<acc_t>(), D, HW, hinge_smem, static_cast<acc_t>(delta_v),
            var_sums.data_ptr<acc_t>(), v_sq.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        cluster_terms_kernel<acc_t><<<B, kThreads, 0, stream>>>(
            off, means.data_ptr<acc_t>(), counts.data_ptr<int64_t>(), var_sums.data_ptr<acc_t>(),
            v_sq.data_ptr<acc_t>(), D, static_cast<acc_t>(delta_d), static_cast<acc_t>(delta_r),
            mu_grads.data_ptr<acc_t>(), losses.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  // The one synchronization, and only when asked for: the flag lives on the device.
  if (check_inputs && non_finite.item<int>() != 0) fail_non_finite_embedding();
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

// Over the offsets[B] clusters (grid-stride: the count is on the device).
template <typename acc_t>
__global__ void cluster_backward_kernel(const acc_t* grad_losses, const int64_t* offsets,
                                        int64_t B, const int64_t* counts, const acc_t* mu_grads,
                                        int64_t D, acc_t* scale, acc_t* G) {
  const int64_t K = offsets[B];
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < K;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = image_of(offsets, B, k);
    scale[k] = dl::cluster_backward<acc_t>(grad_losses + b * dl::kTerms,
                                           offsets[b + 1] - offsets[b],
                                           static_cast<acc_t>(counts[k]),
                                           mu_grads + k * dl::kTerms * D, D, G + k * D);
  }
}

template <int kRegD, typename scalar_t, typename acc_t>
__global__ void pixel_backward_kernel(const scalar_t* x, const int32_t* labels,
                                      const acc_t* means, const acc_t* scale, const acc_t* G,
                                      int64_t D, int64_t HW, int64_t n, acc_t delta_v,
                                      scalar_t* grad) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t b = i / HW, p = i % HW;
  const int32_t l = labels[i];
  scalar_t* g = grad + b * D * HW + p;
  if (l < 0) {
    for (int64_t d = 0; d < D; ++d) g[d * HW] = scalar_t(0);
    return;
  }
  const PixelEmbedding<kRegD, scalar_t, acc_t> e(x + b * D * HW + p, D, HW, true);
  const acc_t* mu = means + l * D;
  acc_t unused;
  const acc_t sf = scale[l] * dl::var_factor(sq_dist(e, D, mu), delta_v, &unused);
  for_each_dim<kRegD>(D, [&](int64_t d) {
    g[d * HW] = static_cast<scalar_t>(sf * (e[d] - mu[d]) + G[l * D + d]);
  });
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
          cluster_backward_kernel<acc_t><<<stride_blocks(K), kThreads, 0, stream>>>(
              g.data_ptr<acc_t>(), offsets.data_ptr<int64_t>(), B, counts.data_ptr<int64_t>(),
              mu_grads.data_ptr<acc_t>(), D, scale.data_ptr<acc_t>(), G.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        const int64_t n = B * HW;
        (D <= kMaxRegD ? pixel_backward_kernel<kMaxRegD, scalar_t, acc_t>
                       : pixel_backward_kernel<0, scalar_t, acc_t>)<<<ceil_div(n, kThreads),
                                                                      kThreads, 0, stream>>>(
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
