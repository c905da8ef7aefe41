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

// The id an output pixel (Y, X) of class c reaches when its source pixel has another class (a
// structure thinner than the low-resolution grid, or a boundary that moved when the classes were
// upsampled): that of the nearest low-resolution pixel within `reach` rows and columns of the
// source pixel (sy0, sx0) whose class is c and whose id is > 0; 0 if there is none. Distances are
// between pixel centres, compared exactly in integers: ((2 sy + 1) H - (2 Y + 1) h)^2 W^2 +
// ((2 sx + 1) W - (2 X + 1) w)^2 H^2 is 4 H^2 W^2 times the squared distance in source pixels,
// below 2^63 when (2 reach + 1) H W < 2^31 (the inputs' check). Ties go to the first pixel in
// row-major order. inst and sem are one image's (h, w) maps; ids are clamped to [0, K] (the CPU
// has checked them; CUDA reads nothing back).
PANONET_HD inline int64_t reached_id(const int64_t* inst, const int64_t* sem, int64_t h,
                                     int64_t w, int64_t H, int64_t W, int64_t Y, int64_t X,
                                     int64_t sy0, int64_t sx0, int64_t c, int64_t reach,
                                     int64_t K) {
  int64_t best = -1, id = 0;
  const int64_t y_lo = sy0 - reach < 0 ? 0 : sy0 - reach;
  const int64_t y_hi = sy0 + reach > h - 1 ? h - 1 : sy0 + reach;
  const int64_t x_lo = sx0 - reach < 0 ? 0 : sx0 - reach;
  const int64_t x_hi = sx0 + reach > w - 1 ? w - 1 : sx0 + reach;
  for (int64_t sy = y_lo; sy <= y_hi; ++sy) {
    const int64_t dy = (2 * sy + 1) * H - (2 * Y + 1) * h;
    for (int64_t sx = x_lo; sx <= x_hi; ++sx) {
      const int64_t i = sy * w + sx;
      const int64_t k = inst[i] < 0 ? 0 : (inst[i] > K ? K : inst[i]);
      if (k == 0 || sem[i] != c) continue;
      const int64_t dx = (2 * sx + 1) * W - (2 * X + 1) * w;
      const int64_t d = dy * dy * W * W + dx * dx * H * H;
      if (best < 0 || d < best) {
        best = d;
        id = k;
      }
    }
  }
  return id;
}

}  // namespace panonet::ops::upsample_instances
