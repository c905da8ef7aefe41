"""Panoptic quality (PQ = SQ x RQ) with the Cityscapes rules, on panoptic id maps.

Both maps use the Cityscapes id convention (the one of ``gtFine_instanceIds.png`` and of
:func:`panonet.inference.merge.panoptic_from_semantic_instance`): a pixel's id is
``labelId * 1000 + j`` for the j-th instance of a thing class, the plain ``labelId`` for stuff,
and 0 for void. A segment is the set of pixels with one id; its class is ``id // 1000`` for
ids >= 1000, else ``id`` itself.

The rules are those of cityscapesscripts' ``evalPanopticSemanticLabeling`` (``pq_compute``), the
COCO panoptic definition:

- ground truth: ids whose class is not one of the 19 evaluated classes (void, ego vehicle,
  caravan, ...) are void, as ``createPanopticImgs`` drops them; an id < 1000 of a thing class is
  a *crowd* (group) region: never matched, never a false negative;
- a predicted and a ground-truth segment of the same class match when their IoU > 0.5, where
  the predicted segment's pixels on ground-truth void do not count in the union. Matches are
  unique because the segments of a map are disjoint;
- unmatched non-crowd ground-truth segments are false negatives; an unmatched predicted segment
  is a false positive unless more than half of its area lies on ground-truth void or on the
  crowd region of its own class;
- per class ``PQ = sum(IoU of matches) / (TP + FP/2 + FN/2)``, ``SQ = sum(IoU) / TP``,
  ``RQ = TP / (TP + FP/2 + FN/2)``; PQ / SQ / RQ of "All", "Things" and "Stuff" are the
  unweighted means over the classes of the group with ``TP + FP + FN > 0``.

Counts are accumulated per class over images (:class:`PanopticStats`), so the result for a data
set equals that of ``pq_compute`` on the same images.

The file API (:mod:`panonet.evaluation.panoptic_files`) reads and writes the COCO-panoptic
format of cityscapesscripts (``createPanopticImgs`` for the ground truth): a JSON file whose
``annotations`` list, per ``image_id``, a PNG ``file_name`` and the ``segments_info`` (``id``,
``category_id``, ``iscrowd``), and RGB PNGs whose pixels encode the segment id as
``R + 256 G + 256**2 B``. It shares the matching and scoring of this module
(:func:`count_matches`, :func:`class_scores`, :func:`group_means`).

The per-image work is two bincounts over the pixels plus matching on the small (ground-truth
segments x predicted segments) intersection matrix, on the maps' device, never a Python loop over
segments or pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from panonet.data.labels import (
    CLASSES,
    IGNORE_INDEX,
    LABEL_DIVISOR,
    LABEL_TO_TRAIN,
    NUM_CLASSES,
    THING_TRAIN_IDS,
    TRAIN_TO_LABEL,
)
from panonet.evaluation.inputs import LabelMap, as_long_tensor, compact_ids, first_device

__all__ = [
    "LABEL_DIVISOR",
    "PanopticStats",
    "class_scores",
    "count_matches",
    "group_means",
    "gt_panoptic_from_semantic_instance",
    "panoptic_stats",
    "train_ids_of",
]


_IS_THING = np.zeros(NUM_CLASSES, dtype=bool)
_IS_THING[list(THING_TRAIN_IDS)] = True


def gt_panoptic_from_semantic_instance(semantic: LabelMap, instance: LabelMap) -> torch.Tensor:
    """Ground-truth panoptic ids from the dataset's semantic and instance targets.

    Rebuilds, restricted to the 19 evaluated classes, the ``gtFine_instanceIds`` map that
    cityscapesscripts' ``createPanopticImgs`` turns into panoptic ground truth:

    - stuff pixel: its labelId;
    - thing pixel with an instance id (>= 1000): that id, ``labelId * 1000 + k``;
    - thing pixel without one (-1: a group region such as a crowd of persons): the plain labelId,
      which for a thing class marks the class's *crowd* segment (id < 1000);
    - ignore (255) or any id outside [0, 19): 0, void.

    Args:
        semantic: (H, W) or (B, H, W) integer trainIds (tensor or numpy), as in
            :class:`panonet.data.CityscapesPanoptic` items.
        instance: integer Cityscapes instance ids of the same shape: ``labelId * 1000 + k`` on
            individually labelled things, anything < 1000 (the dataset uses -1) elsewhere.

    Returns:
        int64 panoptic ids, same shape, on the device of the first tensor input (CPU for numpy).

    Raises:
        ValueError: shapes differ, or a thing pixel's instance id names another class than its
            semantic label (the targets went out of sync, e.g. different resizing).
    """
    fn = "gt_panoptic_from_semantic_instance"
    device = first_device(semantic, instance)
    sem = as_long_tensor(semantic, fn, "semantic", device)
    inst = as_long_tensor(instance, fn, "instance", device)
    if sem.shape != inst.shape:
        raise ValueError(
            f"{fn}: semantic and instance must have the same shape, got {tuple(sem.shape)} and "
            f"{tuple(inst.shape)}"
        )
    valid = (sem >= 0) & (sem < NUM_CLASSES)
    cls = torch.where(valid, sem, 0)
    label = torch.as_tensor(TRAIN_TO_LABEL.copy(), device=sem.device)[cls]
    thing = valid & torch.as_tensor(_IS_THING, device=sem.device)[cls]
    own = thing & (inst >= LABEL_DIVISOR)
    mismatch = own & (inst // LABEL_DIVISOR != label)
    if bool(mismatch.any()):
        raise ValueError(
            f"{fn}: {int(mismatch.sum())} thing pixels have an instance id of another class "
            f"(e.g. instance {int(inst[mismatch][0])} on labelId {int(label[mismatch][0])})"
        )
    pan = torch.where(own, inst, label)
    return torch.where(valid, pan, 0)


def train_ids_of(ids: np.ndarray) -> np.ndarray:
    """trainId of each panoptic id (255 when its labelId is not an evaluated class)."""
    label = np.where(ids >= LABEL_DIVISOR, ids // LABEL_DIVISOR, ids)
    inside = (label >= 0) & (label < len(LABEL_TO_TRAIN))
    return np.where(
        inside, LABEL_TO_TRAIN[np.clip(label, 0, len(LABEL_TO_TRAIN) - 1)], IGNORE_INDEX
    )


@dataclass(eq=False)  # numpy fields: == would be ambiguous
class PanopticStats:
    """Per-class panoptic counts, additive over images.

    Attributes (all indexed by trainId, shape (19,)):
        tp: int64 number of matched (prediction, ground truth) segment pairs.
        fp: int64 number of unmatched, not ignored predicted segments.
        fn: int64 number of unmatched, non-crowd ground-truth segments.
        iou: float64 sum of the IoUs of the matched pairs.
    """

    tp: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.int64))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.int64))
    iou: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.float64))

    def update(
        self,
        pred_panoptic: LabelMap,
        gt_panoptic: LabelMap | None = None,
        *,
        gt_semantic: LabelMap | None = None,
        gt_instance: LabelMap | None = None,
    ) -> PanopticStats:
        """Adds the counts of one image or a batch; returns ``self``.

        Give the ground truth either as ``gt_panoptic`` (Cityscapes ids; a raw
        ``gtFine_instanceIds`` map works too, non-evaluated labels become void) or as the
        dataset's ``gt_semantic`` (trainIds) and ``gt_instance`` (see
        :func:`gt_panoptic_from_semantic_instance`).

        Args:
            pred_panoptic: (H, W) or (B, H, W) integer panoptic ids (tensor or numpy) using only
                0 (void) and ids of the 19 evaluated classes.
            gt_panoptic: integer ground-truth panoptic ids of the same shape.
            gt_semantic: integer trainIds of the same shape (with ``gt_instance``).
            gt_instance: integer Cityscapes instance ids of the same shape.

        Raises:
            ValueError: shapes differ, the ground truth is given both ways or neither, or a
                predicted id names a class that is not evaluated (cityscapesscripts rejects
                such a prediction too).
        """
        stats = panoptic_stats(
            pred_panoptic, gt_panoptic, gt_semantic=gt_semantic, gt_instance=gt_instance
        )
        return self.merge(stats)

    def merge(self, other: PanopticStats) -> PanopticStats:
        """Adds another accumulator's counts (e.g. from another worker) in place; returns self."""
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou
        return self

    def __add__(self, other: PanopticStats) -> PanopticStats:
        return self.copy().merge(other)

    def copy(self) -> PanopticStats:
        """An independent copy (the arrays are not shared)."""
        return PanopticStats(self.tp.copy(), self.fp.copy(), self.fn.copy(), self.iou.copy())

    def summary(self) -> dict[str, Any]:
        """PQ, SQ and RQ as fractions in [0, 1], in the layout of cityscapesscripts'
        ``evaluatePanoptic`` result.

        Returns:
            ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq": float, "n": int}, "per_class":
            {class name: {"pq", "sq", "rq": float, "tp", "fp", "fn": int, "train_id",
            "label_id": int, "is_thing": bool}}}``. A group averages over its n classes with
            ``TP + FP + FN > 0``; a group with n = 0 has NaN scores (where the official script
            divides by zero). As in the official script, a class with TP + FP + FN = 0 has
            per-class scores 0.0 (not counted in any average) and SQ is 0.0 when TP = 0.
            ``per_class`` is ordered by trainId.
        """
        pq, sq, rq, present = class_scores(self.tp, self.fp, self.fn, self.iou)
        result: dict[str, Any] = group_means(pq, sq, rq, present, _IS_THING)
        result["per_class"] = {
            c.name: {
                "pq": float(pq[c.train_id]),
                "sq": float(sq[c.train_id]),
                "rq": float(rq[c.train_id]),
                "tp": int(self.tp[c.train_id]),
                "fp": int(self.fp[c.train_id]),
                "fn": int(self.fn[c.train_id]),
                "train_id": c.train_id,
                "label_id": c.label_id,
                "is_thing": c.is_thing,
            }
            for c in CLASSES
        }
        return result


def class_scores(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class PQ, SQ, RQ (float64) and the mask of classes with ``TP + FP + FN > 0``, from
    (C,) counts; absent classes score 0.0 and SQ is 0.0 without TP, as in the official script."""
    tp_f = tp.astype(np.float64)
    denom = tp_f + 0.5 * fp + 0.5 * fn
    present = (tp + fp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pq = np.where(present, iou / denom, 0.0)
        sq = np.where(tp > 0, iou / tp_f, 0.0)
        rq = np.where(present, tp_f / denom, 0.0)
    return pq, sq, rq, present


def group_means(
    pq: np.ndarray, sq: np.ndarray, rq: np.ndarray, present: np.ndarray, is_thing: np.ndarray
) -> dict[str, dict[str, float | int]]:
    """``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}}``: unweighted means over the
    present classes of each group, NaN for an empty group (the official script divides by 0)."""
    result: dict[str, dict[str, float | int]] = {}
    for name, group in (("All", None), ("Things", True), ("Stuff", False)):
        sel = present if group is None else present & (is_thing == group)
        n = int(sel.sum())
        if n == 0:
            result[name] = {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
        else:
            # Plain sums then one division, in class order, like the official average.
            result[name] = {
                "pq": float(sum(pq[sel].tolist())) / n,
                "sq": float(sum(sq[sel].tolist())) / n,
                "rq": float(sum(rq[sel].tolist())) / n,
                "n": n,
            }
    return result


def panoptic_stats(
    pred_panoptic: LabelMap,
    gt_panoptic: LabelMap | None = None,
    *,
    gt_semantic: LabelMap | None = None,
    gt_instance: LabelMap | None = None,
) -> PanopticStats:
    """Per-class panoptic counts of one image or a batch (the pure form of
    :meth:`PanopticStats.update`, which documents the arguments).

    Returns:
        A new :class:`PanopticStats`; summing those of several images gives the data set's.
    """
    fn = "panoptic_stats"
    if (gt_panoptic is None) == (gt_semantic is None and gt_instance is None):
        raise ValueError(f"{fn}: give either gt_panoptic or gt_semantic and gt_instance")
    device = first_device(pred_panoptic, gt_panoptic, gt_semantic, gt_instance)
    if gt_panoptic is None:
        if gt_semantic is None or gt_instance is None:
            raise ValueError(f"{fn}: gt_semantic and gt_instance go together")
        gt = gt_panoptic_from_semantic_instance(
            as_long_tensor(gt_semantic, fn, "gt_semantic", device),
            as_long_tensor(gt_instance, fn, "gt_instance", device),
        )
    else:
        gt = as_long_tensor(gt_panoptic, fn, "gt_panoptic", device)
    pred = as_long_tensor(pred_panoptic, fn, "pred_panoptic", device)
    if pred.shape != gt.shape or pred.dim() not in (2, 3):
        raise ValueError(
            f"{fn}: expected pred and ground truth of one shape (H, W) or (B, H, W), got "
            f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    stats = PanopticStats()
    if pred.dim() == 2:
        pred, gt = pred.unsqueeze(0), gt.unsqueeze(0)
    for p, g in zip(pred, gt, strict=True):
        _add_image(stats, p.reshape(-1), g.reshape(-1))
    return stats


def _add_image(stats: PanopticStats, pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.numel() == 0:
        return
    p_lo, p_hi = (int(v) for v in torch.aminmax(pred))
    if p_lo < 0:
        raise ValueError(f"panoptic_stats: predicted ids must be >= 0, got {p_lo}")
    g_lo, g_hi = (int(v) for v in torch.aminmax(gt))
    if g_lo < 0:
        gt = gt.clamp_min(0)  # negative ground-truth ids (license plate, -1) are void
    p_ids, joint = compact_ids(pred, p_hi)
    kp = p_ids.numel()
    g_ids, g_row = compact_ids(gt, max(g_hi, 0), scale=kp)
    kg = g_ids.numel()
    joint += g_row  # (gt index) * kp + (pred index), in place: these maps are large
    # Intersection of every (gt segment, pred segment) pair: the only pass over pixel pairs.
    inter = torch.bincount(joint, minlength=kg * kp).view(kg, kp).cpu().numpy()
    p_ids = p_ids.cpu().numpy()
    g_ids = g_ids.cpu().numpy()

    p_cls = train_ids_of(p_ids)
    p_seg = p_ids != 0
    bad = p_seg & (p_cls == IGNORE_INDEX)
    if bad.any():
        raise ValueError(
            "panoptic_stats: predicted ids of classes that are not evaluated: "
            f"{p_ids[bad][:8].tolist()} (use 0 for void)"
        )
    g_cls = train_ids_of(g_ids)
    g_void = g_cls == IGNORE_INDEX
    g_crowd = ~g_void & (g_ids < LABEL_DIVISOR) & _IS_THING[np.where(g_void, 0, g_cls)]
    g_seg = ~g_void & ~g_crowd

    # Areas over all pixels: a gt segment's area includes pixels predicted void, a predicted
    # segment's area includes pixels on gt void (only the union discounts those).
    p_area = inter.sum(axis=0)
    rows = g_seg | g_crowd
    tp, fp, fn, iou = count_matches(
        inter[np.ix_(rows, p_seg)],
        g_cls[rows],
        g_crowd[rows],
        inter.sum(axis=1)[rows],
        p_cls[p_seg],
        p_area[p_seg],
        inter[g_void].sum(axis=0)[p_seg],
        NUM_CLASSES,
    )
    stats.tp += tp
    stats.fp += fp
    stats.fn += fn
    stats.iou += iou


def count_matches(
    inter: np.ndarray,
    g_cls: np.ndarray,
    g_crowd: np.ndarray,
    g_area: np.ndarray,
    p_cls: np.ndarray,
    p_area: np.ndarray,
    p_void: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The COCO / Cityscapes panoptic matching of one image, on its segment tables.

    Shared by the array API (:class:`PanopticStats`) and the file API
    (:func:`~panonet.evaluation.panoptic_files.evaluate_panoptic`), which differ only in how
    they find segments and classes.

    Args:
        inter: (kg, kp) int64 pixels of each ground-truth segment (rows: non-crowd segments and
            crowd regions; void excluded) on each predicted segment (columns; void excluded).
        g_cls: (kg,) int64 class index of each ground-truth row, in [0, num_classes).
        g_crowd: (kg,) bool, whether the row is a crowd region.
        g_area: (kg,) int64 area of each ground-truth row (all its pixels).
        p_cls: (kp,) int64 class index of each predicted segment, in [0, num_classes).
        p_area: (kp,) int64 area of each predicted segment (all its pixels).
        p_void: (kp,) int64 pixels of each predicted segment on ground-truth void.
        num_classes: length of the count vectors.

    Returns:
        Per-class (num_classes,) ``tp``, ``fp``, ``fn`` (int64) and ``iou`` (float64, sum of the
        IoUs of the matches).
    """
    seg = ~g_crowd
    i = inter[seg]
    # Predicted pixels on void leave the union.
    union = g_area[seg, None] + (p_area - p_void)[None, :] - i
    same = g_cls[seg, None] == p_cls[None, :]
    # IoU > 0.5 in exact integer arithmetic; equals the float test for any image < 2**53 pixels.
    # Matches are unique because the segments of a map are disjoint.
    match = same & (2 * i > union)
    rows, cols = np.nonzero(match)
    iou = i[rows, cols] / union[rows, cols]
    cls = g_cls[seg][rows]
    tp = np.bincount(cls, minlength=num_classes)
    iou_sum = np.bincount(cls, weights=iou, minlength=num_classes)
    fn = np.bincount(g_cls[seg][~match.any(axis=1)], minlength=num_classes)

    # An unmatched prediction is forgiven when over half of it lies on void or on a crowd region
    # of its class.
    unmatched = ~match.any(axis=0)
    crowd_same = g_cls[g_crowd, None] == p_cls[None, :]
    on_crowd = (inter[g_crowd] * crowd_same).sum(axis=0)
    ignored = 2 * (p_void + on_crowd) > p_area
    fp = np.bincount(p_cls[unmatched & ~ignored], minlength=num_classes)
    return tp, fp, fn, iou_sum
