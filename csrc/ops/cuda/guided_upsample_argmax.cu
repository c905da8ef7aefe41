// CUDA kernel of panonet::guided_upsample_argmax: a thread per output pixel, the CPU kernel's
// per-pixel arithmetic (guided_upsample_argmax.h), the weights in the thread's local arrays. Reads
// nothing back from the device.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "../guided_upsample_argmax.h"
#include "../guided_upsample_argmax_checks.h"

namespace panonet::ops {
namespace {

template <typename scalar_t>
__global__ void guided_upsample_kernel(const scalar_t* __restrict__ logits,
                                       const float* __restrict__ guide,
                                       const uint8_t* __restrict__ image, int64_t B, int64_t C,
                                       int64_t h, int64_t w, int64_t H, int64_t W, int window,
                                       at::opmath_type<scalar_t> inv_2ss,
                                       at::opmath_type<scalar_t> inv_2sr,
                                       int64_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  constexpr int kMax = guided::kMaxWindow * guided::kMaxWindow;
  T weight[kMax];
  int64_t index[kMax];
  const int64_t n = B * H * W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t X = p % W, Y = (p / W) % H, b = p / (H * W);
    const uint8_t* px = image + 3 * p;
    const T rgb[3] = {static_cast<T>(px[0]) / T(255), static_cast<T>(px[1]) / T(255),
                      static_cast<T>(px[2]) / T(255)};
    const int n_q = guided::neighbours<T>(guide + b * 3 * h * w, rgb, h, w,
                                          guided::position(Y, h, H), guided::position(X, w, W),
                                          window, inv_2ss, inv_2sr, weight, index);
    out[p] = guided::best_class<scalar_t, T>(logits + b * C * h * w, C, h * w, n_q, weight, index);
  }
}

at::Tensor guided_upsample_argmax_cuda(const at::Tensor& logits, const at::Tensor& image,
                                       double sigma_spatial, double sigma_range, int64_t window) {
  const auto [x, img] =
      check_guided_upsample_inputs(logits, image, sigma_spatial, sigma_range, window);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t H = img.size(1), W = img.size(2);
  at::Tensor out = at::empty({B, H, W}, x.options().dtype(at::kLong));
  const int64_t n = out.numel();
  if (n == 0) return out;
  const at::Tensor guide = guide_image(img, h, w);
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "guided_upsample_argmax", [&] {
        using T = at::opmath_type<scalar_t>;
        guided_upsample_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
            x.const_data_ptr<scalar_t>(), guide.const_data_ptr<float>(),
            img.const_data_ptr<uint8_t>(), B, C, h, w, H, W, static_cast<int>(window),
            static_cast<T>(guided::half_inverse_square(sigma_spatial)),
            static_cast<T>(guided::half_inverse_square(sigma_range)), out.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) {
  m.impl("guided_upsample_argmax", &guided_upsample_argmax_cuda);
}

}  // namespace panonet::ops
