"""The ``panonet`` command line: one subcommand per task, one module per subcommand.

Each subcommand module (``panonet.cli.<name>``) has ``add_parser(subparsers)``, which declares
its arguments and sets ``func`` to its ``run(args) -> int``; options that several subcommands
take, and the opening of checkpoints and datasets, are in :mod:`panonet.cli.common`. To add a
subcommand, write its module and append its ``add_parser`` to ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from panonet.cli import (
    bench,
    demo,
    evaluate,
    export,
    mirror_test,
    predict,
    search_bandwidth,
    search_min_size,
    synth,
    train,
)
from panonet.cli.common import CLIError

__all__ = ["build_parser", "main"]

_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    export.add_parser,
    synth.add_parser,
    train.add_parser,
    search_bandwidth.add_parser,
    search_min_size.add_parser,
    predict.add_parser,
    evaluate.add_parser,
    mirror_test.add_parser,
    bench.add_parser,
    demo.add_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="panonet", description="PanoNet: real-time panoptic segmentation"
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``panonet`` command line; returns the exit status.

    Argument errors exit via argparse (status 2); errors in the inputs (a checkpoint that does
    not fit, a missing file, a too small size) print ``panonet <cmd>: error: ...`` to stderr and
    return 2; any other exception prints a one-line cause and returns 1. ``--debug`` (before
    the subcommand) re-raises instead, with the full traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CLIError as e:
        if args.debug:
            raise
        print(f"panonet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"panonet {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns any failure into a line
        if args.debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(
            f"panonet {args.command}: error: {type(e).__name__}: {first} "
            "(run 'panonet --debug ...' for the traceback)",
            file=sys.stderr,
        )
        return 1
