// CUDA kernel of panonet::mean_shift: one group of the batched GPU mean-shift (mean_shift_core).
// It waits for the GPU once, to size the centers.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../mean_shift_checks.h"
#include "mean_shift_core.cuh"

namespace panonet::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> mean_shift_cuda(const at::Tensor& points, double bandwidth,
                                                   bool bin_seeding, int64_t min_bin_freq,
                                                   int64_t max_iter, bool cluster_all) {
  check_mean_shift_inputs(points, bandwidth, min_bin_freq, max_iter);
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor x = points.to(at::kDouble).contiguous();
  check_all_finite(x, "panonet.ops.mean_shift: ", "points");
  const int64_t N = x.size(0);
  ms::cuda::Groups groups;
  groups.points = x;
  groups.group_of = at::zeros({N}, x.options().dtype(at::kInt));
  groups.lo = at::arange(2, x.options().dtype(at::kLong)) * N;  // {0, N}, made on the device
  groups.bandwidth = at::full({1}, bandwidth, x.options());
  const auto r = ms::cuda::mean_shift_groups(groups, 1,
                                             {bin_seeding, min_bin_freq, max_iter, cluster_all});
  const int64_t K = r.center_lo[1].item<int64_t>();
  return {r.labels, r.centers.narrow(0, 0, K).to(points.scalar_type(), false, /*copy=*/true)};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("mean_shift", &mean_shift_cuda); }

}  // namespace panonet::ops
