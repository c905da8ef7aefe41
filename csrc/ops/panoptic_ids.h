// The per-pixel rule of panonet::panoptic_ids, shared by its CPU and CUDA kernels.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace panonet::ops::panoptic {

// The thing-class index of a pixel's class (-1: stuff or an id outside the table, -2: void),
// from its trainId c, the table size C and the trainId -> thing index table.
PANONET_HD inline int64_t thing_of(int64_t c, int64_t C, const int64_t* thing_index) {
  return (c >= 0 && c < C) ? thing_index[c] : -2;
}

// A pixel's panoptic id from its class c (valid: 0 <= c < C, so thing >= -1), its thing index,
// its instance id k and the rank of k among its class's ids in the image: labelId for stuff,
// labelId * divisor + rank for a thing pixel with an instance, 0 (void) otherwise.
PANONET_HD inline int64_t panoptic_id(int64_t c, int64_t thing, int64_t k, int64_t rank,
                                      const int64_t* label_of_class, int64_t divisor) {
  if (thing == -2) return 0;
  if (thing < 0) return label_of_class[c];
  return k > 0 ? label_of_class[c] * divisor + rank : 0;
}

}  // namespace panonet::ops::panoptic
