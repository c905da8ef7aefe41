// Batched exact mean-shift on the GPU (sklearn semantics, see ../mean_shift.h), shared by the
// mean_shift and cluster_instances CUDA kernels: many independent problems ("groups", e.g. one
// per image and class) run in the same kernel launches.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace panonet::ms::cuda {

struct GroupParams {
  bool bin_seeding;
  int64_t min_bin_freq;
  int64_t max_iter;
  bool cluster_all;
};

struct GroupsResult {
  at::Tensor labels;                    // (N) int64 on the GPU: index into the group's centers, or -1
  std::vector<int64_t> center_offsets;  // (G + 1): group g owns centers [off[g], off[g + 1])
  at::Tensor centers;                   // (K, D) float64 on the GPU
};

// points: (N, D) float64, contiguous, on the GPU; group g owns rows [offsets[g], offsets[g+1])
// and is clustered with bandwidths[g] > 0. All values finite.
GroupsResult mean_shift_groups(const at::Tensor& points, const std::vector<int64_t>& offsets,
                               const std::vector<double>& bandwidths, const GroupParams& params);

}  // namespace panonet::ms::cuda
