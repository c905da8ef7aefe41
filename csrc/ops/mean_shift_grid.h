// Pruning mean-shift searches by two coordinates, for the GPU kernels: the rows of a group (bin
// centers for the climb, ranked centers for the suppression) sorted by (cell, key), where key is
// the row's coordinate on the group's axis of widest spread and cell the column, `width` wide,
// that its coordinate on the second widest axis (the cell axis) falls in. A search looks at the
// rows within reach on both axes: a range of keys in each of the few columns within reach.
// With one axis only (mean_shift_projection.h) the rows within reach on it grow with the square
// of the point count when every point is its own cluster (an untrained embedding: 131k rows
// spread over a few thousand units); on two axes they stay a few per search.
// Host/device code: the host model of the GPU algorithm (cpu/mean_shift_gpu_work.cpp) runs these
// functions, so that the CPU tests check the code the CUDA kernels call.
//
// Exactness: a row can meet a search only if it is within reach on every axis
// (mean_shift_projection.h). Cells are floor(coordinate / width) less the group's first cell,
// clamped to [0, kMaxCell]; every step is monotone in the coordinate (rounded division, floor,
// rounded subtraction, clamping), so a row whose coordinate lies in [c - reach, c + reach] (both
// bounds rounded as the one-axis search rounds them) has a cell between the cells of the two
// bounds, and the ranges below hold it. Clamping only merges columns (more rows searched, never
// fewer); a NaN coordinate goes to the last column, whose keys a search still bounds.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace panonet::ms {

constexpr double kMaxCell = 4294967295.0;  // 2^32 - 1: a cell fits in 32 bits of a sort key
constexpr int kGridRanges = 4;             // a search covers at most this many columns

// The two widest spreads seen so far: offer each axis d in turn with its range [lo, hi]; the
// first axis of the largest spread wins, as the one-axis search picks its axis. NaN spreads never
// win; until a second axis has a spread, the cell axis is the axis itself.
struct GridAxes {
  int64_t axis = 0;
  double spread = -1;
  double axis_lo = 0;
  int64_t cell_axis = 0;
  double cell_spread = -1;
  double cell_lo = 0;  // smallest coordinate on the cell axis (of the rows offered)

  PANONET_HD void offer(int64_t d, double lo, double hi) {
    const double s = hi - lo;
    if (s > spread) {
      if (spread < 0) {  // the first axis taken is also the cell axis until a second one comes
        cell_axis = d;
        cell_lo = lo;
      } else {
        cell_axis = axis;
        cell_spread = spread;
        cell_lo = axis_lo;
      }
      axis = d;
      spread = s;
      axis_lo = lo;
    } else if (s > cell_spread) {
      cell_axis = d;
      cell_spread = s;
      cell_lo = lo;
    }
  }
};

// The first cell of a group whose smallest coordinate on the cell axis is `lowest` (0 when that
// is not finite: any value is correct, see above).
PANONET_HD inline double grid_first_cell(double lowest, double width) {
  const double c = floor(lowest / width);
  return fabs(c) <= DBL_MAX ? c : 0.0;  // finite
}

// Cell of coordinate v: floor(v / width) - first, clamped to [0, kMaxCell]; NaN -> kMaxCell.
PANONET_HD inline double grid_cell(double v, double width, double first) {
  const double c = floor(v / width) - first;
  if (c >= 0) return c <= kMaxCell ? c : kMaxCell;
  return c < 0 ? 0.0 : kMaxCell;
}

// First index in [lo, hi) whose (cell, key) is past (c, v), hi if none; rows sorted by (cell,
// key). Past: >= (c, v), or > (c, v) with `inclusive` (the first row after a range that ends
// at v). A NaN key sorts after every key of its cell, as at::sort puts NaN last.
PANONET_HD inline int64_t grid_search(const double* cells, const double* keys, int64_t lo,
                                      int64_t hi, double c, double v, bool inclusive) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    const double k = keys[mid];
    if (cells[mid] < c || (cells[mid] == c && (k < v || (inclusive && k == v)))) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// What a search for the rows within `reach` of a point covers, the point's coordinates on the
// cell axis and the axis being pc and pk: `columns` columns from c0, each a range of keys in
// [k0, k1]. Columns too many to take one by one (only when rounding at huge coordinates widens
// the span) are taken whole, as one range from column c0 to column c1.
struct GridSpan {
  double c0, c1, k0, k1;
  int columns;
};

PANONET_HD inline GridSpan grid_span(double width, double first, double pc, double pk,
                                     double reach) {
  GridSpan s;
  s.c0 = grid_cell(pc - reach, width, first);
  s.c1 = grid_cell(pc + reach, width, first);
  if (s.c1 - s.c0 < kGridRanges) {  // not when c1 < c0, which monotone cells rule out
    s.columns = static_cast<int>(s.c1 - s.c0) + 1;
    s.k0 = pk - reach;
    s.k1 = pk + reach;
  } else {
    s.columns = 1;
    s.k0 = -INFINITY;
    s.k1 = INFINITY;
  }
  return s;
}

// Bound i < 2 * span.columns of a search's ranges among the rows [lo, hi): the first row of
// range i / 2 (i even) or the first row past it (i odd). The bounds are independent binary
// searches: the GPU's lanes take one each.
PANONET_HD inline int64_t grid_bound(const double* cells, const double* keys, int64_t lo,
                                     int64_t hi, const GridSpan& span, int i) {
  const int r = i / 2;
  if (i % 2 == 0) return grid_search(cells, keys, lo, hi, span.c0 + r, span.k0, false);
  // exact: cells are integers below 2^32
  const double c = span.columns == 1 ? span.c1 : span.c0 + r;
  return grid_search(cells, keys, lo, hi, c, span.k1, true);
}

// The ranges of a search, [begin[r], end[r]) for r < the returned count (at most kGridRanges),
// ascending and disjoint, possibly empty. *searches counts the binary searches.
PANONET_HD inline int grid_ranges(const double* cells, const double* keys, int64_t lo, int64_t hi,
                                  double width, double first, double pc, double pk, double reach,
                                  int64_t* begin, int64_t* end, int64_t* searches) {
  const GridSpan span = grid_span(width, first, pc, pk, reach);
  for (int r = 0; r < span.columns; ++r) {
    begin[r] = grid_bound(cells, keys, lo, hi, span, 2 * r);
    end[r] = grid_bound(cells, keys, lo, hi, span, 2 * r + 1);
  }
  *searches += 2 * span.columns;
  return span.columns;
}

}  // namespace panonet::ms
