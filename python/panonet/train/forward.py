"""The network's forward pass and the loss of one training step, as the eager step, the graphed
step and the training benchmark all run it."""

from __future__ import annotations

import torch
from torch import nn

from panonet.train.loss import PanoNetLoss

__all__ = ["forward_and_loss"]


def forward_and_loss(
    net: nn.Module,
    loss_fn: PanoNetLoss,
    images: torch.Tensor,
    semantic: torch.Tensor,
    instance: torch.Tensor,
    offset: torch.Tensor | None,
    full_size: torch.Tensor | None,
    *,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """The network under autocast (CUDA, when ``amp_dtype`` is given), then the loss without
    its device-side class-id check (the caller checks the labels on the host:
    :func:`panonet.train.loss.check_class_ids`). Reads no value from the device.

    Args:
        net: PanoNet (or its DistributedDataParallel wrapper).
        images: (B, 3, H, W) normalised float images; semantic, instance: (B, H, W) int64;
            offset, full_size: (B, 2) int64 (host tensors are checked without a
            synchronization), as :func:`panonet.train.batches.batch_to_device` returns them.
        amp_dtype: None (float32), torch.float16 or torch.bfloat16.

    Returns:
        The total loss (0-dim, differentiable), the terms' names, and their values as one
        (T,) float32 tensor in that order.
    """
    # cache_enabled=False: the cast cache would keep, inside a captured CUDA graph, the casts
    # made at capture; each weight is cast once per forward anyway, so eager runs lose nothing.
    with torch.autocast(
        "cuda",
        dtype=amp_dtype or torch.float32,
        enabled=amp_dtype is not None and images.is_cuda,
        cache_enabled=False,
    ):
        output = net(images, offset, full_size)
    # The loss upcasts to float32 and switches autocast off itself.
    total, terms = loss_fn(output, semantic, instance, check_labels=False)
    return total, list(terms), torch.stack(list(terms.values())).float()
