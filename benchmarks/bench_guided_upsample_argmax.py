"""Benchmark of panonet.ops.guided_upsample_argmax against the same formula in tensor operations
(the reference), with bilinear upsample_argmax (the paper's semantic map) beside them.

The demo's semantic map: 19 class logits at 1/4 scale upsampled to the image along its edges
(joint bilateral upsampling, window 6, sigma_spatial 2, sigma_range 0.05: GuidedUpsampling's
defaults). The reference gathers each of the 36 neighbours' logits at full resolution, weighs
them and sums (a (B, C, H, W) float tensor per neighbour); the op keeps a pixel's weights in
registers and writes only the classes. Correctness first: the op's classes must equal the
reference's wherever the reference's best two sums are more than 1e-5 of their scale apart, and
the count of pixels where they differ is reported. Each is timed with the device synchronized
around every call (median); on CUDA also back to back (device events).

    python benchmarks/bench_guided_upsample_argmax.py [--device cpu|cuda|auto] [--runs N]
"""

from __future__ import annotations

import functools
import math

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

from panonet.ops import guided_upsample_argmax, upsample_argmax

# (B, C, h, w, H, W): the demo's 256x512 images, one Cityscapes frame.
CASES = [(1, 19, 64, 128, 256, 512), (1, 19, 256, 512, 1024, 2048)]
SETTINGS = (2.0, 0.05, 6)
TIE_TOL = 1e-5


def reference_sums(
    logits: torch.Tensor, image: torch.Tensor, ss: float, sr: float, window: int
) -> torch.Tensor:
    """The op's weighted sums (B, C, H, W) in tensor operations: per neighbour offset, the
    neighbours' logits and guide colours gathered at full resolution."""
    B, C, h, w = logits.shape
    H, W = image.shape[1:3]
    dtype, device = logits.dtype, logits.device
    rgb = image.permute(0, 3, 1, 2).to(dtype) / 255.0
    guide = F.adaptive_avg_pool2d(rgb, (h, w))

    def axis(out: int, n: int):
        pos = (torch.arange(out, device=device, dtype=torch.float64) + 0.5) * (n / out) - 0.5
        base = torch.floor(pos).long()
        for d in range(1 - window // 2, window // 2 + 1):
            q = base + d
            inside = (q >= 0) & (q < n)
            e = ((q.double() - pos) ** 2 / (2 * ss**2)).to(dtype)
            yield q.clamp(0, n - 1), torch.where(inside, e, math.inf)

    rows, cols = list(axis(H, h)), list(axis(W, w))
    exps = []
    for qy, ey in rows:
        for qx, ex in cols:
            g = guide.index_select(2, qy).index_select(3, qx)
            d2 = ((rgb - g) ** 2).sum(dim=1)
            exps.append((qy, qx, d2 / (2 * sr**2) + ey[:, None] + ex[None, :]))
    e_min = torch.stack([e for _, _, e in exps]).amin(dim=0)
    total = torch.zeros((B, C, H, W), dtype=dtype, device=device)
    for qy, qx, e in exps:
        weight = torch.exp(e_min - e)  # 0 outside the grid (e = inf)
        total += weight[:, None] * logits.index_select(2, qy).index_select(3, qx)
    return total


def reference(logits, image, ss, sr, window) -> torch.Tensor:
    return reference_sums(logits, image, ss, sr, window).max(dim=1).indices


def check(logits: torch.Tensor, image: torch.Tensor) -> int:
    """Pixels where op and reference differ; raises if any is not a near tie."""
    sums = reference_sums(logits, image, *SETTINGS)
    top2 = sums.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) <= TIE_TOL * float(logits.abs().max()) * 36
    differ = guided_upsample_argmax(logits, image, *SETTINGS) != sums.max(dim=1).indices
    if (differ & ~near_tie).any():
        raise SystemExit("guided_upsample_argmax differs from the reference off near ties")
    return int(differ.sum())


def main() -> None:
    args, device, runs = op_bench_setup(__doc__.splitlines()[0])
    cuda = device.type == "cuda"
    rows = []
    for B, C, h, w, H, W in CASES:
        g = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(B, C, h, w, generator=g)).to(device)
        image = torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8, generator=g).to(device)
        differ = check(logits, image)
        case = f"{B}x{C}x{h}x{w} -> {H}x{W}"
        timed = {}
        for name, fn in (
            ("reference", functools.partial(reference, logits, image, *SETTINGS)),
            ("op", functools.partial(guided_upsample_argmax, logits, image, *SETTINGS)),
            ("bilinear", functools.partial(upsample_argmax, logits, (H, W))),
        ):
            timed[name] = summarize(time_call(fn, device, warmup=2, runs=runs))
        row = {
            "case": case,
            "reference_ms": timed["reference"]["median_ms"],
            "op_ms": timed["op"]["median_ms"],
            "speedup": timed["reference"]["median_ms"] / timed["op"]["median_ms"],
            "bilinear_ms": timed["bilinear"]["median_ms"],
            "near_tie_pixels_differing": differ,
            **timed,
        }
        if cuda:
            op_fn = functools.partial(guided_upsample_argmax, logits, image, *SETTINGS)
            row["op_back_to_back_ms"] = 1e3 * time_back_to_back(op_fn, device, runs=runs)
        rows.append(row)
        print(
            f"  {case}: reference {row['reference_ms']:.1f} ms, op {row['op_ms']:.1f} ms, "
            f"bilinear {row['bilinear_ms']:.2f} ms",
            flush=True,
        )
    columns = [
        ("case", "case"),
        ("reference_ms", "tensor operations, ms"),
        ("op_ms", "guided_upsample_argmax, ms"),
        ("speedup", "speedup"),
        ("bilinear_ms", "bilinear upsample_argmax, ms"),
        ("near_tie_pixels_differing", "pixels differing (near ties)"),
    ]
    if cuda:
        columns.append(("op_back_to_back_ms", "op back to back, ms"))
    table = print_table(rows, columns)
    write_results(
        "guided_upsample_argmax",
        device,
        {"threads": torch.get_num_threads(), "settings": SETTINGS, "rows": rows, "table": table},
        args.out,
    )


if __name__ == "__main__":
    main()
