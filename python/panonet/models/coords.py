"""Normalised XY coordinate maps: the position input of PanoNet's instance branch (sec. III-C).

The coordinates always refer to the FULL image, so a training crop sees the same values at a
pixel as the whole image does at inference: pixel (row i, column j) of a crop whose top-left
corner sits at (y0, x0) of an H_full x W_full image gets

    x = 2 * (x0 + j) / (W_full - 1) - 1,    y = 2 * (y0 + i) / (H_full - 1) - 1,

i.e. -1 at the first column/row of the full image and +1 at its last (0 when the full image is
one pixel wide/high). Channel 0 is x (horizontal), channel 1 is y (vertical), as in CoordConv.
"""

from __future__ import annotations

import torch

__all__ = ["coordinate_channels"]


def _normalised(
    start: torch.Tensor, length: int, full: int, dtype: torch.dtype, device: torch.device | None
) -> torch.Tensor:
    """(B,) integer starts -> (B, length) normalised coordinates of start + [0, length)."""
    # Arithmetic in at least float32: float16 cannot even represent 2049 - 1 exactly.
    compute = torch.promote_types(dtype, torch.float32)
    idx = start.to(device=device, dtype=compute)[:, None] + torch.arange(
        length, device=device, dtype=compute
    )
    if full == 1:
        return torch.zeros_like(idx).to(dtype)
    # Literally 2 * i / (full - 1) - 1, so the last pixel maps to exactly +1.
    return (2.0 * idx / (full - 1) - 1.0).to(dtype)


def coordinate_channels(
    batch: int,
    height: int,
    width: int,
    *,
    offset: torch.Tensor | None = None,
    full_size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised coordinate maps for a batch of (possibly cropped) images.

    Args:
        batch: B, number of images.
        height, width: H, W of the maps (the network input's size).
        offset: None (every crop starts at (0, 0)) or a (B, 2) integer tensor of the crops'
            top-left corners ``(y0, x0)`` in the full image; it may live on any device.
        full_size: ``(H_full, W_full)`` of the full image; None means (H, W) (no crop).
        dtype: floating-point dtype of the result.
        device: device of the result (default: the offset's device, else the CPU).

    Returns:
        (B, 2, H, W) tensor of ``dtype``: channel 0 = x, channel 1 = y, both in [-1, 1], following
        the formula in the module docstring.

    Raises:
        ValueError: non-positive sizes, an offset that is not (B, 2) integers, a non-floating
            dtype, or a crop that does not fit inside the full image (negative offset or
            y0 + H > H_full or x0 + W > W_full); the message says which image and by how much.
    """
    if batch < 0 or height < 1 or width < 1:
        raise ValueError(
            "coordinate_channels: expected batch >= 0 and height, width >= 1, "
            f"got batch={batch}, height={height}, width={width}"
        )
    if not dtype.is_floating_point:
        raise ValueError(f"coordinate_channels: expected a floating-point dtype, got {dtype}")
    full_h, full_w = (height, width) if full_size is None else (int(s) for s in full_size)
    if full_h < height or full_w < width:
        raise ValueError(
            f"coordinate_channels: a {height}x{width} crop does not fit in a full image of "
            f"size {full_h}x{full_w}"
        )
    if device is None and offset is not None:
        device = offset.device
    if offset is None:
        start = torch.zeros(batch, 2, dtype=torch.int64, device=device)
    else:
        if offset.shape != (batch, 2) or offset.is_floating_point() or offset.is_complex():
            raise ValueError(
                f"coordinate_channels: expected offset of shape ({batch}, 2) with integer "
                f"(y0, x0), got shape {tuple(offset.shape)} and dtype {offset.dtype}"
            )
        start = offset.to(torch.int64)
        # Value checks synchronise with the device; they only run when an offset is given
        # (training crops), never on the inference/export path (offset=None).
        ys, xs = start[:, 0], start[:, 1]
        bad = (ys < 0) | (xs < 0) | (ys + height > full_h) | (xs + width > full_w)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"coordinate_channels: crop {i} at (y0, x0)=({int(ys[i])}, {int(xs[i])}) of "
                f"size {height}x{width} does not fit inside the full image of size "
                f"{full_h}x{full_w} (needs 0 <= y0 <= {full_h - height} and "
                f"0 <= x0 <= {full_w - width})"
            )
    x = _normalised(start[:, 1], width, full_w, dtype, device)  # (B, W)
    y = _normalised(start[:, 0], height, full_h, dtype, device)  # (B, H)
    return torch.stack(
        (x[:, None, :].expand(batch, height, width), y[:, :, None].expand(batch, height, width)),
        dim=1,
    )
