"""Benchmark of panonet.ops.panoptic_ids against the same rule written as tensor operations.

The reference (below, the form panonet used before the op) ranks each thing class's instance ids
per image with a presence table over all (class, id) pairs, a running count and gathers: about
twenty passes over full-resolution int64 maps. The op makes two. Both get the maps the Predictor
gives them on a 1024x2048 frame (a street-like synthetic scene's semantic and instance maps from
benchmarks/bench_model.py's trained-like frame, merged); their outputs must be equal before they
are timed (device synchronized around every call, median).

    python benchmarks/bench_panoptic_ids.py [--device cpu|cuda|auto] [--runs N]
"""

from __future__ import annotations

import functools

import torch
from _common import op_against_reference, op_bench_setup, write_results
from bench_model import trained_like_frame

from panonet.data.labels import LABEL_DIVISOR, THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.inference import bandwidth_table
from panonet.inference.merge import merge
from panonet.ops import panoptic_ids


def reference(sem, inst, labels, thing_index, T: int, K: int) -> torch.Tensor:
    """The rule with tensor operations: (B, H, W) int64 maps -> panoptic ids."""
    C = labels.numel()
    valid = (sem >= 0) & (sem < C)
    cls = sem.clamp(0, C - 1)
    label = labels[cls]
    ti = torch.where(valid, thing_index[cls], -1)
    segment = (ti >= 0) & (inst > 0)
    width = T * (K + 1)
    key = torch.where(segment, ti * (K + 1) + inst.clamp(0, K), width).flatten(1)
    present = torch.zeros(inst.shape[0], width + 1, dtype=torch.bool, device=inst.device)
    present.scatter_(1, key, True)
    present[:, width] = False
    count = present.cumsum(1, dtype=torch.int32)
    start = (ti.clamp(min=0) * (K + 1)).flatten(1)
    before = count.gather(1, start) - present.gather(1, start).int()
    j = (count.gather(1, key) - 1 - before).view_as(inst).long()
    pan = torch.where(valid & (ti < 0), label, 0)
    return torch.where(segment, label * LABEL_DIVISOR + j, pan)


def main() -> None:
    args, device, runs = op_bench_setup(__doc__.splitlines()[0])
    h, w = 256, 512
    emb, sem_low, _ = trained_like_frame(h, w)
    logits = torch.nn.functional.one_hot(sem_low, 19).permute(2, 0, 1).float()
    out = merge(logits[None], emb[None], bandwidth_table(None), size=(4 * h, 4 * w))
    sem, inst = out["semantic"].to(device), out["instance"].to(device)
    labels = torch.tensor(TRAIN_TO_LABEL, dtype=torch.int64, device=device)
    thing_index = torch.full((labels.numel(),), -1, dtype=torch.int64)
    thing_index[sorted(THING_TRAIN_IDS)] = torch.arange(len(THING_TRAIN_IDS))
    thing_index = thing_index.to(device)
    T, K = len(THING_TRAIN_IDS), h * w  # the bound merge passes: ids <= the 1/4-scale pixels
    op_fn = functools.partial(
        panoptic_ids, sem, inst, labels, thing_index, num_things=T, max_instance_id=K
    )
    ref_fn = functools.partial(reference, sem, inst, labels, thing_index, T, K)
    if not torch.equal(op_fn()[0], ref_fn()):
        raise SystemExit("panoptic_ids differs from the reference")
    print(f"checked: equal ids on a {4 * h}x{4 * w} frame with {int(inst.max())} instances")
    rows, table = op_against_reference("panoptic_ids", op_fn, ref_fn, device, runs)
    write_results(
        "panoptic_ids",
        device,
        {"size": [4 * h, 4 * w], "instances": int(inst.max()), "rows": rows, "table": table},
        args.out,
    )


if __name__ == "__main__":
    main()
