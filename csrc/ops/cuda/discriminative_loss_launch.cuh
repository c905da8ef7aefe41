// Launch geometry and warp helpers shared by the CUDA kernels of the discriminative loss.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

#include "../ceil_div.h"

namespace panonet::ops::loss_cuda {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;
// Shared memory a block may use for accumulators without opting in to more.
constexpr int64_t kMaxShared = 48 * 1024;


template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFullMask, v, o);
  return v;
}

// Blocks along x per image: enough blocks in total to fill the GPU a few times over.
inline int64_t blocks_per_image(int64_t B, int64_t HW) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::clamp<int64_t>(ceil_div(sms * 8, std::max<int64_t>(B, 1)), 1,
                             std::max<int64_t>(1, ceil_div(HW, kThreads)));
}

// Pixel range [begin, end) of block (blockIdx.x) of its image; a multiple of kThreads long, so
// that every warp iterates in lock-step and warp collectives are safe.
struct BlockRange {
  int64_t begin, end;
};
__device__ inline BlockRange block_range(int64_t HW) {
  const int64_t chunk = ((HW + gridDim.x - 1) / gridDim.x + kThreads - 1) / kThreads * kThreads;
  const int64_t begin = blockIdx.x * chunk;
  return {begin, begin + chunk < HW ? begin + chunk : HW};
}

}  // namespace panonet::ops::loss_cuda
