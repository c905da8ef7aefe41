"""The twin tests of the paper's Fig. 5: identical-looking twins at different positions.

Three variants; the first two build a test image from the left half of an image (and of its
ground truth):

- ``"mirror"`` (the paper's): the left half mirrored onto the right half. Every thing on the
  left gets a mirror-image twin on the right, at the mirrored column. A CNN sees each twin
  flipped and in flipped surroundings, so appearance alone can tell some pairs apart.
- ``"shift"``: the left half copied, unflipped, onto the right half. Every thing on the left
  gets a pixel-identical twin half an image width to the right, in identical surroundings (up
  to the image border and the seam): only position can separate the two.
- ``"scene"``: the images as they are, and the twins the synthetic generator painted into them
  (:func:`panonet.data.synthetic.scene_of`): the same sprite twice at one depth, side by side
  and often touching, like the same parked car repeated along a kerb. Close pairs, on the
  ground that surrounds both; only for datasets written by ``panonet synth``.

An embedding that only sees appearance maps both twins to the same point and mean-shift merges
them into one instance; the position-sensitive embedding (coordinate input, paper Sec. III-C)
should keep them apart. Each pair's distance is measured in the units of the coordinate
channels (``2 * dx / (W - 1)``: 2 across the image), and results are also split by it.

:func:`mirror_left_half` / :func:`shift_left_half` build the test image, :func:`twin_outcomes`
classifies each twin pair of one prediction, and :func:`run_mirror_test` runs a predictor over
a split and counts.

Geometry: for an (H, W) image, columns ``[0, W // 2)`` are the left half and columns
``[W - W // 2, W)`` become its copy; with an odd W the middle column keeps its pixels. A thing
that touches the seam (the last left column, the first copied one, or for odd W the middle
column) has no twin of the same shape in the same surroundings (mirrored, it joins its own
image into one symmetric blob), so it is left out.
"""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from panonet.evaluation.semantic_source import SemanticSource, check_semantic_source
from panonet.viz import save_visualization

__all__ = [
    "DISTANCE_BANDS",
    "TWIN_OFFSET",
    "VARIANTS",
    "format_mirror",
    "mirror_left_half",
    "pair_distances",
    "pair_outcomes",
    "run_mirror_test",
    "shift_left_half",
    "twin_outcomes",
]

TWIN_OFFSET = 1_000_000
"""Added to a ground-truth instance id to name its mirrored twin (ids stay distinct; the value
is internal to the test, not a Cityscapes id)."""

VARIANTS = ("mirror", "shift", "scene")
"""The twin tests: the left half mirrored, or copied unflipped (identical surroundings), or the
synthetic scenes' own side-by-side twins."""

DISTANCE_BANDS = (0.0, 0.25, 0.5, 1.0)
"""Lower edges of the twin-distance bands results are split by, in coordinate-channel units
(2 across the image): a mirrored pair at distance d sits d / 4 of the width either side of the
middle; the shifted pairs are all at ~1."""

# Ground-truth instance ids below this are not individual things (Cityscapes: labelId for stuff
# and for group regions, labelId * 1000 + j for the j-th instance of a thing).
_FIRST_INSTANCE_ID = 1000


def mirror_left_half(
    image: torch.Tensor, semantic: torch.Tensor, instance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The left half mirrored onto the right half, for the image and its ground truth.

    Args:
        image: (3, H, W) uint8.
        semantic: (H, W) integer trainIds (255 = ignore).
        instance: (H, W) integer Cityscapes instance ids (>= 1000 on individual things).

    Returns:
        ``(image, semantic, instance, pairs)``: the mirrored (3, H, W) image and (H, W) maps
        (int64), where the right-half copy of instance ``g`` is ``g + TWIN_OFFSET``; ``pairs`` is
        the sorted list of ``(g, g + TWIN_OFFSET)`` for every thing that has a separate twin (not
        touching the seam).
    """
    return _copy_left_half(image, semantic, instance, flip=True, name="mirror_left_half")


def shift_left_half(
    image: torch.Tensor, semantic: torch.Tensor, instance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The left half copied (not flipped) onto the right half: identical twins in identical
    surroundings, ``W - W // 2`` columns apart. Arguments and results as
    :func:`mirror_left_half`'s."""
    return _copy_left_half(image, semantic, instance, flip=False, name="shift_left_half")


def _copy_left_half(
    image: torch.Tensor, semantic: torch.Tensor, instance: torch.Tensor, *, flip: bool, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{name}: expected image (3, H, W), got {tuple(image.shape)}")
    H, W = int(image.shape[1]), int(image.shape[2])
    for what, t in (("semantic", semantic), ("instance", instance)):
        if tuple(t.shape) != (H, W):
            raise ValueError(
                f"{name}: expected {what} of shape {(H, W)} (the image's), got {tuple(t.shape)}"
            )
    if W < 2:
        raise ValueError(f"{name}: expected a width >= 2, got {W}")
    half = W // 2

    def copy(t: torch.Tensor) -> torch.Tensor:
        return t.flip(-1) if flip else t

    img, sem, inst = image.clone(), semantic.long().clone(), instance.long().clone()
    img[:, :, W - half :] = copy(image[:, :, :half])
    sem[:, W - half :] = copy(semantic[:, :half].long())
    left = instance[:, :half].long()
    twin = torch.where(left >= _FIRST_INSTANCE_ID, left + TWIN_OFFSET, left)
    inst[:, W - half :] = copy(twin)
    ids = set(torch.unique(left[left >= _FIRST_INSTANCE_ID]).tolist())
    # The seam's columns: the last left one, the first copied one and (odd W) the middle one.
    seam = set(torch.unique(inst[:, half - 1 : W - half + 1]).tolist())
    pairs = sorted(
        (g, g + TWIN_OFFSET) for g in ids if g not in seam and g + TWIN_OFFSET not in seam
    )
    return img, sem, inst, pairs


_OUTCOMES = ("merged", "separated", "missed", "skipped")


def twin_outcomes(
    pred_instance: torch.Tensor | np.ndarray,
    gt_instance: torch.Tensor | np.ndarray,
    pairs: list[tuple[int, int]],
    *,
    min_pixels: int = 1,
) -> dict[str, int]:
    """Counts the outcomes of :func:`pair_outcomes` (same arguments).

    Returns:
        ``{"merged", "separated", "missed", "skipped"}`` counts.
    """
    counts = dict.fromkeys(_OUTCOMES, 0)
    for outcome in pair_outcomes(pred_instance, gt_instance, pairs, min_pixels=min_pixels):
        counts[outcome] += 1
    return counts


def pair_outcomes(
    pred_instance: torch.Tensor | np.ndarray,
    gt_instance: torch.Tensor | np.ndarray,
    pairs: list[tuple[int, int]],
    *,
    min_pixels: int = 1,
) -> list[str]:
    """Classifies each twin pair of one prediction.

    A twin is *found* by the predicted instance (id > 0) that covers more than half of its
    pixels. A pair is ``merged`` when both twins are found by the same predicted instance,
    ``separated`` when they are found by two different ones, ``missed`` otherwise (a twin not
    covered by any single instance: a semantic miss or a fragmented embedding). Pairs whose
    twins have fewer than ``min_pixels`` pixels are ``skipped``.

    Args:
        pred_instance: (H, W) integer predicted instance ids, 0 = no instance.
        gt_instance: (H, W) integer ids of the test image's ground truth
            (:func:`mirror_left_half`, :func:`shift_left_half`).
        pairs: the ``(left id, right id)`` pairs of the same function.
        min_pixels: smallest twin (in pixels) that is counted.

    Returns:
        One of ``"merged"``, ``"separated"``, ``"missed"``, ``"skipped"`` per pair, in order.
    """
    pred = torch.as_tensor(pred_instance).long().reshape(-1)
    gt = torch.as_tensor(gt_instance).long().reshape(-1)
    if pred.numel() != gt.numel():
        raise ValueError(
            f"pair_outcomes: expected maps of the same size, got {tuple(pred_instance.shape)} "
            f"and {tuple(gt_instance.shape)}"
        )

    def found(g: int) -> int | None:
        mine = pred[gt == g]
        if mine.numel() < min_pixels or mine.numel() == 0:
            return None
        ids, n = torch.unique(mine[mine > 0], return_counts=True)
        if ids.numel() == 0:
            return 0
        best = int(n.argmax())
        return int(ids[best]) if 2 * int(n[best]) > mine.numel() else 0

    outcomes = []
    for left, right in pairs:
        a, b = found(left), found(right)
        if a is None or b is None:
            outcomes.append("skipped")
        elif a == 0 or b == 0:
            outcomes.append("missed")
        elif a == b:
            outcomes.append("merged")
        else:
            outcomes.append("separated")
    return outcomes


def pair_distances(gt_instance: torch.Tensor, pairs: list[tuple[int, int]]) -> list[float]:
    """Horizontal distance between the twins' pixel centroids, in coordinate-channel units
    (``2 * dx / (W - 1)``, the x channel's difference between the centroids; 0 when W is 1).

    Args:
        gt_instance: (H, W) integer ids of the test image's ground truth.
        pairs: ``(left id, right id)`` pairs; both ids must be present.
    """
    W = int(gt_instance.shape[-1])
    cols = torch.arange(W, dtype=torch.float64).expand(gt_instance.shape)
    scale = 2.0 / (W - 1) if W > 1 else 0.0
    out = []
    for left, right in pairs:
        xa = float(cols[gt_instance == left].mean())
        xb = float(cols[gt_instance == right].mean())
        out.append(abs(xb - xa) * scale)
    return out


def _band_names() -> list[str]:
    edges = DISTANCE_BANDS
    return [f"[{a:g}, {b:g})" for a, b in pairwise(edges)] + [f">= {edges[-1]:g}"]


def _band(distance: float) -> str:
    return _band_names()[max(i for i, e in enumerate(DISTANCE_BANDS) if distance >= e)]


def run_mirror_test(
    predictor: Any,
    dataset: Any,
    *,
    variant: Literal["mirror", "shift", "scene"] = "mirror",
    images: int | None = None,
    semantic_source: SemanticSource = "gt",
    min_pixels: int | None = None,
    progress: bool = True,
    save_vis: str | os.PathLike | None = None,
    num_vis: int = 4,
) -> dict[str, Any]:
    """Runs ``predictor`` on the twin images of ``dataset`` and counts merged twin pairs.

    Args:
        predictor: a :class:`~panonet.inference.Predictor`.
        dataset: items like :class:`~panonet.data.CityscapesPanoptic`'s (``image`` (3, H, W)
            uint8, ``semantic`` (H, W), ``instance`` (H, W), ``file``).
        variant: ``"mirror"`` (:func:`mirror_left_half`, the paper's), ``"shift"``
            (:func:`shift_left_half`: identical surroundings) or ``"scene"`` (the images
            unchanged, the twins the synthetic generator painted; needs items' ``file`` to be
            an image written by ``panonet synth``).
        images: use the first ``images`` items (default: all).
        semantic_source: ``"gt"`` (default) clusters on the test image's ground-truth semantic
            map, so the count measures the embedding alone; ``"pred"`` on the predicted one.
        min_pixels: smallest twin counted; default Cityscapes' 100 pixels at 1024x2048 scaled to
            the image area (at least 1).
        progress: tqdm progress bar.
        save_vis: folder for Fig. 5-style pictures (overlay and panoptic colours of the
            test image), ``<variant>_<k>.png`` for the first ``num_vis`` images.
        num_vis: pictures written with ``save_vis``.

    Returns:
        ``{"variant", "images", "semantic_source", "pairs", "merged", "separated", "missed",
        "skipped", "merged_fraction", "by_distance", "min_pixels", "use_coords"}``;
        ``merged_fraction`` = merged / (merged + separated), the share of found twin pairs that
        became one instance (NaN when no pair was found); ``by_distance`` maps each band of
        :data:`DISTANCE_BANDS` that has pairs (e.g. ``"[0.25, 0.5)"``, ``">= 1"``) to the same
        counts and fraction for the pairs at that distance (:func:`pair_distances`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"run_mirror_test: variant must be one of {VARIANTS}, got {variant!r}")
    check_semantic_source(semantic_source, "run_mirror_test")
    if images is not None and int(images) < 1:
        raise ValueError(f"run_mirror_test: images must be >= 1, got {images}")
    n = len(dataset) if images is None else min(int(images), len(dataset))
    if n == 0:
        raise ValueError("run_mirror_test: the dataset is empty")
    totals = {"pairs": 0, **dict.fromkeys(_OUTCOMES, 0)}
    bands: dict[str, dict[str, int]] = {}
    vis_dir = Path(save_vis) if save_vis is not None else None
    mp = min_pixels
    for k in tqdm(range(n), desc=f"{variant}-test", disable=not progress):
        item = dataset[k]
        img, sem, inst, pairs = _test_image(variant, item)
        if mp is None:
            mp = max(1, round(100 * img.shape[1] * img.shape[2] / (1024 * 2048)))
        hwc = img.permute(1, 2, 0).contiguous()
        maps = predictor.predict(img, semantic=sem if semantic_source == "gt" else None)
        outcomes = pair_outcomes(maps["instance"], inst, pairs, min_pixels=mp)
        totals["pairs"] += len(pairs)
        for outcome, distance in zip(outcomes, pair_distances(inst, pairs), strict=True):
            totals[outcome] += 1
            band = bands.setdefault(_band(distance), {"pairs": 0, **dict.fromkeys(_OUTCOMES, 0)})
            band["pairs"] += 1
            band[outcome] += 1
        if vis_dir is not None and k < num_vis:
            save_visualization(vis_dir / f"{variant}_{k}.png", hwc, maps["panoptic"])
    return {
        "variant": variant,
        "images": n,
        "semantic_source": semantic_source,
        **totals,
        "merged_fraction": _merged_fraction(totals),
        "by_distance": {
            b: {**bands[b], "merged_fraction": _merged_fraction(bands[b])}
            for b in _band_names()
            if b in bands
        },
        "min_pixels": int(mp),
        "use_coords": bool(getattr(predictor.model, "use_coords", False)),
    }


def _test_image(
    variant: str, item: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The variant's test image, semantic and instance maps, and twin pairs for one item."""
    if variant == "scene":
        from panonet.data.synthetic import scene_of

        pairs = sorted((a, b) for a, b, _, _ in scene_of(item["file"]).twins)
        return item["image"], item["semantic"].long(), item["instance"].long(), pairs
    build = mirror_left_half if variant == "mirror" else shift_left_half
    return build(item["image"], item["semantic"], item["instance"])


def _merged_fraction(counts: dict[str, int]) -> float:
    found = counts["merged"] + counts["separated"]
    return counts["merged"] / found if found else float("nan")


def format_mirror(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of :func:`~panonet.evaluation.mirror.run_mirror_test` results by model:
    the counts, the merged fraction, and the merged fraction per twin-distance band (merged /
    found pairs at that distance)."""
    names = _band_names()
    lines = [
        "| model | twin pairs | merged | separated | missed | merged / found | "
        + " | ".join(f"distance {b}" for b in names)
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    for name, r in results.items():
        counted = r["pairs"] - r["skipped"]
        per_band = []
        for b in names:
            c = r.get("by_distance", {}).get(b)
            found = c["merged"] + c["separated"] if c else 0
            per_band.append(f"{c['merged']}/{found}" if found else "-")
        lines.append(
            f"| {name} | {counted} | {r['merged']} | {r['separated']} | {r['missed']} | "
            f"{_percent(r['merged_fraction'])} | " + " | ".join(per_band) + " |"
        )
    return "\n".join(lines)


def _percent(frac: float) -> str:
    return "-" if frac != frac else f"{100 * frac:.1f} %"
