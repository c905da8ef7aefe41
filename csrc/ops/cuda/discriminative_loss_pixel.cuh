// A pixel's embedding values as the pixel passes of the CUDA discriminative loss read them
// (cluster sums, hinge sums, backward): all D loads issued together into registers.
#pragma once

#include <cstdint>

namespace panonet::ops::loss_cuda {

// Embeddings up to this wide are held in registers by the pixel passes (kRegD); wider ones are
// read from memory at each use (kRegD = 0).
constexpr int kMaxRegD = 16;

// f(d) for d = 0 .. D-1; unrolled over kRegD (so that a PixelEmbedding's values are indexed by
// constants and stay in registers) when kRegD > 0. D is warp-uniform, so warp collectives in f
// are safe.
template <int kRegD, typename F>
__device__ __forceinline__ void for_each_dim(int64_t D, F&& f) {
  if constexpr (kRegD > 0) {
#pragma unroll
    for (int d = 0; d < kRegD; ++d) {
      if (d < D) f(d);
    }
  } else {
    for (int64_t d = 0; d < D; ++d) f(d);
  }
}

// One pixel's D embedding values (x0: the pixel's value of dimension 0; dimension d is d * HW
// further), 0 when !load. With kRegD > 0 all D loads are issued at construction, before any
// use, instead of one load and its latency per dimension; they are then used twice at no
// further cost (the hinge pass and the backward read each value twice).
template <int kRegD, typename scalar_t, typename acc_t>
struct PixelEmbedding {
  const scalar_t* x0;
  int64_t HW;
  bool load;
  acc_t v[kRegD > 0 ? kRegD : 1];

  __device__ PixelEmbedding(const scalar_t* x0_, int64_t D, int64_t HW_, bool load_)
      : x0(x0_), HW(HW_), load(load_) {
    if constexpr (kRegD > 0) {
#pragma unroll
      for (int d = 0; d < kRegD; ++d) {
        v[d] = (load && d < D) ? static_cast<acc_t>(x0[d * HW]) : acc_t(0);
      }
    }
  }

  __device__ acc_t operator[](int64_t d) const {
    if constexpr (kRegD > 0) {
      return v[d];
    } else {
      return load ? static_cast<acc_t>(x0[d * HW]) : acc_t(0);
    }
  }
};

// Sum over d of (e[d] - mu[d])^2, in the order d = 0 .. D-1.
template <int kRegD, typename scalar_t, typename acc_t>
__device__ inline acc_t sq_dist(const PixelEmbedding<kRegD, scalar_t, acc_t>& e, int64_t D,
                                const acc_t* mu) {
  acc_t sq = 0;
  for_each_dim<kRegD>(D, [&](int64_t d) {
    const acc_t diff = e[d] - mu[d];
    sq += diff * diff;
  });
  return sq;
}

}  // namespace panonet::ops::loss_cuda
