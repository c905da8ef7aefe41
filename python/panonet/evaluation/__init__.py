"""Metrics as pure functions of label maps plus additive accumulators: semantic IoU
(:mod:`panonet.evaluation.semantic`), panoptic quality with its COCO-panoptic file API
(:mod:`panonet.evaluation.panoptic`) and Cityscapes instance AP
(:mod:`panonet.evaluation.instance`).
"""

from panonet.evaluation.instance import (
    InstanceAPStats,
    InstanceMap,
    ScoredInstance,
    instance_ids_from_targets,
    instances_from_maps,
    scored_instance_map,
)
from panonet.evaluation.panoptic import (
    PanopticStats,
    gt_panoptic_from_semantic_instance,
    panoptic_stats,
)
from panonet.evaluation.panoptic_files import evaluate_panoptic, write_panoptic_predictions
from panonet.evaluation.semantic import confusion_matrix, iou_from_confusion, pixel_accuracy

__all__ = [
    "InstanceAPStats",
    "InstanceMap",
    "PanopticStats",
    "ScoredInstance",
    "confusion_matrix",
    "evaluate_panoptic",
    "gt_panoptic_from_semantic_instance",
    "instance_ids_from_targets",
    "instances_from_maps",
    "iou_from_confusion",
    "panoptic_stats",
    "pixel_accuracy",
    "scored_instance_map",
    "write_panoptic_predictions",
]
