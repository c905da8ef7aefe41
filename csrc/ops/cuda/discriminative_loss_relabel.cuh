// Relabelling of the discriminative loss's instance ids on the GPU (see
// discriminative_loss_relabel.cu).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace panonet::ops::loss_cuda {

// Fills labels (B, H, W) int32 and offsets (B + 1) int64, both on the GPU, without a host
// synchronization: clusters numbered by image, then by the raster position of their first pixel.
// Ids must differ from ignore_index to count (any int64 value works).
void relabel_cuda(const at::Tensor& ids, int64_t ignore_index, at::Tensor& labels,
                  at::Tensor& offsets);

}  // namespace panonet::ops::loss_cuda
