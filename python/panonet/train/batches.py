"""A collated training batch moved to the device, as the network and the loss take it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from panonet.models.panonet import preprocess

__all__ = ["batch_to_device", "network_images"]


def batch_to_device(
    batch: Mapping[str, Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A collated training batch as the network and the loss take it, ``device`` for the
    tensors the step computes with.

    Uploads do not wait for the device (``non_blocking``; the Trainer's loader pins its batches,
    which makes them asynchronous). The crop offsets and full sizes stay on the host: the
    network checks their values there (on a GPU a check of device values would synchronize)
    and uploads the few numbers itself.

    Returns:
        images (B, 3, H, W) float, normalised, channels_last; semantic and instance (B, H, W)
        int64 on ``device``; offset and full_size (B, 2) int64 on the host (the crop's place
        in the full image, for the coordinate channels).
    """
    device = torch.device(device)
    images = network_images(batch["image"].to(device, non_blocking=True))
    semantic = batch["semantic"].to(device, non_blocking=True)
    instance = batch["instance"].to(device, non_blocking=True)
    return images, semantic, instance, batch["offset"], batch["full_size"]


def network_images(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 images, left on their device, as the network takes them: normalised
    float (:func:`panonet.models.panonet.preprocess`), channels_last."""
    images = preprocess(image.permute(0, 2, 3, 1), device=image.device)
    return images.contiguous(memory_format=torch.channels_last)
