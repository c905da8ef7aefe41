// CPU kernel of panonet::guided_upsample_argmax: tasks of consecutive output rows, each pixel's
// class from its neighbours (guided_upsample_argmax.h), with the weights in a task's scratch arrays.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <limits>
#include <vector>

#include "../guided_upsample_argmax.h"
#include "../guided_upsample_argmax_checks.h"

namespace panonet::ops {
namespace {

template <typename scalar_t>
void guided_rows(const scalar_t* logits, const float* guide, const uint8_t* image, int64_t B,
                 int64_t C, int64_t h, int64_t w, int64_t H, int64_t W, int window, double ss,
                 double sr, int64_t* out) {
  using T = at::opmath_type<scalar_t>;
  const T inv_2ss = static_cast<T>(guided::half_inverse_square(ss));
  const T inv_2sr = static_cast<T>(guided::half_inverse_square(sr));
  const int64_t plane = h * w;
  // ~window^2 (C + 4) operations per pixel: tasks of >= ~16k pixels.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, W));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    constexpr int kMax = guided::kMaxWindow * guided::kMaxWindow;
    std::array<T, kMax> weight;
    std::array<int64_t, kMax> index;
    // The neighbours' logits, (neighbour, class), gathered once for the pixels that share the
    // neighbourhood (at 4x, four consecutive pixels of a row): the class sums then run over
    // contiguous memory, several classes at a time, each in neighbour order.
    std::vector<T> block(static_cast<size_t>(kMax * C)), sum(static_cast<size_t>(C));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, Y = r % H;
      const double py = guided::position(Y, h, H);
      const scalar_t* lb = logits + b * C * plane;
      const float* gb = guide + b * 3 * plane;
      const uint8_t* row = image + r * W * 3;
      // The x0 whose neighbours block holds in this row (none yet: x0 >= -1 always).
      int64_t held = std::numeric_limits<int64_t>::min();
      for (int64_t X = 0; X < W; ++X) {
        const T rgb[3] = {static_cast<T>(row[3 * X]) / T(255),
                          static_cast<T>(row[3 * X + 1]) / T(255),
                          static_cast<T>(row[3 * X + 2]) / T(255)};
        const double px = guided::position(X, w, W);
        const int n = guided::neighbours<T>(gb, rgb, h, w, py, px, window, inv_2ss, inv_2sr,
                                            weight.data(), index.data());
        const int64_t x0 = guided::floor_index(px);
        if (x0 != held) {
          for (int k = 0; k < n; ++k) {
            for (int64_t c = 0; c < C; ++c) {
              block[k * C + c] = static_cast<T>(lb[c * plane + index[k]]);
            }
          }
          held = x0;
        }
        std::fill(sum.begin(), sum.end(), T(0));
        for (int k = 0; k < n; ++k) {
          const T wk = weight[k];
          const T* lk = block.data() + k * C;
          for (int64_t c = 0; c < C; ++c) sum[c] += wk * lk[c];
        }
        int64_t label = 0;
        for (int64_t c = 1; c < C; ++c) {
          if (guided::beats(sum[c], sum[label])) label = c;
        }
        out[r * W + X] = label;
      }
    }
  });
}

at::Tensor guided_upsample_argmax_cpu(const at::Tensor& logits, const at::Tensor& image,
                                      double sigma_spatial, double sigma_range, int64_t window) {
  const auto [x, img] =
      check_guided_upsample_inputs(logits, image, sigma_spatial, sigma_range, window);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t H = img.size(1), W = img.size(2);
  at::Tensor out = at::empty({B, H, W}, x.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  const at::Tensor guide = guide_image(img, h, w);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "guided_upsample_argmax", [&] {
        guided_rows<scalar_t>(x.const_data_ptr<scalar_t>(), guide.const_data_ptr<float>(),
                              img.const_data_ptr<uint8_t>(), B, C, h, w, H, W,
                              static_cast<int>(window), sigma_spatial, sigma_range,
                              out.data_ptr<int64_t>());
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) {
  m.impl("guided_upsample_argmax", &guided_upsample_argmax_cpu);
}

}  // namespace panonet::ops
