"""``panonet eval``: PQ, mIoU, AP and runtime on a dataset split (Tables I and II)."""

from __future__ import annotations

import argparse

from panonet.cli.common import (
    CLIError,
    add_bandwidths,
    add_compile,
    add_device,
    add_guided_upsampling,
    add_instance_reach,
    add_min_instance_size,
    add_no_progress,
    add_precision,
    add_vote_groups,
    guided_upsampling,
    instance_reach,
    min_instance_size,
    open_checkpoint,
    open_dataset,
    precision,
    vote_groups,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="PQ/SQ/RQ, mIoU, AP and runtime on a dataset split (paper Tables I and II)",
        description=(
            "Run a trained PanoNet over a Cityscapes-layout split and print Table I's columns "
            "(PQ SQ RQ, things and stuff, mIoU, AP, runtime) and Table II's per-class AP as "
            "Markdown; write all numbers as JSON with --out. --semantic gt clusters on the "
            "ground-truth semantic map instead of the predicted one (the paper's AP_GT). "
            "Instances are ranked for AP by their mean class probability."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="model checkpoint")
    p.add_argument("--data", required=True, help="dataset root (leftImg8bit/, gtFine/)")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--images", type=int, default=None, help="evaluate the first N images only")
    p.add_argument(
        "--semantic",
        choices=("pred", "gt"),
        default="pred",
        help="semantic map used for clustering and merging (gt: AP_GT; default: pred)",
    )
    add_bandwidths(p)
    add_device(p)
    add_precision(p)
    add_compile(p)
    p.add_argument("--save-vis", default=None, metavar="DIR", help="write overlays of frames")
    p.add_argument(
        "--num-vis", type=int, default=10, help="overlays written with --save-vis (default: 10)"
    )
    p.add_argument(
        "--predictions",
        default=None,
        metavar="DIR",
        help="write predictions as COCO-panoptic panoptic.json + panoptic/*.png",
    )
    p.add_argument("--out", default=None, help="JSON file for the results")
    add_min_instance_size(p)
    add_instance_reach(p)
    add_vote_groups(p)
    add_guided_upsampling(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panonet._atomic import write_json_atomic
    from panonet.evaluation.run import evaluate_model, format_tables
    from panonet.inference.predictor import Predictor

    if args.images is not None and args.images < 1:
        raise CLIError(f"--images must be >= 1, got {args.images}")
    if args.num_vis < 0:
        raise CLIError(f"--num-vis must be >= 0, got {args.num_vis}")
    dataset = open_dataset(args.data, args.split)
    model = open_checkpoint(args.checkpoint)
    try:
        predictor = Predictor(
            model,
            device=args.device,
            bandwidths=args.bandwidths,
            precision=precision(args),
            compile_network=args.compile,
            min_instance_size=min_instance_size(args),
            vote_groups=vote_groups(args),
            guided_upsampling=guided_upsampling(args),
            **instance_reach(args),
        )
        result = evaluate_model(
            predictor,
            dataset,
            images=args.images,
            semantic_source=args.semantic,
            progress=not args.no_progress,
            save_vis=args.save_vis,
            num_vis=args.num_vis,
            predictions_dir=args.predictions,
        )
    except FileNotFoundError as e:
        raise CLIError(f"no such file: {e.filename or e}") from e
    except (ValueError, TypeError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    result["checkpoint"] = str(args.checkpoint)
    result["data"] = str(args.data)
    result["split"] = args.split
    result["device"] = str(predictor.device)
    result["instance_reach"] = predictor.instance_reach
    result["min_instance_size"] = predictor.min_instance_size
    guided = predictor.guided_upsampling
    result["guided_upsampling"] = None if guided is None else guided.to_json()
    print(format_tables(result))
    if args.out:
        print(f"wrote {write_json_atomic(args.out, result)}")
    return 0
