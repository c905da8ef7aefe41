#include "mean_shift_checks.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_and.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

namespace panonet::ops {
namespace {

constexpr const char* kMeanShift = "panonet.ops.mean_shift: ";
constexpr const char* kCluster = "panonet.ops.cluster_instances: ";

void check_iterations(const char* op, int64_t min_bin_freq, int64_t max_iter) {
  TORCH_CHECK_VALUE(min_bin_freq >= 1, op, "expected min_bin_freq >= 1, got ", min_bin_freq);
  TORCH_CHECK_VALUE(max_iter >= 0, op, "expected max_iter >= 0, got ", max_iter);
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

}  // namespace

void check_mean_shift_inputs(const at::Tensor& points, double bandwidth, int64_t min_bin_freq,
                             int64_t max_iter) {
  TORCH_CHECK_VALUE(points.dim() == 2, kMeanShift, "expected points of shape (N, D), got a ",
                    points.dim(), "-D tensor of shape ", points.sizes());
  TORCH_CHECK_TYPE(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
                   kMeanShift, "expected points of dtype float32 or float64, got ",
                   points.scalar_type());
  TORCH_CHECK_VALUE(points.size(1) >= 1, kMeanShift,
                    "expected points with at least one feature (D >= 1), got shape ",
                    points.sizes());
  TORCH_CHECK_VALUE(std::isfinite(bandwidth) && bandwidth > 0, kMeanShift,
                    "expected a finite bandwidth > 0, got ", bandwidth);
  check_iterations(kMeanShift, min_bin_freq, max_iter);
}

std::pair<at::Tensor, at::Tensor> check_cluster_instances_inputs(
    const at::Tensor& embedding, const at::Tensor& semantic, const at::Tensor& bandwidth,
    int64_t min_bin_freq, int64_t max_iter, bool check_device_values) {
  TORCH_CHECK_VALUE(embedding.dim() == 3 || embedding.dim() == 4, kCluster,
                    "expected embedding of shape (B, D, H, W) or (D, H, W), got a ",
                    embedding.dim(), "-D tensor of shape ", embedding.sizes());
  const bool batched = embedding.dim() == 4;
  TORCH_CHECK_VALUE(semantic.dim() == embedding.dim() - 1, kCluster,
                    "expected semantic of shape ", batched ? "(B, H, W)" : "(H, W)",
                    " for an embedding of shape ", embedding.sizes(), ", got a ", semantic.dim(),
                    "-D tensor of shape ", semantic.sizes());
  TORCH_CHECK_TYPE(is_float(embedding.scalar_type()), kCluster,
                   "expected embedding of dtype float16, bfloat16, float32 or float64, got ",
                   embedding.scalar_type());
  TORCH_CHECK_TYPE(at::isIntegralType(semantic.scalar_type(), /*includeBool=*/false), kCluster,
                   "expected semantic of an integer dtype (class ids), got ",
                   semantic.scalar_type());
  TORCH_CHECK_TYPE(is_float(bandwidth.scalar_type()), kCluster,
                   "expected bandwidth of a floating dtype, got ", bandwidth.scalar_type());
  TORCH_CHECK_VALUE(bandwidth.dim() == 1, kCluster,
                    "expected bandwidth of shape (num_classes,), got shape ", bandwidth.sizes());
  const at::Tensor emb = batched ? embedding : embedding.unsqueeze(0);
  const at::Tensor sem = batched ? semantic : semantic.unsqueeze(0);
  TORCH_CHECK_VALUE(sem.size(0) == emb.size(0) && sem.size(1) == emb.size(2) &&
                        sem.size(2) == emb.size(3),
                    kCluster, "expected semantic of shape ",
                    batched ? at::IntArrayRef({emb.size(0), emb.size(2), emb.size(3)})
                            : at::IntArrayRef({emb.size(2), emb.size(3)}),
                    " to match embedding of shape ", embedding.sizes(), ", got ",
                    semantic.sizes());
  TORCH_CHECK_VALUE(emb.size(1) >= 1, kCluster,
                    "expected an embedding dimension D >= 1, got embedding of shape ",
                    embedding.sizes());
  TORCH_CHECK_VALUE(embedding.device() == semantic.device(), kCluster,
                    "expected embedding and semantic on the same device, got ",
                    embedding.device(), " and ", semantic.device());
  TORCH_CHECK_VALUE(bandwidth.is_cpu() || bandwidth.device() == embedding.device(), kCluster,
                    "expected bandwidth on the CPU or on the embedding's device (",
                    embedding.device(), "), got ", bandwidth.device());
  check_iterations(kCluster, min_bin_freq, max_iter);
  if (check_device_values || bandwidth.is_cpu()) check_all_finite(bandwidth, kCluster, "bandwidth");
  if ((check_device_values || sem.is_cpu()) && sem.numel() > 0) {
    const int64_t num_classes = bandwidth.size(0);
    // Values in [num_classes, 255) are classes the bandwidth table does not cover: a mistake.
    const int64_t limit = std::max(num_classes, kIgnoreFrom);
    const at::Tensor beyond = at::logical_and(sem >= num_classes, sem < limit);
    if (num_classes < kIgnoreFrom && beyond.any().item<bool>()) {
      const int64_t first = sem.masked_select(beyond).min().item<int64_t>();
      TORCH_CHECK_VALUE(false, kCluster, "bandwidth has ", num_classes,
                        " entries (one per class) but semantic contains class ", first,
                        "; expected a bandwidth for every class id below ", kIgnoreFrom,
                        " that occurs (<= 0 for classes not to cluster; ids >= ", kIgnoreFrom,
                        " and negative ids are ignored)");
    }
  }
  return {emb, sem};
}

void check_nearest_by_projection_inputs(const at::Tensor& points, const at::Tensor& centers) {
  TORCH_CHECK_VALUE(points.dim() == 2 && centers.dim() == 2 && points.size(1) == centers.size(1),
                    "panonet._nearest_by_projection: expected points (N, D) and centers (K, D), "
                    "got ", points.sizes(), " and ", centers.sizes());
}

void check_all_finite(const at::Tensor& values, const char* op, const char* what) {
  if (values.numel() == 0) return;
  bool finite;
  if (values.is_cpu() && values.is_contiguous() && values.scalar_type() == at::kDouble) {
    // One pass without temporaries (isfinite().all() allocated a bool tensor and read the
    // data twice). The test is an AND of comparisons (false for NaN and Inf), which the
    // compiler vectorizes; a sum of x - x would be one chain of dependent additions.
    const double* x = values.const_data_ptr<double>();
    finite = at::parallel_reduce(
        0, values.numel(), 1 << 16, true,
        [&](int64_t i0, int64_t i1, bool ok) {
          bool all = true;
          for (int64_t i = i0; i < i1; ++i) {
            all &= std::fabs(x[i]) <= std::numeric_limits<double>::max();
          }
          return ok && all;
        },
        [](bool a, bool b) { return a && b; });
  } else {
    finite = at::isfinite(values).all().item<bool>();
  }
  TORCH_CHECK_VALUE(finite, op, "expected a finite ", what, ", got NaN or Inf values");
}

}  // namespace panonet::ops
