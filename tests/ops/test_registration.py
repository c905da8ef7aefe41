"""Every panonet op has its CPU kernel, and its CUDA kernel exactly when CUDA was built."""

import os

import pytest
import torch

from panonet.ops import built_with_cuda

OPS = sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith("panonet::"))


def test_ops_are_registered():
    assert "panonet::discriminative_loss" in OPS
    assert "panonet::discriminative_loss_backward" in OPS


@pytest.mark.parametrize("op", OPS)
def test_kernels_per_device(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA") == built_with_cuda()


@pytest.mark.skipif(not os.environ.get("PANONET_EXPECT_CUDA"), reason="PANONET_EXPECT_CUDA unset")
def test_cuda_was_built_when_expected():
    assert built_with_cuda(), "PANONET_EXPECT_CUDA is set but panonet._C has no CUDA kernels"
