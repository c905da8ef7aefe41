"""Instance-level average precision (AP, AP50) with the rules of Cityscapes' instance evaluation.

This is cityscapesscripts' ``evalInstanceLevelSemanticLabeling`` (without the distance-based
variants, which need depth) on arrays instead of files. For each of the 8 thing classes
(person, rider, car, truck, bus, train, motorcycle, bicycle) and each overlap threshold
``t`` in ``0.5, 0.55, ..., 0.95``:

- ground truth: the individually labelled instances (id ``labelId * 1000 + k``) with at least
  ``min_region_size`` pixels (official: 100). Group ("crowd") regions (an id < 1000 of a thing
  class) and smaller instances are never counted, neither as hits nor as misses;
- a prediction is a mask, a class and a score. Masks may overlap. Its IoU with a ground-truth
  instance of its class is ``|P & G| / (|P| + |G| - |P & G|)`` over all pixels (void pixels count,
  unlike in PQ);
- every ground-truth instance with predictions of IoU > t is a true positive scored by the best of
  them; the other predictions with IoU > t on it are false positives (duplicates); a
  ground-truth instance without one is a miss;
- a prediction with IoU > t on no ground-truth segment of its class (counted instances, groups and
  small instances alike) is a false positive unless the fraction of its pixels on void, on groups
  of its class and on small instances of its class is > t. As in the official code a pixel of a
  group region smaller than ``min_region_size`` is counted twice there;
- AP of a class at t is the area under its precision-recall curve with the official step-wise
  integration (points at every distinct score, plus (recall 0, precision 1)); a class without
  ground truth has AP NaN and is left out of the means, a class with ground truth but no
  prediction has AP 0;
- per class ``AP`` is the mean over the 10 thresholds and ``AP50`` the value at t = 0.5; the
  overall AP and AP50 are the means over the classes with ground truth.

Void is what the official script calls void: pixels whose *raw* Cityscapes instance id is the id
of a label with ``ignoreInEval`` (unlabeled, ego vehicle, ..., caravan, trailer, license plate).
Individually labelled caravans and trailers (ids 29xxx, 30xxx) are therefore *not* void: a
prediction on one is a plain false positive. The dataset's ``(semantic, instance)`` targets keep
those ids (:class:`panonet.data.CityscapesPanoptic` keeps every instance id >= 1000), so the
array API reproduces the official result exactly; see :func:`instance_ids_from_targets`.

Intentional difference: when a class has ground truth and predictions, but every prediction is
ignored and no ground truth is matched at some threshold, the official script crashes
(``IndexError`` on an empty score list); here that AP is 0.

Predictions come from the network as an instance id map and a semantic map;
:func:`instances_from_maps` (in :mod:`panonet.evaluation.instance_maps`, re-exported here) turns
those into scored instances (one mask each), and
:func:`scored_instance_map` into an :class:`InstanceMap`, the faster input for disjoint
instances. At 1024x2048 with 40 instances, on a shared 2-core CPU (load-dependent): 0.02-0.1 s
to score the map and 0.04-0.2 s for the update, 2-5x less than with one mask per instance. The
pixels are visited by a few bincounts; the matching works on the small (predictions x
ground-truth segments x 10 thresholds) tables; no Python loop touches pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from panonet.data.labels import (
    CLASSES,
    LABEL_DIVISOR,
    NUM_CLASSES,
    THING_TRAIN_IDS,
    TRAIN_TO_LABEL,
)
from panonet.evaluation.inputs import LabelMap, as_long_tensor, compact_ids, first_device
from panonet.evaluation.instance_maps import (
    TRAIN_TO_THING,
    InstanceMap,
    ScoredInstance,
    instance_ids_from_targets,
    instances_from_maps,
    scored_instance_map,
)

__all__ = [
    "OVERLAPS",
    "InstanceAPStats",
    "ScoredInstance",
    "instance_ids_from_targets",
    "InstanceMap",
    "instances_from_maps",
    "scored_instance_map",
]


OVERLAPS: np.ndarray = np.arange(0.5, 1.0, 0.05)
"""(10,) float64 IoU thresholds 0.5, 0.55, ..., 0.95, computed exactly as the official script
does (``np.arange``), so that the comparisons ``IoU > t`` agree to the last bit."""
OVERLAPS.setflags(write=False)

_THINGS: tuple[int, ...] = tuple(THING_TRAIN_IDS)
_NUM_THINGS = len(_THINGS)

# labelId -> index among the thing classes (-1: not a thing class).
_LABEL_TO_THING = np.full(256, -1, dtype=np.int64)
_LABEL_TO_THING[TRAIN_TO_LABEL[list(_THINGS)]] = np.arange(_NUM_THINGS)

# Raw ids the official script treats as void: the ids of every ``ignoreInEval`` label. The
# comparison is on the raw instance id, so 29 (a caravan group) is void but 29001 is not.
_VOID_IDS = np.array(sorted(lb.id for lb in _CITYSCAPES_LABELS if lb.ignoreInEval), np.int64)


def _empty_entries() -> dict[str, np.ndarray]:
    return {
        "overlap": np.zeros(0, np.int64),
        "cls": np.zeros(0, np.int64),
        "true": np.zeros(0, bool),
        "score": np.zeros(0, np.float64),
    }


@dataclass(eq=False)
class InstanceAPStats:
    """Accumulates the matches of predicted and ground-truth instances over images; computes
    Cityscapes AP and AP50 (see the module docstring for the rules).

    Attributes:
        min_region_size: ground-truth instances with fewer pixels are not evaluated (official:
            100 at 1024x2048; scale it with the image area for smaller images).
        hard_fn: (10, 8) int64 ground-truth instances without a match, per overlap and thing
            class (thing classes in trainId order).
        num_gt: (8,) int64 evaluated ground-truth instances per thing class.
        num_pred: (8,) int64 non-empty predictions per thing class.
    """

    min_region_size: int = 100
    hard_fn: np.ndarray = field(
        default_factory=lambda: np.zeros((len(OVERLAPS), _NUM_THINGS), dtype=np.int64)
    )
    num_gt: np.ndarray = field(default_factory=lambda: np.zeros(_NUM_THINGS, dtype=np.int64))
    num_pred: np.ndarray = field(default_factory=lambda: np.zeros(_NUM_THINGS, dtype=np.int64))
    # Scored detections (true or false positive) per (overlap index, thing class), in chunks.
    _chunks: list[dict[str, np.ndarray]] = field(default_factory=list, init=False, repr=False)

    def update(
        self,
        pred_instances: InstanceMap | Sequence[ScoredInstance | tuple[LabelMap, int, float]],
        gt_semantic: LabelMap | None = None,
        gt_instance: LabelMap | None = None,
        *,
        gt_instance_ids: LabelMap | None = None,
    ) -> InstanceAPStats:
        """Adds one image; returns ``self``.

        Give the ground truth either as the dataset's ``gt_semantic`` and ``gt_instance`` or as
        the raw ``gtFine_instanceIds`` map ``gt_instance_ids``.

        Args:
            pred_instances: the image's predictions, either a sequence of
                ``(mask, train_id, score)`` (:class:`ScoredInstance` or plain tuples: an (H, W)
                bool mask, tensor or array, overlaps allowed; a trainId; a finite score), or an
                :class:`InstanceMap` of disjoint instances (faster: one pass over the pixels
                instead of one per mask). Predictions of stuff classes are skipped and empty
                masks ignored, as the official script does.
            gt_semantic: (H, W) integer trainIds (255: ignore).
            gt_instance: (H, W) integer instance ids (``labelId * 1000 + k``; < 1000 where none).
            gt_instance_ids: (H, W) integer Cityscapes ``gtFine_instanceIds``.

        Raises:
            ValueError: shapes differ, the ground truth is given both ways or neither, a
                trainId outside [0, 19) in the sequence form, or a non-finite score.
        """
        fn = "InstanceAPStats.update"
        if (gt_instance_ids is None) == (gt_semantic is None and gt_instance is None):
            raise ValueError(f"{fn}: give either gt_semantic and gt_instance or gt_instance_ids")
        device = first_device(gt_instance_ids, gt_semantic, gt_instance)
        if gt_instance_ids is None:
            if gt_semantic is None or gt_instance is None:
                raise ValueError(f"{fn}: gt_semantic and gt_instance go together")
            gt = instance_ids_from_targets(gt_semantic, gt_instance)
        else:
            gt = as_long_tensor(gt_instance_ids, fn, "gt_instance_ids", device)
        if gt.dim() != 2:
            raise ValueError(f"{fn}: expected a (H, W) ground truth, got {tuple(gt.shape)}")
        shape = tuple(gt.shape)
        # Ground-truth segments: every distinct raw id; negative ids (-1, license plate) are
        # void in the official table, as is 0, so they are merged into 0.
        gt = gt.reshape(-1).clamp_min(0)
        g_ids, g_idx = compact_ids(gt, int(gt.max()) if gt.numel() else 0)
        kg = g_ids.numel()
        if isinstance(pred_instances, InstanceMap):
            inter, p_cls, scores = _intersections_from_map(pred_instances, g_idx, kg, shape, fn)
        else:
            inter, p_cls, scores = _intersections_from_masks(pred_instances, g_idx, kg, shape, fn)
        g_area = torch.bincount(g_idx, minlength=kg).cpu().numpy()
        self._add_image(inter, p_cls, scores, g_ids.cpu().numpy(), g_area)
        return self

    def _add_image(
        self,
        inter: np.ndarray,
        p_cls: np.ndarray,
        scores: np.ndarray,
        g_ids: np.ndarray,
        g_area: np.ndarray,
    ) -> None:
        """Matches of one image.

        Args:
            inter: (k, kg) int64 pixels of each non-empty thing prediction on each gt segment.
            p_cls: (k,) int64 thing index of each prediction.
            scores: (k,) float64.
            g_ids: (kg,) int64 raw ids of the gt segments (>= 0).
            g_area: (kg,) int64 their pixel counts.
        """
        g_label = np.where(g_ids >= LABEL_DIVISOR, g_ids // LABEL_DIVISOR, g_ids)
        g_cls = np.where(g_label < 256, _LABEL_TO_THING[np.clip(g_label, 0, 255)], -1)
        g_void = np.isin(g_ids, _VOID_IDS)
        g_group = g_ids < LABEL_DIVISOR
        g_small = g_area < self.min_region_size
        g_eval = (g_cls >= 0) & ~g_group & ~g_small
        eval_cls = g_cls[g_eval]
        self.num_gt += np.bincount(eval_cls, minlength=_NUM_THINGS)

        k = inter.shape[0]
        if k == 0:
            # Every evaluated instance is a miss at every overlap.
            self.hard_fn += np.bincount(eval_cls, minlength=_NUM_THINGS)[None, :]
            return
        p_area = inter.sum(axis=1)
        self.num_pred += np.bincount(p_cls, minlength=_NUM_THINGS)

        same = (p_cls[:, None] == g_cls[None, :]) & (g_cls >= 0)[None, :]
        union = p_area[:, None] + g_area[None, :] - inter
        iou = inter / union  # float64; exact as the official float(int) / int
        # over[t, p, g]: prediction p overlaps gt segment g of its class with IoU > OVERLAPS[t].
        over = same[None] & (iou[None] > OVERLAPS[:, None, None])
        T = len(OVERLAPS)

        # 1. Evaluated gt instances: best-scored hit is a true positive, other hits duplicates.
        hits = over[:, :, g_eval]  # (T, k, n_eval)
        hit = hits.any(axis=1)  # (T, n_eval)
        t_idx = np.broadcast_to(np.arange(T)[:, None], hit.shape)
        miss = ~hit
        self.hard_fn += np.bincount(
            (t_idx[miss] * _NUM_THINGS + np.broadcast_to(eval_cls, hit.shape)[miss]),
            minlength=T * _NUM_THINGS,
        ).reshape(T, _NUM_THINGS)
        scored = np.where(hits, scores[None, :, None], -np.inf)
        best = scored.argmax(axis=1)  # (T, n_eval)
        tp_t, tp_g = np.nonzero(hit)
        tp_score = scored.max(axis=1)[tp_t, tp_g]
        dup = hits & (np.arange(k)[None, :, None] != best[:, None, :])
        dup_t, dup_p, _ = np.nonzero(dup)

        # 2. Predictions without a hit on any segment of their class (evaluated, group or
        # small): false positives unless mostly on void / groups / small instances.
        found = over.any(axis=2)  # (T, k)
        on_same = inter * same
        ignored_px = (
            inter[:, g_void].sum(axis=1)
            + on_same[:, g_group].sum(axis=1)
            + on_same[:, g_small].sum(axis=1)  # a small group counts twice, as officially
        )
        frac = ignored_px / p_area
        fp_t, fp_p = np.nonzero(~found & (frac[None, :] <= OVERLAPS[:, None]))

        self._chunks.append(
            {
                "overlap": np.concatenate([tp_t, dup_t, fp_t]),
                "cls": np.concatenate([eval_cls[tp_g], p_cls[dup_p], p_cls[fp_p]]),
                "true": np.concatenate(
                    [np.ones(len(tp_t), bool), np.zeros(len(dup_t) + len(fp_t), bool)]
                ),
                "score": np.concatenate([tp_score, scores[dup_p], scores[fp_p]]),
            }
        )

    def merge(self, other: InstanceAPStats) -> InstanceAPStats:
        """Adds another accumulator's matches (e.g. from another worker) in place; returns self.

        Raises:
            ValueError: the two use different ``min_region_size``.
        """
        if other.min_region_size != self.min_region_size:
            raise ValueError(
                f"InstanceAPStats.merge: min_region_size {self.min_region_size} != "
                f"{other.min_region_size}"
            )
        self.hard_fn += other.hard_fn
        self.num_gt += other.num_gt
        self.num_pred += other.num_pred
        self._chunks.extend(other._chunks)
        return self

    def _entries(self) -> dict[str, np.ndarray]:
        if not self._chunks:
            return _empty_entries()
        merged = {key: np.concatenate([c[key] for c in self._chunks]) for key in self._chunks[0]}
        self._chunks = [merged]  # later calls reuse the concatenation
        return merged

    def ap_matrix(self) -> np.ndarray:
        """(10, 8) float64 AP per overlap threshold and thing class (official ``ap[0]``, but
        classes as columns): NaN without ground truth, 0.0 without predictions."""
        e = self._entries()
        ap = np.full((len(OVERLAPS), _NUM_THINGS), np.nan)
        have_gt = self.num_gt > 0
        have_pred = self.num_pred > 0
        key = e["overlap"] * _NUM_THINGS + e["cls"]
        order = np.argsort(key, kind="stable")
        bounds = np.searchsorted(key[order], np.arange(len(OVERLAPS) * _NUM_THINGS + 1))
        for t in range(len(OVERLAPS)):
            for c in range(_NUM_THINGS):
                if not have_gt[c]:
                    continue
                if not have_pred[c]:
                    ap[t, c] = 0.0
                    continue
                j = t * _NUM_THINGS + c
                rows = order[bounds[j] : bounds[j + 1]]
                ap[t, c] = _average_precision(
                    e["true"][rows], e["score"][rows], int(self.hard_fn[t, c])
                )
        return ap

    def summary(self) -> dict[str, Any]:
        """AP and AP50 as fractions in [0, 1].

        Returns:
            ``{"AP": float, "AP50": float, "n": int, "per_class": {class name: {"AP", "AP50":
            float, "num_gt", "num_pred": int}}}``, ``per_class`` over the 8 thing classes in
            trainId order. A class without ground truth has NaN AP / AP50 and is not in the
            means; "n" counts the classes that are. With n = 0 the means are NaN.
        """
        ap = self.ap_matrix()
        o50 = int(np.flatnonzero(np.isclose(OVERLAPS, 0.5))[0])
        per_class_ap = ap.mean(axis=0)  # NaN stays NaN: a class has gt at every overlap or none
        have = ~np.isnan(per_class_ap)
        n = int(have.sum())
        result: dict[str, Any] = {
            "AP": float(per_class_ap[have].mean()) if n else float("nan"),
            "AP50": float(ap[o50, have].mean()) if n else float("nan"),
            "n": n,
            "per_class": {},
        }
        for i, t in enumerate(_THINGS):
            result["per_class"][CLASSES[t].name] = {
                "AP": float(per_class_ap[i]),
                "AP50": float(ap[o50, i]),
                "num_gt": int(self.num_gt[i]),
                "num_pred": int(self.num_pred[i]),
            }
        return result


def _average_precision(true: np.ndarray, score: np.ndarray, hard_fn: int) -> float:
    """Area under the precision-recall curve, integrated as cityscapesscripts does.

    Args:
        true: (n,) bool, whether each scored detection is a true positive.
        score: (n,) float64 scores.
        hard_fn: ground-truth instances without any detection.
    """
    if true.size == 0:
        return 0.0  # the official script raises IndexError here (see the module docstring)
    order = np.argsort(score, kind="stable")
    s = score[order]
    cum = np.cumsum(true[order].astype(np.int64))
    _, first = np.unique(s, return_index=True)  # first index of each distinct score, ascending
    # At threshold s[first[i]]: detections with a score >= it are "predicted positive".
    before = np.where(first > 0, cum[first - 1], 0)  # true positives below the threshold
    tp = cum[-1] - before
    fp = len(s) - first - tp
    fn = before + hard_fn
    precision = np.append(tp / (tp + fp), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.append(np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0), 0.0)
    # Official step widths: np.convolve([r0, r0, r1, ..., r_m, 0], [-0.5, 0, 0.5], "valid"),
    # i.e. (r[i - 1] - r[i + 1]) / 2 with r[-1] = r[0] and r[m + 1] = 0.
    prev = np.concatenate([recall[:1], recall[:-1]])
    nxt = np.concatenate([recall[1:], [0.0]])
    return float(np.dot(precision, 0.5 * (prev - nxt)))


def _intersections_from_masks(
    pred_instances: Sequence[ScoredInstance | tuple[LabelMap, int, float]],
    g_idx: torch.Tensor,
    kg: int,
    shape: tuple[int, ...],
    fn: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, kg) intersections, (k,) thing indices and (k,) float64 scores of the non-empty thing
    predictions among (mask, train_id, score) items; ``g_idx`` (H*W,) compact gt index."""
    masks: list[torch.Tensor] = []
    cls: list[int] = []
    scores: list[float] = []
    for i, item in enumerate(pred_instances):
        try:
            mask, train_id, score = item
        except (TypeError, ValueError):
            raise ValueError(f"{fn}: prediction {i} is not a (mask, train_id, score)") from None
        train_id, score = int(train_id), float(score)
        if not 0 <= train_id < NUM_CLASSES:
            raise ValueError(f"{fn}: prediction {i} has trainId {train_id}, not in [0, 19)")
        if not np.isfinite(score):
            raise ValueError(f"{fn}: prediction {i} has a non-finite score {score}")
        if TRAIN_TO_THING[train_id] < 0:
            continue  # a stuff class: the official script skips it too
        m = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
        if tuple(m.shape) != shape:
            raise ValueError(
                f"{fn}: prediction {i} has a mask of shape {tuple(m.shape)}, the ground truth is "
                f"{shape}"
            )
        masks.append(m.to(device=g_idx.device, dtype=torch.bool).reshape(-1))
        cls.append(int(TRAIN_TO_THING[train_id]))
        scores.append(score)
    if not masks:
        return np.zeros((0, kg), np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    k = len(masks)
    # Masks may overlap, so no joint id map: one bincount over the (mask, pixel) pairs.
    pk, pix = torch.stack(masks).nonzero(as_tuple=True)
    inter = torch.bincount(pk * kg + g_idx[pix], minlength=k * kg).view(k, kg).cpu().numpy()
    nonempty = inter.sum(axis=1) > 0  # the official script skips empty masks
    return inter[nonempty], np.asarray(cls, np.int64)[nonempty], np.asarray(scores)[nonempty]


def _intersections_from_map(
    pred: InstanceMap, g_idx: torch.Tensor, kg: int, shape: tuple[int, ...], fn: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_intersections_from_masks`, for disjoint instances given as an id map."""
    inst = as_long_tensor(pred.instance_map, fn, "instance_map", g_idx.device)
    if tuple(inst.shape) != shape:
        raise ValueError(
            f"{fn}: instance_map has shape {tuple(inst.shape)}, the ground truth is {shape}"
        )
    train_ids = as_long_tensor(pred.train_ids, fn, "train_ids", None).cpu().numpy()
    scores = torch.as_tensor(pred.scores).detach().cpu().double().numpy()
    flat = inst.reshape(-1)
    lo, hi = (int(v) for v in torch.aminmax(flat)) if flat.numel() else (0, 0)
    if lo < 0:
        raise ValueError(f"{fn}: instance ids must be >= 0, got {lo}")
    if train_ids.ndim != 1 or scores.shape != train_ids.shape or len(train_ids) < hi:
        raise ValueError(
            f"{fn}: expected train_ids and scores of one shape (K,) with K >= {hi} (the largest "
            f"instance id), got {train_ids.shape} and {scores.shape}"
        )
    p_ids, p_idx = compact_ids(flat, hi, scale=kg)
    # Intersection of every (instance id, gt segment) pair: one bincount, as for PQ.
    inter = torch.bincount(p_idx + g_idx, minlength=p_ids.numel() * kg)
    inter = inter.view(-1, kg).cpu().numpy()
    ids = p_ids.cpu().numpy()
    keep = ids > 0
    cls = np.full(len(ids), 255, np.int64)
    cls[keep] = train_ids[ids[keep] - 1]
    thing = np.where((cls >= 0) & (cls < NUM_CLASSES), TRAIN_TO_THING[np.clip(cls, 0, 18)], -1)
    keep &= thing >= 0
    sc = np.zeros(len(ids))
    sc[ids > 0] = scores[ids[ids > 0] - 1]
    if not np.isfinite(sc[keep]).all():
        raise ValueError(f"{fn}: non-finite scores of instances in the map")
    return inter[keep], thing[keep], sc[keep]
