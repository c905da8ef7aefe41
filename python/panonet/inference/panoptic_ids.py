"""Instance maps to Cityscapes panoptic ids, and the per-class instance limit those ids impose.

Both functions take ``max_instance_id``: a bound on the instance ids known to the caller (the
merge knows one: ids never exceed the number of low-resolution pixels). With it they read no
value back from the device, so that a GPU pipeline runs without waiting for the GPU; without it
they read the largest id first (one host synchronization) and check their inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import torch

from panonet.data.labels import CLASSES, LABEL_DIVISOR, THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.inference.validate import check_int, paired_label_maps
from panonet.ops import panoptic_ids

__all__ = [
    "instances_per_class",
    "limit_instances_per_class",
    "panoptic_from_semantic_instance",
    "warn_instances_over_limit",
]


def panoptic_from_semantic_instance(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    *,
    train_to_label: torch.Tensor | Sequence[int] | np.ndarray | None = None,
    thing_train_ids: Iterable[int] = THING_TRAIN_IDS,
    max_instance_id: int | None = None,
) -> torch.Tensor:
    """Cityscapes panoptic ids from a semantic (trainId) map and an instance map.

    Per pixel, with ``C = len(train_to_label)`` classes:

    - stuff class (trainId in [0, C), not a thing): its labelId (the instance id is ignored);
    - thing class with instance k > 0: ``labelId * 1000 + j``, where j = 0, 1, 2, ... numbers
      the distinct instance ids of that class in the image in increasing order, as in
      Cityscapes' ``gtFine_instanceIds`` (so each (class, instance) pair gets its own id);
    - thing class with instance 0 (not clustered or removed): 0, void (Cityscapes
      ``unlabeled``);
    - any other id (255 ignore, negative, >= C): 0, void.

    Args:
        semantic: (B, H, W) or (H, W) integer trainIds.
        instance: integer instance ids >= 0 of the same shape (ids need only be unique per
            image, not consecutive).
        train_to_label: (C,) labelId of each trainId; default the Cityscapes table.
        thing_train_ids: trainIds that have instances; default Cityscapes' 8 thing classes.
        max_instance_id: a bound the caller guarantees on the instance ids (all in
            ``[0, max_instance_id]``, at most 1000 per class and image): then nothing is read
            back from the device and those two conditions are not checked. None: checked.

    Returns:
        int64 panoptic ids of ``semantic``'s shape, on its device.

    Raises:
        ValueError: shape / dtype mismatch, negative instance ids, thing ids outside [0, C), or
            more than 1000 instances of one class in one image (ids would collide).
    """
    fn = "panoptic_from_semantic_instance"
    check_int(semantic, fn, "semantic")
    check_int(instance, fn, "instance")
    if semantic.dim() not in (2, 3):
        raise ValueError(
            f"{fn}: expected semantic of shape (B, H, W) or (H, W), got {tuple(semantic.shape)}"
        )
    if instance.shape != semantic.shape:
        raise ValueError(
            f"{fn}: expected instance of the semantic map's shape {tuple(semantic.shape)}, got "
            f"{tuple(instance.shape)}"
        )
    if instance.device != semantic.device:
        raise ValueError(
            f"{fn}: expected semantic and instance on one device, got {semantic.device} and "
            f"{instance.device}"
        )
    device = semantic.device
    t2l, thing_index, T = _class_tables(train_to_label, thing_train_ids, device, fn)
    inst = instance
    if max_instance_id is None:
        # One pass and one read for both ends of the ids.
        low, K = torch.stack(torch.aminmax(inst)).tolist() if inst.numel() else (0, 0)
        if low < 0:
            raise ValueError(f"{fn}: instance ids must be >= 0, got {low}")
        if T * (K + 1) > 4 * inst.numel() + 4096:
            # Ids far beyond the pixels' count: renumbered in order (the ranks stay), so that
            # the op's tables stay the size of a few maps.
            ids, inst = torch.unique(inst, sorted=True, return_inverse=True)
            inst = inst + int(ids[0] > 0)  # id 0, where present, stays 0
            K = int(ids.numel())
    else:
        K = int(max_instance_id)
    pan, most = panoptic_ids(
        semantic,
        inst,
        t2l,
        thing_index,
        num_things=T,
        max_instance_id=K,
        label_divisor=LABEL_DIVISOR,
    )
    if max_instance_id is None and int(most) > LABEL_DIVISOR:
        raise ValueError(
            f"{fn}: more than {LABEL_DIVISOR} instances of one class in one image; "
            f"panoptic ids labelId * {LABEL_DIVISOR} + j would collide"
        )
    return pan


def limit_instances_per_class(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    max_per_class: int = LABEL_DIVISOR,
    *,
    max_instance_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keeps at most ``max_per_class`` instances of each class per image: the largest ones.

    The Cityscapes panoptic convention (labelId * 1000 + j) has room for 1000 instances of a
    class; a badly trained or untrained network can produce more, and a predictor must still
    return a map. The removed (smallest) instances become 0, i.e. void in the panoptic map.

    Args:
        semantic: (B, H, W) or (H, W) integer class ids.
        instance: integer instance ids >= 0 of the same shape; every instance lies in one class
            (as :func:`~panonet.inference.merge.instances_from_embedding` returns them).
        max_per_class: instances kept per (image, class).
        max_instance_id: a bound the caller guarantees on the ids; then nothing is read back
            from the device (None: the largest id is read, and nothing is done when there are
            fewer ids than the limit).

    Returns:
        (instance map with the surplus set to 0, number of instances removed as a 0-dim int64
        tensor on the map's device).
    """
    fn = "limit_instances_per_class"
    sem, inst, unbatched = paired_label_maps(semantic, instance, fn)
    none_removed = torch.zeros((), dtype=torch.int64, device=inst.device)
    if max_instance_id is None:
        K = int(inst.max()) if inst.numel() else 0
        if K <= max_per_class:  # fewer ids than the limit
            return instance, none_removed
    else:
        K = int(max_instance_id)
    B, P = inst.shape[0], inst[0].numel()
    flat = inst.flatten(1).clamp(0, K)
    size, cls = _id_tables(sem, flat, K)
    ids = torch.arange(K + 1, device=inst.device).expand(B, -1)
    # Per image, ids sorted by (class, size descending, id): each id's rank within its class.
    order_key = ((cls + 1) * (P + 1) + (P - size)) * (K + 1) + ids
    order = order_key.argsort(dim=1)
    cls_sorted = cls.gather(1, order)
    rank = ids - torch.searchsorted(cls_sorted, cls_sorted)
    drop_sorted = (rank >= max_per_class) & (size.gather(1, order) > 0) & (order > 0)
    drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
    out = torch.where(drop.gather(1, flat).view_as(inst), 0, inst)
    removed = drop.sum()
    return (out.squeeze(0) if unbatched else out), removed


def instances_per_class(
    semantic: torch.Tensor, instance: torch.Tensor, num_classes: int, *, max_instance_id: int
) -> torch.Tensor:
    """Number of instances of each class in each image, read from nothing on the host.

    Args:
        semantic: (B, H, W) or (H, W) integer class ids.
        instance: integer instance ids in ``[0, max_instance_id]`` of the same shape, each
            instance in one class (0: none).
        num_classes: C; classes outside ``[0, C)`` are not counted.

    Returns:
        int64 (B, C) or (C,) counts on the maps' device.
    """
    unbatched = semantic.dim() == 2
    sem = (semantic.unsqueeze(0) if unbatched else semantic).long()
    inst = (instance.unsqueeze(0) if unbatched else instance).long()
    K = int(max_instance_id)
    size, cls = _id_tables(sem, inst.flatten(1).clamp(0, K), K)
    real = (size > 0) & (cls >= 0) & (cls < num_classes)
    real[:, 0] = False
    counts = torch.zeros(sem.shape[0], num_classes + 1, dtype=torch.int64, device=sem.device)
    counts.scatter_add_(1, torch.where(real, cls, num_classes), real.long())
    counts = counts[:, :num_classes]
    return counts[0] if unbatched else counts


def warn_instances_over_limit(counts: torch.Tensor | np.ndarray, limit: int) -> None:
    """Says, once per class and process, that a class had more clusters than panoptic ids hold:
    the sign of an untrained embedding (every pixel its own cluster) or a too small bandwidth.
    ``counts``: (B, C) or (C,) instances per image and class before the limit was applied
    (:func:`instances_per_class`), a tensor (read once: a wait for a GPU) or values already
    on the host."""
    values = counts.cpu().numpy() if isinstance(counts, torch.Tensor) else np.asarray(counts)
    per_image = values.reshape(-1, values.shape[-1]).astype(np.int64)
    if per_image.size == 0:
        return
    removed = int(np.clip(per_image - limit, 0, None).sum())
    most = {c: int(n) for c, n in enumerate(per_image.max(0)) if n > 0}
    over = {c: n for c, n in most.items() if n > limit and c not in _REPORTED_CLASSES}
    if not over:
        return
    _REPORTED_CLASSES.update(over)
    names = {c.train_id: c.name for c in CLASSES}
    listed = ", ".join(f"{names.get(c, f'class {c}')} {n}" for c, n in sorted(over.items()))
    warnings.warn(
        f"the embedding looks untrained (or the bandwidth is too small): clusters in one image "
        f"by class: {listed}, more than the {limit} instances per class that panoptic ids hold; "
        f"the smallest beyond {limit} ({removed} in this call) were set to void. Said once per "
        "class.",
        stacklevel=3,
    )


# --- helpers -------------------------------------------------------------------------------------

# Classes already reported by warn_instances_over_limit in this process: an untrained network
# overflows on every frame, and one clear message is worth more than one per frame.
_REPORTED_CLASSES: set[int] = set()


def _id_tables(sem: torch.Tensor, flat: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and id in [0, K]: its pixel count and its class (-1: no pixel, and id 0, which
    is no instance), from (B, H, W) classes and the (B, H * W) ids."""
    B = sem.shape[0]
    size = torch.zeros(B, K + 1, dtype=torch.int64, device=sem.device)
    size.scatter_add_(1, flat, torch.ones_like(flat))
    cls = torch.full((B, K + 1), -1, dtype=torch.int64, device=sem.device)
    cls.scatter_(1, flat, sem.flatten(1))
    cls[:, 0] = -1
    return size, cls


def _class_tables(
    train_to_label, thing_train_ids: Iterable[int], device: torch.device, fn: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(labelId per trainId, index among the thing classes per trainId or -1, on ``device``;
    number of thing classes). Tables given as host data are uploaded once per device (an upload
    waits for a GPU)."""
    things = tuple(sorted({int(t) for t in thing_train_ids}))
    if isinstance(train_to_label, torch.Tensor):
        t2l = train_to_label.to(device)
        _check_table(t2l, things, fn)
        index = torch.full((t2l.numel(),), -1, dtype=torch.int64)
        index[list(things)] = torch.arange(len(things))
        return t2l.long(), index.to(device, non_blocking=True), len(things)
    table = np.asarray(TRAIN_TO_LABEL if train_to_label is None else train_to_label)
    if table.ndim != 1 or table.size == 0 or table.dtype.kind not in "iu":
        raise ValueError(
            f"{fn}: expected train_to_label as a non-empty 1-D integer table, got shape "
            f"{table.shape} dtype {table.dtype}"
        )
    return (*_uploaded_tables(tuple(table.tolist()), things, str(device), fn), len(things))


@lru_cache(maxsize=64)
def _uploaded_tables(
    table: tuple[int, ...], things: tuple[int, ...], device: str, fn: str
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode(False):  # cached: usable in and out of inference mode
        t2l = torch.tensor(table, dtype=torch.int64)
        _check_table(t2l, things, fn)
        index = torch.full((t2l.numel(),), -1, dtype=torch.int64)
        index[list(things)] = torch.arange(len(things))
        return t2l.to(device), index.to(device)


def _check_table(t2l: torch.Tensor, things: tuple[int, ...], fn: str) -> None:
    if t2l.dim() != 1 or t2l.numel() == 0 or t2l.is_floating_point():
        raise ValueError(
            f"{fn}: expected train_to_label as a non-empty 1-D integer table, got shape "
            f"{tuple(t2l.shape)} dtype {t2l.dtype}"
        )
    C = t2l.numel()
    if any(not 0 <= t < C for t in things):
        raise ValueError(f"{fn}: thing_train_ids must lie in [0, {C}), got {list(things)}")
