"""Panoptic post-processing (PanoNet Sec. III-D), as pure functions of tensors.

The network predicts, at 1/4 of the input resolution, semantic logits (B, C, h, w) and a pixel
embedding (B, D, h, w). Post-processing (in the style of detectron2's Panoptic-DeepLab):

1. semantic: bilinear upsampling of the logits to the output size, then argmax
   (:func:`semantic_from_logits`);
2. instances: class-wise mean-shift of the embedding at 1/4 resolution
   (:func:`panonet.ops.cluster_instances`, on the argmax of the low-resolution logits), the
   instance map resized by nearest neighbour, pixels whose full-resolution class disagrees with
   their instance's class given the nearest instance of their own class within
   :data:`INSTANCE_REACH` low-resolution pixels (or none), small instances removed
   (:func:`instances_from_embedding`);
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

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from panonet.data.labels import LABEL_DIVISOR, THING_TRAIN_IDS
from panonet.data.transforms import check_size, resize_labels
from panonet.inference.guided_upsample import GuidedUpsampling, guided_semantic
from panonet.inference.panoptic_ids import (
    instances_per_class,
    limit_instances_per_class,
    panoptic_from_semantic_instance,
    warn_instances_over_limit,
)
from panonet.inference.validate import (
    as_batched_labels,
    check_float,
    check_nonneg_int,
)
from panonet.inference.vote import (
    THING_VOTE_GROUPS,
    relabel,
    vote_instance_classes,
    vote_tables,
)
from panonet.ops import cluster_instances, upsample_argmax, upsample_instances

__all__ = [
    "INSTANCE_REACH",
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


INSTANCE_REACH = 2
"""How far (in low-resolution pixels) a full-resolution pixel whose class its nearest-neighbour
source lacks looks for an instance of its class (:func:`panonet.ops.upsample_instances`'
``reach``). Without it, every part of a thing thinner than the 1/4 grid (a bicycle's frame, a
person's legs, an instance's rim where the upsampled class map reaches past the low-resolution
one) is left without an instance: on the synthetic val set with ground-truth semantics, 4.6 %
of the thing pixels (0.09 % with a reach of 2, 0.07 % with 3 or 4), and one model's things PQ
59.4 -> 73.4, AP_GT 36.8 -> 51.6 with 2 (``docs/RESULTS.md``, issue 14, eleventh session)."""


def semantic_from_logits(logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-pixel class: bilinear upsampling of the logits, then argmax over classes.

    Args:
        logits: (B, C, h, w) or (C, h, w) floating class scores.
        size: output (H, W); ``None`` keeps (h, w). Upsampling is bilinear with
            ``align_corners=False`` (half-pixel centres), fused with the argmax
            (:func:`panonet.ops.upsample_argmax`: the same classes on every device, and those
            of ``F.interpolate`` + argmax except where two classes are within float32
            rounding of each other).

    Returns:
        int64 class ids (trainIds), (B, H, W) or (H, W); ties go to the lowest class id.
    """
    check_float(logits, "semantic_from_logits", "logits")
    if logits.dim() not in (3, 4):
        raise ValueError(
            "semantic_from_logits: expected logits of shape (B, C, h, w) or (C, h, w), got "
            f"{tuple(logits.shape)}"
        )
    if size is not None:
        size = check_size(size, "semantic_from_logits")
        if size != tuple(logits.shape[-2:]):
            # Fused: the upsampled logits (159 MB at 1024x2048) are never written.
            return upsample_argmax(logits, size)
    # max().indices, not argmax(): on the CPU argmax over the channels of an NCHW tensor is
    # ~5x slower (strided reduction); both return the first maximal index on ties.
    return logits.max(dim=-3).indices


def instances_from_embedding(
    embedding: torch.Tensor,
    semantic_lowres: torch.Tensor,
    bandwidth: torch.Tensor | Sequence[float],
    *,
    size: tuple[int, int] | None = None,
    semantic_fullres: torch.Tensor | None = None,
    min_instance_size: int = 0,
    reach: int = INSTANCE_REACH,
    min_bin_freq: int = 1,
    check_inputs: bool = True,
) -> torch.Tensor:
    """Instance ids from class-wise mean-shift of the embedding, at the output resolution.

    Clustering runs at the embedding's (low) resolution with
    :func:`panonet.ops.cluster_instances`; the instance map is then resized to the output size
    by nearest-exact sampling (:func:`resize_labels`' geometry), masked, filtered and
    renumbered by :func:`panonet.ops.upsample_instances`. The class of an instance is the
    low-resolution class of its pixels (the op clusters each class separately, so it is
    unique).

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
        reach: with ``semantic_fullres``, how far (in low-resolution pixels) a pixel whose
            nearest-neighbour source has another class looks for the nearest instance of its own
            class (:func:`panonet.ops.upsample_instances`); 0: such pixels get none.
        min_bin_freq: mean-shift bin-seeding threshold, see :func:`panonet.ops.mean_shift`.
        check_inputs: as in :func:`panonet.ops.cluster_instances` (False: on a GPU, nothing
            waits for it).

    Returns:
        int64 instance ids, (B, H, W) or (H, W): 0 where not clustered / removed, else 1..K
        consecutive within each image, in the op's order (by class, then cluster rank);
        K <= h * w.
    """
    fn = "instances_from_embedding"
    check_float(embedding, fn, "embedding")
    if embedding.dim() not in (3, 4):
        raise ValueError(
            f"{fn}: expected embedding of shape (B, D, h, w) or (D, h, w), got "
            f"{tuple(embedding.shape)}"
        )
    unbatched = embedding.dim() == 3
    emb = embedding.unsqueeze(0) if unbatched else embedding
    B, _, h, w = emb.shape
    sem = as_batched_labels(semantic_lowres, unbatched, fn, "semantic_lowres")
    if tuple(sem.shape) != (B, h, w):
        raise ValueError(
            f"{fn}: expected semantic_lowres of shape {_shape(B, h, w, unbatched)} to match the "
            f"embedding {tuple(embedding.shape)}, got {tuple(semantic_lowres.shape)}"
        )
    bw = _check_bandwidth(bandwidth, fn)
    min_instance_size = check_nonneg_int(min_instance_size, fn, "min_instance_size")
    reach = check_nonneg_int(reach, fn, "reach")

    full = None
    if semantic_fullres is not None:
        full = as_batched_labels(semantic_fullres, unbatched, fn, "semantic_fullres")
        if full.shape[0] != B:
            raise ValueError(
                f"{fn}: expected semantic_fullres with batch size {B}, got shape "
                f"{tuple(semantic_fullres.shape)}"
            )
        full_size = tuple(full.shape[-2:])
        if size is not None and check_size(size, fn) != full_size:
            raise ValueError(
                f"{fn}: size {tuple(size)} does not match semantic_fullres of shape "
                f"{tuple(semantic_fullres.shape)}"
            )
        size = full_size
    out_size = (h, w) if size is None else check_size(size, fn)

    inst = cluster_instances(emb, sem, bw, min_bin_freq=min_bin_freq, check_inputs=check_inputs)
    # Resized, masked by class, filtered and renumbered in passes over the output; ids never
    # exceed the pixels clustered, so tables of that size need no value read back.
    inst = upsample_instances(
        inst,
        sem,
        out_size,
        semantic_fullres=full,
        max_instance_id=h * w,
        min_size=min_instance_size,
        reach=reach,
    )
    return inst.squeeze(0) if unbatched else inst


def merge(
    semantic_logits_lowres: torch.Tensor | None,
    embedding_lowres: torch.Tensor,
    bandwidth: torch.Tensor | Sequence[float],
    *,
    size: tuple[int, int],
    semantic: torch.Tensor | None = None,
    min_instance_size: int = 0,
    instance_reach: int = INSTANCE_REACH,
    min_bin_freq: int = 1,
    max_instances_per_class: int | None = LABEL_DIVISOR,
    vote_groups: Sequence[Sequence[int]] | None = None,
    train_to_label: torch.Tensor | Sequence[int] | np.ndarray | None = None,
    thing_train_ids: Iterable[int] = THING_TRAIN_IDS,
    stage: Callable[[str], None] | None = None,
    check_inputs: bool = True,
    guided_upsampling: GuidedUpsampling | None = None,
    image: torch.Tensor | None = None,
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
        instance_reach: see :data:`INSTANCE_REACH` (``reach`` of
            :func:`instances_from_embedding`).
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
        check_inputs: False reads no value back from the device, so that on a GPU the whole
            post-processing runs without waiting for it (and can be captured in a CUDA graph):
            the embedding is not checked for NaN / Inf, class ids beyond the bandwidth table are
            not clustered instead of raising, and the over-limit warning is left to the caller,
            who gets ``instances_per_class`` to read when it synchronizes anyway
            (:func:`~panonet.inference.panoptic_ids.warn_instances_over_limit`).
        guided_upsampling: with the logits and without ``semantic``, the output semantic map
            is :func:`~panonet.inference.guided_upsample.guided_semantic` of the logits and
            ``image`` (edges of thin things follow the image's) instead of the argmax of the
            bilinearly upsampled logits; with its ``cluster`` (the default) clustering uses that
            map resized to the embedding's grid, else the low-resolution argmax.
            None (the default, the paper's): bilinear.
        image: with ``guided_upsampling``, the network's input: (B, H, W, 3) or (H, W, 3)
            uint8 RGB at the output size, on the logits' device.

    Returns:
        ``{"semantic": trainIds, "instance": ids 0..K, "panoptic": Cityscapes ids}``, each an
        int64 (B, H, W) or (H, W) tensor on the embedding's device; with ``check_inputs=False``
        and a limit, also ``instances_per_class``: int64 (B, C) or (C,) counts before it.
    """
    fn = "merge"
    check_float(embedding_lowres, fn, "embedding_lowres")
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
        check_float(semantic_logits_lowres, fn, "semantic_logits_lowres")
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
    size = check_size(size, fn)
    done = stage if stage is not None else (lambda _name: None)

    if semantic is None:
        if guided_upsampling is None:
            semantic_out = semantic_from_logits(semantic_logits_lowres, size)
        else:
            semantic_out = _guided(semantic_logits_lowres, image, size, guided_upsampling, fn)
        if guided_upsampling is not None and guided_upsampling.cluster:
            grid = tuple(semantic_logits_lowres.shape[-2:])
            semantic_lowres = resize_labels(semantic_out, grid)
        else:
            semantic_lowres = semantic_from_logits(semantic_logits_lowres)
    else:
        B = 1 if unbatched else embedding_lowres.shape[0]
        sem = as_batched_labels(semantic, unbatched, fn, "semantic")
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
    tables = None if vote_groups is None else vote_tables(bw, vote_groups)
    instance = instances_from_embedding(
        embedding_lowres,
        semantic_lowres if tables is None else relabel(semantic_lowres, tables.anchor_of),
        bw if tables is None else tables.bandwidth,
        semantic_fullres=semantic_out
        if tables is None
        else relabel(semantic_out, tables.anchor_of),
        min_instance_size=min_instance_size,
        reach=instance_reach,
        min_bin_freq=min_bin_freq,
        check_inputs=check_inputs,
    )
    # The bound of instances_from_embedding: no id exceeds the embedding's pixels.
    bound = None if check_inputs else embedding_lowres.shape[-2] * embedding_lowres.shape[-1]
    if tables is not None:
        semantic_out = vote_instance_classes(
            semantic_out, instance, tables.voters, max_instance_id=bound
        )
    done("clustering")
    out = {"semantic": semantic_out}
    if max_instances_per_class is not None:
        limited, removed = limit_instances_per_class(
            semantic_out, instance, max_instances_per_class, max_instance_id=bound
        )
        if bound is not None:
            out["instances_per_class"] = instances_per_class(
                semantic_out, instance, bw.numel(), max_instance_id=bound
            )
        elif removed:  # counted only then: the counts cost a pass over the frame
            k = embedding_lowres.shape[-2] * embedding_lowres.shape[-1]
            counts = instances_per_class(semantic_out, instance, bw.numel(), max_instance_id=k)
            warn_instances_over_limit(counts, max_instances_per_class)
        instance = limited
    panoptic = panoptic_from_semantic_instance(
        semantic_out,
        instance,
        train_to_label=train_to_label,
        thing_train_ids=thing_train_ids,
        max_instance_id=bound,
    )
    done("panoptic")
    return {**out, "instance": instance, "panoptic": panoptic}


# --- helpers -------------------------------------------------------------------------------------


def _check_bandwidth(bandwidth, fn: str) -> torch.Tensor:
    bw = torch.as_tensor(bandwidth)
    if bw.dim() != 1 or not bw.is_floating_point():
        raise ValueError(
            f"{fn}: expected bandwidth as a (num_classes,) floating tensor, got shape "
            f"{tuple(bw.shape)} dtype {bw.dtype}"
        )
    return bw


def _guided(
    logits: torch.Tensor,
    image: torch.Tensor | None,
    size: tuple[int, int],
    settings: GuidedUpsampling,
    fn: str,
) -> torch.Tensor:
    """:func:`guided_semantic` of (B, C, h, w) or (C, h, w) logits and the image at ``size``,
    batched like the logits."""
    unbatched = logits.dim() == 3
    if not isinstance(image, torch.Tensor):
        raise ValueError(
            f"{fn}: expected the image (uint8 RGB) with guided_upsampling, got "
            f"{type(image).__name__}"
        )
    img = image.unsqueeze(0) if unbatched and image.dim() == 3 else image
    B = 1 if unbatched else logits.shape[0]
    if img.dim() != 4 or tuple(img.shape[:3]) != (B, *size):
        raise ValueError(
            f"{fn}: expected an image of shape {_shape(B, *size, unbatched) + (3,)} (the output "
            f"size) with guided_upsampling, got {tuple(image.shape)}"
        )
    sem = guided_semantic(logits.unsqueeze(0) if unbatched else logits, img, settings)
    return sem[0] if unbatched else sem


def _shape(B: int, h: int, w: int, unbatched: bool) -> tuple[int, ...]:
    return (h, w) if unbatched else (B, h, w)
