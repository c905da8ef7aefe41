// Exact bin-seeded mean-shift on the CPU (sklearn semantics, see ../mean_shift.h), shared by the
// mean_shift and cluster_instances ops.
#pragma once

#include <cstdint>
#include <vector>

namespace panonet::ms {

struct Params {
  double bandwidth;      // > 0
  bool bin_seeding;      // seeds from bins of size bandwidth instead of every point
  int64_t min_bin_freq;  // >= 1
  int64_t max_iter;      // >= 0
  bool cluster_all;      // label every point (else -1 beyond bandwidth of every center)
};

struct Result {
  std::vector<int64_t> labels;  // (n), index into centers or -1
  std::vector<double> centers;  // (K, D) row-major, sklearn's cluster_centers_ order
  int64_t num_centers = 0;
};

// Clusters n points of dimension D (row-major doubles, finite). Uses the intra-op thread pool
// unless called from inside a parallel region.
Result mean_shift(const double* points, int64_t n, int64_t D, const Params& params);

}  // namespace panonet::ms
