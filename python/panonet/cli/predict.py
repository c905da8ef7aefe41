"""``panonet predict``: panoptic maps and overlays for images, folders and videos."""

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
    precision,
    vote_groups,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="panoptic maps and overlays for images, folders and videos",
        description=(
            "Run a trained PanoNet on image files, folders of images and video files. Writes "
            "<name>_panoptic.png (16-bit Cityscapes panoptic ids) and <name>_overlay.png per "
            "image; <name>_overlay.mp4 and <name>_panoptic/ frames per video. Unreadable inputs "
            "are reported and skipped; existing outputs are kept unless --overwrite."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder or video")
    p.add_argument("--checkpoint", required=True, help="model checkpoint (panonet train)")
    p.add_argument("--out", required=True, help="output folder")
    add_bandwidths(p)
    add_device(p)
    add_precision(p)
    add_compile(p)
    p.add_argument("--batch", type=int, default=1, help="video frames per batch (default: 1)")
    add_min_instance_size(p)
    add_instance_reach(p)
    add_vote_groups(p)
    add_guided_upsampling(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panonet.inference.files import predict_files
    from panonet.inference.predictor import Predictor

    try:
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            bandwidths=args.bandwidths,
            precision=precision(args),
            compile_network=args.compile,
            min_instance_size=min_instance_size(args),
            vote_groups=vote_groups(args),
            guided_upsampling=guided_upsampling(args),
            **instance_reach(args),
        )
        summary = predict_files(
            predictor,
            args.inputs,
            args.out,
            overwrite=args.overwrite,
            batch=args.batch,
            progress=not args.no_progress,
        )
    except FileNotFoundError as e:
        raise CLIError(f"no such file: {e.filename or e}") from e
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from e
    print(summary.report())
    # Some inputs failed: say so in the exit status, after processing all the others.
    return 1 if summary.skipped else 0
