// Integer ceiling division, for grid sizes and chunk counts of the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace panonet {

PANONET_HD constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace panonet
