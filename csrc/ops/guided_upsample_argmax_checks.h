// Input validation of panonet::guided_upsample_argmax, shared by its CPU and CUDA kernels, and
// the guide image both read.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace panonet::ops {

// logits (B, C, h, w) floating with C, h, w >= 1; image (B, H, W, 3) uint8 on the logits'
// device; sigma_spatial, sigma_range finite > 0; window even in [2, guided::kMaxWindow]. Returns
// both contiguous.
std::pair<at::Tensor, at::Tensor> check_guided_upsample_inputs(const at::Tensor& logits,
                                                               const at::Tensor& image,
                                                               double sigma_spatial,
                                                               double sigma_range, int64_t window);

// The image (B, H, W, 3) uint8 averaged over each pixel of the h x w grid (adaptive average
// pooling), as float32 colours in [0, 1]: (B, 3, h, w), contiguous, on the image's device.
at::Tensor guide_image(const at::Tensor& image, int64_t h, int64_t w);

}  // namespace panonet::ops
