// CUDA kernel of panonet::panoptic_ids: a kernel marks the (image, thing class, instance id)
// pairs that occur, an exclusive running count over each class's ids (at::cumsum) ranks them,
// and a second kernel writes each pixel's id. Nothing is read back from the GPU: ids outside
// [0, max_instance_id] are clamped into it (the caller bounds them; panonet.inference checks
// them when asked to).
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../panoptic_ids.h"
#include "../panoptic_ids_checks.h"

namespace panonet::ops {
namespace {

__device__ inline int64_t clamp_id(int64_t k, int64_t K) { return k < 0 ? 0 : (k > K ? K : k); }

__global__ void mark_pairs(const int64_t* __restrict__ sem, const int64_t* __restrict__ inst,
                           int64_t B, int64_t P, int64_t C, const int64_t* __restrict__ thing,
                           int64_t T, int64_t K, int32_t* __restrict__ occurs) {
  const int64_t n = B * P;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = panoptic::thing_of(sem[i], C, thing);
    const int64_t k = clamp_id(inst[i], K);
    // Same-value stores from many threads: whichever lands, the slot reads 1.
    if (t >= 0 && t < T && k > 0) occurs[((i / P) * T + t) * (K + 1) + k] = 1;
  }
}

__global__ void write_ids(const int64_t* __restrict__ sem, const int64_t* __restrict__ inst,
                          int64_t B, int64_t P, int64_t C, const int64_t* __restrict__ thing,
                          const int64_t* __restrict__ label, int64_t T, int64_t K,
                          const int32_t* __restrict__ rank, int64_t divisor,
                          int64_t* __restrict__ out) {
  const int64_t n = B * P;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = sem[i];
    int64_t t = panoptic::thing_of(c, C, thing);
    if (t >= T) t = -1;  // an inconsistent table: treated as stuff
    const int64_t k = clamp_id(inst[i], K);
    const int64_t r = (t >= 0 && k > 0) ? rank[((i / P) * T + t) * (K + 1) + k] : 0;
    out[i] = panoptic::panoptic_id(c, t, k, r, label, divisor);
  }
}

std::tuple<at::Tensor, at::Tensor> panoptic_ids_cuda(const at::Tensor& semantic,
                                                     const at::Tensor& instance,
                                                     const at::Tensor& label_of_class,
                                                     const at::Tensor& thing_index,
                                                     int64_t num_things, int64_t max_instance_id,
                                                     int64_t label_divisor) {
  const auto [sem, inst] = check_panoptic_ids_inputs(semantic, instance, label_of_class,
                                                     thing_index, num_things, max_instance_id,
                                                     label_divisor);
  const c10::cuda::CUDAGuard guard(sem.device());
  const at::Tensor labels = label_of_class.contiguous();
  const at::Tensor things = thing_index.contiguous();
  const int64_t C = labels.numel(), T = num_things, K = max_instance_id;
  const int64_t B = sem.size(0), P = sem.numel() / std::max<int64_t>(B, 1), n = sem.numel();
  at::Tensor out = at::empty(sem.sizes(), sem.options());
  const auto shaped = [&](const at::Tensor& t) { return semantic.dim() == 2 ? t.squeeze(0) : t; };
  if (n == 0) return {shaped(out), at::zeros({}, sem.options())};
  at::Tensor occurs = at::zeros({B, T, K + 1}, sem.options().dtype(at::kInt));
  constexpr int kThreads = 256;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (T > 0) {
    mark_pairs<<<blocks, kThreads, 0, stream>>>(sem.const_data_ptr<int64_t>(),
                                                inst.const_data_ptr<int64_t>(), B, P, C,
                                                things.const_data_ptr<int64_t>(), T, K,
                                                occurs.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // Exclusive: the number of the class's ids below k.
  const at::Tensor rank = (occurs.cumsum(2, at::kInt) - occurs).contiguous();
  write_ids<<<blocks, kThreads, 0, stream>>>(
      sem.const_data_ptr<int64_t>(), inst.const_data_ptr<int64_t>(), B, P, C,
      things.const_data_ptr<int64_t>(), labels.const_data_ptr<int64_t>(), T, K,
      rank.const_data_ptr<int32_t>(), label_divisor, out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // The most ids of one (image, thing class): the largest count of its occurring pairs.
  const at::Tensor most = occurs.numel() ? occurs.sum(2).max() : at::zeros({}, sem.options());
  return {shaped(out), most.to(at::kLong)};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("panoptic_ids", &panoptic_ids_cuda); }

}  // namespace panonet::ops
