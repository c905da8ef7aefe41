// The last step of sklearn's mean-shift, shared by the CPU and CUDA paths (host code).
#pragma once

#include <cstdint>
#include <vector>

namespace panonet::ms {

// From every seed's final mean (S x D) and last window size (0: the seed was dropped), sklearn's
// cluster_centers_ (K x D, row-major): bitwise-distinct means (a later seed's window size
// replaces an earlier one's), ranked by (window size, coordinates) descending, each kept center
// suppressing the later ones within bandwidth.
std::vector<double> select_centers(const double* final_mean, const int64_t* final_count,
                                   int64_t S, int64_t D, double bandwidth);

}  // namespace panonet::ms
