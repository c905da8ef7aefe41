// Batched exact mean-shift on the GPU (sklearn semantics, see ../mean_shift.h), shared by the
// mean_shift and cluster_instances CUDA kernels: many independent problems ("groups", e.g. one
// per image and class) run in the same kernel launches. Every size that depends on the data
// (bins, seeds, centers) stays on the device: buffers are sized from the number of points, so
// the whole call waits for the GPU nowhere and can be captured in a CUDA graph.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/zeros.h>

#include <cstdint>

namespace panonet::ms::cuda {

struct GroupParams {
  bool bin_seeding;
  int64_t min_bin_freq;
  int64_t max_iter;
  bool cluster_all;
};

// The problems, all on the GPU. Group g (of G) owns rows [lo[g], lo[g + 1]) of points; rows from
// lo[G] on belong to no group and are left out.
struct Groups {
  at::Tensor points;     // (N, D) float64, contiguous, finite
  at::Tensor group_of;   // (N) int32, non-decreasing: the group of each row, G for none
  at::Tensor lo;         // (G + 1) int64
  at::Tensor bandwidth;  // (G) float64, > 0 for every group that owns rows
};

struct GroupsResult {
  at::Tensor labels;     // (N) int64: index into the row's group's centers, or -1
  at::Tensor center_lo;  // (G + 1) int64: group g owns centers [center_lo[g], center_lo[g + 1])
  at::Tensor centers;    // (>= center_lo[G], D) float64: each group's centers in sklearn's order
};

// Exclusive prefix sums of counts (or a 0/1 mask) with the total appended: (n + 1) int64, on the
// counts' device. Used for slot offsets of bins, seeds and centers.
inline at::Tensor exclusive_counts(const at::Tensor& counts) {
  return at::cat({at::zeros({1}, counts.options().dtype(at::kLong)), at::cumsum(counts, 0, at::kLong)});
}

// Waits for the GPU only for embeddings wider than 64 (computed on the CPU).
GroupsResult mean_shift_groups(const Groups& groups, int64_t G, const GroupParams& params);

// Centers of every group from its seeds' final means, as sklearn selects them
// (../mean_shift_select.h), without waiting for the GPU: final_mean (S, D) and final_count (S)
// of the seeds, seed_group (S) int32 (G for an unused slot; a count of 0 drops the seed), the
// groups' bandwidths (G), their index's axes (G, int64: key axis, cell axis) and smallest
// coordinate on the cell axis (G, float64; mean_shift_grid.h), and their bound margins (G).
// -> center_lo, centers (S, D) as in GroupsResult, and the centers sorted on their group's axis
// for nearest_by_projection: rows (S, D), keys (S), rank (S, index within the group).
struct SelectedCenters {
  at::Tensor center_lo, centers, rows, keys, rank;
};
SelectedCenters select_centers(const at::Tensor& final_mean, const at::Tensor& final_count,
                               const at::Tensor& seed_group, int64_t G,
                               const at::Tensor& group_bw, const at::Tensor& group_axis,
                               const at::Tensor& group_cell_axis,
                               const at::Tensor& group_cell_lo, const at::Tensor& margin);

}  // namespace panonet::ms::cuda
