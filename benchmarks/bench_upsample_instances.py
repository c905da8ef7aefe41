"""Benchmark of panonet.ops.upsample_instances against the same steps as tensor operations.

The reference (below, the form panonet used before the op) resizes the 1/4-scale instance map
with resize_labels, looks up every pixel's instance class, masks, counts pixels per id and
renumbers: about ten passes over full-resolution int64 maps. Both get what merge gives them on a
1024x2048 frame (benchmarks/bench_model.py's trained-like frame, clustered), with the instance
minimum of the paper's experiments (32 pixels); their outputs must be equal before they are timed
(device synchronized around every call, median). A third row times the op with the Predictor's
default reach (merge.INSTANCE_REACH: pixels whose source has another class look for an instance
of their class nearby), on the frame's noisy class borders; no reference computes that rule here
(tests/ops/test_upsample_instances.py checks it).

    python benchmarks/bench_upsample_instances.py [--device cpu|cuda|auto] [--runs N]
"""

from __future__ import annotations

import functools

import torch
from _common import op_against_reference, op_bench_setup, summarize, time_call, write_results
from bench_model import trained_like_frame

from panonet.data.transforms import resize_labels
from panonet.inference import bandwidth_table
from panonet.inference.merge import INSTANCE_REACH, semantic_from_logits
from panonet.ops import cluster_instances, upsample_instances

MIN_SIZE = 32


def reference(inst, sem, full, size, kmax: int, min_size: int) -> torch.Tensor:
    """The steps as tensor operations: (B, h, w) ids and classes, (B, H, W) classes -> ids."""
    B = inst.shape[0]
    cls = torch.full((B, kmax + 1), -1, dtype=torch.int64, device=inst.device)
    cls.scatter_(1, inst.flatten(1), sem.flatten(1))
    cls[:, 0] = -1
    up = resize_labels(inst, size)
    up = torch.where(torch.gather(cls, 1, up.flatten(1)).view_as(up) == full, up, 0)
    flat = up.flatten(1)
    counts = torch.zeros(B, kmax + 1, dtype=torch.int64, device=inst.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    keep = counts >= max(min_size, 1)
    keep[:, 0] = False
    return torch.gather(keep.long().cumsum(dim=1) * keep, 1, flat).view_as(up)


def main() -> None:
    args, device, runs = op_bench_setup(__doc__.splitlines()[0])
    h, w = 256, 512
    size = (4 * h, 4 * w)
    emb, sem_low, _ = trained_like_frame(h, w)
    g = torch.Generator().manual_seed(0)
    logits = torch.nn.functional.one_hot(sem_low, 19).permute(2, 0, 1).float() * 5
    logits = logits + 2 * torch.randn(logits.shape, generator=g)  # class borders that disagree
    emb, sem = emb[None].to(device), sem_low[None].to(device)
    full = semantic_from_logits(logits[None].to(device), size)
    inst = cluster_instances(emb, sem, bandwidth_table(None).to(device))
    kmax = h * w
    op_fn = functools.partial(
        upsample_instances,
        inst,
        sem,
        size,
        semantic_fullres=full,
        max_instance_id=kmax,
        min_size=MIN_SIZE,
    )
    ref_fn = functools.partial(reference, inst, sem, full, size, kmax, MIN_SIZE)
    if not torch.equal(op_fn(), ref_fn()):
        raise SystemExit("upsample_instances differs from the reference")
    print(f"checked: equal ids on a {size[0]}x{size[1]} frame, {int(op_fn().max())} instances")
    rows, table = op_against_reference("upsample_instances", op_fn, ref_fn, device, runs)
    reach_fn = functools.partial(op_fn, reach=INSTANCE_REACH)
    reached = summarize(time_call(reach_fn, device, warmup=2, runs=runs))
    sources = resize_labels(sem, size)
    mismatched = float((sources != full).float().mean())
    rows.append(
        {
            "implementation": f"upsample_instances, reach {INSTANCE_REACH}",
            **reached,
            "speedup": rows[0]["median_ms"] / reached["median_ms"],
            "pixels_whose_source_has_another_class": mismatched,
        }
    )
    print(
        f"reach {INSTANCE_REACH}: {reached['median_ms']:.2f} ms ({100 * mismatched:.1f} % of the "
        f"pixels' sources have another class), against {rows[1]['median_ms']:.2f} ms without"
    )
    write_results(
        "upsample_instances",
        device,
        {"size": list(size), "min_size": MIN_SIZE, "rows": rows, "table": table},
        args.out,
    )


if __name__ == "__main__":
    main()
