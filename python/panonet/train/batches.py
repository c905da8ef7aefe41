"""A collated training batch moved to the device, as the network and the loss take it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from panonet.models.panonet import preprocess

__all__ = ["batch_to_device"]


def batch_to_device(
    batch: Mapping[str, Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A collated training batch as the network and the loss take it, on ``device``.

    Returns:
        images (B, 3, H, W) float, normalised, channels_last; semantic and instance (B, H, W)
        int64; offset and full_size (B, 2) int64 (the crop's place in the full image, for the
        coordinate channels).
    """
    images = preprocess(batch["image"].permute(0, 2, 3, 1), device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    semantic = batch["semantic"].to(device, non_blocking=True)
    instance = batch["instance"].to(device, non_blocking=True)
    offset = batch["offset"].to(device, non_blocking=True)
    full_size = batch["full_size"].to(device, non_blocking=True)
    return images, semantic, instance, offset, full_size
