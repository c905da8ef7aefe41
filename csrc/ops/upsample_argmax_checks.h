// Input validation of panonet::upsample_argmax, shared by its CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace panonet::ops {

// Logits (B, C, h, w) or (C, h, w) floating with C, h, w >= 1, size two ints >= 0. Returns the
// logits with a batch dimension, contiguous, and the output (H, W).
std::pair<at::Tensor, std::pair<int64_t, int64_t>> check_upsample_argmax_inputs(
    const at::Tensor& logits, at::IntArrayRef size);

}  // namespace panonet::ops
