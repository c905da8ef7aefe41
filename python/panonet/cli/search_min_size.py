"""``panonet search-min-size``: the minimum instance size, searched on training images."""

from __future__ import annotations

import argparse
import time

from panonet.cli.common import (
    CLIError,
    add_bandwidths,
    add_device,
    add_guided_upsampling,
    add_instance_reach,
    add_no_progress,
    add_search_inputs,
    add_vote_groups,
    guided_upsampling,
    instance_reach,
    open_checkpoint,
    open_dataset,
    vote_groups,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search-min-size",
        help="search the minimum instance size (things PQ on training images)",
        description=(
            "Run the model once on a subset of a Cityscapes-layout split, post-process it with "
            "every candidate minimum instance size and keep the one with the best things PQ "
            "(the smallest among ties). Writes the JSON that predict/eval read with "
            "--min-instance-size. Pass the bandwidths (and --vote-groups, --instance-reach) "
            "that predict/eval will use."
        ),
    )
    add_search_inputs(p, images=20)
    p.add_argument(
        "--candidates",
        type=int,
        nargs="+",
        default=None,
        help="sizes to try, in output pixels (default: 32 64 128 256 512 1024)",
    )
    add_bandwidths(p)
    add_device(p)
    add_instance_reach(p)
    add_vote_groups(p)
    add_guided_upsampling(p)
    p.add_argument("--out", required=True, help="JSON file to write")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panonet._atomic import write_json_atomic
    from panonet.inference.min_size_search import search_min_instance_size
    from panonet.inference.predictor import Predictor

    if args.images < 1:
        raise CLIError(f"--images must be >= 1, got {args.images}")
    model = open_checkpoint(args.checkpoint)
    dataset = open_dataset(args.data, args.split)
    start = time.perf_counter()
    try:
        predictor = Predictor(
            model,
            device=args.device,
            bandwidths=args.bandwidths,
            vote_groups=vote_groups(args),
            guided_upsampling=guided_upsampling(args),
            **instance_reach(args),
        )
        result = search_min_instance_size(
            predictor,
            dataset,
            images=args.images,
            candidates=args.candidates,
            progress=not args.no_progress,
        )
    except FileNotFoundError as e:
        raise CLIError(f"no such file: {e.filename or e}") from e
    except ValueError as e:
        raise CLIError(str(e).splitlines()[0]) from e
    seconds = time.perf_counter() - start
    guided = predictor.guided_upsampling
    record = {
        **result.to_json(),
        "seconds": round(seconds, 2),
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "split": args.split,
        "bandwidths": args.bandwidths,
        "instance_reach": predictor.instance_reach,
        "vote_groups": args.vote_groups,
        "guided_upsampling": None if guided is None else guided.to_json(),
    }
    path = write_json_atomic(args.out, record)
    scores = ", ".join(
        f"{size} {'-' if pq is None else f'{100 * pq:.1f}'}"
        for size, pq in zip(record["candidates"], record["things_pq"], strict=True)
    )
    print(
        f"things PQ by minimum size on {result.images} image(s) in {seconds:.1f} s: {scores}; "
        f"best {result.best}"
    )
    print(f"wrote {path}")
    return 0
