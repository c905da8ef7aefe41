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
#include "mean_shift_grid.h"

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

// A group's centers indexed for the suppression (mean_shift_grid.h): keys and cells in (cell,
// key) order, rank_at[j] the center (its rank) at position j; key axis, cell axis, the reach of
// a search (projection_reach with no radius), which is also the columns' width, and the first
// cell.
struct CenterGrid {
  const double* cells;
  const double* keys;
  const int64_t* rank_at;
  int64_t axis, cell_axis;
  double reach, first;
};

// The decision of one round for center a of a group whose K centers are in rank order (rows,
// K x D), indexed by `grid`. Only centers within the grid's reach of a's on both axes can be
// within bandwidth (mean_shift_grid.h). *distances counts the distances computed, *searches the
// index's binary searches.
PANONET_HD inline int8_t suppression_decision(int64_t a, const double* rows, const CenterGrid& grid,
                                              int64_t K, int64_t D, double bandwidth,
                                              const int8_t* status, int64_t* distances,
                                              int64_t* searches) {
  const double* ca = rows + a * D;
  const double bw2 = bandwidth * bandwidth;
  int64_t begin[kGridRanges], end[kGridRanges];
  const int ranges = grid_ranges(grid.cells, grid.keys, 0, K, grid.reach, grid.first,
                                 ca[grid.cell_axis], ca[grid.axis], grid.reach, begin, end,
                                 searches);
  bool waits = false;
  for (int r = 0; r < ranges; ++r) {
    for (int64_t j = begin[r]; j < end[r]; ++j) {
      const int64_t c = grid.rank_at[j];
      if (c >= a) continue;
      const int8_t s = status[c];
      if (s == kSuppressed) continue;
      ++*distances;
      if (sq_dist(ca, rows + c * D, D) <= bw2) {
        if (s == kKept) return kSuppressed;
        waits = true;
      }
    }
  }
  return waits ? kUndecided : kKept;
}

}  // namespace panonet::ms
