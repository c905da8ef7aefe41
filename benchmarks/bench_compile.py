"""``Predictor(compile_network=True)`` against the eager Predictor on a full-resolution frame.

Both predictors run the same checkpoint (a trained one: an untrained network's embedding makes
every pixel its own cluster) on a rendered synthetic frame. Correctness first: the two must
give the same semantic map up to near-ties of the logits (the compiled network reorders float32
arithmetic), or the benchmark stops. Then the first compiled frame's time (the compilation),
and the two predictors timed alternately, frame by frame, so that the machine's drift falls on
both alike: total and network time per frame (stage timings on), medians of ``--runs`` each.

    python benchmarks/bench_compile.py --checkpoint CKPT [--bandwidths BW] [--device cpu]
        [--height 1024] [--width 2048] [--runs 8] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _common import resolve_device, write_results

from panonet.data.synthetic import render
from panonet.inference import Predictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a trained PanoNet checkpoint")
    p.add_argument("--bandwidths", default=None, help="bandwidth-search JSON of the checkpoint")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--runs", type=int, default=8, help="timed frames per predictor")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = p.parse_args()
    device = resolve_device(args.device)
    frame = np.asarray(render((args.height, args.width), seed=0).image)
    common = {"device": device, "bandwidths": args.bandwidths, "min_instance_size": 32}
    eager = Predictor(args.checkpoint, **common)
    compiled = Predictor(args.checkpoint, compile_network=True, **common)

    start = time.perf_counter()
    b = compiled.predict(frame, return_logits=True)
    compile_s = time.perf_counter() - start
    a = eager.predict(frame, return_logits=True)
    differ = int((a["semantic"] != b["semantic"]).sum())
    scale = float(a["logits"].abs().max())
    logit_error = float((a["logits"] - b["logits"]).abs().max()) / scale
    # 1e-5 of the logits' scale: float32 rounding through ~100 layers summed in another order.
    if logit_error > 1e-5 or differ > 1e-4 * frame.shape[0] * frame.shape[1]:
        raise SystemExit(
            f"compiled network disagrees: logits {logit_error:.2e} of their scale, "
            f"{differ} semantic pixels differ"
        )
    times: dict[str, dict[str, list[float]]] = {
        k: {"total": [], "network": []} for k in ("eager", "compiled")
    }
    for _ in range(args.runs):
        for name, predictor in (("eager", eager), ("compiled", compiled)):
            t = predictor.predict(frame)["timings"]
            times[name]["total"].append(t["total"])
            times[name]["network"].append(t["network"])
    med = {k: {s: statistics.median(v) for s, v in d.items()} for k, d in times.items()}
    print(
        f"{args.height}x{args.width}, {args.checkpoint}, compiled at the first frame in "
        f"{compile_s:.1f} s; medians of {args.runs} alternating frames:"
    )
    print("| predictor | total ms | network ms |\n|---|---:|---:|")
    for name in ("eager", "compiled"):
        print(f"| {name} | {med[name]['total']:.1f} | {med[name]['network']:.1f} |")
    ratio = med["compiled"]["total"] / med["eager"]["total"]
    print(f"compiled / eager, total: {ratio:.2f}; semantic pixels that differ: {differ}")
    write_results(
        "compile",
        device,
        {
            "checkpoint": args.checkpoint,
            "image_size": [args.height, args.width],
            "threads": torch.get_num_threads(),
            "compile_seconds": compile_s,
            "logit_error_of_scale": logit_error,
            "semantic_pixels_differ": differ,
            "times_ms": times,
            "median_ms": med,
            "compiled_over_eager_total": ratio,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
