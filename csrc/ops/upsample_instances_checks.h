// Input validation of panonet::upsample_instances, shared by its CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace panonet::ops {

// instance and semantic_lowres: one (B, h, w) or (h, w) shape, integer, h, w >= 1 unless B == 0
// or the output is empty; semantic_fullres, when given, (B, H, W) or (H, W) integer with (H, W)
// = size; all on one device; max_instance_id, min_size, reach >= 0, and (2 reach + 1) H W < 2^31
// when reach > 0 (the exact distances of reached_id fit int64). Returns the three maps with a
// batch dimension, int64, contiguous (the third undefined when not given), and (H, W).
std::tuple<at::Tensor, at::Tensor, at::Tensor, int64_t, int64_t> check_upsample_instances_inputs(
    const at::Tensor& instance, const at::Tensor& semantic_lowres,
    const std::optional<at::Tensor>& semantic_fullres, at::IntArrayRef size,
    int64_t max_instance_id, int64_t min_size, int64_t reach);

}  // namespace panonet::ops
