// The 64-bit hash finaliser of splitmix64, shared by the hash tables of the CPU and CUDA
// kernels (mean-shift bins, the loss's id tables).
#pragma once

#include <cstdint>

#include "host_device.h"

namespace panonet {

PANONET_HD inline uint64_t mix64(uint64_t h) {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace panonet
