// CPU kernel of panonet::mean_shift: exact sklearn-semantics mean-shift (see mean_shift_core).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../mean_shift_checks.h"
#include "mean_shift_core.h"

namespace panonet::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> mean_shift_cpu(const at::Tensor& points, double bandwidth,
                                                  bool bin_seeding, int64_t min_bin_freq,
                                                  int64_t max_iter, bool cluster_all) {
  check_mean_shift_inputs(points, bandwidth, min_bin_freq, max_iter);
  const at::Tensor x = points.to(at::kDouble).contiguous();
  check_all_finite(x, "panonet.ops.mean_shift: ", "points");
  const int64_t n = x.size(0), D = x.size(1);
  ms::Result r = ms::mean_shift(x.data_ptr<double>(), n, D,
                                {bandwidth, bin_seeding, min_bin_freq, max_iter, cluster_all});
  at::Tensor labels = at::empty({n}, points.options().dtype(at::kLong));
  std::copy(r.labels.begin(), r.labels.end(), labels.data_ptr<int64_t>());
  at::Tensor centers = at::empty({r.num_centers, D}, points.options().dtype(at::kDouble));
  std::copy(r.centers.begin(), r.centers.end(), centers.data_ptr<double>());
  return {labels, centers.to(points.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) { m.impl("mean_shift", &mean_shift_cpu); }

}  // namespace panonet::ops
