"""Pictures of panoptic maps: colours, instance borders, overlays on the image (paper Fig. 3).

All functions are pure: NumPy arrays or tensors in, (H, W, 3) uint8 NumPy images out. Panoptic
maps use the Cityscapes convention (``labelId * 1000 + j`` for things, ``labelId`` for stuff,
0 for void).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from panonet.data.labels import LABEL_TO_TRAIN, PALETTE

__all__ = ["overlay", "panoptic_colors", "save_visualization", "segment_borders", "side_by_side"]

# Per-instance colour offsets: instance j of a class is drawn in the class colour shifted by
# _JITTER[j], so neighbouring cars are told apart while staying "car-coloured". Entry 0 is no
# shift; the rest are fixed pseudo-random offsets of at least 30 levels in some channel.
_rng = np.random.default_rng(0)
_JITTER = _rng.integers(-70, 71, size=(1000, 3))
_JITTER[np.abs(_JITTER).max(axis=1) < 30, 0] = 60
_JITTER[0] = 0


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_panoptic(panoptic: np.ndarray, fn: str) -> np.ndarray:
    if panoptic.ndim != 2 or not np.issubdtype(panoptic.dtype, np.integer):
        raise ValueError(
            f"{fn}: expected an integer (H, W) panoptic map, got {panoptic.dtype} of shape "
            f"{panoptic.shape}"
        )
    return panoptic.astype(np.int64, copy=False)


def _check_image(image: np.ndarray, shape: tuple[int, int], fn: str) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{fn}: expected a uint8 RGB image of shape (H, W, 3), got {image.dtype} of shape "
            f"{image.shape}"
        )
    if image.shape[:2] != shape:
        raise ValueError(
            f"{fn}: image is {image.shape[:2]} but the panoptic map is {shape}; expected equal"
        )
    return image


def panoptic_colors(panoptic: np.ndarray | torch.Tensor) -> np.ndarray:
    """Colour image of a panoptic map: class colours (Cityscapes palette), each thing instance
    shifted slightly so that instances of one class differ; void black.

    Args:
        panoptic: (H, W) integer Cityscapes panoptic ids.

    Returns:
        (H, W, 3) uint8.
    """
    pan = _check_panoptic(_as_numpy(panoptic), "panoptic_colors")
    label = np.where(pan >= 1000, pan // 1000, pan)
    train = LABEL_TO_TRAIN[np.clip(label, 0, len(LABEL_TO_TRAIN) - 1)]
    train = np.where((label < 0) | (label >= len(LABEL_TO_TRAIN)), 255, train)
    color = PALETTE[train].astype(np.int64)
    thing = pan >= 1000
    color[thing] += _JITTER[pan[thing] % 1000]
    return np.clip(color, 0, 255).astype(np.uint8)


def segment_borders(panoptic: np.ndarray | torch.Tensor) -> np.ndarray:
    """Pixels whose right or lower neighbour belongs to another segment.

    Args:
        panoptic: (H, W) integer segment ids.

    Returns:
        (H, W) bool.
    """
    pan = _check_panoptic(_as_numpy(panoptic), "segment_borders")
    border = np.zeros(pan.shape, dtype=bool)
    border[:, :-1] |= pan[:, :-1] != pan[:, 1:]
    border[:-1, :] |= pan[:-1, :] != pan[1:, :]
    return border


def overlay(
    image: np.ndarray | torch.Tensor,
    panoptic: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
    border_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Panoptic colours blended on the image, with segment borders drawn on top.

    Args:
        image: (H, W, 3) uint8 RGB.
        panoptic: (H, W) integer panoptic ids.
        alpha: weight of the colours (0: image only, 1: colours only).
        border_color: RGB of the borders.

    Returns:
        (H, W, 3) uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: expected alpha in [0, 1], got {alpha}")
    pan = _check_panoptic(_as_numpy(panoptic), "overlay")
    img = _check_image(_as_numpy(image), pan.shape, "overlay")
    blend = (1 - alpha) * img.astype(np.float32) + alpha * panoptic_colors(pan)
    out = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    out[segment_borders(pan)] = border_color
    return out


def side_by_side(
    image: np.ndarray | torch.Tensor, panoptic: np.ndarray | torch.Tensor, *, alpha: float = 0.5
) -> np.ndarray:
    """The overlay and the panoptic colour map next to each other: (H, 2W, 3) uint8."""
    pan = _check_panoptic(_as_numpy(panoptic), "side_by_side")
    return np.concatenate([overlay(image, pan, alpha=alpha), panoptic_colors(pan)], axis=1)


def save_visualization(
    path: str | os.PathLike,
    image: np.ndarray | torch.Tensor,
    panoptic: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
) -> Path:
    """Writes :func:`side_by_side` as a PNG (atomically: temp file + rename). Returns the path."""
    picture = side_by_side(image, panoptic, alpha=alpha)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(picture).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
