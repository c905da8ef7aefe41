"""The two passes over data that training makes besides its steps: re-estimating BatchNorm
statistics, and the validation metrics."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from panonet.evaluation.semantic import confusion_matrix, iou_from_confusion
from panonet.models.panonet import preprocess
from panonet.ops import upsample_argmax

__all__ = ["recalibrate_batchnorm", "validation_metrics"]


def recalibrate_batchnorm(
    model: nn.Module, dataset: Any, images: int, batch: int, device: torch.device, amp: bool
) -> None:
    """Sets every BatchNorm's running mean and variance to the plain average over the first
    ``images`` items of ``dataset`` (whole, unaugmented, ``batch`` images at a time, train-mode
    forward; call it without gradients). Images of different sizes go in separate batches. No
    random numbers: the same images give the same statistics. Leaves ``model`` in train mode,
    with the layers' momenta as they were."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    try:
        for begin in range(0, images, batch):
            chunk = [dataset[i]["image"] for i in range(begin, min(begin + batch, images))]
            by_size: dict[tuple[int, ...], list[torch.Tensor]] = {}
            for image in chunk:
                by_size.setdefault(tuple(image.shape), []).append(image)
            for same in by_size.values():
                stacked = torch.stack(same).permute(0, 2, 3, 1)
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    model(preprocess(stacked, device=device))
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum


@torch.no_grad()
def validation_metrics(
    model: nn.Module,
    loss_fn: nn.Module,
    dataset: Any,
    images: int,
    num_classes: int,
    ignore_index: int,
    device: torch.device,
    amp: bool,
) -> dict[str, Any]:
    """Loss and mIoU of ``model`` (put in eval mode) on the first ``images`` items of
    ``dataset``: whole images, one at a time. The predicted class of a pixel is the argmax of
    the 1/4 logits upsampled bilinearly to the label resolution (what
    :class:`panonet.inference.Predictor` outputs); mIoU is over the classes present in the
    labels or the predictions. Leaves the global RNG states as they were.

    Returns:
        dict with ``images``, ``loss`` / ``sem`` / ``inst`` (means over images), ``miou``
        (None when undefined) and ``iou`` (per-class list, None for absent classes).
    """
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    sums = {"total": 0.0, "sem": 0.0, "inst": 0.0}
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        for i in range(images):
            item = dataset[i]
            x = preprocess(item["image"].permute(1, 2, 0), device=device)
            semantic = item["semantic"][None].to(device)
            instance = item["instance"][None].to(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                output = model(x)
            _, terms = loss_fn(output, semantic, instance)
            for k in sums:
                sums[k] += float(terms[k])
            # The Predictor's semantic map: the 1/4 logits upsampled and argmaxed, fused.
            pred = upsample_argmax(output.semantic[0], tuple(semantic.shape[-2:]))
            cm += confusion_matrix(pred, semantic, num_classes, ignore_index).cpu()
    per_class, miou = iou_from_confusion(cm)
    return {
        "images": images,
        "loss": sums["total"] / max(images, 1),
        "sem": sums["sem"] / max(images, 1),
        "inst": sums["inst"] / max(images, 1),
        "miou": _finite_or_none(miou),
        "iou": [_finite_or_none(float(v)) for v in per_class],
    }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
