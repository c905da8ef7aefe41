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

The file API reads and writes the COCO-panoptic format of cityscapesscripts
(``createPanopticImgs`` for the ground truth): a JSON file whose ``annotations`` list, per
``image_id``, a PNG ``file_name`` and the ``segments_info`` (``id``, ``category_id``,
``iscrowd``), and RGB PNGs whose pixels encode the segment id as ``R + 256 G + 256**2 B``.
:func:`evaluate_panoptic` evaluates such files like ``evaluatePanoptic``;
:func:`write_panoptic_predictions` writes predicted Cityscapes-id maps in that format.

The per-image work is two bincounts over the pixels plus matching on the small (ground-truth
segments x predicted segments) intersection matrix, on the maps' device, never a Python loop over
segments or pixels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from panonet._atomic import write_atomic
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
    "evaluate_panoptic",
    "gt_panoptic_from_semantic_instance",
    "id_to_rgb",
    "panoptic_stats",
    "rgb_to_id",
    "write_panoptic_predictions",
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
        pq, sq, rq, present = _class_scores(self.tp, self.fp, self.fn, self.iou)
        result: dict[str, Any] = _group_means(pq, sq, rq, present, _IS_THING)
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


def _class_scores(
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


def _group_means(
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
    # segment's area includes pixels on gt void (only the union discounts those).
    p_area = inter.sum(axis=0)
    rows = g_seg | g_crowd
    tp, fp, fn, iou = _count_matches(
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


def _count_matches(
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
    (:func:`evaluate_panoptic`), which differ only in how they find segments and classes.

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


# --- file API: COCO-panoptic JSON + PNG, as cityscapesscripts reads and writes it ---------------


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO-panoptic PNG: ``R + 256 G + 256**2 B``.

    Args:
        rgb: (H, W, 3) (or more channels; the rest are ignored, as the official ``rgb2id`` does)
            integer array.

    Returns:
        (H, W) int64.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"rgb_to_id: expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    c = rgb[..., :3].astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_id`: (H, W) integer ids in [0, 2**24) to (H, W, 3) uint8."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError("id_to_rgb: ids must lie in [0, 2**24) to fit in an RGB pixel")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _read_ids(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        rgb = np.asarray(image)
    if rgb.ndim != 3:
        raise ValueError(f"evaluate_panoptic: {path} is not an RGB panoptic PNG (mode != RGB)")
    return torch.from_numpy(rgb_to_id(rgb))


def _lookup(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each key in the sorted ``table_keys`` and whether it is there."""
    pos = np.searchsorted(table_keys, keys)
    pos = np.clip(pos, 0, max(len(table_keys) - 1, 0))
    found = (table_keys[pos] == keys) if len(table_keys) else np.zeros(len(keys), bool)
    return pos, found


def evaluate_panoptic(
    gt_json_file: str | os.PathLike,
    gt_folder: str | os.PathLike,
    pred_json_file: str | os.PathLike,
    pred_folder: str | os.PathLike,
) -> dict[str, Any]:
    """Panoptic quality of COCO-panoptic prediction files against ground-truth files.

    The equivalent of cityscapesscripts' ``evaluatePanoptic`` (same rules, same result layout)
    without printing, writing files or worker processes: segments and their classes come from
    the JSON ``segments_info`` (``category_id``, ``iscrowd``), pixels from the RGB PNGs. The
    categories, their order and thing/stuff flags are those of the ground-truth JSON (labelIds
    for ``createPanopticImgs``' default output, trainIds with its ``useTrainId``). Every
    ground-truth image needs a prediction with the same ``image_id``; extra predictions are
    ignored. Per image the work is the same two bincounts as :class:`PanopticStats` and the
    matching is the same code.

    Conventions of the official script kept: id 0 is void in both maps; a ground-truth id in
    the PNG but not in the JSON is neither void nor a segment; a ground-truth segment's area is
    its JSON ``area`` (the PNG count if absent). One generalisation: if the JSON lists several
    crowd regions of one category in an image (``createPanopticImgs`` never does), an unmatched
    prediction is forgiven by its pixels on all of them, not on the last one only.

    Args:
        gt_json_file: ground-truth JSON (e.g. ``cityscapes_panoptic_val.json``).
        gt_folder: folder of the ground-truth PNGs.
        pred_json_file: prediction JSON (``annotations`` is all that is read).
        pred_folder: folder of the predicted PNGs.

    Returns:
        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq": float, "n": int}, "per_class":
        {category id: {"pq", "sq", "rq": float, "name": str, "tp", "fp", "fn": int}}}``, scores
        as fractions. ``per_class`` has every category of the ground-truth JSON in its order;
        absent classes score 0.0 and a group with n = 0 has NaN scores (the official script
        divides by zero there).

    Raises:
        ValueError: a ground-truth image without prediction, image sizes differ, or a prediction
            whose PNG and JSON disagree (an id in one and not the other, an unknown category),
            as the official script raises on those.
    """
    fn = "evaluate_panoptic"
    gt_json = json.loads(Path(gt_json_file).read_text())
    pred_json = json.loads(Path(pred_json_file).read_text())
    categories = list(gt_json["categories"])
    cat_ids = np.array([int(c["id"]) for c in categories], dtype=np.int64)
    cat_order = np.argsort(cat_ids, kind="stable")
    cat_sorted = cat_ids[cat_order]
    is_thing = np.array([c.get("isthing", 0) == 1 for c in categories], dtype=bool)
    n_cat = len(categories)
    tp = np.zeros(n_cat, np.int64)
    fp = np.zeros(n_cat, np.int64)
    fn_ = np.zeros(n_cat, np.int64)
    iou = np.zeros(n_cat, np.float64)
    preds = {a["image_id"]: a for a in pred_json["annotations"]}

    def category_index(cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, found = _lookup(cat, cat_sorted)
        return cat_order[pos] if len(cat_order) else pos, found

    for gt_ann in gt_json["annotations"]:
        image_id = gt_ann["image_id"]
        if image_id not in preds:
            raise ValueError(f"{fn}: no prediction for the image with id {image_id!r}")
        pred_ann = preds[image_id]
        gt = _read_ids(Path(gt_folder) / gt_ann["file_name"]).reshape(-1)
        pred_map = _read_ids(Path(pred_folder) / pred_ann["file_name"])
        pred = pred_map.reshape(-1)
        if pred.numel() != gt.numel():
            raise ValueError(f"{fn}: image {image_id!r}: prediction and ground truth sizes differ")

        p_ids_t, joint = compact_ids(pred, int(pred.max()) if pred.numel() else 0)
        kp = p_ids_t.numel()
        g_ids_t, g_row = compact_ids(gt, int(gt.max()) if gt.numel() else 0, scale=kp)
        kg = g_ids_t.numel()
        joint += g_row
        inter = torch.bincount(joint, minlength=kg * kp).view(kg, kp).cpu().numpy()
        p_ids, g_ids = p_ids_t.numpy(), g_ids_t.numpy()
        p_area = inter.sum(axis=0)

        # Predicted segments: the PNG's non-zero ids, each listed once in the JSON with a known
        # category (the official script raises KeyError otherwise).
        p_seg_info = pred_ann["segments_info"]
        js_ids = np.array([int(el["id"]) for el in p_seg_info], dtype=np.int64)
        js_cat = np.array([int(el["category_id"]) for el in p_seg_info], dtype=np.int64)
        order = np.argsort(js_ids, kind="stable")
        js_ids, js_cat = js_ids[order], js_cat[order]
        p_seg = p_ids != 0
        pos, listed = _lookup(p_ids[p_seg], js_ids)
        if not listed.all():
            raise ValueError(
                f"{fn}: image {image_id!r}: segment ids {p_ids[p_seg][~listed][:8].tolist()} are "
                "in the PNG and not in the JSON"
            )
        in_png = np.zeros(len(js_ids), bool)
        in_png[pos] = True
        if not in_png.all() or len(np.unique(js_ids)) != len(js_ids):
            raise ValueError(
                f"{fn}: image {image_id!r}: segment ids {js_ids[~in_png][:8].tolist()} are in "
                "the JSON and not in the PNG (or listed twice)"
            )
        p_cls, known = category_index(js_cat[pos])
        if not known.all():
            raise ValueError(
                f"{fn}: image {image_id!r}: unknown category ids {js_cat[pos][~known].tolist()}"
            )

        # Ground-truth segments: those of the JSON (of a known category); rows of the
        # intersection table by id, zero for a listed segment absent from the PNG.
        g_info = list(gt_ann["segments_info"])
        gs_ids = np.array([int(el["id"]) for el in g_info], dtype=np.int64)
        gs_cat = np.array([int(el["category_id"]) for el in g_info], dtype=np.int64)
        gs_crowd = np.array([el.get("iscrowd", 0) == 1 for el in g_info], dtype=bool)
        g_cls, g_known = category_index(gs_cat)
        row, in_map = _lookup(gs_ids, g_ids)
        g_inter = np.where(in_map[:, None], inter[row], 0)
        png_area = g_inter.sum(axis=1)
        gs_area = np.array(
            [int(el["area"]) if "area" in el else -1 for el in g_info], dtype=np.int64
        )
        gs_area = np.where(gs_area >= 0, gs_area, png_area)
        void_row, has_void = _lookup(np.zeros(1, np.int64), g_ids)
        p_void = inter[void_row[0]] if has_void[0] else np.zeros(kp, np.int64)

        keep = g_known & (gs_ids != 0)
        counts = _count_matches(
            g_inter[keep][:, p_seg],
            g_cls[keep],
            gs_crowd[keep],
            gs_area[keep],
            p_cls,
            p_area[p_seg],
            p_void[p_seg],
            n_cat,
        )
        for total, add in zip((tp, fp, fn_, iou), counts, strict=True):
            total += add

    pq, sq, rq, present = _class_scores(tp, fp, fn_, iou)
    result: dict[str, Any] = _group_means(pq, sq, rq, present, is_thing)
    result["per_class"] = {
        int(c["id"]): {
            "pq": float(pq[i]),
            "sq": float(sq[i]),
            "rq": float(rq[i]),
            "name": c.get("name", str(c["id"])),
            "tp": int(tp[i]),
            "fp": int(fp[i]),
            "fn": int(fn_[i]),
        }
        for i, c in enumerate(categories)
    }
    return result


def panoptic_categories() -> list[dict[str, Any]]:
    """The 19 evaluated Cityscapes categories in the JSON form of ``createPanopticImgs``
    (``id`` = labelId, ``name``, ``color``, ``isthing``), in trainId order."""
    return [
        {"id": c.label_id, "name": c.name, "color": list(c.color), "isthing": int(c.is_thing)}
        for c in CLASSES
    ]


def write_panoptic_predictions(
    out_json: str | os.PathLike,
    out_folder: str | os.PathLike,
    items: Iterable[tuple[str, LabelMap]],
) -> Path:
    """Writes predicted panoptic maps in the COCO-panoptic format that
    :func:`evaluate_panoptic` and cityscapesscripts' ``evaluatePanoptic`` read.

    Per image a PNG ``<out_folder>/<image_id>.png`` with the segment ids as RGB, and one JSON
    for all images: ``{"annotations": [{"image_id", "file_name", "segments_info": [{"id",
    "category_id", "area", "iscrowd": 0}, ...]}, ...], "categories": ...}``. The segment ids are
    the Cityscapes ids themselves (``labelId * 1000 + j`` for things, ``labelId`` for stuff) and
    the category of a segment is its labelId, as in the ground truth ``createPanopticImgs``
    makes. Maps are written as they come (``items`` may be a generator); the JSON is written
    last, atomically.

    Args:
        out_json: path of the JSON file.
        out_folder: folder of the PNGs (created if needed).
        items: ``(image_id, panoptic)`` pairs; ``image_id`` the Cityscapes image id
            (``<city>_<seq>_<frame>``, the key that matches the ground truth), ``panoptic`` an
            (H, W) integer map (tensor or array) of Cityscapes ids, 0 = void.

    Returns:
        The JSON path.

    Raises:
        ValueError: a duplicate or path-like image id, a map that is not 2-D, negative ids, or
            an id of a class that is not evaluated.
    """
    fn = "write_panoptic_predictions"
    out_json = Path(out_json)
    folder = Path(out_folder)
    folder.mkdir(parents=True, exist_ok=True)
    annotations: list[dict[str, Any]] = []
    seen: set[str] = set()
    for image_id, panoptic in items:
        image_id = str(image_id)
        if image_id in seen:
            raise ValueError(f"{fn}: image id {image_id!r} given twice")
        if not image_id or "/" in image_id or os.sep in image_id or image_id.startswith("."):
            raise ValueError(f"{fn}: image id {image_id!r} cannot be a file name")
        seen.add(image_id)
        pan = as_long_tensor(panoptic, fn, "panoptic", torch.device("cpu"))
        if pan.dim() != 2:
            raise ValueError(f"{fn}: expected an (H, W) panoptic map, got {tuple(pan.shape)}")
        flat = pan.reshape(-1)
        lo, hi = (int(v) for v in torch.aminmax(flat)) if flat.numel() else (0, 0)
        if lo < 0:
            raise ValueError(f"{fn}: image {image_id!r}: panoptic ids must be >= 0, got {lo}")
        ids_t, idx = compact_ids(flat, hi)
        area = torch.bincount(idx, minlength=ids_t.numel()).numpy()
        ids = ids_t.numpy()
        seg = ids != 0
        cls = _train_ids(ids[seg])
        if (cls == IGNORE_INDEX).any():
            raise ValueError(
                f"{fn}: image {image_id!r}: ids of classes that are not evaluated: "
                f"{ids[seg][cls == IGNORE_INDEX][:8].tolist()} (use 0 for void)"
            )
        label = np.where(ids >= LABEL_DIVISOR, ids // LABEL_DIVISOR, ids)
        file_name = f"{image_id}.png"
        Image.fromarray(id_to_rgb(pan.numpy())).save(folder / file_name)
        annotations.append(
            {
                "image_id": image_id,
                "file_name": file_name,
                "segments_info": [
                    {"id": int(i), "category_id": int(c), "area": int(a), "iscrowd": 0}
                    for i, c, a in zip(ids[seg], label[seg], area[seg], strict=True)
                ],
            }
        )
    data = {"annotations": annotations, "categories": panoptic_categories()}
    text = json.dumps(data)
    return write_atomic(out_json, lambda tmp: Path(tmp).write_text(text))
