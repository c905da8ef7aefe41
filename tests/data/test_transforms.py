"""Training augmentation: nearest labels, crop bookkeeping (offset / full_size), flip, seeding."""

import pytest
import torch

from panonet.data.augment import RandomScaleCrop, train_transforms
from panonet.data.transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    collate,
    resize_labels,
)
from panonet.inference.merge import resize_labels as merge_resize_labels

H, W = 20, 30


def _item(seed: int = 0, h: int = H, w: int = W) -> dict:
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, 19, (h, w), generator=g)
    semantic[0] = 255
    instance = torch.full((h, w), -1, dtype=torch.int64)
    instance[h // 4 : h // 2, w // 5 : w // 2] = 26001
    instance[h // 2 :, w // 2 :] = 24000
    return {
        "image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
        "semantic": semantic,
        "instance": instance,
        "file": f"img{seed}.png",
    }


def _window(x: torch.Tensor, offset, size) -> torch.Tensor:
    (y0, x0), (h, w) = offset.tolist(), size
    return x[..., y0 : y0 + h, x0 : x0 + w]


def test_resize_labels_has_one_implementation():
    assert merge_resize_labels is resize_labels


@pytest.mark.parametrize("scale", [0.37, 0.8, 1.6, 2.3])
def test_scale_labels_are_nearest(scale):
    item = _item()
    out = RandomScale(scale)(item)
    size = (round(H * scale), round(W * scale))
    assert out["image"].shape == (3, *size) and out["image"].dtype == torch.uint8
    for key in ("semantic", "instance"):
        assert out[key].shape == size and out[key].dtype == torch.int64
        # Nearest neighbour: no value that was not there before (bilinear would invent some).
        assert set(out[key].unique().tolist()) <= set(item[key].unique().tolist())
        assert torch.equal(out[key], resize_labels(item[key], size))
    assert out["file"] == item["file"]


def test_scale_by_two_repeats_pixels():
    item = _item()
    out = RandomScale(2.0)(item)
    want = item["instance"].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out["instance"], want)


def test_crop_equals_region_of_scaled_full_image():
    g = torch.Generator()
    for seed in range(8):
        g.manual_seed(seed)
        state = g.get_state()
        out = Compose([RandomScale((0.6, 1.7), generator=g), RandomCrop((12, 16), generator=g)])(
            _item(seed)
        )
        g.set_state(state)  # replay the scale draw alone to get the full (scaled) image
        full = RandomScale((0.6, 1.7), generator=g)(_item(seed))
        assert out["offset"].dtype == out["full_size"].dtype == torch.int64
        assert out["full_size"].tolist() == list(full["image"].shape[-2:])
        y0, x0 = out["offset"].tolist()
        assert 0 <= y0 <= out["full_size"][0] - 12 and 0 <= x0 <= out["full_size"][1] - 16
        for key in ("image", "semantic", "instance"):
            assert out[key].shape[-2:] == (12, 16)
            assert torch.equal(out[key], _window(full[key], out["offset"], (12, 16)))


def test_crop_larger_than_image_pads_with_ignore():
    item = _item(h=10, w=20)
    out = RandomCrop((16, 12), generator=torch.Generator().manual_seed(1))(item)
    y0, x0 = out["offset"].tolist()
    assert y0 == 0 and 0 <= x0 <= 8
    assert out["full_size"].tolist() == [16, 20]  # padded height, real width
    assert (out["semantic"][10:] == 255).all() and (out["instance"][10:] == -1).all()
    assert (out["image"][:, 10:] == 0).all()
    assert torch.equal(out["semantic"][:10], item["semantic"][:, x0 : x0 + 12])
    assert torch.equal(out["image"][:, :10], item["image"][:, :, x0 : x0 + 12])


def test_crop_of_crop_composes_offsets():
    g = torch.Generator().manual_seed(3)
    item = _item()
    once = RandomCrop((15, 20), generator=g)(item)
    twice = RandomCrop((8, 9), generator=g)(once)
    assert twice["full_size"].tolist() == [H, W]
    assert torch.equal(twice["image"], _window(item["image"], twice["offset"], (8, 9)))


def test_scale_after_crop_is_refused():
    cropped = RandomCrop(8)(_item())
    with pytest.raises(ValueError, match="before RandomCrop"):
        RandomScale(1.5)(cropped)


def test_flip_mirrors_maps_and_offset():
    item = _item()
    flipped = RandomHorizontalFlip(1.0)(item)
    for key in ("image", "semantic", "instance"):
        assert torch.equal(flipped[key], item[key].flip(-1))
    assert "offset" not in flipped
    assert torch.equal(RandomHorizontalFlip(0.0)(item)["image"], item["image"])

    # A flipped crop is the crop of the flipped full image at the mirrored offset, so the
    # coordinates regenerated from `offset` are those of the flipped scene.
    crop = RandomCrop((10, 12), generator=torch.Generator().manual_seed(5))(item)
    fc = RandomHorizontalFlip(1.0)(crop)
    y0, x0 = crop["offset"].tolist()
    assert fc["offset"].tolist() == [y0, W - x0 - 12]
    assert torch.equal(fc["full_size"], crop["full_size"])
    for key in ("image", "semantic", "instance"):
        assert torch.equal(fc[key], _window(item[key].flip(-1), fc["offset"], (10, 12)))


def test_color_jitter_changes_image_only():
    item = _item()
    out = ColorJitter(0.5, 0.5, 0.5, generator=torch.Generator().manual_seed(0))(item)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == item["image"].shape
    assert not torch.equal(out["image"], item["image"])
    assert out["semantic"] is item["semantic"] and out["instance"] is item["instance"]
    assert torch.equal(ColorJitter(0, 0, 0)(item)["image"], item["image"])


@pytest.mark.parametrize("seed", range(8))
def test_color_jitter_is_the_definition_in_float64(seed):
    """Brightness scales, contrast blends with the image's mean luma, saturation with each
    pixel's luma (0.299 R + 0.587 G + 0.114 B), each clamped to [0, 255], then rounded: computed
    in float64 from the same draws, the uint8 results differ by at most one level (float32
    rounding near .5) and almost never."""
    item = _item(seed)
    out = ColorJitter(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(seed))(item)
    u = torch.rand(3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    b, c, s = (1.0 + 0.4 * (2.0 * u - 1.0)).tolist()

    def luma(x):
        return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]

    x = (item["image"].double() * b).clamp(0, 255)
    x = (c * x + (1 - c) * luma(x).mean()).clamp(0, 255)
    x = (s * x + (1 - s) * luma(x)).clamp(0, 255)
    difference = (out["image"].double() - x.round()).abs()
    assert difference.max() <= 1 and (difference > 0).float().mean() < 1e-3


def test_deterministic_under_manual_seed():
    pipeline = train_transforms((12, 16), scale=(0.5, 2.0))

    def run(seed):
        torch.manual_seed(seed)
        return [pipeline(_item(i)) for i in range(4)]

    a, b, c = run(0), run(0), run(1)
    for x, y in zip(a, b, strict=True):
        for key in ("image", "semantic", "instance", "offset", "full_size"):
            assert torch.equal(x[key], y[key])
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))

    # An explicit generator is independent of the global RNG.
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        torch.manual_seed(len(outs))
        outs.append(train_transforms(8, generator=g)(_item()))
    assert torch.equal(outs[0]["image"], outs[1]["image"])


def test_collate_stacks_tensors_and_lists_files():
    items = [RandomCrop((8, 8))(_item(i)) for i in range(3)]
    batch = collate(items)
    assert batch["image"].shape == (3, 3, 8, 8) and batch["semantic"].shape == (3, 8, 8)
    assert batch["offset"].shape == (3, 2) and batch["full_size"].shape == (3, 2)
    assert batch["file"] == ["img0.png", "img1.png", "img2.png"]
    with pytest.raises(ValueError, match="different shapes"):
        collate([_item(0), _item(1, h=H + 2)])


@pytest.mark.parametrize("crop", [(8, 12), (20, 30), (26, 40)])
@pytest.mark.parametrize("scale", [(0.5, 2.0), (1.0, 1.0), (0.3, 0.6), (1.5, 3.0)])
def test_scale_crop_is_scale_then_crop_to_the_bit(crop, scale):
    """The fused transform resizes the labels only inside the window: same items (every key,
    padding included where the scaled image is smaller than the crop) and the same draws."""
    for seed in range(12):
        item = _item(seed, h=H + seed % 3, w=W - seed % 4)
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        want = Compose([RandomScale(scale, generator=g1), RandomCrop(crop, generator=g1)])(item)
        got = RandomScaleCrop(scale, crop, generator=g2)(item)
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == got[key].dtype and torch.equal(value, got[key]), (seed, key)
            else:
                assert value == got[key]
        assert torch.equal(g1.get_state(), g2.get_state())
