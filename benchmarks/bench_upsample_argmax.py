"""Benchmark of panonet.ops.upsample_argmax against F.interpolate + max (the reference).

The Predictor's semantic map: 19 class logits at 1/4 scale upsampled bilinearly to the frame and
argmaxed. The reference writes the upsampled logits (159 MB per 1024x2048 frame in float32) and
reads them back; the op writes only the classes. Correctness first: on every case the op's
classes must equal the reference's wherever the reference's best two classes are more than
4e-6 of the logits' magnitude apart (tests/ops/test_upsample_argmax.py argues that bound), and
the count of pixels where they differ is reported. Then each is timed with the device
synchronized around every call (median); on CUDA also back to back (device events).

    python benchmarks/bench_upsample_argmax.py [--device cpu|cuda|auto] [--runs N]
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from _common import (
    op_bench_setup,
    print_table,
    summarize,
    time_back_to_back,
    time_call,
    write_results,
)

from panonet.ops import upsample_argmax

# (B, C, h, w, H, W): one Cityscapes frame, a batch of four, and the demo's 256x512 images.
CASES = [(1, 19, 256, 512, 1024, 2048), (4, 19, 256, 512, 1024, 2048), (1, 19, 64, 128, 256, 512)]
TIE_TOL = 4e-6


def reference(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return up.max(dim=1).indices


def check(x: torch.Tensor, size: tuple[int, int]) -> int:
    """Pixels where op and reference differ; raises if any is not a near tie."""
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top2 = up.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) <= TIE_TOL * float(x.abs().max())
    differ = upsample_argmax(x, size) != up.max(dim=1).indices
    if (differ & ~near_tie).any():
        raise SystemExit(f"upsample_argmax differs from the reference off near ties at {size}")
    return int(differ.sum())


def main() -> None:
    args, device, runs = op_bench_setup(__doc__.splitlines()[0])
    cuda = device.type == "cuda"
    rows = []
    for B, C, h, w, H, W in CASES:
        g = torch.Generator().manual_seed(0)
        x = (3 * torch.randn(B, C, h, w, generator=g)).to(device)
        size = (H, W)
        differ = check(x, size)
        case = f"{B}x{C}x{h}x{w} -> {H}x{W}"
        ref_fn = functools.partial(reference, x, size)
        op_fn = functools.partial(upsample_argmax, x, size)
        ref = summarize(time_call(ref_fn, device, warmup=2, runs=runs))
        op = summarize(time_call(op_fn, device, warmup=2, runs=runs))
        row = {
            "case": case,
            "reference_ms": ref["median_ms"],
            "op_ms": op["median_ms"],
            "speedup": ref["median_ms"] / op["median_ms"],
            "near_tie_pixels_differing": differ,
            "reference": ref,
            "op": op,
        }
        if cuda:
            row["op_back_to_back_ms"] = 1e3 * time_back_to_back(op_fn, device, runs=runs)
        rows.append(row)
        print(
            f"  {case}: reference {ref['median_ms']:.2f} ms, op {op['median_ms']:.2f} ms",
            flush=True,
        )
    columns = [
        ("case", "case"),
        ("reference_ms", "F.interpolate + max, ms"),
        ("op_ms", "upsample_argmax, ms"),
        ("speedup", "speedup"),
        ("near_tie_pixels_differing", "pixels differing (near ties)"),
    ]
    if cuda:
        columns.append(("op_back_to_back_ms", "op back to back, ms"))
    table = print_table(rows, columns)
    write_results(
        "upsample_argmax",
        device,
        {"threads": torch.get_num_threads(), "rows": rows, "table": table},
        args.out,
    )


if __name__ == "__main__":
    main()
