#include "panoptic_ids_checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace panonet::ops {

std::tuple<at::Tensor, at::Tensor> check_panoptic_ids_inputs(
    const at::Tensor& semantic, const at::Tensor& instance, const at::Tensor& label_of_class,
    const at::Tensor& thing_index, int64_t num_things, int64_t max_instance_id,
    int64_t label_divisor) {
  constexpr const char* op = "panonet.ops.panoptic_ids: ";
  TORCH_CHECK_VALUE(semantic.dim() == 2 || semantic.dim() == 3, op,
                    "expected semantic of shape (B, H, W) or (H, W), got shape ",
                    semantic.sizes());
  TORCH_CHECK_VALUE(instance.sizes() == semantic.sizes(), op,
                    "expected instance of the semantic map's shape ", semantic.sizes(), ", got ",
                    instance.sizes());
  for (const at::Tensor* t : {&semantic, &instance}) {
    TORCH_CHECK_TYPE(at::isIntegralType(t->scalar_type(), /*includeBool=*/false), op,
                     "expected integer semantic and instance maps, got ", t->scalar_type());
  }
  for (const at::Tensor* t : {&label_of_class, &thing_index}) {
    TORCH_CHECK_VALUE(t->dim() == 1 && t->scalar_type() == at::kLong, op,
                      "expected label_of_class and thing_index as 1-D int64 tables, got ",
                      t->scalar_type(), " of shape ", t->sizes());
    TORCH_CHECK_VALUE(t->device() == semantic.device(), op,
                      "expected the tables on the maps' device ", semantic.device(), ", got ",
                      t->device());
  }
  TORCH_CHECK_VALUE(label_of_class.numel() >= 1 && thing_index.numel() == label_of_class.numel(),
                    op, "expected two tables of one length C >= 1, got ", label_of_class.numel(),
                    " and ", thing_index.numel());
  TORCH_CHECK_VALUE(instance.device() == semantic.device(), op,
                    "expected semantic and instance on one device, got ", semantic.device(),
                    " and ", instance.device());
  TORCH_CHECK_VALUE(num_things >= 0 && max_instance_id >= 0 && label_divisor >= 1, op,
                    "expected num_things >= 0, max_instance_id >= 0 and label_divisor >= 1, got ",
                    num_things, ", ", max_instance_id, " and ", label_divisor);
  const bool batched = semantic.dim() == 3;
  const at::Tensor sem = (batched ? semantic : semantic.unsqueeze(0)).to(at::kLong).contiguous();
  const at::Tensor inst = (batched ? instance : instance.unsqueeze(0)).to(at::kLong).contiguous();
  return {sem, inst};
}

}  // namespace panonet::ops
