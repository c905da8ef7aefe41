// Exact bins without a hash table, for the GPU: points are sorted by a 64-bit hash of (group,
// bin key) and then each point is given the first position of its run holding the same group
// and key. Different keys that share a hash (rare, but possible) thereby stay different bins,
// with no fallback and no host round trip. Host/device code: the host model of the GPU
// algorithm (cpu/mean_shift_gpu_work.cpp) runs these very functions, with the hash truncated to
// a few bits so that the tests meet collisions.
#pragma once

#include <cstdint>

#include "hash.h"
#include "host_device.h"

namespace panonet::ms {

// Hash of a group id and a bin key (D coordinates, each an integer-valued double with -0 folded
// into +0 by bin_key), keeping its lowest `bits` bits (64: all).
PANONET_HD inline uint64_t bin_hash(int64_t group, const double* key, int64_t D, int bits) {
  uint64_t h = static_cast<uint64_t>(group) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
  for (int64_t d = 0; d < D; ++d) {
    const double k = key[d];
    uint64_t u;
#if defined(__CUDA_ARCH__)
    u = static_cast<uint64_t>(__double_as_longlong(k));
#else
    __builtin_memcpy(&u, &k, sizeof(u));
#endif
    h += u * (0x9e3779b97f4a7c15ULL + 2 * static_cast<uint64_t>(d));
  }
  h = mix64(h);
  return bits >= 64 ? h : (h & ((uint64_t{1} << bits) - 1));
}

// Whether points i and j (rows of keys, D each) have the same group and bin key.
PANONET_HD inline bool same_bin(const int32_t* group_of, const double* keys, int64_t D, int64_t i,
                                int64_t j) {
  if (group_of[i] != group_of[j]) return false;
  for (int64_t d = 0; d < D; ++d) {
    if (keys[i * D + d] != keys[j * D + d]) return false;
  }
  return true;
}

// Positions [run_lo, p] of `perm` hold points with one hash; returns the first position q whose
// point has the same group and key as perm[p]'s (p itself if none before it). The run's first
// point is tried first: without a collision it is the answer.
PANONET_HD inline int64_t first_same_bin(const int64_t* perm, const int32_t* group_of,
                                         const double* keys, int64_t D, int64_t run_lo,
                                         int64_t p) {
  const int64_t i = perm[p];
  for (int64_t q = run_lo; q < p; ++q) {
    if (same_bin(group_of, keys, D, perm[q], i)) return q;
  }
  return p;
}

}  // namespace panonet::ms
