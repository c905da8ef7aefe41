// CUDA kernel of panonet::upsample_instances: a kernel writes every id's class (its pixels share
// one), a kernel takes each output pixel's source id where the output's class agrees (else, with
// reach, the nearest id of its class near the source: the CPU kernel's shared rule) and counts
// it (integer atomics: the counts are exact in any order), the surviving ids are renumbered by a
// running count (at::cumsum), and a last kernel applies that. Nothing is read back from the GPU;
// ids outside [0, max_instance_id] are clamped into it.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "../upsample_instances.h"
#include "../upsample_instances_checks.h"

namespace panonet::ops {
namespace {

namespace ui = upsample_instances;

__device__ inline int64_t clamp_id(int64_t k, int64_t K) { return k < 0 ? 0 : (k > K ? K : k); }

__global__ void id_classes(const int64_t* __restrict__ inst, const int64_t* __restrict__ sem,
                           int64_t n, int64_t hw, int64_t K, int64_t* __restrict__ cls) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    cls[(i / hw) * (K + 1) + clamp_id(inst[i], K)] = sem[i];
  }
}

__global__ void take_ids(const int64_t* __restrict__ inst, const int64_t* __restrict__ low,
                         const int64_t* __restrict__ full, const int64_t* __restrict__ cls,
                         int64_t B, int64_t h, int64_t w, int64_t H, int64_t W, int64_t K,
                         int64_t reach, int64_t* __restrict__ out, int32_t* __restrict__ counts) {
  const int64_t n = B * H * W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t X = p % W, Y = (p / W) % H, b = p / (H * W);
    const int64_t sy = ui::nearest(Y, h, H), sx = ui::nearest(X, w, W);
    const int64_t* inst_b = inst + b * h * w;
    const int64_t* low_b = low + b * h * w;
    const int64_t k0 = clamp_id(inst_b[sy * w + sx], K);
    int64_t k = ui::kept_id(k0, full != nullptr, full ? full[p] : 0, cls[b * (K + 1) + k0]);
    if (reach > 0 && full != nullptr && k == 0 && low_b[sy * w + sx] != full[p]) {
      k = ui::reached_id(inst_b, low_b, h, w, H, W, Y, X, sy, sx, full[p], reach, K);
    }
    out[p] = k;
    atomicAdd(counts + b * (K + 1) + k, 1);
  }
}

__global__ void renumber(int64_t* __restrict__ out, const int64_t* __restrict__ table, int64_t n,
                         int64_t HW, int64_t K) {
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[p] = table[(p / HW) * (K + 1) + out[p]];
  }
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, int64_t{1} << 20));
}

at::Tensor upsample_instances_cuda(const at::Tensor& instance, const at::Tensor& semantic_lowres,
                                   const std::optional<at::Tensor>& semantic_fullres,
                                   at::IntArrayRef size, int64_t max_instance_id,
                                   int64_t min_size, int64_t reach) {
  const auto [inst, low, full, H, W] = check_upsample_instances_inputs(
      instance, semantic_lowres, semantic_fullres, size, max_instance_id, min_size, reach);
  const c10::cuda::CUDAGuard guard(inst.device());
  const int64_t B = inst.size(0), h = inst.size(1), w = inst.size(2), K = max_instance_id;
  at::Tensor out = at::empty({B, H, W}, inst.options());
  const int64_t n = out.numel(), n_low = inst.numel();
  if (n > 0) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    at::Tensor cls = at::full({B, K + 1}, -1, inst.options());
    at::Tensor counts = at::zeros({B, K + 1}, inst.options().dtype(at::kInt));
    id_classes<<<blocks_for(n_low), 256, 0, stream>>>(inst.const_data_ptr<int64_t>(),
                                                      low.const_data_ptr<int64_t>(), n_low, h * w,
                                                      K, cls.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    take_ids<<<blocks_for(n), 256, 0, stream>>>(
        inst.const_data_ptr<int64_t>(), low.const_data_ptr<int64_t>(),
        full.defined() ? full.const_data_ptr<int64_t>() : nullptr, cls.const_data_ptr<int64_t>(),
        B, h, w, H, W, K, reach, out.data_ptr<int64_t>(), counts.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor keep = counts.ge(std::max<int64_t>(min_size, 1));
    keep.select(1, 0).fill_(false);
    const at::Tensor table = (keep.cumsum(1) * keep).contiguous();  // int64
    renumber<<<blocks_for(n), 256, 0, stream>>>(out.data_ptr<int64_t>(),
                                                table.const_data_ptr<int64_t>(), n, H * W, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return instance.dim() == 2 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("upsample_instances", &upsample_instances_cuda); }

}  // namespace panonet::ops
