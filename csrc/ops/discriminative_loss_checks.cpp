#include "discriminative_loss_checks.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

namespace panonet::ops {
namespace {

constexpr const char* kOp = "panonet.ops.discriminative_loss: ";

void check_margin(const char* name, double value) {
  TORCH_CHECK_VALUE(std::isfinite(value) && value >= 0, kOp, "expected ", name,
                    " to be a finite number >= 0, got ", value);
}

}  // namespace

void check_discriminative_loss_inputs(const at::Tensor& embedding, const at::Tensor& instance_ids,
                                      double delta_v, double delta_d, double delta_r) {
  TORCH_CHECK_VALUE(embedding.dim() == 4, kOp,
                    "expected embedding of shape (B, D, H, W), got a ", embedding.dim(),
                    "-D tensor of shape ", embedding.sizes());
  TORCH_CHECK_VALUE(instance_ids.dim() == 3, kOp,
                    "expected instance_ids of shape (B, H, W), got a ", instance_ids.dim(),
                    "-D tensor of shape ", instance_ids.sizes());
  const auto st = embedding.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
                   kOp, "expected embedding of dtype float16, bfloat16, float32 or float64, got ",
                   st);
  const auto it = instance_ids.scalar_type();
  TORCH_CHECK_TYPE(it == at::kInt || it == at::kLong, kOp,
                   "expected instance_ids of an integer dtype (int32 or int64), got ", it);
  TORCH_CHECK_VALUE(instance_ids.size(0) == embedding.size(0) &&
                        instance_ids.size(1) == embedding.size(2) &&
                        instance_ids.size(2) == embedding.size(3),
                    kOp, "expected instance_ids of shape (B, H, W) = [", embedding.size(0), ", ",
                    embedding.size(2), ", ", embedding.size(3), "] to match embedding of shape ",
                    embedding.sizes(), ", got ", instance_ids.sizes());
  TORCH_CHECK_VALUE(embedding.size(1) >= 1, kOp,
                    "expected an embedding dimension D >= 1, got embedding of shape ",
                    embedding.sizes());
  TORCH_CHECK_VALUE(embedding.device() == instance_ids.device(), kOp,
                    "expected embedding and instance_ids on the same device, got ",
                    embedding.device(), " and ", instance_ids.device());
  TORCH_CHECK_VALUE(instance_ids.numel() < std::numeric_limits<int32_t>::max(), kOp,
                    "expected fewer than 2^31 pixels in the batch, got instance_ids of shape ",
                    instance_ids.sizes());
  check_margin("delta_v", delta_v);
  check_margin("delta_d", delta_d);
  check_margin("delta_r", delta_r);
  TORCH_CHECK_VALUE(delta_d > delta_v, kOp,
                    "expected delta_d > delta_v (clusters must be pushed apart farther than "
                    "their pixels are pulled in), got delta_d=",
                    delta_d, " and delta_v=", delta_v);
}

void check_discriminative_loss_backward_inputs(const at::Tensor& grad_losses,
                                               const at::Tensor& embedding,
                                               const at::Tensor& labels, const at::Tensor& offsets,
                                               const at::Tensor& means, const at::Tensor& mu_grads,
                                               const at::Tensor& counts) {
  const int64_t B = embedding.size(0);
  const int64_t D = embedding.size(1);
  TORCH_CHECK_VALUE(grad_losses.dim() == 2 && grad_losses.size(0) == B && grad_losses.size(1) == 3,
                    kOp, "expected grad_losses of shape [", B, ", 3], got ", grad_losses.sizes());
  TORCH_CHECK_VALUE(labels.scalar_type() == at::kInt && labels.dim() == 3 &&
                        labels.size(0) == B && labels.size(1) == embedding.size(2) &&
                        labels.size(2) == embedding.size(3),
                    kOp, "expected int32 labels of shape [", B, ", ", embedding.size(2), ", ",
                    embedding.size(3), "], got ", labels.scalar_type(), " ", labels.sizes());
  TORCH_CHECK_VALUE(offsets.scalar_type() == at::kLong && offsets.dim() == 1 &&
                        offsets.size(0) == B + 1,
                    kOp, "expected int64 offsets of shape [", B + 1, "], got ",
                    offsets.scalar_type(), " ", offsets.sizes());
  const int64_t K = means.size(0);
  TORCH_CHECK_VALUE(means.dim() == 2 && means.size(1) == D, kOp, "expected means of shape [K, ", D,
                    "], got ", means.sizes());
  TORCH_CHECK_VALUE(mu_grads.dim() == 3 && mu_grads.size(0) == K && mu_grads.size(1) == 3 &&
                        mu_grads.size(2) == D,
                    kOp, "expected mu_grads of shape [", K, ", 3, ", D, "], got ",
                    mu_grads.sizes());
  TORCH_CHECK_VALUE(means.scalar_type() == mu_grads.scalar_type(), kOp,
                    "expected means and mu_grads of one dtype, got ", means.scalar_type(), " and ",
                    mu_grads.scalar_type());
  TORCH_CHECK_VALUE(counts.scalar_type() == at::kLong && counts.dim() == 1 && counts.size(0) == K,
                    kOp, "expected int64 counts of shape [", K, "], got ", counts.scalar_type(),
                    " ", counts.sizes());
  for (const at::Tensor* t : {&grad_losses, &labels, &offsets, &means, &mu_grads, &counts}) {
    TORCH_CHECK_VALUE(t->device() == embedding.device(), kOp,
                      "expected every backward input on ", embedding.device(), ", got one on ",
                      t->device());
  }
}

void fail_non_finite_embedding() {
  TORCH_CHECK_VALUE(false, kOp,
                    "expected a finite embedding, got NaN or Inf values (a diverged network? "
                    "torch.autograd.detect_anomaly() finds where they appear)");
}

}  // namespace panonet::ops
