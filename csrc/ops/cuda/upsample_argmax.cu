// CUDA kernel of panonet::upsample_argmax: a thread per output pixel walks the classes, blending
// each class's four source values with the CPU kernel's arithmetic (upsample_argmax.h; this file
// is compiled without FMA contraction, like the CPU one), keeping the best class. The upsampled
// logits are never stored; the source values come from cache (each is read by ~16 pixels at 4x).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../upsample_argmax.h"
#include "../upsample_argmax_checks.h"

namespace panonet::ops {
namespace {

template <typename scalar_t>
__global__ void upsample_argmax_kernel(const scalar_t* __restrict__ x, int64_t B, int64_t C,
                                       int64_t h, int64_t w, int64_t H, int64_t W,
                                       int64_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  const int64_t n = B * H * W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t X = p % W, Y = (p / W) % H, b = p / (H * W);
    const upsample::Tap row = upsample::tap(Y, h, H), col = upsample::tap(X, w, W);
    const T wy_lo = row.w_lo, wy_hi = row.w_hi, wx_lo = col.w_lo, wx_hi = col.w_hi;
    T best = 0;
    int64_t label = 0;
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* plane = x + (b * C + c) * h * w;
      const scalar_t* lo = plane + row.lo * w;
      const scalar_t* hi = plane + row.hi * w;
      // As the CPU: between the columns in each of the two rows, then between the rows.
      const T in_lo = upsample::blend<T>(lo[col.lo], lo[col.hi], wx_lo, wx_hi);
      const T in_hi = upsample::blend<T>(hi[col.lo], hi[col.hi], wx_lo, wx_hi);
      const T v = upsample::blend<T>(in_lo, in_hi, wy_lo, wy_hi);
      if (c == 0 || upsample::beats(v, best)) {
        best = v;
        label = c;
      }
    }
    out[p] = label;
  }
}

at::Tensor upsample_argmax_cuda(const at::Tensor& logits, at::IntArrayRef size) {
  const auto [x, hw] = check_upsample_argmax_inputs(logits, size);
  const auto [H, W] = hw;
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = at::empty({B, H, W}, x.options().dtype(at::kLong));
  const int64_t n = out.numel();
  if (n > 0) {
    constexpr int kThreads = 256;
    const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20);
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, x.scalar_type(), "upsample_argmax", [&] {
          upsample_argmax_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), B, C, h, w, H, W, out.data_ptr<int64_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return logits.dim() == 3 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("upsample_argmax", &upsample_argmax_cuda); }

}  // namespace panonet::ops
