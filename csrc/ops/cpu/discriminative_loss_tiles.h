// The per-pixel loops of the CPU loss for fragmented tiles (instance maps without spatial
// coherence, see discriminative_loss.cpp): each pixel reads and accumulates its own cluster's
// values through an index. Included by discriminative_loss.cpp only (built with
// -ffp-contract=off, so that the AVX2 and default clones round alike).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../discriminative_loss.h"

namespace panonet::ops::dl_cpu {

// Pixels per tile: D rows of a tile (D x 256 values) stay in L1 between the loops over d.
constexpr int64_t kTile = 256;

// The pixel loops of fragmented tiles index per-cluster rows per pixel; with AVX2 the compiler
// turns those reads into gathers. GCC and Clang build such functions twice and pick the clone
// at load time (discriminative_loss.cpp is compiled with -ffp-contract=off: both clones round
// alike).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PANONET_DL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PANONET_DL_CLONES
#endif

// The pixels of a fragmented tile that are not ignored, in pixel order: their offsets from the
// tile's first pixel and their clusters. Compacted without branches (in such maps ignored
// pixels are as scattered as the rest, and a branch on them mispredicted), so that the pixel
// loops skip ignored pixels as the run loops do.
struct Valid {
  int64_t n;
  int32_t at[kTile];
  int32_t label[kTile];
};

inline void valid_pixels(const int32_t* lab, int64_t p0, int64_t p1, Valid& v) {
  int64_t n = 0;
  for (int64_t i = 0; i < p1 - p0; ++i) {
    v.at[n] = static_cast<int32_t>(i);
    v.label[n] = lab[p0 + i];
    n += lab[p0 + i] >= 0;
  }
  v.n = n;
}

// Squared distance of each valid pixel j of a fragmented tile to its cluster mean (sq[j]).
// Coordinate by coordinate, as for runs (the same sums in the same order), each pixel reading
// its value and its cluster's mean through an index: a loop the compiler vectorizes (gathers).
template <typename scalar_t>
PANONET_DL_CLONES void fragmented_sq_dist(const scalar_t* x, const Valid& v, const double* means,
                                          int64_t D, int64_t HW, int64_t p0, double* sq) {
  int64_t row[kTile];
  for (int64_t j = 0; j < v.n; ++j) {
    row[j] = int64_t(v.label[j]) * D;
    sq[j] = 0.0;
  }
  for (int64_t d = 0; d < D; ++d) {
    const scalar_t* xd = x + d * HW + p0;
    const double* md = means + d;
#pragma omp simd
    for (int64_t j = 0; j < v.n; ++j) {
      const double diff = static_cast<double>(xd[v.at[j]]) - md[row[j]];
      sq[j] += diff * diff;
    }
  }
}

// Sums and counts of a fragmented tile's valid pixels into their clusters' rows of acc, pixel
// by pixel with its D coordinates inner: D independent additions per pixel instead of one
// chain of additions per coordinate.
template <typename scalar_t>
PANONET_DL_CLONES void fragmented_sums(const scalar_t* x, const Valid& v, int64_t D, int64_t HW,
                                       int64_t p0, double* acc) {
  const int64_t W = D + 1;
  for (int64_t j = 0; j < v.n; ++j) {
    const int64_t p = p0 + v.at[j];
    double* row = acc + int64_t(v.label[j]) * W;
    for (int64_t d = 0; d < D; ++d) row[d] += static_cast<double>(x[d * HW + p]);
    row[D] += 1;
  }
}

// The hinge pass of a fragmented tile: per valid pixel j its factor f and v^2 (dl::var_factor)
// from its squared distance sq[j], then f (x - mu) and v^2 added to its cluster's row of acc.
template <typename scalar_t>
PANONET_DL_CLONES void fragmented_hinge(const scalar_t* x, const Valid& v, const double* sq,
                                        const double* mu, int64_t D, int64_t HW, int64_t p0,
                                        double delta_v, double* acc) {
  const int64_t W = D + 1;
  for (int64_t j = 0; j < v.n; ++j) {
    const int64_t p = p0 + v.at[j];
    const int64_t k = v.label[j];
    double v_sq;
    const double fp = dl::var_factor(sq[j], delta_v, &v_sq);
    double* row = acc + k * W;
    const double* m = mu + k * D;
    for (int64_t d = 0; d < D; ++d) row[d] += fp * (static_cast<double>(x[d * HW + p]) - m[d]);
    row[D] += v_sq;
  }
}

// The backward of a fragmented tile: grad = s_c f (x - mu) + G_c per valid pixel j (f[j]) and
// coordinate, 0 for ignored pixels (even where their embedding is not finite). Per pixel once
// its rows and its factor s_c f, then one loop over the pixels per coordinate (gathers of x, mu
// and G).
template <typename scalar_t>
PANONET_DL_CLONES void fragmented_backward(const scalar_t* x, const Valid& v, const double* f,
                                           const double* s, const double* mu, const double* G,
                                           int64_t D, int64_t HW, int64_t p0, int64_t p1,
                                           scalar_t* grad) {
  int64_t row[kTile];
  double sf[kTile];
  for (int64_t j = 0; j < v.n; ++j) {
    row[j] = int64_t(v.label[j]) * D;
    sf[j] = s[v.label[j]] * f[j];
  }
  for (int64_t d = 0; d < D; ++d) {
    const scalar_t* xd = x + d * HW + p0;
    scalar_t* gd = grad + d * HW + p0;
    const double* mud = mu + d;
    const double* Gd = G + d;
    if (v.n < p1 - p0) std::fill(gd, gd + (p1 - p0), scalar_t(0));
    for (int64_t j = 0; j < v.n; ++j) {
      const int64_t i = v.at[j];
      gd[i] = static_cast<scalar_t>(sf[j] * (static_cast<double>(xd[i]) - mud[row[j]]) +
                                    Gd[row[j]]);
    }
  }
}

}  // namespace panonet::ops::dl_cpu
