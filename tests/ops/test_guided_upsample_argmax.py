"""panonet.ops.guided_upsample_argmax: the class of logits upsampled along the image's edges."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import guided_upsample_argmax, upsample_argmax
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet.guided_upsample_argmax.default

# A class's sum is a convex-ish combination of at most 64 logits with weights in (0, 1]: each
# float32 weight carries ~2 ulp of exp and product rounding and each of the <= 64 additions one
# more, so a float32 sum is within ~70 * 2^-24 ~ 4e-6 of exact times sum(w) * max|logit|. The
# op and the float64 reference can then only disagree where two classes' exact sums are within
# ~1e-5 of that scale.
TIE_TOL = 1e-5


def reference(logits: np.ndarray, image: np.ndarray, ss: float, sr: float, window: int):
    """float64 joint bilateral sums written from the formula, pixel by pixel: (B, C, H, W) sums
    and (B, H, W) sums of the weights (the scale of a sum)."""
    B, C, h, w = logits.shape
    H, W = image.shape[1:3]
    rgb = image.astype(np.float64) / 255.0
    # Area averages over each grid pixel (adaptive average pooling: rows floor(i H / h) to
    # ceil((i + 1) H / h)).
    guide = np.zeros((B, h, w, 3))
    for i in range(h):
        r0, r1 = (i * H) // h, -((-(i + 1) * H) // h)
        for j in range(w):
            c0, c1 = (j * W) // w, -((-(j + 1) * W) // w)
            guide[:, i, j] = rgb[:, r0:r1, c0:c1].mean(axis=(1, 2))
    half = window // 2
    sums, total = np.zeros((B, C, H, W)), np.zeros((B, H, W))
    for b in range(B):
        for y in range(H):
            py = (y + 0.5) * h / H - 0.5
            for x in range(W):
                px = (x + 0.5) * w / W - 0.5
                for qy in range(math.floor(py) - half + 1, math.floor(py) + half + 1):
                    for qx in range(math.floor(px) - half + 1, math.floor(px) + half + 1):
                        if not (0 <= qy < h and 0 <= qx < w):
                            continue
                        d2 = float(((rgb[b, y, x] - guide[b, qy, qx]) ** 2).sum())
                        e = ((qy - py) ** 2 + (qx - px) ** 2) / (2 * ss**2) + d2 / (2 * sr**2)
                        wgt = math.exp(-e)
                        sums[b, :, y, x] += wgt * logits[b, :, qy, qx]
                        total[b, y, x] += wgt
    return sums, total


def assert_argmax_up_to_ties(got, sums, total, scale):
    """``got`` is an argmax of ``sums`` wherever the best class leads by more than TIE_TOL of
    the sum's scale; elsewhere one of the near-best classes. Pixels whose weights all underflow
    in float64 (total 0) are not judged."""
    got = got.cpu().numpy()
    best = sums.max(axis=1)
    chosen = np.take_along_axis(sums, got[:, None], axis=1)[:, 0]
    judged = total > 0
    tol = TIE_TOL * np.maximum(total, 1e-300) * scale
    assert (chosen >= best - tol)[judged].all(), "a class far below the best was chosen"


@hsettings(deadline=None, max_examples=30)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    H=st.integers(1, 11),
    W=st.integers(1, 11),
    window=st.sampled_from([2, 4, 6, 8]),
    ss=st.sampled_from([0.5, 1.5, 3.0]),
    sr=st.sampled_from([0.05, 0.3, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_the_formula(b, c, h, w, H, W, window, ss, sr, seed):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.normal(size=(b, c, h, w))
    image = rng.integers(0, 256, size=(b, H, W, 3), dtype=np.uint8)
    sums, total = reference(logits, image, ss, sr, window)
    for dtype in (torch.float64, torch.float32):
        got = guided_upsample_argmax(
            torch.from_numpy(logits).to(dtype), torch.from_numpy(image), ss, sr, window
        )
        assert got.dtype == torch.int64 and got.shape == (b, H, W)
        assert_argmax_up_to_ties(got, sums, total, float(np.abs(logits).max()))


def test_the_boundary_follows_the_image_where_bilinear_does_not():
    # 16x16 image, 4x4 logits: class 0 on grid columns 0-1, class 1 on 2-3; the image is red up
    # to column 6 and blue from column 7, inside grid column 1 (pixels 4-7).
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0, :, :2] = 1.0
    logits[0, 1, :, 2:] = 1.0
    image = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    image[0, :, :7, 0] = 255
    image[0, :, 7:, 2] = 255
    bilinear = upsample_argmax(logits, (16, 16))[0]
    guided = guided_upsample_argmax(logits, image, 1.5, 0.1, 4)[0]
    assert (bilinear[:, :8] == 0).all() and (bilinear[:, 8:] == 1).all()
    assert (guided[:, :7] == 0).all() and (guided[:, 7:] == 1).all()


def test_a_uniform_image_leaves_only_the_spatial_weights():
    # One colour: every range term is equal, and a single grid pixel decides everywhere.
    logits = torch.tensor([0.0, 2.0, 1.0]).view(1, 3, 1, 1)
    image = torch.full((1, 5, 7, 3), 90, dtype=torch.uint8)
    assert (guided_upsample_argmax(logits, image, 1.0, 0.05, 2) == 1).all()


def test_weights_that_would_underflow_keep_their_class():
    # exp(-3 / (2 * 0.01^2)) and exp(-9 / (2 * 0.01^2)) are 0 in float64: without the division
    # by the largest weight every sum would be 0 and class 0 would win everywhere.
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 1.0
    image = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    image[0, 3, 3] = 255
    assert (guided_upsample_argmax(logits, image, 0.01, 0.01, 2) == 1).all()


def test_ties_go_to_the_first_class_and_nan_wins():
    logits = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    logits[:, 2] = logits[:, 1] = logits[:, 0].abs().max() + 1
    image = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    assert (guided_upsample_argmax(logits, image, 1.0, 0.1, 4) == 1).all()
    logits[0, 2, 1, 1] = float("nan")
    got = guided_upsample_argmax(logits, image, 1.0, 0.1, 4)[0]
    assert (got[:8, :8] == 2).all()  # every pixel whose window holds the NaN


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_and_devices(device, dtype):
    g = torch.Generator().manual_seed(5)
    logits = (3 * torch.randn(2, 5, 6, 9, generator=g)).to(dtype)
    image = torch.randint(0, 256, (2, 23, 35, 3), dtype=torch.uint8, generator=g)
    got = guided_upsample_argmax(logits.to(device), image.to(device), 2.0, 0.05, 6)
    assert got.device.type == device and got.dtype == torch.int64 and got.shape == (2, 23, 35)
    sums, total = reference(logits.double().numpy(), image.numpy(), 2.0, 0.05, 6)
    assert_argmax_up_to_ties(got, sums, total, float(logits.double().abs().max()))


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs(device):
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 7, 10, 12, generator=g).to(device)
    image = torch.randint(0, 256, (2, 40, 48, 3), dtype=torch.uint8, generator=g).to(device)
    want = guided_upsample_argmax(logits, image, 2.0, 0.05, 6)
    channels_last = logits.contiguous(memory_format=torch.channels_last)
    assert torch.equal(guided_upsample_argmax(channels_last, image, 2.0, 0.05, 6), want)
    planar = image.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # HWC view of CHW
    assert not planar.is_contiguous()
    assert torch.equal(guided_upsample_argmax(logits, planar, 2.0, 0.05, 6), want)


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    logits = torch.randn(2, 3, 4, 5, device=device)
    image = torch.zeros(2, 0, 7, 3, dtype=torch.uint8, device=device)
    assert guided_upsample_argmax(logits, image, 2.0, 0.05, 6).shape == (2, 0, 7)
    none = torch.zeros(0, 6, 7, 3, dtype=torch.uint8, device=device)
    assert guided_upsample_argmax(logits[:0], none, 2.0, 0.05, 6).shape == (0, 6, 7)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    logits = torch.randn(2, 4, 6, 8, device=device)
    image = torch.randint(0, 256, (2, 24, 32, 3), dtype=torch.uint8, device=device)
    torch.library.opcheck(OP, (logits, image, 2.0, 0.05, 6))


IMAGE = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)


@pytest.mark.parametrize(
    "logits, image, args, error, pattern",
    [
        (torch.zeros(2, 4, 4), IMAGE, (1.0, 0.1, 4), ValueError, r"\(B, C, h, w\), got a 3-D"),
        (torch.zeros(1, 2, 4, 4).long(), IMAGE, (1.0, 0.1, 4), TypeError, "got Long"),
        (torch.zeros(1, 0, 4, 4), IMAGE, (1.0, 0.1, 4), ValueError, "at least one class"),
        (
            torch.zeros(1, 2, 4, 4),
            IMAGE.float(),
            (1.0, 0.1, 4),
            TypeError,
            "uint8 image, got Float",
        ),
        (
            torch.zeros(1, 2, 4, 4),
            IMAGE.permute(0, 3, 1, 2),
            (1.0, 0.1, 4),
            ValueError,
            r"image of shape \(1, H, W, 3\) for logits of shape \[1, 2, 4, 4\], got shape "
            r"\[1, 3, 8, 8\]",
        ),
        (torch.zeros(2, 2, 4, 4), IMAGE, (1.0, 0.1, 4), ValueError, r"\(2, H, W, 3\)"),
        (torch.zeros(1, 2, 4, 4), IMAGE, (0.0, 0.1, 4), ValueError, "sigma_spatial > 0 .* got 0"),
        (torch.zeros(1, 2, 4, 4), IMAGE, (1.0, math.nan, 4), ValueError, "got 1 and nan"),
        (
            torch.zeros(1, 2, 4, 4),
            IMAGE,
            (1.0, 0.1, 3),
            ValueError,
            r"even window in \[2, 8\], got 3",
        ),
        (torch.zeros(1, 2, 4, 4), IMAGE, (1.0, 0.1, 10), ValueError, "got 10"),
    ],
)
def test_bad_inputs(logits, image, args, error, pattern):
    with pytest.raises(error, match=pattern):
        guided_upsample_argmax(logits, image, *args)
    with pytest.raises(
        TypeError, match="expected logits and image as tensors, got Tensor and list"
    ):
        guided_upsample_argmax(torch.zeros(1, 2, 4, 4), [], 1.0, 0.1, 4)


@requires_cuda
def test_image_on_another_device():
    with pytest.raises(ValueError, match="expected the image on the logits' device cuda"):
        guided_upsample_argmax(torch.zeros(1, 2, 4, 4, device="cuda"), IMAGE, 1.0, 0.1, 4)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_cuda_matches_cpu_up_to_exp_rounding(dtype):
    # The same sums in the same order on both (no FMA contraction in either file); only exp
    # may round differently (a few ulp of a weight), which can move only near-ties.
    g = torch.Generator().manual_seed(7)
    logits = (4 * torch.randn(2, 19, 64, 128, generator=g)).to(dtype)
    image = torch.randint(0, 256, (2, 256, 512, 3), dtype=torch.uint8, generator=g)
    cpu = guided_upsample_argmax(logits, image, 2.0, 0.05, 6)
    cuda = guided_upsample_argmax(logits.cuda(), image.cuda(), 2.0, 0.05, 6).cpu()
    assert (cpu != cuda).float().mean() < 1e-4
