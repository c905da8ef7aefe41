#include "upsample_instances_checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace panonet::ops {

std::tuple<at::Tensor, at::Tensor, at::Tensor, int64_t, int64_t> check_upsample_instances_inputs(
    const at::Tensor& instance, const at::Tensor& semantic_lowres,
    const std::optional<at::Tensor>& semantic_fullres, at::IntArrayRef size,
    int64_t max_instance_id, int64_t min_size, int64_t reach) {
  constexpr const char* op = "panonet.ops.upsample_instances: ";
  TORCH_CHECK_VALUE(instance.dim() == 2 || instance.dim() == 3, op,
                    "expected instance of shape (B, h, w) or (h, w), got shape ", instance.sizes());
  TORCH_CHECK_VALUE(semantic_lowres.sizes() == instance.sizes(), op,
                    "expected semantic_lowres of the instance map's shape ", instance.sizes(),
                    ", got ", semantic_lowres.sizes());
  TORCH_CHECK_VALUE(size.size() == 2 && size[0] >= 0 && size[1] >= 0, op,
                    "expected size (H, W) of two ints >= 0, got ", size);
  TORCH_CHECK_VALUE(max_instance_id >= 0 && min_size >= 0, op,
                    "expected max_instance_id >= 0 and min_size >= 0, got ", max_instance_id,
                    " and ", min_size);
  TORCH_CHECK_VALUE(reach >= 0, op, "expected reach >= 0, got ", reach);
  TORCH_CHECK_VALUE(reach == 0 || (2 * reach + 1) * size[0] * size[1] < (int64_t{1} << 31), op,
                    "expected (2 reach + 1) H W < 2^31 (exact distances in int64), got reach ",
                    reach, " and size ", size);
  const bool batched = instance.dim() == 3;
  const auto batch = [&](const at::Tensor& t) {
    TORCH_CHECK_TYPE(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), op,
                     "expected integer maps, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == instance.device(), op, "expected every map on ",
                      instance.device(), ", got one on ", t.device());
    return (batched ? t : t.unsqueeze(0)).to(at::kLong).contiguous();
  };
  const at::Tensor inst = batch(instance), low = batch(semantic_lowres);
  at::Tensor full;
  if (semantic_fullres.has_value()) {
    const at::Tensor& f = *semantic_fullres;
    TORCH_CHECK_VALUE(f.dim() == instance.dim() && (!batched || f.size(0) == instance.size(0)) &&
                          f.size(-2) == size[0] && f.size(-1) == size[1],
                      op, "expected semantic_fullres of shape ",
                      batched ? "(B, H, W)" : "(H, W)", " with (H, W) = size ", size,
                      " and the instance map's batch, got ", f.sizes());
    full = batch(f);
  }
  const int64_t H = size[0], W = size[1];
  TORCH_CHECK_VALUE(inst.size(0) == 0 || H * W == 0 || (inst.size(1) >= 1 && inst.size(2) >= 1),
                    op, "cannot resize an empty ", inst.size(1), "x", inst.size(2), " map to ", H,
                    "x", W);
  return {inst, low, full, H, W};
}

}  // namespace panonet::ops
