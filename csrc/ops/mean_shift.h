// Math of bin-seeded flat-kernel mean-shift with scikit-learn's exact semantics
// (sklearn.cluster.MeanShift), shared by the CPU and CUDA kernels.
//
// sklearn's algorithm, which every kernel reproduces:
//   seeds   bin keys round(x / bandwidth) (half to even), bins holding >= min_bin_freq points in
//           order of first appearance, seed = float32(key) * float32(bandwidth) in float32; all
//           points instead when that gives as many seeds as points, or without bin seeding;
//   climb   window = points at distance <= bandwidth (inclusive) of the current mean; empty:
//           the seed is dropped; else mean <- window mean, stop when ||shift|| <= 1e-3 bandwidth
//           or after max_iter + 1 means; the seed yields (final mean, size of the last window);
//   merge   bitwise-equal final means are one center (the later seed's window size counts);
//           centers ranked by (window size, coordinates) descending, and each kept center
//           suppresses the later ones within bandwidth (inclusive);
//   labels  nearest kept center (lowest rank on exact ties); with cluster_all=false, -1 where
//           that distance exceeds bandwidth.
// Distances are sums of squared coordinate differences in order d = 0..D-1 compared with
// bandwidth^2, as sklearn's KD-tree does; the kernels are compiled without FMA contraction so
// that the same inputs give the same decisions.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace panonet::ms {

// Convergence threshold of sklearn, relative to the bandwidth.
constexpr double kStopFraction = 1e-3;

template <typename T>
PANONET_HD inline T sq_dist(const T* a, const T* b, int64_t D) {
  T s = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T diff = a[d] - b[d];
    s += diff * diff;
  }
  return s;
}

// Distance from q to the interval [lo, hi] (0 inside). For x in [lo, hi], the rounded gap is
// <= the rounded |x - q| (rounding is monotone), so a sum of squared gaps taken in sq_dist's
// order is a lower bound of sq_dist to every point of a box, exact without slack.
PANONET_HD inline double interval_gap(double q, double lo, double hi) {
  return q < lo ? lo - q : (q > hi ? q - hi : 0.0);
}

// Bin key of one coordinate: round half to even, with -0 folded into +0 (Python's tuple keys
// compare -0.0 == 0.0).
PANONET_HD inline double bin_key(double x, double bandwidth) {
  const double k = nearbyint(x / bandwidth);
  return k == 0.0 ? 0.0 : k;
}

// A seed coordinate as sklearn computes it: float32 keys times the bandwidth, in float32.
PANONET_HD inline double seed_coord(double key, double bandwidth) {
  return static_cast<double>(static_cast<float>(key) * static_cast<float>(bandwidth));
}

// Slack on every decision taken from a bound (a whole node or bin inside / outside a window, a
// whole bin nearest to one center): well above the rounding error of the distances involved
// for coordinates up to `scale` in magnitude, so such decisions never differ from sklearn's
// per-point test.
PANONET_HD inline double bound_margin(double scale, int64_t D) {
  return 64.0 * static_cast<double>(D + 2) * DBL_EPSILON * (scale + 1.0);
}

// Within a bin whose points are ordered by decreasing distance rho to the bin's center (at
// distance dist from a window's center), the first position from which every point is decided
// by the triangle inequality alone (rho < |dist - bandwidth| - margin): all inside the window
// if dist < bandwidth, all outside otherwise. Positions before it need sklearn's test.
PANONET_HD inline int64_t first_decided(const double* rho, int64_t begin, int64_t end,
                                        double dist, double bandwidth, double margin) {
  const double t = fabs(dist - bandwidth) - margin;
  if (!(t > 0)) return end;
  while (begin < end) {  // rho descending: find the first rho < t
    const int64_t mid = begin + (end - begin) / 2;
    if (rho[mid] >= t) {
      begin = mid + 1;
    } else {
      end = mid;
    }
  }
  return begin;
}

// sklearn's stop test: ||new - old|| <= 1e-3 * bandwidth.
PANONET_HD inline bool converged(double shift_sq, double bandwidth) {
  return sqrt(shift_sq) <= kStopFraction * bandwidth;
}

// Whether center a (window size na) ranks before center b (nb): larger windows first, then the
// lexicographically larger coordinates, as sorted(..., key=(size, tuple), reverse=True).
PANONET_HD inline bool ranks_before(int64_t na, const double* a, int64_t nb, const double* b,
                                    int64_t D) {
  if (na != nb) return na > nb;
  for (int64_t d = 0; d < D; ++d) {
    if (a[d] != b[d]) return a[d] > b[d];
  }
  return false;
}

// Bitwise-equal-as-floats test of two centers (-0 == +0), sklearn's dict key equality.
PANONET_HD inline bool same_center(const double* a, const double* b, int64_t D) {
  for (int64_t d = 0; d < D; ++d) {
    if (a[d] != b[d]) return false;
  }
  return true;
}

}  // namespace panonet::ms
