// Input validation of panonet::panoptic_ids, shared by its CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace panonet::ops {

// semantic and instance: the same (B, H, W) or (H, W) shape, integer, on one device with the
// tables; label_of_class and thing_index: (C,) int64, C >= 1; num_things, max_instance_id >= 0;
// label_divisor >= 1. Returns semantic and instance with a batch dimension, int64, contiguous.
std::tuple<at::Tensor, at::Tensor> check_panoptic_ids_inputs(
    const at::Tensor& semantic, const at::Tensor& instance, const at::Tensor& label_of_class,
    const at::Tensor& thing_index, int64_t num_things, int64_t max_instance_id,
    int64_t label_divisor);

}  // namespace panonet::ops
