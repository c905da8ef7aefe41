"""panonet.ops.upsample_argmax: the class of bilinearly upsampled logits, fused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import upsample_argmax
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet.upsample_argmax.default

# Each blended value is a convex combination of four logits: float32 weights (rounded once,
# relative error 2^-24) and three blends of two products and a sum, each rounded to float32
# (2^-24 of at most max|logit|): under 1e-6 * max|logit| per value, so two classes' order can
# differ from exact arithmetic only where their exact values are within 2e-6 * max|logit|;
# 4e-6 leaves a factor of two.
TIE_TOL = 4e-6


def reference(logits: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact bilinear values (float64, half-pixel centres, clamped at the border, from the
    definition of align_corners=False) of (B, C, h, w) logits at (H, W): (B, C, H, W)."""
    x = logits.astype(np.float64)
    _, _, h, w = x.shape

    def taps(n: int, N: int):
        s = np.maximum((np.arange(N) + 0.5) * n / N - 0.5, 0.0)
        lo = np.minimum(np.floor(s).astype(np.int64), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        frac = s - lo
        return lo, hi, 1 - frac, frac

    y0, y1, wy0, wy1 = taps(h, H)
    x0, x1, wx0, wx1 = taps(w, W)
    rows = x[:, :, y0, :] * wy0[:, None] + x[:, :, y1, :] * wy1[:, None]
    return rows[..., x0] * wx0 + rows[..., x1] * wx1


def assert_argmax_up_to_ties(got: torch.Tensor, values: np.ndarray, scale: float) -> None:
    """``got`` is an argmax of ``values`` (B, C, H, W) wherever the best class leads the others
    by more than TIE_TOL * scale; where it does not, ``got`` is one of the near-best classes."""
    got = got.cpu().numpy()
    best = values.max(axis=1)
    chosen = np.take_along_axis(values, got[:, None], axis=1)[:, 0]
    assert (chosen >= best - TIE_TOL * scale).all(), "a class far below the best was chosen"


def logits_strategy():
    return st.tuples(
        st.integers(1, 2),
        st.integers(1, 5),
        st.integers(1, 7),
        st.integers(1, 7),
        st.integers(1, 20),
        st.integers(1, 20),
        st.integers(0, 2**32 - 1),
    )


@hsettings(deadline=None)
@given(logits_strategy())
def test_matches_exact_bilinear_up_to_float32_ties(case):
    B, C, h, w, H, W, seed = case
    x = np.random.default_rng(seed).normal(size=(B, C, h, w)).astype(np.float32)
    got = upsample_argmax(torch.from_numpy(x), (H, W))
    assert got.shape == (B, H, W) and got.dtype == torch.int64
    assert_argmax_up_to_ties(got, reference(x, H, W), float(np.abs(x).max()))


@pytest.mark.parametrize("device", DEVICES)
def test_predictor_scale_matches_interpolate_then_max(device):
    # The Predictor's case: 19 classes at 1/4 of the output. F.interpolate rounds its own way, so
    # both are compared against the exact values, and to each other away from near ties.
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 19, 24, 40, generator=g)).to(device)
    got = upsample_argmax(x, (96, 160))
    torch_way = F.interpolate(x, size=(96, 160), mode="bilinear", align_corners=False).max(1)
    exact = reference(x.cpu().numpy(), 96, 160)
    scale = float(x.abs().max())
    assert_argmax_up_to_ties(got, exact, scale)
    assert_argmax_up_to_ties(torch_way.indices, exact, scale)
    srt = np.sort(exact, axis=1)
    clear = srt[:, -1] - srt[:, -2] > TIE_TOL * scale
    assert clear.mean() > 0.99
    assert (got.cpu().numpy()[clear] == torch_way.indices.cpu().numpy()[clear]).all()


def test_downsampling_and_odd_sizes():
    x = torch.randn(1, 4, 9, 13, generator=torch.Generator().manual_seed(1))
    for H, W in [(4, 5), (9, 13), (17, 3), (1, 1), (30, 31)]:
        assert_argmax_up_to_ties(
            upsample_argmax(x, (H, W)), reference(x.numpy(), H, W), float(x.abs().max())
        )


def test_same_size_is_the_plain_argmax():
    x = torch.randn(2, 6, 8, 11, generator=torch.Generator().manual_seed(2))
    assert torch.equal(upsample_argmax(x, (8, 11)), x.max(1).indices)


def test_ties_go_to_the_first_class():
    x = torch.randn(1, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    x[:, 2] = x[:, 1] = x[:, 0].max() + 1  # classes 1 and 2 equal everywhere and the best
    assert (upsample_argmax(x, (20, 24)) == 1).all()


def test_nan_wins_like_torch_max():
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    x[0, 2, 1, 1] = float("nan")
    got = upsample_argmax(x, (16, 16))
    up = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    nan_pixels = up.isnan().any(1)[0]
    assert nan_pixels.any() and (got[0][nan_pixels] == 2).all()
    assert (got[0][~nan_pixels] == up.max(1).indices[0][~nan_pixels]).float().mean() > 0.99


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(device, dtype):
    x = torch.randn(2, 5, 6, 9, generator=torch.Generator().manual_seed(5)).to(device, dtype)
    got = upsample_argmax(x, (21, 33))
    if dtype == torch.float64:
        assert_argmax_up_to_ties(got, reference(x.cpu().numpy(), 21, 33), float(x.abs().max()))
    else:
        # float16 / bfloat16 are computed in float32: the same classes as their float32 values.
        assert torch.equal(got, upsample_argmax(x.float(), (21, 33)))


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_and_noncontiguous(device):
    x = torch.randn(2, 7, 10, 12, generator=torch.Generator().manual_seed(6)).to(device)
    want = upsample_argmax(x, (25, 31))
    assert torch.equal(upsample_argmax(x[1], (25, 31)), want[1])
    assert torch.equal(
        upsample_argmax(x.contiguous(memory_format=torch.channels_last), (25, 31)), want
    )
    wide = torch.randn(2, 7, 10, 24, device=device)
    wide[..., ::2] = x
    assert torch.equal(upsample_argmax(wide[..., ::2], (25, 31)), want)


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    x = torch.randn(2, 3, 4, 5, device=device)
    assert upsample_argmax(x, (0, 7)).shape == (2, 0, 7)
    assert upsample_argmax(x[:0], (6, 7)).shape == (0, 6, 7)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.randn(2, 4, 6, 8, device=device)
    torch.library.opcheck(OP, (x, [12, 16]))
    torch.library.opcheck(OP, (x[0], [12, 16]))


@pytest.mark.parametrize(
    "logits, size, error, pattern",
    [
        (torch.zeros(4, 4), (8, 8), ValueError, r"\(B, C, h, w\) or \(C, h, w\), got a 2-D"),
        (torch.zeros(1, 2, 4, 4, dtype=torch.int64), (8, 8), TypeError, "got Long"),
        (torch.zeros(1, 0, 4, 4), (8, 8), ValueError, "at least one class"),
        (torch.zeros(1, 2, 0, 4), (8, 8), ValueError, "non-empty h x w"),
        (torch.zeros(1, 2, 4, 4), (-1, 8), ValueError, r"ints >= 0, got \[-1, 8\]"),
        (torch.zeros(1, 2, 4, 4), (8,), ValueError, r"expected size \(H, W\)"),
    ],
)
def test_bad_inputs(logits, size, error, pattern):
    with pytest.raises(error, match=pattern):
        upsample_argmax(logits, size)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_cuda_matches_cpu_exactly(dtype):
    # The same float operations in the same order on both (no FMA contraction in either file).
    x = (4 * torch.randn(3, 19, 64, 128, generator=torch.Generator().manual_seed(7))).to(dtype)
    for size in [(256, 512), (250, 509), (64, 128), (31, 47)]:
        assert torch.equal(upsample_argmax(x.cuda(), size).cpu(), upsample_argmax(x, size))
