// sklearn's center selection (mean_shift.h, "merge") in a form the GPU runs without the host:
// sorts with comparators instead of a hash table, and the greedy suppression as rounds of
// independent decisions. Host/device code, run by the host model of the GPU algorithm
// (cpu/mean_shift_gpu_work.cpp) and so checked against sklearn by the CPU tests.
//
// Rounds: every undecided center a looks at the earlier centers (in rank order) within
// bandwidth. If one of them is kept, a is suppressed; if all of them are suppressed (or there
// are none), a is kept; otherwise a waits. Decided states never change, and each decision is
// the one the sequential greedy takes (by induction over the rank), so the result is the
// greedy's whatever order the decisions of one round are taken in, and however stale the
// states read are. Each round decides at least the first undecided center, so the rounds end;
// in practice a handful suffice, the length of the longest chain of near centers.
#pragma once

#include <cstdint>

#include "host_device.h"
#include "mean_shift.h"
#include "mean_shift_projection.h"

namespace panonet::ms {

enum : int8_t { kUndecided = 0, kKept = 1, kSuppressed = 2 };

// Order of means that brings the equal ones together: lexicographic, with -0 == +0 as
// sklearn's dict keys have it. -1, 0 or 1.
PANONET_HD inline int compare_means(const double* a, const double* b, int64_t D) {
  for (int64_t d = 0; d < D; ++d) {
    if (a[d] < b[d]) return -1;
    if (a[d] > b[d]) return 1;
  }
  return 0;
}

// The decision of one round for center a of a group whose K centers are in rank order (rows,
// K x D). keys: the centers' coordinates on `axis`, ascending; rank_at[j]: the center with the
// j-th key. Only centers whose key is within reach of a's (projection_reach with no radius)
// can be within bandwidth (mean_shift_projection.h). *distances counts the distances computed.
PANONET_HD inline int8_t suppression_decision(int64_t a, const double* rows, const double* keys,
                                              const int64_t* rank_at, int64_t K, int64_t D,
                                              int64_t axis, double bandwidth, double reach,
                                              const int8_t* status, int64_t* distances) {
  const double* ca = rows + a * D;
  const double ka = ca[axis], bw2 = bandwidth * bandwidth;
  const int64_t end = upper_index(keys, 0, K, ka + reach);
  bool waits = false;
  for (int64_t j = lower_index(keys, 0, end, ka - reach); j < end; ++j) {
    const int64_t r = rank_at[j];
    if (r >= a) continue;
    const int8_t s = status[r];
    if (s == kSuppressed) continue;
    ++*distances;
    if (sq_dist(ca, rows + r * D, D) <= bw2) {
      if (s == kKept) return kSuppressed;
      waits = true;
    }
  }
  return waits ? kUndecided : kKept;
}

}  // namespace panonet::ms
