// The per-pixel rule of panonet::upsample_instances, shared by its CPU and CUDA kernels.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace panonet::ops::upsample_instances {

// The source pixel of output sample t when n samples are resized to N by nearest neighbour with
// half-pixel centres: floor((t + 0.5) * n / N), exactly, as panonet.data.transforms.resize_labels.
PANONET_HD inline int64_t nearest(int64_t t, int64_t n, int64_t N) {
  return ((2 * t + 1) * n) / (2 * N);
}

// The instance id an output pixel keeps: its source pixel's id k, or 0 where the output's class
// (full_class; has_full false: no class map) differs from the instance's class.
PANONET_HD inline int64_t kept_id(int64_t k, bool has_full, int64_t full_class,
                                  int64_t instance_class) {
  return (k > 0 && has_full && instance_class != full_class) ? 0 : k;
}

}  // namespace panonet::ops::upsample_instances
