"""Predicted instances for the instance AP (:mod:`panonet.evaluation.instance`): scored masks
(:class:`ScoredInstance`) or a scored id map for disjoint instances (:class:`InstanceMap`), made
from the network's instance and semantic maps; and the ground-truth instance ids the evaluation
reads from the dataset's targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from panonet.data.labels import LABEL_DIVISOR, NUM_CLASSES, THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.evaluation.inputs import LabelMap, as_long_tensor, first_device

__all__ = [
    "TRAIN_TO_THING",
    "InstanceMap",
    "ScoredInstance",
    "instance_ids_from_targets",
    "instances_from_maps",
    "scored_instance_map",
]

TRAIN_TO_THING = np.full(NUM_CLASSES, -1, dtype=np.int64)
"""(19,) int64: the index of each trainId among the 8 thing classes, -1 for stuff."""
TRAIN_TO_THING[list(THING_TRAIN_IDS)] = np.arange(len(THING_TRAIN_IDS))
TRAIN_TO_THING.setflags(write=False)


class ScoredInstance(NamedTuple):
    """One predicted instance.

    Attributes:
        mask: (H, W) bool tensor or array, the instance's pixels.
        train_id: its class (a thing trainId, 11..18).
        score: its confidence; only the order of the scores matters.
    """

    mask: torch.Tensor | np.ndarray
    train_id: int
    score: float


class InstanceMap(NamedTuple):
    """Disjoint predicted instances of one image as an id map: the fast input of
    :meth:`InstanceAPStats.update` (one bincount instead of one pass per mask).

    Attributes:
        instance_map: (H, W) integer instance ids >= 0, 0 = no instance.
        train_ids: (K,) integer trainIds, ``train_ids[k - 1]`` the class of instance id k
            (``K >= instance_map.max()``). Instances of a class that is not a thing class
            (stuff, 255) are not predictions and are skipped.
        scores: (K,) floats, ``scores[k - 1]`` the score of instance id k.
    """

    instance_map: torch.Tensor | np.ndarray
    train_ids: torch.Tensor | np.ndarray
    scores: torch.Tensor | np.ndarray


def instance_ids_from_targets(gt_semantic: LabelMap, gt_instance: LabelMap) -> torch.Tensor:
    """The ``gtFine_instanceIds`` map, as far as the instance evaluation looks at it, from the
    dataset's targets.

    - ``gt_instance >= 1000``: that id (any class, caravans and trailers included);
    - else a trainId 0..18: its labelId (for a thing class: the class's group region);
    - else: 0 (unlabeled, void).

    Args:
        gt_semantic: (H, W) integer trainIds (255: ignore).
        gt_instance: (H, W) integer Cityscapes instance ids, < 1000 (e.g. -1) where none.

    Returns:
        (H, W) int64 tensor on the device of the first tensor input.
    """
    fn = "instance_ids_from_targets"
    device = first_device(gt_semantic, gt_instance)
    sem = as_long_tensor(gt_semantic, fn, "gt_semantic", device)
    inst = as_long_tensor(gt_instance, fn, "gt_instance", device)
    if sem.shape != inst.shape:
        raise ValueError(
            f"{fn}: gt_semantic and gt_instance must have one shape, got {tuple(sem.shape)} and "
            f"{tuple(inst.shape)}"
        )
    valid = (sem >= 0) & (sem < NUM_CLASSES)
    label = torch.as_tensor(TRAIN_TO_LABEL.copy(), device=sem.device)[sem.clamp(0, NUM_CLASSES - 1)]
    return torch.where(inst >= LABEL_DIVISOR, inst, torch.where(valid, label, 0))


def instances_from_maps(
    instance_map: LabelMap,
    semantic: LabelMap,
    scores: torch.Tensor | np.ndarray | Sequence[float] | None = None,
    *,
    logits: torch.Tensor | None = None,
) -> list[ScoredInstance]:
    """Scored thing instances from the predictor's instance and semantic maps, one mask each.

    The class of an instance is the most frequent trainId of its pixels in ``semantic`` (unique
    for :func:`panonet.inference.merge` output, which masks instances to their class; ties go to
    the lower trainId). Instances of stuff or ignore classes are dropped.

    Cityscapes AP ranks predictions by score, and equal scores collapse the precision-recall
    curve to one point, so every instance needs a score. In order of preference:

    1. ``scores`` when given;
    2. with ``logits``: the mean, over the instance's pixels, of the softmax probability of the
       instance's class. This is the network's own confidence in the region, and it is low on
       the spurious fragments that mean-shift makes of small mislabelled regions (the paper's
       Fig. 4 false positives), which is what the ranking should push down;
    3. otherwise the instance's area as a fraction of the image: PanoNet gives no per-instance
       confidence, and among its clusters the small ones are the likely false positives
       (fragments, mislabelled specks) while real objects are mostly larger. Deterministic,
       free, and better than no ranking at all.

    :func:`scored_instance_map` computes the same classes and scores without building masks; it
    is the faster input for :meth:`InstanceAPStats.update` on full-size images.

    Args:
        instance_map: (H, W) integer instance ids, 0 = no instance (e.g. the ``"instance"`` of
            :func:`panonet.inference.merge`).
        semantic: (H, W) integer trainIds.
        scores: optional (K,) floats with ``scores[k - 1]`` the score of instance id k;
            ``K >= instance_map.max()``.
        logits: optional (C, h, w) floating class logits of the image; bilinearly resized
            (``align_corners=False``, as :func:`panonet.inference.semantic_from_logits`) to
            (H, W) when (h, w) differs.

    Returns:
        One :class:`ScoredInstance` per thing instance, in increasing id order; each ``mask`` an
        (H, W) bool tensor on the maps' device and ``score`` a Python float.
    """
    scored = scored_instance_map(instance_map, semantic, scores, logits=logits)
    inst = scored.instance_map
    present = torch.bincount(inst.reshape(-1), minlength=scored.train_ids.numel() + 1)[1:] > 0
    thing = torch.as_tensor(TRAIN_TO_THING >= 0, device=inst.device)
    sel = (present & thing[scored.train_ids.clamp(0, NUM_CLASSES - 1)]).nonzero().view(-1)
    if sel.numel() == 0:
        return []
    masks = inst.unsqueeze(0) == (sel + 1).view(-1, 1, 1)  # (k, H, W) bool in one comparison
    return [
        ScoredInstance(mask, int(c), float(s))
        for mask, c, s in zip(
            masks.unbind(0),
            scored.train_ids[sel].tolist(),
            scored.scores[sel].tolist(),
            strict=True,
        )
    ]


def scored_instance_map(
    instance_map: LabelMap,
    semantic: LabelMap,
    scores: torch.Tensor | np.ndarray | Sequence[float] | None = None,
    *,
    logits: torch.Tensor | None = None,
) -> InstanceMap:
    """Classes and scores of the instances of an id map, as an :class:`InstanceMap`.

    Same classes and scores as :func:`instances_from_maps` (which documents the arguments and
    the choice of the default score), without a mask per instance.

    Returns:
        ``InstanceMap(instance_map, train_ids, scores)``: the (H, W) int64 map, (K,) int64
        trainIds (255 for ids absent from the map or whose pixels are all ignore) and (K,)
        float64 scores (0 for absent ids), ``K = instance_map.max()``, all on the map's device.
    """
    fn = "scored_instance_map"
    device = first_device(instance_map, semantic)
    inst = as_long_tensor(instance_map, fn, "instance_map", device)
    sem = as_long_tensor(semantic, fn, "semantic", device)
    if inst.dim() != 2 or inst.shape != sem.shape:
        raise ValueError(
            f"{fn}: expected instance_map and semantic of one shape (H, W), got "
            f"{tuple(inst.shape)} and {tuple(sem.shape)}"
        )
    lo, hi = (int(v) for v in torch.aminmax(inst)) if inst.numel() else (0, 0)
    if lo < 0:
        raise ValueError(f"{fn}: instance ids must be >= 0, got {lo}")
    flat_inst, flat_sem = inst.reshape(-1), sem.reshape(-1)
    # Majority class per id from one joint bincount; ignore / invalid trainIds vote for
    # NUM_CLASSES, which wins only where nothing else is there (and then means "no class").
    c1 = NUM_CLASSES + 1
    cls = torch.where((flat_sem >= 0) & (flat_sem < NUM_CLASSES), flat_sem, NUM_CLASSES)
    votes = torch.bincount(flat_inst * c1 + cls, minlength=(hi + 1) * c1).view(hi + 1, c1)
    inst_cls = votes.max(dim=1).indices[1:]  # first maximum: the lower trainId on ties
    area = votes.sum(dim=1)[1:]
    train_ids = torch.where((area > 0) & (inst_cls < NUM_CLASSES), inst_cls, 255)

    if scores is not None:
        if isinstance(scores, torch.Tensor):
            sc = scores.detach().double()
        else:
            sc = torch.from_numpy(np.asarray(scores, dtype=np.float64).copy())
        if sc.dim() != 1 or sc.numel() < hi:
            raise ValueError(
                f"{fn}: expected scores of shape (K,) with K >= {hi} (the largest instance id), "
                f"got {tuple(sc.shape)}"
            )
        per_id = sc[:hi].to(inst.device)
    elif logits is not None:
        per_id = _mean_class_probability(logits, flat_inst, inst_cls, hi, tuple(inst.shape), fn)
    else:
        per_id = area.double() / max(inst.numel(), 1)
    return InstanceMap(inst, train_ids, per_id)


def _mean_class_probability(
    logits: torch.Tensor,
    flat_inst: torch.Tensor,
    inst_cls: torch.Tensor,
    k: int,
    size: tuple[int, int],
    fn: str,
) -> torch.Tensor:
    """(k,) float64: for ids 1..k, the mean over the id's pixels of the softmax probability of
    its class ``inst_cls[id - 1]`` (0 for absent ids or ids without a class)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() != 3:
        raise ValueError(f"{fn}: expected floating logits of shape (C, h, w)")
    if logits.shape[0] != NUM_CLASSES:
        raise ValueError(f"{fn}: expected {NUM_CLASSES} logit channels, got {logits.shape[0]}")
    x = logits.detach().to(flat_inst.device).float()
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    prob = torch.softmax(x, dim=0).reshape(NUM_CLASSES, -1)
    # Probability of each pixel's *instance's* class (id 0 and class-less ids: any, dropped).
    lut = torch.cat([inst_cls.new_zeros(1), inst_cls.clamp_max(NUM_CLASSES - 1)])
    p = prob.gather(0, lut[flat_inst].view(1, -1)).view(-1).double()
    total = torch.zeros(k + 1, dtype=torch.float64, device=p.device).index_add_(0, flat_inst, p)
    count = torch.bincount(flat_inst, minlength=k + 1).double()
    return (total / count.clamp_min(1))[1:]
