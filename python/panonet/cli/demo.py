"""``panonet demo``: the whole pipeline on synthetic data."""

from __future__ import annotations

import argparse
import sys

from panonet.cli.common import CLIError, add_device, add_no_progress

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthesize, train, search bandwidths, evaluate, draw: the whole pipeline",
        description=(
            "The whole pipeline on synthetic street scenes: synthesize a dataset, train both "
            "stages, search the per-class bandwidths, evaluate on the val split (Table I), and "
            "write overlays, the mirrored-twin test and the training curves. About 10 minutes "
            "on a 2-core CPU; a GPU is used when present, for a longer training. Run it again to "
            "continue an "
            "interrupted demo."
        ),
    )
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--quick", action="store_true", help="tiny version (well under 2 minutes)")
    add_device(p, default="auto")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panonet.demo import run_demo

    try:
        run_demo(args.out, quick=args.quick, device=args.device, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as e:
        # E.g. --out holding a demo of the other size (the dataset manifest disagrees).
        raise CLIError(str(e).splitlines()[0]) from e
    return 0
