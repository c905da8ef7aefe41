"""``panonet mirror-test``: identical twins merged into one instance (Fig. 5)."""

from __future__ import annotations

import argparse

from panonet.cli.common import (
    CLIError,
    add_device,
    add_instance_reach,
    add_no_progress,
    instance_reach,
    open_checkpoint,
    open_dataset,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mirror-test",
        help="count identical twins merged into one instance (paper Fig. 5)",
        description=(
            "Mirror the left half of each image (and its ground truth) onto the right half, or "
            "with --variant shift copy it unflipped (identical twins in identical surroundings), "
            "so every thing on the left gets a twin, or with --variant scene take the twins the "
            "synthetic generator painted side by side, and count the twin pairs each model "
            "merges into one instance, also by the twins' distance. Give several checkpoints to "
            "compare them (e.g. with and without coordinates). By default the clustering runs on "
            "the ground-truth semantic map, so the count measures the embedding alone."
        ),
    )
    p.add_argument("--checkpoint", required=True, nargs="+", help="model checkpoint(s)")
    p.add_argument("--data", required=True, help="dataset root (leftImg8bit/, gtFine/)")
    p.add_argument("--split", default="val", help="split (default: val)")
    p.add_argument(
        "--variant",
        # evaluation.mirror.VARIANTS, written out: importing it would load torch for --help (a
        # test keeps the two equal).
        choices=("mirror", "shift", "scene"),
        default="mirror",
        help=(
            "the left half mirrored (default, the paper's), copied unflipped (shift), or the "
            "synthetic scenes' own side-by-side twins (scene; panonet synth data only)"
        ),
    )
    p.add_argument("--images", type=int, default=None, help="use the first N images only")
    p.add_argument(
        "--bandwidths",
        nargs="+",
        default=None,
        help="bandwidth JSON, one for all checkpoints or one per checkpoint (default 0.5)",
    )
    p.add_argument(
        "--semantic",
        choices=("gt", "pred"),
        default="gt",
        help="semantic map clustered: ground truth (default) or predicted",
    )
    add_device(p)
    add_instance_reach(p)
    p.add_argument("--save-vis", default=None, metavar="DIR", help="write pictures")
    p.add_argument("--num-vis", type=int, default=4, help="pictures per checkpoint (default: 4)")
    p.add_argument("--out", default=None, help="JSON file for the counts")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from panonet._atomic import write_json_atomic
    from panonet.evaluation.mirror import format_mirror, run_mirror_test
    from panonet.inference.predictor import Predictor

    ckpts = args.checkpoint
    bws = args.bandwidths or [None]
    if len(bws) not in (1, len(ckpts)):
        raise CLIError(
            f"--bandwidths: expected 1 file or one per checkpoint ({len(ckpts)}), got {len(bws)}"
        )
    if len(bws) == 1:
        bws = bws * len(ckpts)
    if args.images is not None and args.images < 1:
        raise CLIError(f"--images must be >= 1, got {args.images}")
    dataset = open_dataset(args.data, args.split)
    results = {}
    for k, (ckpt, bw) in enumerate(zip(ckpts, bws, strict=True)):
        model = open_checkpoint(ckpt)
        vis = None
        if args.save_vis:
            vis = Path(args.save_vis) / (
                Path(ckpt).stem if len(ckpts) == 1 else f"{k}_{Path(ckpt).stem}"
            )
        try:
            predictor = Predictor(model, device=args.device, bandwidths=bw, **instance_reach(args))
            result = run_mirror_test(
                predictor,
                dataset,
                variant=args.variant,
                images=args.images,
                semantic_source=args.semantic,
                progress=not args.no_progress,
                save_vis=vis,
                num_vis=args.num_vis,
            )
        except FileNotFoundError as e:
            raise CLIError(f"no such file: {e.filename or e}") from e
        except (ValueError, TypeError) as e:
            raise CLIError(str(e).splitlines()[0]) from e
        coords = "with" if result["use_coords"] else "without"
        results[f"{ckpt} ({coords} coordinates)"] = {
            **result,
            "checkpoint": str(ckpt),
            "instance_reach": predictor.instance_reach,
        }
    print(format_mirror(results))
    if args.out:
        print(f"wrote {write_json_atomic(args.out, results)}")
    return 0
