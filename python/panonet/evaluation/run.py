"""Evaluation of a model on a data split: the numbers of the paper's Tables I and II.

:func:`evaluate_model` runs a :class:`~panonet.inference.Predictor` over a
:class:`~panonet.data.CityscapesPanoptic` split and accumulates, in one pass over the images:

- PQ / SQ / RQ (all, things, stuff, per class) with :class:`PanopticStats`;
- mIoU from the confusion matrix of the semantic map;
- instance AP / AP50 per thing class with :class:`InstanceAPStats`. Every instance is scored by
  the mean softmax probability of its class over its pixels (the preferred score of
  :func:`~panonet.evaluation.instance.instances_from_maps`), from the 1/4-resolution logits
  the predictor returns with ``return_logits=True``;
- the median over images of the predictor's per-stage timings (ms).

``semantic_source="gt"`` gives the paper's AP_GT (Tables II/III): the ground-truth semantic map
replaces the predicted one for clustering and merging (``Predictor.predict(image,
semantic=...)``, the same post-processing as every other path), so the instance metrics measure
the embedding alone. The network still runs on the image (for the embedding and the scores); the
clustering uses the ground truth resized to the embedding's 1/4 resolution by nearest neighbour
(:func:`panonet.data.transforms.resize_labels`) and masks instances to the full-resolution ground
truth. Ignore (255) pixels are clustered into no instance and are void in the panoptic map. mIoU
and PQ of stuff are then trivially perfect (the semantic map *is* the ground truth); only the
instance numbers are meaningful.

:func:`format_tables` renders a result as Markdown tables in the layout of Tables I and II.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from panonet.data.labels import CLASSES, NUM_CLASSES, THING_TRAIN_IDS
from panonet.evaluation.instance import InstanceAPStats, scored_instance_map
from panonet.evaluation.panoptic import PanopticStats
from panonet.evaluation.panoptic_files import write_panoptic_predictions
from panonet.evaluation.semantic import confusion_matrix, iou_from_confusion
from panonet.evaluation.semantic_source import SemanticSource, check_semantic_source
from panonet.viz import save_visualization

__all__ = ["SCORE_NAME", "evaluate_model", "format_summary", "format_tables"]

SCORE_NAME = "mean_class_probability"
"""How instances are ranked for AP (recorded in the result's ``instance.score``)."""

# Cityscapes' instance evaluation ignores ground-truth instances below 100 pixels at 1024x2048;
# on smaller images the same physical size is proportionally fewer pixels.
_OFFICIAL_MIN_REGION = 100
_OFFICIAL_AREA = 1024 * 2048


def _image_id(path: str) -> str:
    """Cityscapes image id ``<city>_<seq>_<frame>`` of a ``*_leftImg8bit.png`` path."""
    name = Path(path).name
    for suffix in ("_leftImg8bit.png", ".png"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def evaluate_model(
    predictor: Any,
    dataset: Any,
    *,
    images: int | None = None,
    semantic_source: SemanticSource = "pred",
    progress: bool = True,
    save_vis: str | os.PathLike | None = None,
    num_vis: int = 10,
    predictions_dir: str | os.PathLike | None = None,
    min_region_size: int | None = None,
) -> dict[str, Any]:
    """Runs ``predictor`` over ``dataset`` and computes PQ/SQ/RQ, mIoU, AP/AP50 and runtimes.

    Args:
        predictor: a :class:`~panonet.inference.Predictor`.
        dataset: a sequence of items like :class:`~panonet.data.CityscapesPanoptic`'s:
            ``image`` (3, H, W) uint8, ``semantic`` (H, W) int64 trainIds (255 ignore),
            ``instance`` (H, W) int64 Cityscapes ids (< 1000 where none), ``file`` (str).
        images: evaluate the first ``images`` items only (default: all).
        semantic_source: ``"pred"`` (the network's semantic map) or ``"gt"`` (ground truth
            semantic map for clustering and merging: AP_GT; see the module docstring).
        progress: show a tqdm progress bar.
        save_vis: folder for Fig. 3-style overlays (:func:`panonet.viz.save_visualization`),
            ``<image id>.png`` for the first ``num_vis`` images.
        num_vis: how many overlays to write with ``save_vis``.
        predictions_dir: folder for the predictions in the COCO-panoptic format
            (``panoptic.json`` and ``panoptic/<image id>.png``,
            :func:`~panonet.evaluation.write_panoptic_predictions`).
        min_region_size: smallest evaluated ground-truth instance for AP, in pixels; default
            Cityscapes' 100 scaled by the first image's area relative to 1024x2048 (at least 1).

    Returns:
        A JSON-ready dict (NaN where a metric is undefined, e.g. AP without thing ground truth):
        ``images`` (int), ``semantic_source``, ``image_size`` [H, W] of the first image,
        ``panoptic`` (:meth:`PanopticStats.summary`: "All" / "Things" / "Stuff" with
        pq/sq/rq/n, "per_class"), ``semantic`` ({"miou", "per_class_iou": {name: IoU}}),
        ``instance`` (:meth:`InstanceAPStats.summary` plus "score" and "min_region_size"),
        ``runtime_ms`` ({stage: median ms}; "total" is the per-frame runtime). Scores are
        fractions in [0, 1].

    Raises:
        ValueError: bad ``semantic_source`` / ``images`` / ``num_vis``, or an empty selection.
    """
    check_semantic_source(semantic_source, "evaluate_model")
    n = len(dataset) if images is None else min(int(images), len(dataset))
    if images is not None and int(images) < 1:
        raise ValueError(f"evaluate_model: images must be >= 1, got {images}")
    if n == 0:
        raise ValueError("evaluate_model: the dataset is empty")
    if num_vis < 0:
        raise ValueError(f"evaluate_model: num_vis must be >= 0, got {num_vis}")

    pq = PanopticStats()
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    ap: InstanceAPStats | None = None
    timings: dict[str, list[float]] = {}
    image_size: list[int] = []
    vis_dir = Path(save_vis) if save_vis is not None else None

    def frames() -> Iterator[tuple[str, torch.Tensor]]:
        nonlocal ap
        for k in tqdm(range(n), desc="eval", disable=not progress):
            item = dataset[k]
            gt_sem, gt_inst = item["semantic"].long(), item["instance"].long()
            hwc = item["image"].permute(1, 2, 0)
            out = predictor.predict(
                item["image"],
                semantic=gt_sem if semantic_source == "gt" else None,
                return_logits=True,  # the 1/4-resolution logits score the instances
            )
            t, logits = out["timings"], out["logits"]
            sem, inst, pan = out["semantic"], out["instance"], out["panoptic"]
            if ap is None:
                image_size[:] = list(sem.shape)
                area = sem.shape[0] * sem.shape[1]
                mrs = (
                    min_region_size
                    if min_region_size is not None
                    else max(1, round(_OFFICIAL_MIN_REGION * area / _OFFICIAL_AREA))
                )
                ap = InstanceAPStats(min_region_size=int(mrs))
            for stage, ms in t.items():
                timings.setdefault(stage, []).append(float(ms))
            pq.update(pan, gt_semantic=gt_sem, gt_instance=gt_inst)
            cm.add_(confusion_matrix(sem, gt_sem))
            ap.update(scored_instance_map(inst, sem, logits=logits), gt_sem, gt_inst)
            if vis_dir is not None and k < num_vis:
                save_visualization(vis_dir / f"{_image_id(item['file'])}.png", hwc, pan)
            yield _image_id(item["file"]), pan

    if predictions_dir is not None:
        out_dir = Path(predictions_dir)
        write_panoptic_predictions(out_dir / "panoptic.json", out_dir / "panoptic", frames())
    else:
        for _ in frames():
            pass

    assert ap is not None  # n >= 1
    per_class_iou, miou = iou_from_confusion(cm)
    instance = ap.summary()
    instance["score"] = SCORE_NAME
    instance["min_region_size"] = ap.min_region_size
    return {
        "images": n,
        "semantic_source": semantic_source,
        "image_size": image_size,
        "panoptic": pq.summary(),
        "semantic": {
            "miou": miou,
            "per_class_iou": {c.name: float(per_class_iou[c.train_id]) for c in CLASSES},
        },
        "instance": instance,
        "runtime_ms": {stage: float(np.median(v)) for stage, v in timings.items()},
    }


def _pct(x: float) -> str:
    """A fraction as a percentage with one decimal, ``-`` when undefined."""
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def format_summary(result: dict[str, Any]) -> str:
    """One line of an :func:`evaluate_model` result: ``PQ 46.5 PQ_Th 25.1 PQ_St 63.1 mIoU
    62.8 AP 13.5`` (percent with one decimal, ``-`` where undefined)."""
    pan = result["panoptic"]
    return (
        f"PQ {_pct(pan['All']['pq'])} PQ_Th {_pct(pan['Things']['pq'])} "
        f"PQ_St {_pct(pan['Stuff']['pq'])} mIoU {_pct(result['semantic']['miou'])} "
        f"AP {_pct(result['instance']['AP'])}"
    )


def format_tables(result: dict[str, Any]) -> str:
    """Markdown tables of an :func:`evaluate_model` result, laid out like the paper's.

    Table I: PQ, SQ, RQ; the same for things (Th) and stuff (St); mIoU; AP and AP50 (named
    AP_GT / AP50_GT for ``semantic_source="gt"``); runtime (median total ms per frame). Table II:
    AP and AP50 per thing class. Scores in percent with one decimal; ``-`` where undefined.
    """
    pan = result["panoptic"]
    inst = result["instance"]
    gt = result.get("semantic_source") == "gt"
    ap_name = "AP_GT" if gt else "AP"
    runtime = result.get("runtime_ms", {}).get("total", float("nan"))
    head = [
        "PQ", "SQ", "RQ", "PQ_Th", "SQ_Th", "RQ_Th", "PQ_St", "SQ_St", "RQ_St",
        "mIoU", ap_name, f"{ap_name}50", "runtime (ms)",
    ]  # fmt: skip
    row = [
        *(_pct(pan[g][k]) for g in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq")),
        _pct(result["semantic"]["miou"]),
        _pct(inst["AP"]),
        _pct(inst["AP50"]),
        "-" if not np.isfinite(runtime) else f"{runtime:.0f}",
    ]
    names = [CLASSES[t].name for t in THING_TRAIN_IDS]
    per = inst["per_class"]
    lines = [
        f"Table I ({result['images']} images, semantic from {result.get('semantic_source')}):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---:|" * len(head),
        "| " + " | ".join(row) + " |",
        "",
        f"Table II (per-class instance {ap_name}, %):",
        "",
        "| | " + " | ".join(names) + " | mean |",
        "|---|" + "---:|" * (len(names) + 1),
        f"| {ap_name} | "
        + " | ".join(_pct(per[c]["AP"]) for c in names)
        + f" | {_pct(inst['AP'])} |",
        f"| {ap_name}50 | "
        + " | ".join(_pct(per[c]["AP50"]) for c in names)
        + f" | {_pct(inst['AP50'])} |",
    ]
    return "\n".join(lines)
