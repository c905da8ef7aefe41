// Input validation of the discriminative-loss op, shared by its CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

namespace panonet::ops {

// Throws (ValueError / TypeError on the Python side) with "expected ..., got ..." messages.
void check_discriminative_loss_inputs(const at::Tensor& embedding, const at::Tensor& instance_ids,
                                      double delta_v, double delta_d, double delta_r);

// Checks of the tensors the autograd formula hands to the backward kernel.
void check_discriminative_loss_backward_inputs(const at::Tensor& grad_losses,
                                               const at::Tensor& embedding,
                                               const at::Tensor& labels, const at::Tensor& offsets,
                                               const at::Tensor& means, const at::Tensor& mu_grads,
                                               const at::Tensor& counts);

// Raised by both kernels when they meet a non-finite embedding value.
[[noreturn]] void fail_non_finite_embedding();

}  // namespace panonet::ops
