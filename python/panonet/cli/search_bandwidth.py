"""``panonet search-bandwidth``: the mean-shift bandwidth of each thing class."""

from __future__ import annotations

import argparse

from panonet.cli.common import (
    CLIError,
    add_device,
    add_guided_upsampling,
    add_no_progress,
    add_search_inputs,
    add_vote_groups,
    guided_upsampling,
    open_checkpoint,
    open_dataset,
    vote_groups,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search-bandwidth",
        help="search the mean-shift bandwidth of each thing class (paper III-D)",
        description=(
            "Run the model on a subset of a Cityscapes-layout split, cluster each thing class "
            "with every candidate bandwidth and keep, per class, the one with the best PQ. "
            "Writes the JSON that predict/eval read with --bandwidths."
        ),
    )
    add_search_inputs(p, images=50)
    p.add_argument(
        "--candidates",
        type=float,
        nargs="+",
        default=None,
        help="bandwidths to try (default: 0.25, 0.3, ..., 1.0 in steps of 0.05, then 1.25, 1.5, "
        "1.75, 2, 2.5, 3)",
    )
    p.add_argument(
        "--semantic",
        choices=("pred", "gt"),
        default="pred",
        help="semantic map the classes are clustered on: pred (default; the bandwidths for "
        "predict and eval) or gt (the bandwidths for eval --semantic gt and mirror-test, which "
        "cluster on the ground truth)",
    )
    add_device(p)
    p.add_argument("--out", required=True, help="JSON file to write")
    add_vote_groups(p)
    add_guided_upsampling(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panonet.inference.bandwidth_search import search_bandwidths

    if args.images < 1:
        raise CLIError(f"--images must be >= 1, got {args.images}")
    model = open_checkpoint(args.checkpoint)
    dataset = open_dataset(args.data, args.split)
    try:
        result = search_bandwidths(
            model,
            dataset,
            images=args.images,
            candidates=args.candidates,
            device=args.device,
            progress=not args.no_progress,
            vote_groups=vote_groups(args),
            semantic_source=args.semantic,
            guided_upsampling=guided_upsampling(args),
        )
    except FileNotFoundError as e:
        raise CLIError(str(e)) from e
    except ValueError as e:
        raise CLIError(str(e)) from e
    path = result.save(args.out)
    names = result.to_json()["bandwidths"]
    print(
        f"searched {len(result.candidates)} bandwidths on {result.images} image(s) "
        f"(semantic from {result.semantic_source}) in "
        f"{result.seconds:.1f} s: " + ", ".join(f"{k} {v:g}" for k, v in names.items())
    )
    print(f"wrote {path}")
    return 0
