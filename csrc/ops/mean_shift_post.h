// The last step of sklearn's mean-shift, shared by the CPU and CUDA paths (host code).
#pragma once

#include <cstdint>
#include <vector>

#include "mean_shift_grid.h"

namespace panonet::ms {

// From every seed's final mean (S x D) and last window size (0: the seed was dropped), sklearn's
// cluster_centers_ (K x D, row-major): bitwise-distinct means (a later seed's window size
// replaces an earlier one's), ranked by (window size, coordinates) descending, each kept center
// suppressing the later ones within bandwidth.
std::vector<double> select_centers(const double* final_mean, const int64_t* final_count,
                                   int64_t S, int64_t D, double bandwidth);

// Centers (K x D, sklearn's order) sorted by their coordinate on the axis of widest spread, for
// nearest_by_projection (mean_shift_projection.h).
struct ProjectedCenters {
  int64_t axis = 0;
  std::vector<double> rows;   // K x D, ascending on the axis
  std::vector<double> keys;   // K: rows[j * D + axis]
  std::vector<int64_t> rank;  // K: row j's index in sklearn's order
};
ProjectedCenters project_centers(const double* centers, int64_t K, int64_t D);

// The axes of widest and second widest spread of K rows (K x D) and the smallest coordinate on
// the second, by mean_shift_grid.h's GridAxes rule (as the CUDA kernels pick them per group);
// its `axis` is project_centers' axis.
GridAxes grid_axes(const double* rows, int64_t K, int64_t D);

}  // namespace panonet::ms
