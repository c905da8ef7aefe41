"""Helpers shared by the model, export and CLI tests."""

import pytest
import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial running statistics and affine parameters, in place.

    Freshly initialised BN layers are identities in eval mode (mean 0, var 1, weight 1, bias 0),
    which would hide a BN that is skipped, applied in training mode or mis-folded on export.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def assert_close_to_scale(actual, expected, rel: float, what: str) -> None:
    """max |actual - expected| <= rel * max |expected| (tolerance relative to the output scale)."""
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    scale = float(expected.abs().max())
    err = float((actual - expected).abs().max())
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:g} * scale {scale:.3g}"


@pytest.fixture(scope="module", autouse=False)
def native_cpu_convolutions():
    """Run a test module with oneDNN (mkldnn) convolutions off, restoring the flag afterwards.

    These tests run a 13 M-parameter network on tiny inputs (64 x 96) at many shapes; there
    oneDNN's per-shape primitive creation costs seconds per first forward on a 2-core machine,
    far more than the convolutions themselves. PyTorch's native CPU convolutions compute the
    same function; the comparisons here (surgery, exports) are between two runs of one path.
    """
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
