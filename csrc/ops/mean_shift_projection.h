// Pruning mean-shift searches by one coordinate (the "axis"), for the GPU kernels: bins and
// centers of a group are sorted by their coordinate on the axis, and a search only looks at the
// ones whose coordinate is close enough, found by binary search. Host/device code, so that the
// CPU tests run the very functions the GPU kernels call (through panonet::_nearest_by_projection).
//
// Exactness: sq_dist adds non-negative terms in order d = 0..D-1, and rounding is monotone, so
// the float64 sq_dist of two rows is >= the rounded square of their rounded difference on any
// one axis. A row whose axis term alone exceeds a threshold is therefore beyond it in sq_dist
// too, and so is every row further along the sorted order (larger difference, larger rounded
// square): dropping them changes no decision.
#pragma once

#include <cfloat>
#include <cstdint>

#include "host_device.h"
#include "mean_shift.h"

namespace panonet::ms {

// First index i in [lo, hi) with keys[i] >= v (keys ascending), hi if none.
PANONET_HD inline int64_t lower_index(const double* keys, int64_t lo, int64_t hi, double v) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// How far (on the axis) a bin's center may be from a window's center and the bin still meet the
// window: bandwidth + the group's largest bin radius + the bound margin of every other bin
// decision (see bound_margin), widened by a few ulps for the rounding of the difference itself.
PANONET_HD inline double projection_reach(double bandwidth, double max_radius, double margin) {
  return (bandwidth + max_radius + margin) * (1.0 + 8.0 * DBL_EPSILON) + margin;
}

// Nearest of K centers to x: the smallest sq_dist(x, center), then the lowest rank (sklearn's
// order). rows: the centers (K x D) sorted by their coordinate `axis`, keys[j] = rows[j * D +
// axis], rank[j] = row j's index in sklearn's order. Returns that rank (-1 if K == 0) and its
// squared distance in *d2; *visited counts the rows whose distance was computed. Walks outwards
// from x's place in the sorted order, one side while its axis term does not exceed the best
// distance (an equal term may still hide a tie of lower rank).
PANONET_HD inline int64_t nearest_by_projection(const double* x, const double* rows,
                                                const double* keys, const int64_t* rank,
                                                int64_t K, int64_t D, int64_t axis, double* d2,
                                                int64_t* visited) {
  int64_t best = -1, n = 0;
  double best_d2 = INFINITY;
  const double xa = x[axis];
  int64_t right = lower_index(keys, 0, K, xa), left = right - 1;
  bool left_open = left >= 0, right_open = right < K;
  while (left_open || right_open) {
    // The side whose next row is nearer on the axis.
    bool take_right = right_open;
    if (left_open && right_open) take_right = (keys[right] - xa) <= (xa - keys[left]);
    const int64_t j = take_right ? right : left;
    const double diff = xa - keys[j];
    if (best >= 0 && diff * diff > best_d2) {
      if (take_right) {
        right_open = false;
      } else {
        left_open = false;
      }
      continue;
    }
    const double s = sq_dist(x, rows + j * D, D);
    ++n;
    if (best < 0 || s < best_d2 || (s == best_d2 && rank[j] < best)) {
      best = rank[j];
      best_d2 = s;
    }
    if (take_right) {
      right_open = ++right < K;
    } else {
      left_open = --left >= 0;
    }
  }
  *d2 = best_d2;
  *visited = n;
  return best;
}

}  // namespace panonet::ms
