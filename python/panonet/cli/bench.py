"""``panonet bench``: one frame timed end to end, and the PQ-vs-FPS plot."""

from __future__ import annotations

import argparse

from panonet.cli.common import (
    CLIError,
    add_bandwidths,
    add_compile,
    add_device,
    add_no_progress,
    add_precision,
    open_checkpoint,
    parse_size,
    precision,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time one frame end to end: network, clustering, merge",
        description=(
            "Time Predictor.predict on a synthetic street scene of the given size: median of "
            "--runs calls after --warmup, device synchronised per stage. Without --checkpoint "
            "the weights are random (the network time is the same; clustering a random "
            "embedding is not representative). With --pq-from and --plot, writes the paper's "
            "Fig. 1 (PQ vs FPS) with this measurement as panonet's point."
        ),
    )
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: random init)")
    p.add_argument("--size", default="1024x2048", help="frame HxW (default: 1024x2048, Cityscapes)")
    add_bandwidths(p)
    add_device(p)
    add_precision(p)
    add_compile(p)
    p.add_argument("--runs", type=int, default=10, help="timed runs (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    p.add_argument("--out", default=None, help="JSON file for the timings")
    p.add_argument(
        "--pq-from",
        default=None,
        metavar="JSON",
        help="PQ for the plot: 'panonet eval --out' JSON or a demo metrics.json",
    )
    p.add_argument("--plot", default=None, metavar="PNG", help="write the PQ-vs-FPS plot")
    p.add_argument(
        "--name",
        default="panonet",
        help="label of the measured point in the plot, e.g. where the PQ comes from",
    )
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from panonet._atomic import write_json_atomic
    from panonet.bench import time_predictor
    from panonet.data.synthetic import render
    from panonet.inference.predictor import Predictor
    from panonet.models import PanoNet

    if (args.plot is None) != (args.pq_from is None):
        raise CLIError("--plot and --pq-from go together (the plot needs a measured PQ)")
    if args.runs < 1 or args.warmup < 0:
        raise CLIError(f"expected --runs >= 1 and --warmup >= 0, got {args.runs}, {args.warmup}")
    pq = None
    if args.pq_from:
        try:
            with open(args.pq_from, encoding="utf-8") as f:
                found = json.load(f)
            found = found.get("evaluation", found)  # demo metrics.json nests the eval result
            pq = float(found["panoptic"]["All"]["pq"])
        except FileNotFoundError as e:
            raise CLIError(f"no such file: {args.pq_from}") from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CLIError(
                f"{args.pq_from}: expected a 'panonet eval --out' JSON with panoptic.All.pq "
                f"({type(e).__name__})"
            ) from e
    H, W = parse_size(args.size)
    if min(H, W) < 32:
        raise CLIError(f"--size must be at least 32x32, got {args.size}")
    model = open_checkpoint(args.checkpoint) if args.checkpoint else PanoNet().eval()
    try:
        predictor = Predictor(
            model,
            device=args.device,
            bandwidths=args.bandwidths,
            precision=precision(args),
            compile_network=args.compile,
        )
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e).splitlines()[0]) from e
    frame = np.asarray(render((H, W), seed=0).image)
    result = time_predictor(
        predictor, frame, runs=args.runs, warmup=args.warmup, progress=not args.no_progress
    )
    result["checkpoint"] = args.checkpoint
    med = result["median_ms"]
    print(f"{H}x{W} on {result['device']}, median of {args.runs} runs:")
    print("| stage | median ms |\n|---|---:|")
    for stage, ms in med.items():
        print(f"| {stage} | {ms:.1f} |")
    print(f"{result['fps']:.2f} frames per second with every stage timed")
    print(
        f"real time (no stage timings, maps left on the device, one wait per frame): "
        f"{result['end_to_end_ms']:.1f} ms per frame, {result['fps_real_time']:.2f} frames per "
        f"second; the stages add up to {result['stage_sum_ms']:.1f} ms (each timed after a wait)"
    )
    if "end_to_end_graph_ms" in result:
        print(
            f"as one CUDA graph per frame (Predictor(cuda_graph=True)): "
            f"{result['end_to_end_graph_ms']:.1f} ms per frame, {result['fps_graph']:.2f} frames "
            "per second"
        )
    if args.out:
        print(f"wrote {write_json_atomic(args.out, result)}")
    if args.plot:
        from panonet.viz import pq_fps_plot

        ours = {"name": args.name, "pq": 100 * pq, "fps": result["fps"], "device": result["device"]}
        print(f"wrote {pq_fps_plot(args.plot, ours=ours)}")
    return 0
