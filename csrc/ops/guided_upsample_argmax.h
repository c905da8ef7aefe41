// The arithmetic of panonet::guided_upsample_argmax, shared by its CPU and CUDA kernels: one
// output pixel's class from the low-resolution logits of its window x window neighbours, each
// weighted by a spatial Gaussian and by a Gaussian of the colour difference between the pixel
// and the image averaged over the neighbour's area (joint bilateral upsampling).
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace panonet::ops::guided {

// The largest window: the kernels keep a pixel's weights in a fixed array.
constexpr int kMaxWindow = 8;

// 1 / (2 sigma^2), the factor of a Gaussian's exponent: one formula for both kernels' hosts.
inline double half_inverse_square(double sigma) { return 1.0 / (2.0 * sigma * sigma); }

// Output sample t's position on a grid of n samples upsampled to N (pixel centres, as
// F.interpolate's align_corners=False), not clamped; and its floor.
PANONET_HD inline double position(int64_t t, int64_t n, int64_t N) {
  return (static_cast<double>(t) + 0.5) * static_cast<double>(n) / static_cast<double>(N) - 0.5;
}

PANONET_HD inline int64_t floor_index(double s) {
  int64_t i = static_cast<int64_t>(s);
  return static_cast<double>(i) > s ? i - 1 : i;
}

// Whether v of a later class replaces the best so far: larger, or NaN where the best is not
// (torch.max's rule; ties keep the lower class).
template <typename T>
PANONET_HD inline bool beats(T v, T best) {
  return (v > best) | ((v != v) & (best == best));
}

// The neighbours of output pixel (py, px) (positions on the h x w grid) whose colour is rgb (3
// values in [0, 1]), given guide, one image's (3, h, w) area averages: their flat grid indices
// (row-major, rows then columns of the window) into index and their weights into weight, both
// of window^2 entries; returns how many (those inside the grid). inv_2ss = 1 / (2
// sigma_spatial^2), inv_2sr = 1 / (2 sigma_range^2). A neighbour q's weight is
// exp(-|q - p|^2 inv_2ss - d2(q) inv_2sr), d2 the squared colour distance, divided by the largest
// of them (a per-pixel constant, which leaves the argmax unchanged: the weights cannot all
// underflow, however far the colour or small the sigmas).
template <typename T>
PANONET_HD inline int neighbours(const float* guide, const T* rgb, int64_t h, int64_t w, double py,
                                 double px, int window, T inv_2ss, T inv_2sr, T* weight,
                                 int64_t* index) {
  const int64_t plane = h * w;
  const int64_t y0 = floor_index(py), x0 = floor_index(px);
  const int half = window / 2;
  int n = 0;
  T e_min = 0;
  for (int dy = 1 - half; dy <= half; ++dy) {
    const int64_t qy = y0 + dy;
    if (qy < 0 || qy >= h) continue;
    for (int dx = 1 - half; dx <= half; ++dx) {
      const int64_t qx = x0 + dx;
      if (qx < 0 || qx >= w) continue;
      const int64_t q = qy * w + qx;
      T d2 = 0;
      for (int k = 0; k < 3; ++k) {
        const T d = rgb[k] - static_cast<T>(guide[k * plane + q]);
        d2 += d * d;
      }
      const T sy = static_cast<T>(static_cast<double>(qy) - py);
      const T sx = static_cast<T>(static_cast<double>(qx) - px);
      // The exponent (both Gaussians in one exp); the weight once the smallest is known.
      const T e = d2 * inv_2sr + (sy * sy + sx * sx) * inv_2ss;
      weight[n] = e;
      index[n] = q;
      e_min = (n == 0 || e < e_min) ? e : e_min;
      ++n;
    }
  }
  // Weights in (0, 1], the largest exactly 1.
  for (int k = 0; k < n; ++k) weight[k] = std::exp(e_min - weight[k]);
  return n;
}

// The class with the largest weighted sum of one image's (C, h, w) logits over the n
// neighbours (each class's sum in neighbour order: the CPU kernel, which sums several classes
// at once, adds in the same order).
template <typename scalar_t, typename T>
PANONET_HD inline int64_t best_class(const scalar_t* logits, int64_t C, int64_t plane, int n,
                                     const T* weight, const int64_t* index) {
  T best = 0;
  int64_t label = 0;
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* x = logits + c * plane;
    T s = 0;
    for (int k = 0; k < n; ++k) s += weight[k] * static_cast<T>(x[index[k]]);
    if (c == 0 || beats(s, best)) {
      best = s;
      label = c;
    }
  }
  return label;
}

}  // namespace panonet::ops::guided
