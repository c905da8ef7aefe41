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
set equals that of ``pq_compute`` on the same images. The per-image work is two bincounts over
the pixels plus matching on the small (ground-truth segments x predicted segments) intersection
matrix, on the maps' device, never a Python loop over segments or pixels.
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
from panonet.evaluation.semantic import _as_long_tensor  # one input convention for all metrics

__all__ = [
    "LABEL_DIVISOR",
    "PanopticStats",
    "gt_panoptic_from_semantic_instance",
    "panoptic_stats",
]


LabelMap = torch.Tensor | np.ndarray

_IS_THING = np.zeros(NUM_CLASSES, dtype=bool)
_IS_THING[list(THING_TRAIN_IDS)] = True

# Above this many distinct id values the dense id -> index table would cost more memory than a
# sort; Cityscapes ids stay below 34 * 1000.
_DENSE_ID_LIMIT = 1 << 20


def _first_device(*xs: Any) -> torch.device | None:
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x.device
    return None


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
    device = _first_device(semantic, instance)
    sem = _as_long_tensor(semantic, fn, "semantic", device)
    inst = _as_long_tensor(instance, fn, "instance", device)
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


def _compact(ids: torch.Tensor, hi: int, scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct values of a flat id tensor in [0, hi], and ``scale`` times each element's index
    among them (the scale folds the row stride of a joint index into the lookup for free)."""
    if hi < _DENSE_ID_LIMIT:
        # Dense lookup table: O(pixels), no sort (a sort of 2M ids costs ~10x more on a CPU).
        present = torch.bincount(ids, minlength=hi + 1) > 0
        lut = (torch.cumsum(present, 0) - 1) * scale
        return present.nonzero().view(-1), lut.index_select(0, ids)
    uniq, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    return uniq, inverse * scale if scale != 1 else inverse


def _train_ids(ids: np.ndarray) -> np.ndarray:
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
        tp = self.tp.astype(np.float64)
        denom = tp + 0.5 * self.fp + 0.5 * self.fn
        present = (self.tp + self.fp + self.fn) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            pq = np.where(present, self.iou / denom, 0.0)
            sq = np.where(self.tp > 0, self.iou / tp, 0.0)
            rq = np.where(present, tp / denom, 0.0)
        result: dict[str, Any] = {}
        for name, group in (("All", None), ("Things", True), ("Stuff", False)):
            sel = present if group is None else present & (_IS_THING == group)
            n = int(sel.sum())
            if n == 0:
                result[name] = {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
            else:
                # Plain sums then one division, in trainId order, like the official average.
                result[name] = {
                    "pq": float(sum(pq[sel].tolist())) / n,
                    "sq": float(sum(sq[sel].tolist())) / n,
                    "rq": float(sum(rq[sel].tolist())) / n,
                    "n": n,
                }
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
    device = _first_device(pred_panoptic, gt_panoptic, gt_semantic, gt_instance)
    if gt_panoptic is None:
        if gt_semantic is None or gt_instance is None:
            raise ValueError(f"{fn}: gt_semantic and gt_instance go together")
        gt = gt_panoptic_from_semantic_instance(
            _as_long_tensor(gt_semantic, fn, "gt_semantic", device),
            _as_long_tensor(gt_instance, fn, "gt_instance", device),
        )
    else:
        gt = _as_long_tensor(gt_panoptic, fn, "gt_panoptic", device)
    pred = _as_long_tensor(pred_panoptic, fn, "pred_panoptic", device)
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
    p_ids, joint = _compact(pred, p_hi)
    kp = p_ids.numel()
    g_ids, g_row = _compact(gt, max(g_hi, 0), scale=kp)
    kg = g_ids.numel()
    joint += g_row  # (gt index) * kp + (pred index), in place: these maps are large
    # Intersection of every (gt segment, pred segment) pair: the only pass over pixel pairs.
    inter = torch.bincount(joint, minlength=kg * kp).view(kg, kp).cpu().numpy()
    p_ids = p_ids.cpu().numpy()
    g_ids = g_ids.cpu().numpy()

    p_cls = _train_ids(p_ids)
    p_seg = p_ids != 0
    bad = p_seg & (p_cls == IGNORE_INDEX)
    if bad.any():
        raise ValueError(
            "panoptic_stats: predicted ids of classes that are not evaluated: "
            f"{p_ids[bad][:8].tolist()} (use 0 for void)"
        )
    g_cls = _train_ids(g_ids)
    g_void = g_cls == IGNORE_INDEX
    g_crowd = ~g_void & (g_ids < LABEL_DIVISOR) & _IS_THING[np.where(g_void, 0, g_cls)]
    g_seg = ~g_void & ~g_crowd

    # Areas over all pixels: a gt segment's area includes pixels predicted void, a predicted
    # segment's area includes pixels on gt void (only the union discounts those, below).
    p_area = inter.sum(axis=0)
    g_area = inter.sum(axis=1)
    on_void = inter[g_void].sum(axis=0)  # (kp,) pixels of each predicted segment on gt void

    # Matching between non-crowd gt segments (rows) and predicted segments (columns).
    i = inter[np.ix_(g_seg, p_seg)]
    union = g_area[g_seg, None] + (p_area - on_void)[None, p_seg] - i
    same = g_cls[g_seg, None] == p_cls[None, p_seg]
    # IoU > 0.5 in exact integer arithmetic; equals the float test for any image < 2**53 pixels.
    match = same & (2 * i > union)
    rows, cols = np.nonzero(match)
    iou = i[rows, cols] / union[rows, cols]
    cls = g_cls[g_seg][rows]
    stats.tp += np.bincount(cls, minlength=NUM_CLASSES)
    stats.iou += np.bincount(cls, weights=iou, minlength=NUM_CLASSES)

    matched_g = match.any(axis=1)
    stats.fn += np.bincount(g_cls[g_seg][~matched_g], minlength=NUM_CLASSES)

    # An unmatched prediction is forgiven when over half of it lies on void or on its class's
    # crowd region (one per class: the crowd id is the labelId itself).
    p_cls_seg = p_cls[p_seg]
    unmatched = ~match.any(axis=0)
    crowd_same = g_cls[g_crowd, None] == p_cls_seg[None, :]
    on_crowd = (inter[np.ix_(g_crowd, p_seg)] * crowd_same).sum(axis=0)
    ignored = 2 * (on_void[p_seg] + on_crowd) > p_area[p_seg]
    stats.fp += np.bincount(p_cls_seg[unmatched & ~ignored], minlength=NUM_CLASSES)
