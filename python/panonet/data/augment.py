"""The training augmentation pipeline, and its scale-and-crop step fused so that the label maps
are resized only inside the crop window."""

from __future__ import annotations

import torch

from panonet.data.labels import IGNORE_INDEX
from panonet.data.transforms import (
    INSTANCE_FILL,
    ColorJitter,
    Compose,
    Item,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    nearest_indices,
)

__all__ = ["RandomScaleCrop", "train_transforms"]


class RandomScaleCrop:
    """:class:`RandomScale` then :class:`RandomCrop`, with the same random draws and the same
    result to the bit, but the label maps are resized only inside the crop window.

    Nearest-neighbour resizing picks source pixels by exact integer arithmetic, so the window
    of the resized map is the resized map's window; at the paper's crop (512x1024 out of a
    1024x2048 image scaled by up to 2) that is a fraction of the whole. The image is still
    resized whole: a bilinear window would round differently at its borders.

    Args:
        scale: as :class:`RandomScale`.
        size: as :class:`RandomCrop`; ``ignore_index`` and ``image_fill`` too.
        generator: shared by both draws; None uses torch's global RNG.
    """

    def __init__(
        self,
        scale: tuple[float, float] | float,
        size: tuple[int, int] | int,
        *,
        ignore_index: int = IGNORE_INDEX,
        image_fill: int = 0,
        generator=None,
    ) -> None:
        self.scale = RandomScale(scale, generator=generator)
        self.crop = RandomCrop(
            size, ignore_index=ignore_index, image_fill=image_fill, generator=generator
        )

    def __call__(self, item: Item) -> Item:
        # Padding values of the label maps, as RandomCrop pads them.
        fills = {"semantic": self.crop.ignore_index, "instance": INSTANCE_FILL}
        # The image (and any other key) exactly as the two transforms make it, in their order
        # of draws: the scale first, then the crop's corner.
        scaled = self.scale({k: v for k, v in item.items() if k not in fills})
        out = self.crop(scaled)
        corner = (int(out["offset"][0]), int(out["offset"][1]))
        for key, fill in fills.items():
            if key in item:
                out[key] = _resized_window(
                    item[key], tuple(scaled["image"].shape[-2:]), corner, self.crop.size, fill
                )
        return out

    def __repr__(self) -> str:
        return f"RandomScaleCrop(scale={self.scale.scale}, size={self.crop.size})"


def _resized_window(
    labels: torch.Tensor,
    scaled: tuple[int, int],
    corner: tuple[int, int],
    size: tuple[int, int],
    fill: int,
) -> torch.Tensor:
    """``resize_labels(labels, scaled)``, padded with ``fill`` at the bottom / right where it is
    smaller than the window, cropped to the ``size`` window at ``corner``: computed on the
    window only (rows and columns picked by :func:`nearest_indices`, as resize_labels picks
    them)."""
    (h_in, w_in), (h, w) = labels.shape[-2:], size
    # Indices made where the labels are (a GPU index_select needs device indices); the padding
    # is decided from sizes alone, so nothing is read back from the device.
    rows = torch.arange(corner[0], corner[0] + h, device=labels.device)
    cols = torch.arange(corner[1], corner[1] + w, device=labels.device)
    iy = nearest_indices(rows, h_in, scaled[0])
    ix = nearest_indices(cols, w_in, scaled[1])
    out = labels.index_select(-2, iy.clamp(max=h_in - 1)).index_select(-1, ix.clamp(max=w_in - 1))
    # Window rows (columns) from here on lie beyond the scaled map: RandomCrop's padding.
    valid_h, valid_w = scaled[0] - corner[0], scaled[1] - corner[1]
    if valid_h < h:
        out[..., valid_h:, :] = fill
    if valid_w < w:
        out[..., :, valid_w:] = fill
    return out


def train_transforms(
    crop_size: tuple[int, int] | int,
    *,
    scale: tuple[float, float] = (0.5, 2.0),
    flip: float = 0.5,
    jitter: float = 0.3,
    ignore_index: int = IGNORE_INDEX,
    generator=None,
) -> Compose:
    """The default training pipeline: scale and crop (:class:`RandomScaleCrop`, the result of
    :class:`RandomScale` then :class:`RandomCrop`), flip, colour jitter, in that order.

    Args:
        crop_size: network input (h, w) (or an int for a square).
        scale: range of the random scale factor.
        flip: horizontal flip probability.
        jitter: brightness, contrast and saturation strength.
        ignore_index: semantic value of crop padding.
        generator: shared by all transforms; None uses torch's global RNG.
    """
    return Compose(
        [
            RandomScaleCrop(scale, crop_size, ignore_index=ignore_index, generator=generator),
            RandomHorizontalFlip(flip, generator=generator),
            ColorJitter(jitter, jitter, jitter, generator=generator),
        ]
    )
