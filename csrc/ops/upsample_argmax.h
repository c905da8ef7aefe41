// The arithmetic of panonet::upsample_argmax, shared by its CPU and CUDA kernels so that both
// compute the same float values in the same order (both files are compiled without FMA
// contraction) and so return the same classes.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace panonet::ops::upsample {

// Where output sample t of an upsampling from n to N samples reads (samples lo and hi) and with
// which weights: bilinear with half-pixel centres (F.interpolate's align_corners=False), source
// coordinate (t + 0.5) * n / N - 0.5 clamped to [0, n - 1]. The coordinate in double is exact to
// far below a float weight's rounding for any image size.
struct Tap {
  int64_t lo, hi;
  float w_lo, w_hi;
};

PANONET_HD inline Tap tap(int64_t t, int64_t n, int64_t N) {
  double s = (static_cast<double>(t) + 0.5) * static_cast<double>(n) / static_cast<double>(N) - 0.5;
  if (s < 0) s = 0;
  int64_t lo = static_cast<int64_t>(s);
  if (lo > n - 1) lo = n - 1;
  const int64_t hi = lo < n - 1 ? lo + 1 : lo;
  const float w_hi = static_cast<float>(s - static_cast<double>(lo));
  return {lo, hi, 1.0f - w_hi, w_hi};
}

// Linear interpolation between two samples; a class's value at an output pixel blends its four
// source values first between the two source columns (in each source row), then between the two
// rows. T is float (float16 / bfloat16 / float32 logits) or double.
template <typename T>
PANONET_HD inline T blend(T lo, T hi, T w_lo, T w_hi) {
  return w_lo * lo + w_hi * hi;
}

// Whether value v of a later class replaces the best so far: larger, or NaN where the best is
// not (torch.max's rule: NaN wins; ties keep the lower class).
template <typename T>
PANONET_HD inline bool beats(T v, T best) {
  return (v > best) | ((v != v) & (best == best));
}

}  // namespace panonet::ops::upsample
