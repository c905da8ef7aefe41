"""Metrics as pure functions of label maps plus additive accumulators: semantic IoU
(:mod:`panonet.evaluation.semantic`) and panoptic quality (:mod:`panonet.evaluation.panoptic`).
"""

from panonet.evaluation.panoptic import (
    PanopticStats,
    gt_panoptic_from_semantic_instance,
    panoptic_stats,
)
from panonet.evaluation.semantic import confusion_matrix, iou_from_confusion, pixel_accuracy

__all__ = [
    "PanopticStats",
    "confusion_matrix",
    "gt_panoptic_from_semantic_instance",
    "iou_from_confusion",
    "panoptic_stats",
    "pixel_accuracy",
]
