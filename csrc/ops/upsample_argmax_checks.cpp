#include "upsample_argmax_checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace panonet::ops {

std::pair<at::Tensor, std::pair<int64_t, int64_t>> check_upsample_argmax_inputs(
    const at::Tensor& logits, at::IntArrayRef size) {
  constexpr const char* op = "panonet.ops.upsample_argmax: ";
  TORCH_CHECK_VALUE(logits.dim() == 3 || logits.dim() == 4, op,
                    "expected logits of shape (B, C, h, w) or (C, h, w), got a ", logits.dim(),
                    "-D tensor of shape ", logits.sizes());
  const auto t = logits.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
                   op, "expected floating logits (float16, bfloat16, float32, float64), got ", t);
  TORCH_CHECK_VALUE(size.size() == 2 && size[0] >= 0 && size[1] >= 0, op,
                    "expected size (H, W) of two ints >= 0, got ", size);
  const at::Tensor x = (logits.dim() == 3 ? logits.unsqueeze(0) : logits).contiguous();
  TORCH_CHECK_VALUE(x.size(1) >= 1 && x.size(2) >= 1 && x.size(3) >= 1, op,
                    "expected at least one class and a non-empty h x w, got logits of shape ",
                    logits.sizes());
  return {x, {size[0], size[1]}};
}

}  // namespace panonet::ops
