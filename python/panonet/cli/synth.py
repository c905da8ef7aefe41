"""``panonet synth``: synthetic street scenes in the Cityscapes layout."""

from __future__ import annotations

import argparse

from panonet.cli.common import CLIError, add_no_progress, parse_size

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic street scenes in the Cityscapes layout",
        description=(
            "Write procedural street scenes with Cityscapes-style ground truth (leftImg8bit/, "
            "gtFine/ with labelIds, instanceIds and color PNGs) that panonet.data."
            "CityscapesPanoptic reads like the real dataset. Deterministic by --seed; re-running "
            "into the same directory skips images that are already complete."
        ),
    )
    p.add_argument("--out", required=True, help="output dataset root")
    p.add_argument("--train", type=int, default=0, help="number of train images")
    p.add_argument("--val", type=int, default=0, help="number of val images")
    p.add_argument("--size", default="512x1024", help="image size HxW, e.g. 512x1024")
    p.add_argument("--seed", type=int, default=0, help="base seed (>= 0)")
    p.add_argument(
        "--cities",
        nargs="+",
        default=None,
        metavar="CITY",
        help="city names used for every split (default: separate train and val cities)",
    )
    p.add_argument(
        "--max-thing-depth",
        type=float,
        default=None,
        metavar="METRES",
        help="place instances no farther than this (bigger things; default: up to 70 m)",
    )
    p.add_argument(
        "--twin-row",
        type=int,
        default=None,
        metavar="K",
        help="twins in rows of 2 to K identical copies side by side (default: pairs)",
    )
    p.add_argument(
        "--twin-groups",
        type=int,
        default=None,
        metavar="G",
        help="1 to G groups of twins per image (default: 1 or 2)",
    )
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panonet.data.synthetic import generate

    size = parse_size(args.size)
    if args.train < 0 or args.val < 0:
        raise CLIError(f"--train and --val must be >= 0, got {args.train} and {args.val}")
    if args.train + args.val == 0:
        raise CLIError("nothing to generate: give --train and/or --val")
    try:
        summary = generate(
            args.out,
            train=args.train,
            val=args.val,
            size=size,
            seed=args.seed,
            progress=not args.no_progress,
            cities=args.cities,
            max_thing_depth=args.max_thing_depth,
            twin_row=args.twin_row,
            twin_groups=args.twin_groups,
        )
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(
        f"wrote {summary.written} image(s), skipped {summary.skipped} already complete, "
        f"{size[0]}x{size[1]}, seed {args.seed}, to {summary.out_dir} in {summary.seconds:.1f} s"
    )
    return 0
