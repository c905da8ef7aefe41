"""panonet.inference.guided_upsample: the semantic map from the logits, guided by the image."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.inference.guided_upsample import GuidedUpsampling, guided_semantic
from panonet.inference.merge import semantic_from_logits


def reference(logits: np.ndarray, image: np.ndarray, s: GuidedUpsampling) -> np.ndarray:
    """float64 joint bilateral upsampling written from the formula, pixel by pixel: returns
    the (B, C, H, W) weighted sums (before the argmax)."""
    B, C, h, w = logits.shape
    H, W = image.shape[1:3]
    rgb = image.astype(np.float64) / 255.0
    # Area averages of the image over each low-resolution pixel (adaptive average pooling:
    # rows floor(i H / h) .. ceil((i + 1) H / h)).
    guide = np.zeros((B, h, w, 3))
    for i in range(h):
        r0, r1 = (i * H) // h, -((-(i + 1) * H) // h)
        for j in range(w):
            c0, c1 = (j * W) // w, -((-(j + 1) * W) // w)
            guide[:, i, j] = rgb[:, r0:r1, c0:c1].mean(axis=(1, 2))
    half = s.window // 2
    out = np.zeros((B, C, H, W))
    for b in range(B):
        for y in range(H):
            py = (y + 0.5) * h / H - 0.5
            for x in range(W):
                px = (x + 0.5) * w / W - 0.5
                qs = [
                    (qy, qx)
                    for qy in range(math.floor(py) - half + 1, math.floor(py) + half + 1)
                    for qx in range(math.floor(px) - half + 1, math.floor(px) + half + 1)
                    if 0 <= qy < h and 0 <= qx < w
                ]
                d2 = {q: float(((rgb[b, y, x] - guide[b, q[0], q[1]]) ** 2).sum()) for q in qs}
                m = min(d2.values())
                for qy, qx in qs:
                    spatial = math.exp(
                        -((qy - py) ** 2 + (qx - px) ** 2) / (2 * s.sigma_spatial**2)
                    )
                    rng = math.exp(-(d2[(qy, qx)] - m) / (2 * s.sigma_range**2))
                    out[b, :, y, x] += spatial * rng * logits[b, :, qy, qx]
    return out


@hsettings(deadline=None, max_examples=25)
@given(
    b=st.integers(1, 2),
    c=st.integers(2, 4),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    fy=st.integers(1, 3),
    fx=st.integers(1, 3),
    extra=st.integers(0, 2),
    window=st.sampled_from([2, 4, 6]),
    sigma_spatial=st.sampled_from([0.5, 1.5]),
    sigma_range=st.sampled_from([0.05, 0.3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_guided_semantic_matches_the_formula(
    b, c, h, w, fy, fx, extra, window, sigma_spatial, sigma_range, seed
):
    rng = np.random.default_rng(seed)
    H, W = h * fy + extra, w * fx  # sizes that are and are not multiples of the grid
    logits = rng.normal(size=(b, c, h, w))
    image = rng.integers(0, 256, size=(b, H, W, 3), dtype=np.uint8)
    s = GuidedUpsampling(sigma_spatial, sigma_range, window)
    sums = reference(logits, image, s)
    got = guided_semantic(torch.from_numpy(logits), torch.from_numpy(image), s)
    assert got.dtype == torch.int64 and got.shape == (b, H, W)
    # The float64 op sums the same terms in another order (~1e-15 relative); only where the
    # reference's two best classes are that close could the argmax differ.
    top2 = np.sort(sums, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 1e-9 * (1 + np.abs(top2[:, 1]))
    assert np.array_equal(got.numpy()[decided], sums.argmax(axis=1)[decided])


def test_the_boundary_follows_the_image_where_bilinear_does_not():
    # 16x16 image, 4x4 logits: class 0 on low-res columns 0-1, class 1 on columns 2-3; the
    # image is red up to column 6 and blue from column 7, inside low-res column 1 (pixels 4-7).
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0, :, :2] = 1.0
    logits[0, 1, :, 2:] = 1.0
    image = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    image[0, :, :7, 0] = 255
    image[0, :, 7:, 2] = 255
    bilinear = semantic_from_logits(logits, (16, 16))[0]
    guided = guided_semantic(logits, image, GuidedUpsampling(1.5, 0.1, 4))[0]
    assert (bilinear[:, :8] == 0).all() and (bilinear[:, 8:] == 1).all()
    assert (guided[:, :7] == 0).all() and (guided[:, 7:] == 1).all()


def test_a_uniform_image_leaves_only_the_spatial_weights():
    # With one colour every range term is 1: the map is the argmax of Gaussian-weighted logits,
    # which on a single low-resolution pixel is that pixel's class everywhere.
    logits = torch.tensor([0.0, 2.0, 1.0]).view(1, 3, 1, 1)
    image = torch.full((1, 5, 7, 3), 90, dtype=torch.uint8)
    assert (guided_semantic(logits, image) == 1).all()


def test_colours_far_from_every_neighbour_do_not_underflow():
    # A pixel whose colour is far from every low-resolution average would have every range
    # weight exp(-3 / (2 * 0.01^2)) = 0 without the per-pixel minimum; it keeps its class.
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 1.0
    image = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    image[0, 3, 3] = 255
    got = guided_semantic(logits, image, GuidedUpsampling(1.0, 0.01, 2))
    assert (got == 1).all()


def test_dtypes_and_devices(device):
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(2, 5, 6, 8)).astype(np.float32))
    image = torch.from_numpy(rng.integers(0, 256, size=(2, 24, 32, 3), dtype=np.uint8))
    want = guided_semantic(logits.double(), image)
    got = guided_semantic(logits.to(device), image.to(device))
    assert got.device.type == device and got.dtype == torch.int64
    # float32 against float64 sums: equal up to near-ties (none expected on random logits).
    assert (got.cpu() != want).float().mean() < 1e-3
    half = guided_semantic(logits.to(device).half(), image.to(device))
    assert half.shape == (2, 24, 32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma_spatial": 0.0}, "finite sigma_spatial > 0, got 0.0"),
        ({"sigma_range": math.inf}, "finite sigma_range > 0, got inf"),
        ({"window": 3}, "even window >= 2, got 3"),
        ({"window": 0}, "even window >= 2, got 0"),
        ({"window": 4.0}, "even window >= 2, got 4.0"),
    ],
)
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuidedUpsampling(**kwargs)


def test_inputs_are_checked():
    logits = torch.zeros(1, 3, 4, 4)
    image = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(
        ValueError, match=r"floating logits of shape \(B, C, h, w\), got torch.int64"
    ):
        guided_semantic(logits.long(), image)
    with pytest.raises(ValueError, match=r"uint8 image of shape \(B, H, W, 3\), got torch.float32"):
        guided_semantic(logits, image.float())
    with pytest.raises(
        ValueError, match=r"uint8 image .* got torch.uint8 of shape \(1, 3, 16, 16\)"
    ):
        guided_semantic(logits, image.permute(0, 3, 1, 2))
    with pytest.raises(
        ValueError, match=r"image of shape \(1, >= 4, >= 4, 3\) .* got \(2, 16, 16, 3\)"
    ):
        guided_semantic(logits, image.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match=r"got \(1, 2, 16, 3\)"):
        guided_semantic(logits, image[:, :2])
