// Input validation of the mean-shift ops (mean_shift, cluster_instances), shared by their CPU and
// CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

namespace panonet::ops {

// Semantic values from this one up are "ignore" (Cityscapes' 255) and never clustered.
constexpr int64_t kIgnoreFrom = 255;

void check_mean_shift_inputs(const at::Tensor& points, double bandwidth, int64_t min_bin_freq,
                             int64_t max_iter);

// Returns the embedding and semantic map with a batch dimension: (B, D, H, W), (B, H, W). The
// checks of values held on a GPU (a finite bandwidth, class ids the bandwidth table covers) wait
// for it; they run only with check_device_values (values on the CPU are always checked).
std::pair<at::Tensor, at::Tensor> check_cluster_instances_inputs(
    const at::Tensor& embedding, const at::Tensor& semantic, const at::Tensor& bandwidth,
    int64_t min_bin_freq, int64_t max_iter, bool check_device_values);

// panonet::_nearest_by_projection: points (N, D) and centers (K, D), for both kernels.
void check_nearest_by_projection_inputs(const at::Tensor& points, const at::Tensor& centers);

// Throws unless every value of the (floating) tensor is finite; `what` names it in the message.
void check_all_finite(const at::Tensor& values, const char* op, const char* what);

}  // namespace panonet::ops
