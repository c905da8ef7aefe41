#include "guided_upsample_argmax_checks.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/_adaptive_avg_pool2d.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "guided_upsample_argmax.h"

namespace panonet::ops {

std::pair<at::Tensor, at::Tensor> check_guided_upsample_inputs(const at::Tensor& logits,
                                                               const at::Tensor& image,
                                                               double sigma_spatial,
                                                               double sigma_range, int64_t window) {
  constexpr const char* op = "panonet.ops.guided_upsample_argmax: ";
  TORCH_CHECK_VALUE(logits.dim() == 4, op, "expected logits of shape (B, C, h, w), got a ",
                    logits.dim(), "-D tensor of shape ", logits.sizes());
  const auto t = logits.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
                   op, "expected floating logits (float16, bfloat16, float32, float64), got ", t);
  TORCH_CHECK_VALUE(logits.size(1) >= 1 && logits.size(2) >= 1 && logits.size(3) >= 1, op,
                    "expected at least one class and a non-empty h x w, got logits of shape ",
                    logits.sizes());
  TORCH_CHECK_VALUE(image.dim() == 4 && image.size(3) == 3 && image.size(0) == logits.size(0),
                    op, "expected an image of shape (", logits.size(0),
                    ", H, W, 3) for logits of shape ", logits.sizes(), ", got shape ",
                    image.sizes());
  TORCH_CHECK_TYPE(image.scalar_type() == at::kByte, op, "expected a uint8 image, got ",
                   image.scalar_type());
  TORCH_CHECK_VALUE(image.device() == logits.device(), op,
                    "expected the image on the logits' device ", logits.device(), ", got ",
                    image.device());
  TORCH_CHECK_VALUE(std::isfinite(sigma_spatial) && sigma_spatial > 0 &&
                        std::isfinite(sigma_range) && sigma_range > 0,
                    op, "expected finite sigma_spatial > 0 and sigma_range > 0, got ",
                    sigma_spatial, " and ", sigma_range);
  TORCH_CHECK_VALUE(window >= 2 && window <= guided::kMaxWindow && window % 2 == 0, op,
                    "expected an even window in [2, ", guided::kMaxWindow, "], got ", window);
  return {logits.contiguous(), image.contiguous()};
}

at::Tensor guide_image(const at::Tensor& image, int64_t h, int64_t w) {
  const at::Tensor rgb = image.permute({0, 3, 1, 2}).to(at::kFloat).div(255.0);
  return at::_adaptive_avg_pool2d(rgb, {h, w}).contiguous();
}

}  // namespace panonet::ops
