"""Cost of the metrics per full-resolution frame: does evaluating 500 frames of 1024x2048
dominate a run?

Per frame (what :func:`panonet.evaluation.run.evaluate_model` does besides running the model):
PQ counts (:class:`PanopticStats.update`), the semantic confusion matrix and instance AP
matching (:func:`scored_instance_map` + :class:`InstanceAPStats.update`), on a rendered
1024x2048 street scene (:func:`panonet.data.synthetic.render`) against a prediction that is the
ground truth shifted by a few pixels (partial overlaps, lost small segments).

Correctness first: the unshifted prediction must score PQ = 1, mIoU = 1 and AP = 1.

    python benchmarks/bench_evaluation.py [--height 1024] [--width 2048] [--runs N] [--out PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import print_table, summarize, time_call, write_results

from panonet.data.labels import IGNORE_INDEX, NUM_CLASSES, label_to_train_ids
from panonet.data.synthetic import render
from panonet.evaluation import (
    InstanceAPStats,
    PanopticStats,
    confusion_matrix,
    iou_from_confusion,
    scored_instance_map,
)
from panonet.inference.merge import panoptic_from_semantic_instance


def frame(h: int, w: int, shift: int, seed: int = 0):
    """Ground truth (semantic trainIds, instance ids) and a prediction shifted by ``shift``
    columns: (gt_sem, gt_inst, sem, inst, pan), (H, W) int64 tensors."""
    scene = render((h, w), seed)
    gt_sem = torch.from_numpy(label_to_train_ids(scene.label_ids.astype(np.int64)))
    gt_inst = torch.from_numpy(scene.instance_ids.astype(np.int64))
    sem = torch.where(gt_sem == IGNORE_INDEX, 0, gt_sem).roll(shift, dims=1)
    ids = torch.unique(gt_inst[gt_inst >= 1000])
    inst = torch.zeros_like(gt_inst)
    for k, g in enumerate(ids.tolist(), start=1):
        inst[gt_inst == g] = k
    inst = inst.roll(shift, dims=1)
    # Predicted instances live on predicted thing pixels only (as in the predictor).
    pan = panoptic_from_semantic_instance(sem, inst)
    return gt_sem, gt_inst, sem, inst, pan


def evaluate_frame(gt_sem, gt_inst, sem, inst, pan, pq, cm, ap) -> None:
    pq.update(pan, gt_semantic=gt_sem, gt_instance=gt_inst)
    cm.add_(confusion_matrix(sem, gt_sem))
    ap.update(scored_instance_map(inst, sem), gt_sem, gt_inst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--frames", type=int, default=500, help="frames of a run to project")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cpu")
    h, w = args.height, args.width
    min_region = max(1, round(100 * h * w / (1024 * 2048)))

    # Correctness: the ground truth itself scores perfectly.
    perfect = frame(h, w, shift=0)
    pq, ap = PanopticStats(), InstanceAPStats(min_region_size=min_region)
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    evaluate_frame(*perfect, pq, cm, ap)
    summary, (_, miou) = pq.summary(), iou_from_confusion(cm)
    instance_ap = ap.summary()["AP"]
    if not (abs(summary["All"]["pq"] - 1) < 1e-9 and abs(miou - 1) < 1e-9):
        raise SystemExit(f"perfect prediction scored PQ {summary['All']['pq']}, mIoU {miou}")
    if not abs(instance_ap - 1) < 1e-9:
        raise SystemExit(f"perfect prediction scored AP {instance_ap}")

    shifted = frame(h, w, shift=6)
    pq, ap = PanopticStats(), InstanceAPStats(min_region_size=min_region)
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)

    def one() -> None:
        evaluate_frame(*shifted, pq, cm, ap)

    stats = summarize(time_call(one, device, warmup=2, runs=args.runs))
    rows = [
        {
            "size": f"{h}x{w}",
            "segments": int(torch.unique(shifted[4]).numel()),
            "median_ms": stats["median_ms"],
            "projected_s": stats["median_ms"] * args.frames / 1e3,
        }
    ]
    table = print_table(
        rows,
        [
            ("size", "frame"),
            ("segments", "predicted segments"),
            ("median_ms", "metrics ms / frame"),
            ("projected_s", f"{args.frames} frames, s"),
        ],
    )
    write_results("evaluation", device, {"rows": rows, "stats": stats, "table": table}, args.out)


if __name__ == "__main__":
    main()
