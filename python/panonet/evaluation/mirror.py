"""The mirrored-image test of the paper's Fig. 5: identical twins at different positions.

The left half of an image (and of its ground truth) is mirrored onto the right half, so every
thing on the left gets an identical-looking twin on the right. An embedding that only sees
appearance maps both twins to the same point and mean-shift merges them into one instance; the
position-sensitive embedding (coordinate input, paper Sec. III-C) should keep them apart.

:func:`mirror_left_half` builds the test image, :func:`twin_outcomes` classifies each twin pair
of one prediction, and :func:`run_mirror_test` runs a predictor over a split and counts.

Geometry: for an (H, W) image, columns ``[0, W // 2)`` are the left half and columns
``[W - W // 2, W)`` become its mirror image; with an odd W the middle column keeps its pixels.
A thing whose left part touches the last left column (or, for odd W, lies in the middle column)
joins its own mirror image into one symmetric blob, so it has no separate twin and is left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from panonet.viz import save_visualization

__all__ = [
    "TWIN_OFFSET",
    "format_mirror",
    "mirror_left_half",
    "run_mirror_test",
    "twin_outcomes",
]

TWIN_OFFSET = 1_000_000
"""Added to a ground-truth instance id to name its mirrored twin (ids stay distinct; the value
is internal to the test, not a Cityscapes id)."""

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
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"mirror_left_half: expected image (3, H, W), got {tuple(image.shape)}")
    H, W = int(image.shape[1]), int(image.shape[2])
    for name, t in (("semantic", semantic), ("instance", instance)):
        if tuple(t.shape) != (H, W):
            raise ValueError(
                f"mirror_left_half: expected {name} of shape {(H, W)} (the image's), got "
                f"{tuple(t.shape)}"
            )
    if W < 2:
        raise ValueError(f"mirror_left_half: expected a width >= 2, got {W}")
    half = W // 2
    img, sem, inst = image.clone(), semantic.long().clone(), instance.long().clone()
    img[:, :, W - half :] = image[:, :, :half].flip(-1)
    sem[:, W - half :] = semantic[:, :half].long().flip(-1)
    left = instance[:, :half].long()
    twin = torch.where(left >= _FIRST_INSTANCE_ID, left + TWIN_OFFSET, left)
    inst[:, W - half :] = twin.flip(-1)
    ids = set(torch.unique(left[left >= _FIRST_INSTANCE_ID]).tolist())
    seam = set(torch.unique(inst[:, half - 1 : W - half + 1]).tolist())
    pairs = sorted((g, g + TWIN_OFFSET) for g in ids if g not in seam)
    return img, sem, inst, pairs


def twin_outcomes(
    pred_instance: torch.Tensor | np.ndarray,
    gt_instance: torch.Tensor | np.ndarray,
    pairs: list[tuple[int, int]],
    *,
    min_pixels: int = 1,
) -> dict[str, int]:
    """Classifies each twin pair of one prediction.

    A twin is *found* by the predicted instance (id > 0) that covers more than half of its
    pixels. A pair is ``merged`` when both twins are found by the same predicted instance,
    ``separated`` when they are found by two different ones, ``missed`` otherwise (a twin not
    covered by any single instance: a semantic miss or a fragmented embedding). Pairs whose
    twins have fewer than ``min_pixels`` pixels are ``skipped``.

    Args:
        pred_instance: (H, W) integer predicted instance ids, 0 = no instance.
        gt_instance: (H, W) integer ids of the mirrored ground truth (:func:`mirror_left_half`).
        pairs: the ``(left id, right id)`` pairs of :func:`mirror_left_half`.
        min_pixels: smallest twin (in pixels) that is counted.

    Returns:
        ``{"merged", "separated", "missed", "skipped"}`` counts.
    """
    pred = torch.as_tensor(pred_instance).long().reshape(-1)
    gt = torch.as_tensor(gt_instance).long().reshape(-1)
    if pred.numel() != gt.numel():
        raise ValueError(
            f"twin_outcomes: expected maps of the same size, got {tuple(pred_instance.shape)} "
            f"and {tuple(gt_instance.shape)}"
        )
    counts = {"merged": 0, "separated": 0, "missed": 0, "skipped": 0}

    def found(g: int) -> int | None:
        mine = pred[gt == g]
        if mine.numel() < min_pixels or mine.numel() == 0:
            return None
        ids, n = torch.unique(mine[mine > 0], return_counts=True)
        if ids.numel() == 0:
            return 0
        best = int(n.argmax())
        return int(ids[best]) if 2 * int(n[best]) > mine.numel() else 0

    for left, right in pairs:
        a, b = found(left), found(right)
        if a is None or b is None:
            counts["skipped"] += 1
        elif a == 0 or b == 0:
            counts["missed"] += 1
        elif a == b:
            counts["merged"] += 1
        else:
            counts["separated"] += 1
    return counts


def run_mirror_test(
    predictor: Any,
    dataset: Any,
    *,
    images: int | None = None,
    semantic_source: Literal["pred", "gt"] = "gt",
    min_pixels: int | None = None,
    progress: bool = True,
    save_vis: str | os.PathLike | None = None,
    num_vis: int = 4,
) -> dict[str, Any]:
    """Runs ``predictor`` on the mirrored images of ``dataset`` and counts merged twin pairs.

    Args:
        predictor: a :class:`~panonet.inference.Predictor`.
        dataset: items like :class:`~panonet.data.CityscapesPanoptic`'s (``image`` (3, H, W)
            uint8, ``semantic`` (H, W), ``instance`` (H, W), ``file``).
        images: use the first ``images`` items (default: all).
        semantic_source: ``"gt"`` (default) clusters on the mirrored ground-truth semantic map,
            so the count measures the embedding alone; ``"pred"`` on the predicted one.
        min_pixels: smallest twin counted; default Cityscapes' 100 pixels at 1024x2048 scaled to
            the image area (at least 1).
        progress: tqdm progress bar.
        save_vis: folder for Fig. 5-style pictures (overlay and panoptic colours of the
            mirrored image), ``mirror_<k>.png`` for the first ``num_vis`` images.
        num_vis: pictures written with ``save_vis``.

    Returns:
        ``{"images", "semantic_source", "pairs", "merged", "separated", "missed", "skipped",
        "merged_fraction", "min_pixels", "use_coords"}``; ``merged_fraction`` = merged /
        (merged + separated), the share of found twin pairs that became one instance (NaN when
        no pair was found).
    """
    if semantic_source not in ("pred", "gt"):
        raise ValueError(
            f"run_mirror_test: semantic_source must be 'pred' or 'gt', got {semantic_source!r}"
        )
    if images is not None and int(images) < 1:
        raise ValueError(f"run_mirror_test: images must be >= 1, got {images}")
    n = len(dataset) if images is None else min(int(images), len(dataset))
    if n == 0:
        raise ValueError("run_mirror_test: the dataset is empty")
    totals = {"pairs": 0, "merged": 0, "separated": 0, "missed": 0, "skipped": 0}
    vis_dir = Path(save_vis) if save_vis is not None else None
    mp = min_pixels
    for k in tqdm(range(n), desc="mirror-test", disable=not progress):
        item = dataset[k]
        img, sem, inst, pairs = mirror_left_half(item["image"], item["semantic"], item["instance"])
        if mp is None:
            mp = max(1, round(100 * img.shape[1] * img.shape[2] / (1024 * 2048)))
        hwc = img.permute(1, 2, 0).contiguous()
        maps = predictor.predict(img, semantic=sem if semantic_source == "gt" else None)
        counts = twin_outcomes(maps["instance"], inst, pairs, min_pixels=mp)
        totals["pairs"] += len(pairs)
        for key, value in counts.items():
            totals[key] += value
        if vis_dir is not None and k < num_vis:
            save_visualization(vis_dir / f"mirror_{k}.png", hwc, maps["panoptic"])
    found = totals["merged"] + totals["separated"]
    return {
        "images": n,
        "semantic_source": semantic_source,
        **totals,
        "merged_fraction": totals["merged"] / found if found else float("nan"),
        "min_pixels": int(mp),
        "use_coords": bool(getattr(predictor.model, "use_coords", False)),
    }


def format_mirror(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of :func:`~panonet.evaluation.mirror.run_mirror_test` results by model."""
    lines = [
        "| model | twin pairs | merged | separated | missed | merged / found |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        frac = r["merged_fraction"]
        shown = "-" if frac != frac else f"{100 * frac:.1f} %"
        counted = r["pairs"] - r["skipped"]
        lines.append(
            f"| {name} | {counted} | {r['merged']} | {r['separated']} | {r['missed']} | {shown} |"
        )
    return "\n".join(lines)
