"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU and pixel accuracy.

Everything is computed from a (C, C) confusion matrix of pixel counts (rows: ground truth,
columns: prediction), so evaluation over a data set is the sum of per-image matrices followed by
one call to :func:`iou_from_confusion`. This is the per-pixel IoU of cityscapesscripts'
``evalPixelLevelSemanticLabeling`` restricted to the 19 trainIds (its "classes" IoU, not the
instance-weighted iIoU).
"""

from __future__ import annotations

import numpy as np
import torch

from panonet.data.labels import IGNORE_INDEX, NUM_CLASSES
from panonet.evaluation.inputs import LabelMap, as_long_tensor

__all__ = ["confusion_matrix", "iou_from_confusion", "pixel_accuracy"]


def confusion_matrix(
    pred: LabelMap,
    target: LabelMap,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Pixel confusion matrix of a prediction against the ground truth.

    Args:
        pred: integer class ids (trainIds), torch tensor or numpy array of any shape, e.g.
            (H, W) or (B, H, W).
        target: integer ground-truth class ids of the same shape as ``pred``.
        num_classes: C, the number of classes (ids 0..C-1).
        ignore_index: target value of pixels that are not evaluated (Cityscapes: 255).

    Returns:
        (C, C) int64 tensor ``cm`` with ``cm[t, p]`` = number of pixels of target class t
        predicted as class p. On the device of ``pred`` if it is a tensor, else of ``target`` if
        it is a tensor, else on the CPU. Matrices add: the matrix of a concatenation of images is
        the sum of their matrices, so accumulate with ``cm += confusion_matrix(...)``.

    Pixels whose target is ``ignore_index`` or outside ``[0, C)`` are skipped, whatever their
    prediction.

    Raises:
        ValueError: a pixel with a valid target has a prediction outside ``[0, C)``. Such a pixel
            would have to count as a miss of its target class without being a false positive of
            any class (as cityscapesscripts does for predicted void labels), and a (C, C) matrix
            cannot record that: every off-diagonal cell is also a false positive of its column.
            Rather than silently skipping the pixel (which inflates IoU) or charging an arbitrary
            class, this is an error; map such predictions to a class first.
        TypeError: a floating-point or boolean input.
    """
    fn = "confusion_matrix"
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{fn}: num_classes must be a positive int, got {num_classes!r}")
    device = (
        pred.device
        if isinstance(pred, torch.Tensor)
        else target.device
        if isinstance(target, torch.Tensor)
        else None
    )
    p = as_long_tensor(pred, fn, "pred", device)
    t = as_long_tensor(target, fn, "target", device)
    if p.shape != t.shape:
        raise ValueError(
            f"{fn}: pred and target must have the same shape, got {tuple(p.shape)} and "
            f"{tuple(t.shape)}"
        )
    p = p.reshape(-1)
    t = t.reshape(-1)
    valid = (t >= 0) & (t < num_classes) & (t != ignore_index)
    bad = valid & ((p < 0) | (p >= num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"{fn}: {int(bad.sum())} evaluated pixels have predictions outside [0, {num_classes})"
            f" (e.g. {int(p[bad][0])}); map them to a class before computing the matrix"
        )
    # One bincount over the joint index instead of a loop over classes: O(pixels), any device.
    # Skipped pixels go to an extra last bin rather than being masked out (a copy, ~3x slower).
    n = num_classes * num_classes
    joint = torch.where(valid, t * num_classes + p, n)
    counts = torch.bincount(joint, minlength=n + 1)[:n]
    return counts.view(num_classes, num_classes)


def _as_matrix(cm: LabelMap, fn: str) -> torch.Tensor:
    m = cm if isinstance(cm, torch.Tensor) else torch.from_numpy(np.asarray(cm))
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{fn}: expected a square (C, C) matrix, got shape {tuple(m.shape)}")
    # float64 keeps counts of up to 2**53 pixels exact (500 Cityscapes frames are ~2**30).
    return m.detach().to(device="cpu", dtype=torch.float64)


def iou_from_confusion(cm: LabelMap) -> tuple[torch.Tensor, float]:
    """Per-class intersection over union and its mean, from a confusion matrix.

    ``IoU_c = TP / (TP + FP + FN)`` with ``TP = cm[c, c]``, ``FN = sum(cm[c, :]) - TP``,
    ``FP = sum(cm[:, c]) - TP``.

    Args:
        cm: (C, C) confusion matrix (rows target, columns prediction), as returned by
            :func:`confusion_matrix`, tensor or numpy array, any numeric dtype or device.

    Returns:
        ``(per_class, mean_iou)``: per_class is a (C,) float64 CPU tensor, NaN for classes that
        occur neither in the target nor in the prediction (0/0); mean_iou is the mean over the
        other classes (``nanmean``), a Python float, NaN if every class is absent.
    """
    m = _as_matrix(cm, "iou_from_confusion")
    tp = m.diagonal()
    union = m.sum(dim=1) + m.sum(dim=0) - tp
    per_class = tp / union  # 0/0 -> NaN marks an absent class
    return per_class, float(torch.nanmean(per_class))


def pixel_accuracy(cm: LabelMap) -> float:
    """Fraction of evaluated pixels whose predicted class is correct: ``trace(cm) / sum(cm)``.

    Args:
        cm: (C, C) confusion matrix as returned by :func:`confusion_matrix`.

    Returns:
        Python float in [0, 1]; NaN if the matrix counts no pixel.
    """
    m = _as_matrix(cm, "pixel_accuracy")
    total = float(m.sum())
    return float(m.diagonal().sum()) / total if total > 0 else float("nan")
