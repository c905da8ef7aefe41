// CUDA kernel of panonet::mean_shift: one group of the batched GPU mean-shift (mean_shift_core).
#include <ATen/ATen.h>
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
  const auto r = ms::cuda::mean_shift_groups(x, {0, x.size(0)}, {bandwidth},
                                             {bin_seeding, min_bin_freq, max_iter, cluster_all});
  return {r.labels, r.centers.to(points.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("mean_shift", &mean_shift_cuda); }

}  // namespace panonet::ops
