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

__all__ = ["check_crops", "coordinate_channels"]


def _normalised(
    start: torch.Tensor,
    length: int,
    full: int | torch.Tensor,
    dtype: torch.dtype,
    device: torch.device | None,
    *,
    per_image: bool = False,
) -> torch.Tensor:
    """(B,) integer starts -> (B, length) normalised coordinates of start + [0, length).

    ``full`` is the full image's extent: one int for the whole batch, or with ``per_image`` a
    (B,) integer tensor (one extent per image, e.g. after per-image random scaling). The flag,
    not the type, selects the path: under tracing (export) the sizes are 0-dim tensors.
    """
    # Arithmetic in at least float32: float16 cannot even represent 2049 - 1 exactly.
    compute = torch.promote_types(dtype, torch.float32)
    # non_blocking: a host tensor's upload must not wait for the device's queue to drain.
    idx = start.to(device=device, dtype=compute, non_blocking=True)[:, None] + torch.arange(
        length, device=device, dtype=compute
    )
    if not per_image:
        if full == 1:
            return torch.zeros_like(idx).to(dtype)
        # Literally 2 * i / (full - 1) - 1, so the last pixel maps to exactly +1.
        return (2.0 * idx / (full - 1) - 1.0).to(dtype)
    # Per image: the same formula with a (B, 1) divisor (exact in float32 for any image size
    # below 2^24); one-pixel extents get 0 as in the scalar case (the clamp only avoids 0 / 0).
    full = full.to(device=device, non_blocking=True)[:, None]
    denom = (full - 1).clamp(min=1).to(compute)
    out = 2.0 * idx / denom - 1.0
    return torch.where(full == 1, torch.zeros_like(out), out).to(dtype)


def coordinate_channels(
    batch: int,
    height: int,
    width: int,
    *,
    offset: torch.Tensor | None = None,
    full_size: tuple[int, int] | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised coordinate maps for a batch of (possibly cropped) images.

    Args:
        batch: B, number of images.
        height, width: H, W of the maps (the network input's size).
        offset: None (every crop starts at (0, 0)) or a (B, 2) integer tensor of the crops'
            top-left corners ``(y0, x0)`` in the full image; it may live on any device. Its
            values are checked where they live (:func:`check_crops`): host tensors (what the
            training loader yields) cost the device nothing, device tensors one
            synchronization per call, except during a CUDA graph capture, which cannot read
            values: whoever captures checks the crops on the host before each replay.
        full_size: size of the full image(s): None means (H, W) (no crop); a pair
            ``(H_full, W_full)`` of ints is one size for the whole batch; a (B, 2) integer
            tensor gives every image its own ``(H_full, W_full)`` (training batches after
            per-image random scaling, as :func:`panonet.data.transforms.collate` stacks the
            items' ``full_size``). A (2,) tensor counts as a pair.
        dtype: floating-point dtype of the result.
        device: device of the result (default: the offset's device, else the full_size
            tensor's, else the CPU).

    Returns:
        (B, 2, H, W) tensor of ``dtype``: channel 0 = x, channel 1 = y, both in [-1, 1], following
        the formula in the module docstring.

    Raises:
        ValueError: as :func:`check_crops`, or a non-floating dtype.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"coordinate_channels: expected a floating-point dtype, got {dtype}")
    # Asked only when there are GPU values to read (not on the inference/export path).
    capturing = (
        any(isinstance(t, torch.Tensor) and t.is_cuda for t in (full_size, offset))
        and torch.cuda.is_current_stream_capturing()
    )
    full_size, per_image = _full_size_arg(batch, height, width, full_size, offset, capturing)
    if device is None and offset is not None:
        device = offset.device
    if device is None and per_image:
        device = full_size.device
    if per_image:
        full_h, full_w = full_size[:, 0], full_size[:, 1]
    else:
        full_h, full_w = (height, width) if full_size is None else full_size
    start = (
        torch.zeros(batch, 2, dtype=torch.int64, device=device)
        if offset is None
        else offset.to(dtype=torch.int64)
    )
    x = _normalised(start[:, 1], width, full_w, dtype, device, per_image=per_image)  # (B, W)
    y = _normalised(start[:, 0], height, full_h, dtype, device, per_image=per_image)  # (B, H)
    return torch.stack(
        (x[:, None, :].expand(batch, height, width), y[:, :, None].expand(batch, height, width)),
        dim=1,
    )


def check_crops(
    batch: int,
    height: int,
    width: int,
    *,
    offset: torch.Tensor | None = None,
    full_size: tuple[int, int] | torch.Tensor | None = None,
) -> None:
    """The checks of :func:`coordinate_channels` (same arguments), without making the maps:
    raise unless every crop of ``height`` x ``width`` at ``offset`` fits inside its full image.

    The values are read where they are: free for host tensors, a synchronization for GPU ones.

    Raises:
        ValueError: non-positive sizes, an offset that is not (B, 2) integers, a full_size
            tensor that is not (B, 2) integers, or a crop that does not fit inside its full
            image (negative offset or y0 + H > H_full or x0 + W > W_full); the message says
            which image and by how much.
    """
    _full_size_arg(batch, height, width, full_size, offset, False)


def _full_size_arg(
    batch: int,
    height: int,
    width: int,
    full_size: tuple[int, int] | torch.Tensor | None,
    offset: torch.Tensor | None,
    capturing: bool,
) -> tuple[tuple[int, int] | torch.Tensor | None, bool]:
    """Checks the arguments (their values too unless ``capturing``); returns full_size as
    None, a pair of ints or a (B, 2) int64 tensor, and whether it is per image."""
    if batch < 0 or height < 1 or width < 1:
        raise ValueError(
            "coordinate_channels: expected batch >= 0 and height, width >= 1, "
            f"got batch={batch}, height={height}, width={width}"
        )
    if isinstance(full_size, torch.Tensor) and full_size.dim() == 1:
        # A (2,) tensor is one size for the batch, like a tuple (value read on the host).
        full_size = tuple(int(s) for s in full_size.tolist())
    per_image = isinstance(full_size, torch.Tensor)
    if per_image:
        if full_size.shape != (batch, 2) or full_size.is_floating_point() or full_size.is_complex():
            raise ValueError(
                f"coordinate_channels: expected full_size as (H_full, W_full) or a ({batch}, 2) "
                f"integer tensor, got shape {tuple(full_size.shape)} and dtype {full_size.dtype}"
            )
        full_size = full_size.to(dtype=torch.int64)
        full_h, full_w = full_size[:, 0], full_size[:, 1]
        small = (full_h < height) | (full_w < width)
        if not capturing and bool(small.any()):
            i = int(small.nonzero()[0, 0])
            raise ValueError(
                f"coordinate_channels: a {height}x{width} crop does not fit in full image {i} "
                f"of size {int(full_h[i])}x{int(full_w[i])}"
            )
    else:
        if full_size is not None:
            full_size = (int(full_size[0]), int(full_size[1]))
        full_h, full_w = (height, width) if full_size is None else full_size
        if full_h < height or full_w < width:
            raise ValueError(
                f"coordinate_channels: a {height}x{width} crop does not fit in a full image of "
                f"size {full_h}x{full_w}"
            )
    if offset is None:
        return full_size, per_image
    if offset.shape != (batch, 2) or offset.is_floating_point() or offset.is_complex():
        raise ValueError(
            f"coordinate_channels: expected offset of shape ({batch}, 2) with integer "
            f"(y0, x0), got shape {tuple(offset.shape)} and dtype {offset.dtype}"
        )
    if capturing:
        return full_size, per_image
    # Only when an offset is given (training crops), never on the inference/export path.
    start = offset.to(dtype=torch.int64)
    ys, xs = start[:, 0], start[:, 1]
    bad = (ys < 0) | (xs < 0) | (ys + height > full_h) | (xs + width > full_w)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        fh = int(full_h[i]) if per_image else full_h
        fw = int(full_w[i]) if per_image else full_w
        raise ValueError(
            f"coordinate_channels: crop {i} at (y0, x0)=({int(ys[i])}, {int(xs[i])}) of "
            f"size {height}x{width} does not fit inside the full image of size "
            f"{fh}x{fw} (needs 0 <= y0 <= {fh - height} and 0 <= x0 <= {fw - width})"
        )
    return full_size, per_image
