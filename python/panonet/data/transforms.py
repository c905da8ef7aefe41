"""Training augmentation on dataset items, and the batch collate function.

Every transform is a callable ``item -> item`` on the dict that
:class:`panonet.data.CityscapesPanoptic` returns:

- ``image``: (3, H, W) uint8 RGB;
- ``semantic``: (H, W) int64 trainIds, :data:`~panonet.data.labels.IGNORE_INDEX` (255) = ignore;
- ``instance``: (H, W) int64 Cityscapes instance ids (e.g. 26001), -1 where there is none;
- ``file``: str;

and, once an item has been cropped (:class:`RandomCrop`):

- ``offset``: (2,) int64 ``(y0, x0)``, the crop's top-left corner in the FULL image;
- ``full_size``: (2,) int64 ``(H_full, W_full)``, the full image's size.

These two are what :func:`panonet.models.coords.coordinate_channels` needs to give a crop the
coordinates its pixels have in the whole image, so the position-sensitive embedding sees the
same coordinates in training as at inference. The "full image" is the image as it enters the
crop: after :class:`RandomScale` that is the *scaled* image (normalised coordinates are
scale-invariant), after :class:`RandomHorizontalFlip` it is the *flipped* image. The invariant
every transform keeps is::

    item["image"] == full[:, y0 : y0 + h, x0 : x0 + w]

for the full image ``full`` of size ``full_size`` (and likewise for the label maps).

Labels are only ever resized by nearest neighbour (:func:`resize_labels`): bilinear resizing
would invent class and instance ids that exist in neither neighbour.

Randomness: each random transform takes an optional ``torch.Generator``; without one it draws
from torch's global RNG, so ``torch.manual_seed`` makes a pipeline deterministic (and a
DataLoader seeds each worker's global RNG from the base seed, so workers stay reproducible).
With DataLoader workers leave ``generator`` as None: every worker would get a *copy* of an
explicit generator in the same state and so repeat the other workers' augmentations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from panonet.data.labels import IGNORE_INDEX

__all__ = [
    "ColorJitter",
    "Compose",
    "Item",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "check_size",
    "collate",
    "nearest_indices",
    "resize_labels",
]

Item = dict[str, Any]
"""A dataset item (see the module docstring for its keys)."""

INSTANCE_FILL = -1
"""Instance id of pixels without an instance (and of crop padding)."""


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a label map (class or instance ids) by nearest neighbour, ``nearest-exact`` style.

    Output pixel (y, x) takes input pixel (floor((y + 0.5) * h / H), floor((x + 0.5) * w / W)),
    computed exactly in integers; only values present in ``labels`` appear in the result. This
    is the sampling geometry of ``F.interpolate(..., mode="bilinear", align_corners=False)``
    (half-pixel centres), so resized labels line up with a bilinearly resized image; it is done
    by integer indexing because ``F.interpolate`` rejects integer tensors and a float round trip
    would be inexact for large ids.

    Args:
        labels: (..., h, w) tensor of any dtype (typically int64), at least 2-D.
        size: output (H, W).

    Returns:
        (..., H, W) tensor of ``labels``' dtype and device (a copy, also when the size is equal).
    """
    if labels.dim() < 2:
        raise ValueError(
            f"resize_labels: expected a (..., h, w) label map, got shape {tuple(labels.shape)}"
        )
    H, W = check_size(size, "resize_labels")
    h, w = labels.shape[-2:]
    if (H, W) == (h, w):
        return labels.clone()
    if h == 0 or w == 0:
        raise ValueError(f"resize_labels: cannot resize an empty {h}x{w} map to {H}x{W}")
    iy = nearest_indices(torch.arange(H, device=labels.device), h, H)
    ix = nearest_indices(torch.arange(W, device=labels.device), w, W)
    return labels[..., iy[:, None], ix[None, :]]


def nearest_indices(positions: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """The input pixels that :func:`resize_labels` reads for output ``positions`` along one
    axis resized from ``size_in`` to ``size_out``: ``floor((p + 0.5) * size_in / size_out)``,
    computed exactly in integers as ``((2p + 1) * size_in) // (2 * size_out)``.

    Args:
        positions: integer tensor of output positions (any shape).
    """
    return ((2 * positions + 1) * size_in) // (2 * size_out)


class Compose:
    """Apply transforms in order: ``Compose([a, b])(item) == b(a(item))``."""

    def __init__(self, transforms: Iterable[Callable[[Item], Item]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: expected callables, got {type(t).__name__}")

    def __call__(self, item: Item) -> Item:
        for t in self.transforms:
            item = t(item)
        return item

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomScale:
    """Resize the whole item by a random factor drawn uniformly from ``scale = (lo, hi)``.

    The image is resized bilinearly (half-pixel centres, antialiased when shrinking) and rounded
    back to uint8; ``semantic`` and ``instance`` by nearest neighbour (:func:`resize_labels`,
    the same sampling geometry). The new size is ``round(H * s), round(W * s)`` (at least 1).

    Must run before :class:`RandomCrop`: the scaled image becomes the full image whose size
    the crop records (a crop's offset cannot be scaled exactly).

    Args:
        scale: (lo, hi) with 0 < lo <= hi; a single float means a fixed factor.
        generator: torch.Generator to draw from; None uses torch's global RNG.
    """

    def __init__(self, scale: tuple[float, float] | float = (0.5, 2.0), *, generator=None) -> None:
        lo, hi = (float(scale), float(scale)) if isinstance(scale, (int, float)) else scale
        lo, hi = float(lo), float(hi)
        if not 0 < lo <= hi:
            raise ValueError(f"RandomScale: expected scale (lo, hi) with 0 < lo <= hi, got {scale}")
        self.scale = (lo, hi)
        self.generator = generator

    def __call__(self, item: Item) -> Item:
        if "offset" in item:
            raise ValueError(
                "RandomScale: the item is already cropped (it has an 'offset'); "
                "apply RandomScale before RandomCrop"
            )
        lo, hi = self.scale
        s = lo + (hi - lo) * float(torch.rand((), generator=self.generator))
        image = _check_item(item, "RandomScale")
        H, W = image.shape[-2:]
        size = (max(1, round(H * s)), max(1, round(W * s)))
        out = dict(item)
        if size != (H, W):
            resized = F.interpolate(
                image[None].float(),
                size=size,
                mode="bilinear",
                align_corners=False,
                antialias=size[0] < H or size[1] < W,
            )[0]
            out["image"] = resized.round_().clamp_(0, 255).to(torch.uint8)
            for key in ("semantic", "instance"):
                if key in item:
                    out[key] = resize_labels(item[key], size)
        return out

    def __repr__(self) -> str:
        return f"RandomScale(scale={self.scale})"


class RandomCrop:
    """Crop a random ``size = (h, w)`` window and record where it lies in the full image.

    The window's top-left corner ``(y0, x0)`` is uniform over all positions where it fits. In a
    dimension where the image is smaller than the crop, the image is first padded at the
    bottom / right (image with ``image_fill``, ``semantic`` with ``ignore_index``, ``instance``
    with -1) and the padded image is the full image in that dimension (``y0`` or ``x0`` is 0 and
    ``full_size`` is the padded extent): the crop must lie inside the full image for
    :func:`~panonet.models.coords.coordinate_channels`, and padded pixels are ignored by the loss
    anyway.

    Sets ``offset`` (2,) int64 ``(y0, x0)`` and ``full_size`` (2,) int64. On an item that is
    already cropped the offsets compose (the window is located in the original full image).

    Args:
        size: crop (h, w), or an int for a square crop.
        ignore_index: semantic value of padded pixels.
        image_fill: image value (0..255) of padded pixels.
        generator: torch.Generator to draw from; None uses torch's global RNG.
    """

    def __init__(
        self,
        size: tuple[int, int] | int,
        *,
        ignore_index: int = IGNORE_INDEX,
        image_fill: int = 0,
        generator=None,
    ) -> None:
        self.size = check_size((size, size) if isinstance(size, int) else size, "RandomCrop")
        if not 0 <= image_fill <= 255:
            raise ValueError(f"RandomCrop: expected image_fill in 0..255, got {image_fill}")
        self.ignore_index = int(ignore_index)
        self.image_fill = int(image_fill)
        self.generator = generator

    def __call__(self, item: Item) -> Item:
        image = _check_item(item, "RandomCrop")
        H, W = image.shape[-2:]
        h, w = self.size
        Hp, Wp = max(H, h), max(W, w)
        # Two draws always (even when a dimension has no freedom), so the RNG stream does not
        # depend on the image size.
        r = torch.rand(2, generator=self.generator)
        y0 = min(int(r[0] * (Hp - h + 1)), Hp - h)
        x0 = min(int(r[1] * (Wp - w + 1)), Wp - w)

        out = dict(item)
        fills = {"image": self.image_fill, "semantic": self.ignore_index, "instance": INSTANCE_FILL}
        for key, fill in fills.items():
            if key in item:
                x = item[key]
                if (Hp, Wp) != (H, W):
                    x = F.pad(x, (0, Wp - W, 0, Hp - H), value=fill)
                out[key] = x[..., y0 : y0 + h, x0 : x0 + w].clone()

        if "offset" in item:
            # Already a crop: locate the new window in the original full image. Padding a crop
            # would push it outside that image, which no coordinate map can describe.
            if (Hp, Wp) != (H, W):
                raise ValueError(
                    f"RandomCrop: cannot pad an already cropped {H}x{W} item to {h}x{w}"
                )
            out["offset"] = _as_pair(item["offset"], "offset") + torch.tensor([y0, x0])
            out["full_size"] = _as_pair(item["full_size"], "full_size").clone()
        else:
            out["offset"] = torch.tensor([y0, x0], dtype=torch.int64)
            out["full_size"] = torch.tensor([Hp, Wp], dtype=torch.int64)
        return out

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size})"


class RandomHorizontalFlip:
    """Mirror the item left-right with probability ``p``.

    On a cropped item the offset is mirrored too, ``x0 -> W_full - x0 - w``: the flipped crop
    is exactly the crop of the flipped full image at that position, so the coordinate channels
    regenerated from ``offset`` (by the model) remain the true coordinates of the flipped
    scene. The coordinates themselves are never flipped: x still grows to the right, which is
    what makes flipping harmless for the position-sensitive embedding.

    Args:
        p: flip probability.
        generator: torch.Generator to draw from; None uses torch's global RNG.
    """

    def __init__(self, p: float = 0.5, *, generator=None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: expected p in [0, 1], got {p}")
        self.p = float(p)
        self.generator = generator

    def __call__(self, item: Item) -> Item:
        image = _check_item(item, "RandomHorizontalFlip")
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return dict(item)
        out = dict(item)
        for key in ("image", "semantic", "instance"):
            if key in item:
                out[key] = item[key].flip(-1)
        if "offset" in item:
            offset = _as_pair(item["offset"], "offset").clone()
            full_w = int(_as_pair(item["full_size"], "full_size")[1])
            offset[1] = full_w - int(offset[1]) - image.shape[-1]
            out["offset"] = offset
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ColorJitter:
    """Random brightness, contrast and saturation of the uint8 image; labels untouched.

    Factors are drawn uniformly from ``[1 - b, 1 + b]`` (likewise c, s) and applied in that
    fixed order, as torchvision defines them: brightness scales the pixel values, contrast
    blends with the mean grey level of the image, saturation blends with the per-pixel grey
    (ITU-R 601 luma: 0.299 R + 0.587 G + 0.114 B). The result is rounded and clamped to uint8.

    Args:
        brightness, contrast, saturation: jitter strengths in [0, 1]; 0 disables one.
        generator: torch.Generator to draw from; None uses torch's global RNG.
    """

    def __init__(
        self,
        brightness: float = 0.3,
        contrast: float = 0.3,
        saturation: float = 0.3,
        *,
        generator=None,
    ) -> None:
        for name, v in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"ColorJitter: expected {name} in [0, 1], got {v}")
        self.strength = torch.tensor([brightness, contrast, saturation], dtype=torch.float64)
        self.generator = generator

    def __call__(self, item: Item) -> Item:
        image = _check_item(item, "ColorJitter")
        if image.shape[0] != 3:
            raise ValueError(
                f"ColorJitter: expected a (3, H, W) RGB image, got {tuple(image.shape)}"
            )
        u = torch.rand(3, generator=self.generator, dtype=torch.float64)
        b, c, s = (1.0 + self.strength * (2.0 * u - 1.0)).tolist()
        x = image.float()
        if b != 1.0:
            x = (x * b).clamp_(0, 255)
        if c != 1.0:
            x = (c * x + (1.0 - c) * _luma(x).mean()).clamp_(0, 255)
        if s != 1.0:
            x = (s * x + (1.0 - s) * _luma(x)[None]).clamp_(0, 255)
        out = dict(item)
        out["image"] = x.round_().to(torch.uint8)
        return out

    def __repr__(self) -> str:
        b, c, s = self.strength.tolist()
        return f"ColorJitter(brightness={b}, contrast={c}, saturation={s})"


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``DataLoader`` collate function for dataset items.

    Args:
        batch: items with the same keys; their tensors must have equal shapes (crop training
            items to one size; evaluate full images at a fixed size or with batch size 1).

    Returns:
        dict with the same keys: tensors stacked along a new dim 0 (``image`` (B, 3, H, W)
        uint8, ``semantic`` / ``instance`` (B, H, W) int64, ``offset`` / ``full_size`` (B, 2)
        int64), everything else (e.g. ``file``) as a list of length B.
    """
    if len(batch) == 0:
        raise ValueError("collate: empty batch")
    keys = list(batch[0].keys())
    for i, item in enumerate(batch):
        if set(item.keys()) != set(keys):
            raise ValueError(
                f"collate: item {i} has keys {sorted(item.keys())}, item 0 has {sorted(keys)}"
            )
    out: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in batch]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate: '{key}' has different shapes in one batch: {sorted(shapes)} "
                    "(crop to a fixed size, or use batch size 1)"
                )
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


# --- helpers -------------------------------------------------------------------------------------


def check_size(size, fn: str, *, minimum: int = 1) -> tuple[int, int]:
    """``size`` as an (H, W) pair of ints >= ``minimum`` (integral floats pass), or ValueError
    naming ``fn``: the one size check of the package."""
    try:
        H, W = (int(s) for s in size)
        integral = all(int(s) == s for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: expected size as (H, W), got {size!r}") from None
    if not integral:
        raise ValueError(f"{fn}: expected size (H, W) with integers, got {size!r}")
    if minimum == 1 and (H <= 0 or W <= 0):
        raise ValueError(f"{fn}: expected a positive size (H, W), got {(H, W)}")
    if H < minimum or W < minimum:
        raise ValueError(f"{fn}: expected size (H, W) with integers >= {minimum}, got {size!r}")
    return H, W


def _check_item(item: Mapping[str, Any], fn: str) -> torch.Tensor:
    """The item's image, after checking that every map in it has the image's (H, W)."""
    image = item.get("image")
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{fn}: expected item['image'] as a (C, H, W) tensor, got {shape}")
    for key in ("semantic", "instance"):
        if key in item and tuple(item[key].shape) != tuple(image.shape[-2:]):
            raise ValueError(
                f"{fn}: item['{key}'] has shape {tuple(item[key].shape)}, expected the image's "
                f"{tuple(image.shape[-2:])}"
            )
    return image


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (H, W) of a (3, H, W) float RGB image. Python-float weights: a weight
    tensor made for a GPU image would be a blocking upload (a synchronization) per image."""
    return x[0] * 0.299 + x[1] * 0.587 + x[2] * 0.114


def _as_pair(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.int64)
    if t.shape != (2,):
        raise ValueError(f"expected item['{name}'] of shape (2,), got {tuple(t.shape)}")
    return t
