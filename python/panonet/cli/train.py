"""``panonet train``: two-stage training, single process or under torchrun."""

from __future__ import annotations

import argparse
import os

from panonet.cli.common import CLIError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="two-stage PanoNet training (single process or under torchrun)",
        description=(
            "Train PanoNet in two stages (paper Sec. III-C): stage 1 without coordinate input, "
            "stage 2 with the coordinate channels added. The config is a TOML or JSON file of "
            "panonet.train.TrainConfig fields (commented example: "
            "configs/panonet_synthetic.toml). Writes <out>/checkpoints/{last,stage1,final}.pt, "
            "<out>/metrics.jsonl and <out>/config.json. Ctrl-C saves last.pt; --resume auto "
            "continues exactly where it stopped. Multi-GPU / multi-node: "
            "torchrun --nproc_per_node N -m panonet train ..."
        ),
    )
    p.add_argument("--config", required=True, help="TOML (.toml) or JSON (.json) config file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (TOML value; dotted keys for tables, e.g. optim.lr=0.01); "
        "repeatable",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CKPT|auto",
        help="continue from a training checkpoint, or 'auto': the newest of "
        "<checkpoints>/last.pt and final.pt (a fresh start when there is none)",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/<config name>)")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="STEP",
        help="stop after this global step and write last.pt (resume later)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from panonet.train.config_file import load_train_config
    from panonet.train.trainer import run_training

    try:
        cfg = load_train_config(args.config, args.overrides)
    except FileNotFoundError as e:
        raise CLIError(f"no such config file: {args.config}") from e
    except ValueError as e:
        raise CLIError(str(e)) from e
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        path = run_training(cfg, out, resume=args.resume, stop_after=args.stop_after)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from e
    if os.environ.get("RANK", "0") == "0":  # once, not per torchrun process
        print(f"wrote {path}")
    return 0
