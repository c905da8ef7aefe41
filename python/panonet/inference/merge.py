"""Panoptic post-processing (PanoNet Sec. III-D), as pure functions of tensors.

The network predicts, at 1/4 of the input resolution, semantic logits (B, C, h, w) and a pixel
embedding (B, D, h, w). Post-processing (in the style of detectron2's Panoptic-DeepLab):

1. semantic: bilinear upsampling of the logits to the output size, then argmax
   (:func:`semantic_from_logits`);
2. instances: class-wise mean-shift of the embedding at 1/4 resolution
   (:func:`panonet.ops.cluster_instances`, on the argmax of the low-resolution logits), the
   instance map resized by nearest neighbour, pixels whose full-resolution class disagrees with
   their instance's class dropped, small instances removed (:func:`instances_from_embedding`);
3. panoptic: Cityscapes ids, ``labelId`` for stuff, ``labelId * 1000 + j`` for the j-th
   instance of a thing class, 0 for void (:func:`panoptic_from_semantic_instance`).

Resizing convention: label maps (semantic or instance ids) are resized with *nearest-exact*
(half-pixel centres: output pixel ``y`` reads input row ``floor((y + 0.5) * h / H)``), the same
sampling geometry as ``F.interpolate(..., mode="bilinear", align_corners=False)`` used for the
logits, so instance masks and the full-resolution semantic map line up. It is computed with exact
integer index arithmetic (:func:`resize_labels`) because ``F.interpolate`` does not accept
integer tensors and a float round trip would be inexact for large ids. Never resize label maps
bilinearly: that invents ids that are in neither neighbour.

Every function accepts a batch (leading B dimension) or a single image (no B dimension) and
returns the same layout.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from panonet.data.labels import CLASSES, LABEL_DIVISOR, THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.data.transforms import _check_size, resize_labels  # shared with training
from panonet.ops import cluster_instances

__all__ = [
    "LABEL_DIVISOR",
    "THING_VOTE_GROUPS",
    "instances_from_embedding",
    "limit_instances_per_class",
    "merge",
    "panoptic_from_semantic_instance",
    "resize_labels",
    "semantic_from_logits",
    "vote_instance_classes",
]


def _train_ids(*names: str) -> tuple[int, ...]:
    by_name = {c.name: c.train_id for c in CLASSES}
    return tuple(by_name[n] for n in names)


THING_VOTE_GROUPS: tuple[tuple[int, ...], ...] = (
    _train_ids("person", "rider"),
    _train_ids("car", "truck", "bus", "train"),
    _train_ids("motorcycle", "bicycle"),
)
"""Thing classes that look alike and are clustered together under ``merge(vote_groups=...)``:
people, four-wheeled vehicles, two-wheelers. A rider and the bicycle under them are in different
groups, so they stay two instances even where their embeddings are close."""


def semantic_from_logits(logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-pixel class: bilinear upsampling of the logits, then argmax over classes.

    Args:
        logits: (B, C, h, w) or (C, h, w) floating class scores.
        size: output (H, W); ``None`` keeps (h, w). Upsampling is bilinear with
            ``align_corners=False`` (half-pixel centres).

    Returns:
        int64 class ids (trainIds), (B, H, W) or (H, W); ties go to the lowest class id.
    """
    _check_float(logits, "semantic_from_logits", "logits")
    if logits.dim() not in (3, 4):
        raise ValueError(
            "semantic_from_logits: expected logits of shape (B, C, h, w) or (C, h, w), got "
            f"{tuple(logits.shape)}"
        )
    unbatched = logits.dim() == 3
    x = logits.unsqueeze(0) if unbatched else logits
    if size is not None:
        size = _check_size(size, "semantic_from_logits")
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # max().indices, not argmax(): on the CPU argmax over the channels of an NCHW tensor is
    # ~5x slower (strided reduction); both return the first maximal index on ties.
    out = x.max(dim=1).indices
    return out.squeeze(0) if unbatched else out


def instances_from_embedding(
    embedding: torch.Tensor,
    semantic_lowres: torch.Tensor,
    bandwidth: torch.Tensor | Sequence[float],
    *,
    size: tuple[int, int] | None = None,
    semantic_fullres: torch.Tensor | None = None,
    min_instance_size: int = 0,
    min_bin_freq: int = 1,
) -> torch.Tensor:
    """Instance ids from class-wise mean-shift of the embedding, at the output resolution.

    Clustering runs at the embedding's (low) resolution with
    :func:`panonet.ops.cluster_instances`; the instance map is then resized to the output size
    with :func:`resize_labels` (nearest-exact). The class of an instance is the low-resolution
    class of its pixels (the op clusters each class separately, so it is unique).

    Args:
        embedding: (B, D, h, w) or (D, h, w) floating pixel embedding.
        semantic_lowres: (B, h, w) or (h, w) integer trainIds the clustering is done on
            (usually the argmax of the low-resolution logits). Ids outside
            ``[0, len(bandwidth))`` such as 255 are not clustered.
        bandwidth: (C,) floating per-class bandwidths, <= 0 for classes not clustered (see
            :func:`panonet.inference.bandwidth_table`).
        size: output (H, W); default: that of ``semantic_fullres`` if given, else (h, w).
        semantic_fullres: optional (B, H, W) or (H, W) integer trainIds at the output
            resolution; an instance keeps only the pixels where this class equals its own class.
        min_instance_size: instances with fewer pixels than this at the output resolution (after
            the class masking) are removed (set to 0).
        min_bin_freq: mean-shift bin-seeding threshold, see :func:`panonet.ops.mean_shift`.

    Returns:
        int64 instance ids, (B, H, W) or (H, W): 0 where not clustered / removed, else 1..K
        consecutive within each image, in the op's order (by class, then cluster rank).
    """
    fn = "instances_from_embedding"
    _check_float(embedding, fn, "embedding")
    if embedding.dim() not in (3, 4):
        raise ValueError(
            f"{fn}: expected embedding of shape (B, D, h, w) or (D, h, w), got "
            f"{tuple(embedding.shape)}"
        )
    unbatched = embedding.dim() == 3
    emb = embedding.unsqueeze(0) if unbatched else embedding
    B, _, h, w = emb.shape
    sem = _as_batched_labels(semantic_lowres, unbatched, fn, "semantic_lowres")
    if tuple(sem.shape) != (B, h, w):
        raise ValueError(
            f"{fn}: expected semantic_lowres of shape {_shape(B, h, w, unbatched)} to match the "
            f"embedding {tuple(embedding.shape)}, got {tuple(semantic_lowres.shape)}"
        )
    bw = _check_bandwidth(bandwidth, fn)
    min_instance_size = _check_nonneg_int(min_instance_size, fn, "min_instance_size")

    full = None
    if semantic_fullres is not None:
        full = _as_batched_labels(semantic_fullres, unbatched, fn, "semantic_fullres")
        if full.shape[0] != B:
            raise ValueError(
                f"{fn}: expected semantic_fullres with batch size {B}, got shape "
                f"{tuple(semantic_fullres.shape)}"
            )
        full_size = tuple(full.shape[-2:])
        if size is not None and _check_size(size, fn) != full_size:
            raise ValueError(
                f"{fn}: size {tuple(size)} does not match semantic_fullres of shape "
                f"{tuple(semantic_fullres.shape)}"
            )
        size = full_size
    out_size = (h, w) if size is None else _check_size(size, fn)

    inst = cluster_instances(emb, sem, bw, min_bin_freq=min_bin_freq)
    kmax = int(inst.max()) if inst.numel() else 0

    if full is not None:
        # Class of each instance id, looked up per image (-1 for id 0 so it never matches).
        cls = torch.full((B, kmax + 1), -1, dtype=torch.int64, device=inst.device)
        cls.scatter_(1, inst.flatten(1), sem.long().flatten(1))
        cls[:, 0] = -1
        inst = resize_labels(inst, out_size)
        inst_cls = torch.gather(cls, 1, inst.flatten(1)).view_as(inst)
        inst = torch.where(inst_cls == full.long(), inst, 0)
    else:
        inst = resize_labels(inst, out_size)

    inst = _filter_and_renumber(inst, kmax, min_instance_size)
    return inst.squeeze(0) if unbatched else inst


def panoptic_from_semantic_instance(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    *,
    train_to_label: torch.Tensor | Sequence[int] | np.ndarray | None = None,
    thing_train_ids: Iterable[int] = THING_TRAIN_IDS,
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

    Returns:
        int64 panoptic ids of ``semantic``'s shape, on its device.

    Raises:
        ValueError: shape / dtype mismatch, negative instance ids, thing ids outside [0, C), or
            more than 1000 instances of one class in one image (ids would collide).
    """
    fn = "panoptic_from_semantic_instance"
    _check_int(semantic, fn, "semantic")
    _check_int(instance, fn, "instance")
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
    table = TRAIN_TO_LABEL if train_to_label is None else train_to_label
    if isinstance(table, np.ndarray):
        table = table.copy()  # torch warns on (and could alias) a read-only numpy table
    t2l = torch.as_tensor(table, device=device)
    if t2l.dim() != 1 or t2l.numel() == 0 or t2l.is_floating_point():
        raise ValueError(
            f"{fn}: expected train_to_label as a non-empty 1-D integer table, got shape "
            f"{tuple(t2l.shape)} dtype {t2l.dtype}"
        )
    t2l = t2l.long()
    C = t2l.numel()
    things = sorted({int(t) for t in thing_train_ids})
    if any(not 0 <= t < C for t in things):
        raise ValueError(f"{fn}: thing_train_ids must lie in [0, {C}), got {things}")
    is_thing = torch.zeros(C, dtype=torch.bool, device=device)
    is_thing[things] = True

    unbatched = semantic.dim() == 2
    sem = (semantic.unsqueeze(0) if unbatched else semantic).long()
    inst = (instance.unsqueeze(0) if unbatched else instance).long()
    if inst.numel() and int(inst.min()) < 0:
        raise ValueError(f"{fn}: instance ids must be >= 0, got {int(inst.min())}")

    valid = (sem >= 0) & (sem < C)
    cls = sem.clamp(0, C - 1)
    label = t2l[cls]
    thing = valid & is_thing[cls]
    pan = torch.where(valid & ~thing, label, 0)

    segment = thing & (inst > 0)
    if bool(segment.any()):
        # One sortable key per (image, class, instance): sorted unique keys list each image's
        # classes in order and, within a class, its instance ids in increasing order, so j is
        # the key's rank minus the rank of its (image, class) group's first key.
        K = int(inst.max()) + 1
        b = torch.arange(sem.shape[0], device=device).view(-1, 1, 1).expand_as(sem)
        keys = ((b * C + cls) * K + inst)[segment]
        unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        group_start = torch.searchsorted(unique, unique // K * K)
        j = torch.arange(unique.numel(), device=device) - group_start
        if int(j.max()) >= LABEL_DIVISOR:
            raise ValueError(
                f"{fn}: more than {LABEL_DIVISOR} instances of one class in one image; "
                f"panoptic ids labelId * {LABEL_DIVISOR} + j would collide"
            )
        pan[segment] = label[segment] * LABEL_DIVISOR + j[inverse]
    return pan.squeeze(0) if unbatched else pan


def limit_instances_per_class(
    semantic: torch.Tensor, instance: torch.Tensor, max_per_class: int = LABEL_DIVISOR
) -> tuple[torch.Tensor, int]:
    """Keeps at most ``max_per_class`` instances of each class per image: the largest ones.

    The Cityscapes panoptic convention (labelId * 1000 + j) has room for 1000 instances of a
    class; a badly trained or untrained network can produce more, and a predictor must still
    return a map. The removed (smallest) instances become 0, i.e. void in the panoptic map.

    Args:
        semantic: (B, H, W) or (H, W) integer class ids.
        instance: integer instance ids >= 0 of the same shape; every instance lies in one class
            (as :func:`instances_from_embedding` returns them).
        max_per_class: instances kept per (image, class).

    Returns:
        (instance map with the surplus set to 0, number of instances removed).
    """
    fn = "limit_instances_per_class"
    _check_int(semantic, fn, "semantic")
    _check_int(instance, fn, "instance")
    if instance.shape != semantic.shape or semantic.dim() not in (2, 3):
        raise ValueError(
            f"{fn}: expected semantic and instance of one shape (B, H, W) or (H, W), got "
            f"{tuple(semantic.shape)} and {tuple(instance.shape)}"
        )
    unbatched = semantic.dim() == 2
    sem = (semantic.unsqueeze(0) if unbatched else semantic).long()
    inst = (instance.unsqueeze(0) if unbatched else instance).long()
    out, removed = inst.clone(), 0
    for b in range(inst.shape[0]):
        K = int(inst[b].max()) + 1 if inst[b].numel() else 1
        if K - 1 <= max_per_class:
            continue  # fewer instances in the image than the limit
        flat, cls_flat = inst[b].flatten(), sem[b].flatten()
        size = torch.bincount(flat, minlength=K)
        cls = torch.full((K,), -1, dtype=torch.int64, device=inst.device)
        cls.scatter_(0, flat, cls_flat)
        ids = torch.nonzero(size[1:] > 0).flatten() + 1
        # Rank instances within their class by decreasing size (ties: lower id first).
        order = ids[torch.argsort(size[ids] * K - ids, descending=True, stable=True)]
        order = order[torch.argsort(cls[order], stable=True)]
        c = cls[order]
        first = torch.searchsorted(c, c)
        rank = torch.arange(order.numel(), device=inst.device) - first
        drop = order[rank >= max_per_class]
        if drop.numel():
            out[b][torch.isin(out[b], drop)] = 0
            removed += drop.numel()
    return (out.squeeze(0) if unbatched else out), removed


def merge(
    semantic_logits_lowres: torch.Tensor | None,
    embedding_lowres: torch.Tensor,
    bandwidth: torch.Tensor | Sequence[float],
    *,
    size: tuple[int, int],
    semantic: torch.Tensor | None = None,
    min_instance_size: int = 0,
    min_bin_freq: int = 1,
    max_instances_per_class: int | None = LABEL_DIVISOR,
    vote_groups: Sequence[Sequence[int]] | None = None,
    train_to_label: torch.Tensor | Sequence[int] | np.ndarray | None = None,
    thing_train_ids: Iterable[int] = THING_TRAIN_IDS,
    stage: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Full post-processing: low-resolution network outputs to semantic, instance and panoptic.

    The one post-processing path: the :class:`~panonet.inference.Predictor`, evaluation (with
    predicted or ground-truth semantics), the mirror test and the bandwidth search all call it.

    Clustering uses the argmax of the *low-resolution* logits (the embedding's resolution); the
    output semantic map is the argmax of the bilinearly upsampled logits, and instances are
    masked to pixels where the two agree on the class (see :func:`instances_from_embedding`).
    With ``semantic`` given (e.g. ground truth), that map is the output semantic map and,
    resized to the embedding's grid by nearest-exact, the map clustering uses.

    Args:
        semantic_logits_lowres: (B, C, h, w) or (C, h, w) floating class logits; may be None
            when ``semantic`` is given.
        embedding_lowres: (B, D, h, w) or (D, h, w) floating embedding, same B, h, w.
        bandwidth: (C,) per-class bandwidths (<= 0: not clustered), see
            :func:`panonet.inference.bandwidth_table`.
        size: output (H, W), usually the input image's size.
        semantic: optional (B, H, W) or (H, W) integer trainIds at the output size (255 =
            ignore: never clustered, void in the panoptic map) used instead of the logits'.
        min_instance_size: minimum instance area in output pixels; smaller ones become void.
        min_bin_freq: mean-shift bin-seeding threshold.
        max_instances_per_class: keep at most this many instances per (image, class), the
            largest (:func:`limit_instances_per_class`; Cityscapes panoptic ids hold 1000); the
            rest become void and a warning says how many. None: no limit.
        vote_groups: groups of thing trainIds (e.g. :data:`THING_VOTE_GROUPS`) whose pixels are
            clustered together, with one bandwidth per group (the median of its classes'
            positive bandwidths), each instance then taking the class most of its pixels have
            (:func:`vote_instance_classes`); classes in no group are clustered alone as without
            it. An object whose pixels the semantic map splits between two classes of a group
            (a truck partly labelled bus) then stays one instance of one class instead of two
            fragments; the output semantic map takes the voted class on instance pixels.
            None: every class clustered apart (the paper's class-wise mean-shift).
        train_to_label, thing_train_ids: class table for the panoptic ids (default Cityscapes).
        stage: called with "semantic", "clustering" and "panoptic" as each stage ends (the
            Predictor times its stages with it).

    Returns:
        ``{"semantic": trainIds, "instance": ids 0..K, "panoptic": Cityscapes ids}``, each an
        int64 (B, H, W) or (H, W) tensor on the embedding's device.
    """
    fn = "merge"
    _check_float(embedding_lowres, fn, "embedding_lowres")
    if embedding_lowres.dim() not in (3, 4):
        raise ValueError(
            f"{fn}: expected embedding_lowres of shape (B, D, h, w) or (D, h, w), got "
            f"{tuple(embedding_lowres.shape)}"
        )
    if semantic_logits_lowres is None and semantic is None:
        raise ValueError(f"{fn}: expected semantic_logits_lowres or semantic, got neither")
    unbatched = embedding_lowres.dim() == 3
    bw = _check_bandwidth(bandwidth, fn)
    if semantic_logits_lowres is not None:
        _check_float(semantic_logits_lowres, fn, "semantic_logits_lowres")
        if semantic_logits_lowres.dim() not in (3, 4):
            raise ValueError(
                f"{fn}: expected semantic_logits_lowres of shape (B, C, h, w) or (C, h, w), got "
                f"{tuple(semantic_logits_lowres.shape)}"
            )
        if embedding_lowres.dim() != semantic_logits_lowres.dim():
            raise ValueError(
                f"{fn}: expected embedding_lowres with {semantic_logits_lowres.dim()} dims like "
                f"the logits {tuple(semantic_logits_lowres.shape)}, got "
                f"{tuple(embedding_lowres.shape)}"
            )
        batch_dims = semantic_logits_lowres.dim() - 3
        lead = semantic_logits_lowres.shape[:batch_dims]
        spatial = semantic_logits_lowres.shape[-2:]
        if embedding_lowres.shape[:batch_dims] != lead or embedding_lowres.shape[-2:] != spatial:
            raise ValueError(
                f"{fn}: expected embedding_lowres with batch and spatial dims matching the "
                f"logits {tuple(semantic_logits_lowres.shape)}, got "
                f"{tuple(embedding_lowres.shape)}"
            )
        C = semantic_logits_lowres.shape[batch_dims]
        if bw.numel() != C:
            raise ValueError(
                f"{fn}: expected {C} bandwidths (one per logit channel), got {bw.numel()}"
            )
    size = _check_size(size, fn)
    done = stage if stage is not None else (lambda _name: None)

    if semantic is None:
        semantic_lowres = semantic_from_logits(semantic_logits_lowres)
        semantic_out = semantic_from_logits(semantic_logits_lowres, size)
    else:
        B = 1 if unbatched else embedding_lowres.shape[0]
        sem = _as_batched_labels(semantic, unbatched, fn, "semantic")
        if tuple(sem.shape) != (B, *size):
            raise ValueError(
                f"{fn}: expected semantic of shape {_shape(B, *size, unbatched)} (the output "
                f"size), got {tuple(semantic.shape)}"
            )
        sem = sem.to(embedding_lowres.device).long()
        # Nearest-exact to the embedding's grid: the geometry the instance masking uses.
        semantic_lowres = resize_labels(sem, tuple(embedding_lowres.shape[-2:]))
        semantic_out = sem
        if unbatched:
            semantic_lowres, semantic_out = semantic_lowres[0], semantic_out[0]
    done("semantic")
    if vote_groups is not None:
        anchor_of, grouped_bw, voters = _vote_tables(bw, vote_groups)
        anchor_of = anchor_of.to(embedding_lowres.device)
        instance = instances_from_embedding(
            embedding_lowres,
            _relabel(semantic_lowres, anchor_of),
            grouped_bw.to(embedding_lowres.device),
            semantic_fullres=_relabel(semantic_out, anchor_of),
            min_instance_size=min_instance_size,
            min_bin_freq=min_bin_freq,
        )
        semantic_out = vote_instance_classes(semantic_out, instance, voters.to(instance.device))
    else:
        instance = instances_from_embedding(
            embedding_lowres,
            semantic_lowres,
            bw,
            semantic_fullres=semantic_out,
            min_instance_size=min_instance_size,
            min_bin_freq=min_bin_freq,
        )
    done("clustering")
    if max_instances_per_class is not None:
        limited, removed = limit_instances_per_class(
            semantic_out, instance, max_instances_per_class
        )
        if removed:  # counted only then: torch.unique over the frame is not free
            most = _most_instances_per_class(semantic_out, instance)
            _warn_once_per_class(most, max_instances_per_class, removed)
        instance = limited
    panoptic = panoptic_from_semantic_instance(
        semantic_out, instance, train_to_label=train_to_label, thing_train_ids=thing_train_ids
    )
    done("panoptic")
    return {"semantic": semantic_out, "instance": instance, "panoptic": panoptic}


def vote_instance_classes(
    semantic: torch.Tensor, instance: torch.Tensor, voters: torch.Tensor
) -> torch.Tensor:
    """Gives every pixel of an instance the class that most of the instance's voting pixels have.

    Args:
        semantic: (B, H, W) or (H, W) integer trainIds (ids outside ``[0, len(voters))``,
            such as 255, count for no class).
        instance: integer instance ids >= 0 of the same shape, 0 = none; ids need only be
            unique per image.
        voters: (C,) bool, True for the classes that take part in the vote.

    Returns:
        int64 trainIds of ``semantic``'s shape: on pixels of an instance with at least one
        voting pixel, that instance's majority voting class (ties: the lowest trainId);
        everywhere else ``semantic`` unchanged.
    """
    fn = "vote_instance_classes"
    _check_int(semantic, fn, "semantic")
    _check_int(instance, fn, "instance")
    if instance.shape != semantic.shape or semantic.dim() not in (2, 3):
        raise ValueError(
            f"{fn}: expected semantic and instance of one shape (B, H, W) or (H, W), got "
            f"{tuple(semantic.shape)} and {tuple(instance.shape)}"
        )
    unbatched = semantic.dim() == 2
    sem = (semantic.unsqueeze(0) if unbatched else semantic).long()
    inst = (instance.unsqueeze(0) if unbatched else instance).long()
    C = voters.numel()
    if inst.numel() == 0 or int(inst.max()) == 0:
        return semantic.long().clone()
    B, K = inst.shape[0], int(inst.max()) + 1
    valid = (sem >= 0) & (sem < C)
    cls = sem.clamp(0, C - 1)
    votes = (inst > 0) & valid & voters.to(sem.device)[cls]
    # One histogram row per (image, instance): bincount over keys (b * K + id) * C + class.
    b = torch.arange(B, device=sem.device).view(-1, 1, 1)
    keys = ((b * K + inst) * C + cls)[votes]
    hist = torch.bincount(keys, minlength=B * K * C).view(B, K, C)
    winner = hist.argmax(dim=2)  # first maximum: ties go to the lowest trainId
    has_vote = hist.sum(dim=2) > 0
    inst_cls = torch.gather(winner, 1, inst.flatten(1)).view_as(inst)
    inst_ok = torch.gather(has_vote, 1, inst.flatten(1)).view_as(inst)
    out = torch.where((inst > 0) & inst_ok, inst_cls, sem)
    return out.squeeze(0) if unbatched else out


# --- helpers -------------------------------------------------------------------------------------

# Classes already reported by _warn_once_per_class in this process: an untrained network
# overflows on every frame, and one clear message is worth more than one per frame.
_REPORTED_CLASSES: set[int] = set()


def _most_instances_per_class(semantic: torch.Tensor, instance: torch.Tensor) -> dict[int, int]:
    """{class: the most instances it has in one image}, for (B, H, W) or (H, W) maps."""
    sem = semantic.reshape(-1, *semantic.shape[-2:]).long()
    inst = instance.reshape(-1, *instance.shape[-2:]).long()
    most: dict[int, int] = {}
    for b in range(inst.shape[0]):
        keep = inst[b] > 0
        pairs = torch.unique(torch.stack([sem[b][keep], inst[b][keep]]), dim=1)
        classes, counts = torch.unique(pairs[0], return_counts=True)
        for c, n in zip(classes.tolist(), counts.tolist(), strict=True):
            most[c] = max(most.get(c, 0), n)
    return most


def _warn_once_per_class(most: dict[int, int], limit: int, removed: int) -> None:
    """Says, once per class and process, that a class had more clusters than panoptic ids hold:
    the sign of an untrained embedding (every pixel its own cluster) or a too small bandwidth."""
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


def _vote_tables(
    bw: torch.Tensor, groups: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tables for clustering groups of classes together (``merge(vote_groups=...)``).

    Returns:
        ``anchor_of`` (C,) int64: the class each class's pixels are relabelled to (its group's
        first class, or itself); ``grouped_bw`` (C,) float: the bandwidth table for the relabelled
        map (a group's anchor gets the median of the group's positive bandwidths); ``voters``
        (C,) bool: the classes that take part in a group's vote.
    """
    C = bw.numel()
    table = bw.detach().cpu().float()
    anchor_of = torch.arange(C)
    grouped_bw = table.clone()
    voters = torch.zeros(C, dtype=torch.bool)
    seen: set[int] = set()
    for group in groups:
        members = [int(c) for c in group]
        if not members or any(not 0 <= c < C for c in members) or seen & set(members):
            raise ValueError(
                f"merge: expected vote_groups as disjoint, non-empty groups of class ids in "
                f"[0, {C}), got {[list(g) for g in groups]}"
            )
        seen.update(members)
        values = table[members]
        values = values[values > 0]
        anchor_of[members] = members[0]
        grouped_bw[members] = 0.0
        grouped_bw[members[0]] = values.median() if values.numel() else 0.0
        voters[members] = True
    return anchor_of, grouped_bw, voters


def _relabel(sem: torch.Tensor, anchor_of: torch.Tensor) -> torch.Tensor:
    """``sem`` with each class id in ``[0, len(anchor_of))`` replaced by ``anchor_of[id]``
    (other ids, such as 255, unchanged)."""
    C = anchor_of.numel()
    valid = (sem >= 0) & (sem < C)
    return torch.where(valid, anchor_of[sem.clamp(0, C - 1)], sem)


def _filter_and_renumber(inst: torch.Tensor, kmax: int, min_size: int) -> torch.Tensor:
    """Drop ids with fewer than ``min_size`` pixels, renumber the rest 1..K per image (order
    kept). ``inst``: (B, H, W) int64 with values in [0, kmax]."""
    B = inst.shape[0]
    flat = inst.flatten(1)
    counts = torch.zeros(B, kmax + 1, dtype=torch.int64, device=inst.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    keep = counts >= max(min_size, 1)
    keep[:, 0] = False
    new_ids = keep.long().cumsum(dim=1) * keep
    return torch.gather(new_ids, 1, flat).view_as(inst)


def _check_float(x, fn: str, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: expected {name} with a floating dtype, got {x.dtype}")


def _check_int(x, fn: str, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{fn}: expected {name} with an integer dtype, got {x.dtype}")


def _as_batched_labels(x, unbatched: bool, fn: str, name: str) -> torch.Tensor:
    _check_int(x, fn, name)
    want = 2 if unbatched else 3
    if x.dim() != want:
        layout = "(H, W)" if unbatched else "(B, H, W)"
        raise ValueError(
            f"{fn}: expected {name} of shape {layout} (like the embedding), got {tuple(x.shape)}"
        )
    return x.unsqueeze(0) if unbatched else x


def _check_bandwidth(bandwidth, fn: str) -> torch.Tensor:
    bw = torch.as_tensor(bandwidth)
    if bw.dim() != 1 or not bw.is_floating_point():
        raise ValueError(
            f"{fn}: expected bandwidth as a (num_classes,) floating tensor, got shape "
            f"{tuple(bw.shape)} dtype {bw.dtype}"
        )
    return bw


def _check_nonneg_int(value, fn: str, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{fn}: expected {name} as an integer >= 0, got {value!r}")
    return int(value)


def _shape(B: int, h: int, w: int, unbatched: bool) -> tuple[int, ...]:
    return (h, w) if unbatched else (B, h, w)
