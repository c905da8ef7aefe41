"""The ``panonet`` command line: one subcommand per task.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its arguments and
sets ``func`` to ``_run_<name>(args) -> int``. To add one, write the pair and append the adder to
``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]


class CLIError(Exception):
    """An error to report as ``panonet <cmd>: error: ...`` with exit status 2, no traceback."""


# --------------------------------------------------------------------------------------------
# export


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to TorchScript or ONNX",
        description=(
            "Export PanoNet for deployment. The exported graph takes (B, 3, H, W) float32 images "
            "normalised with the ImageNet mean/std and returns the semantic logits and the "
            "instance embedding at 1/4 resolution; the coordinate maps are built inside. H and W "
            "are fixed at export, the batch size is free."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint file (state dict or {'model', 'config'})")
    source.add_argument(
        "--random-init", action="store_true", help="export a randomly initialised model"
    )
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    p.add_argument("--height", required=True, type=int, help="input height, >= 32")
    p.add_argument("--width", required=True, type=int, help="input width, >= 32")
    p.add_argument("--output", required=True, help="file to write")
    # None = take it from the checkpoint's config (or PanoNet's default).
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--embedding-dim", type=int, default=None)
    p.add_argument(
        "--no-coords",
        dest="use_coords",
        action="store_const",
        const=False,
        default=None,
        help="instance branch without coordinate input (stage-1 model)",
    )
    p.add_argument(
        "--share-weights",
        dest="share_weights",
        action="store_const",
        const=True,
        default=None,
        help="the shared-trunk variant",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument(
        "--onnx-exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter: torch.export-based (default) or the legacy TorchScript one",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import torch

    from panonet.export import DEFAULT_OPSET, export_onnx, export_torchscript
    from panonet.models.checkpoint import load_model
    from panonet.models.icnet import MIN_INPUT_SIZE
    from panonet.models.panonet import PanoNet

    if args.height < MIN_INPUT_SIZE or args.width < MIN_INPUT_SIZE:
        raise CLIError(
            f"--height and --width must be >= {MIN_INPUT_SIZE}, got {args.height}x{args.width}"
        )
    overrides = {
        k: v
        for k in ("num_classes", "embedding_dim", "use_coords", "share_weights")
        if (v := getattr(args, k)) is not None
    }
    if args.random_init:
        torch.manual_seed(args.seed)
        model = PanoNet(**overrides).eval()
    else:
        try:
            model = load_model(args.checkpoint, **overrides)
        except FileNotFoundError as e:
            raise CLIError(f"no such checkpoint: {args.checkpoint}") from e
        except ValueError as e:
            raise CLIError(str(e)) from e
    if args.format == "torchscript":
        path = export_torchscript(model, args.output, args.height, args.width)
    else:
        path = export_onnx(
            model,
            args.output,
            args.height,
            args.width,
            opset=args.opset if args.opset is not None else DEFAULT_OPSET,
            dynamo=args.onnx_exporter == "dynamo",
        )
    print(
        f"wrote {args.format} model to {path} (input (B, 3, {args.height}, {args.width}), "
        f"config {model.config})"
    )
    return 0


# --------------------------------------------------------------------------------------------
# synth


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_synth)


def _parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024)."""
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        H, W = int(parts[0]), int(parts[1])
    except ValueError:
        raise CLIError(f"--size must be HxW with integers, e.g. 512x1024; got {text!r}") from None
    return H, W


def _run_synth(args: argparse.Namespace) -> int:
    from panonet.data.synthetic import generate

    size = _parse_size(args.size)
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
        )
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(
        f"wrote {summary.written} image(s), skipped {summary.skipped} already complete, "
        f"{size[0]}x{size[1]}, seed {args.seed}, to {summary.out_dir} in {summary.seconds:.1f} s"
    )
    return 0


# --------------------------------------------------------------------------------------------
# train


def _add_train(subparsers: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
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


# --------------------------------------------------------------------------------------------
# predict


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--bandwidths",
        default=None,
        help="per-class bandwidth JSON (panonet search-bandwidth); default 2*delta_v = 0.5",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--half", action="store_true", help="float16 network (CUDA only)")
    p.add_argument("--batch", type=int, default=1, help="video frames per batch (default: 1)")
    p.add_argument(
        "--min-instance-size", type=int, default=0, help="drop smaller instances (pixels)"
    )
    p.add_argument(
        "--vote-groups",
        action="store_true",
        help="cluster people, four-wheelers and two-wheelers each as one group and give each "
        "instance its pixels' majority class (pass it to search-bandwidth, eval and predict)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_predict)


def _vote_groups(args: argparse.Namespace) -> tuple[tuple[int, ...], ...] | None:
    """The post-processing's vote groups for ``--vote-groups`` (None: class-wise)."""
    from panonet.inference.merge import THING_VOTE_GROUPS

    return THING_VOTE_GROUPS if args.vote_groups else None


def _run_predict(args: argparse.Namespace) -> int:
    from panonet.inference.files import predict_files
    from panonet.inference.predictor import Predictor

    try:
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            bandwidths=args.bandwidths,
            half=args.half,
            min_instance_size=args.min_instance_size,
            vote_groups=_vote_groups(args),
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


# --------------------------------------------------------------------------------------------
# search-bandwidth


def _add_search_bandwidth(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search-bandwidth",
        help="search the mean-shift bandwidth of each thing class (paper III-D)",
        description=(
            "Run the model on a subset of a Cityscapes-layout split, cluster each thing class "
            "with every candidate bandwidth and keep, per class, the one with the best PQ. "
            "Writes the JSON that predict/eval read with --bandwidths."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="model checkpoint")
    p.add_argument("--data", required=True, help="dataset root (leftImg8bit/, gtFine/)")
    p.add_argument("--split", default="train", help="split to search on (default: train)")
    p.add_argument("--images", type=int, default=50, help="images used (default: 50)")
    p.add_argument(
        "--candidates",
        type=float,
        nargs="+",
        default=None,
        help="bandwidths to try (default: delta_v x 1.0, 1.2, ..., 4.0 = 0.25 ... 1.0)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument(
        "--vote-groups",
        action="store_true",
        help="cluster people, four-wheelers and two-wheelers each as one group and give each "
        "instance its pixels' majority class (pass it to search-bandwidth, eval and predict)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_search_bandwidth)


def _run_search_bandwidth(args: argparse.Namespace) -> int:
    from panonet.inference.bandwidth_search import search_bandwidths

    if args.images < 1:
        raise CLIError(f"--images must be >= 1, got {args.images}")
    model = _open_checkpoint(args.checkpoint)
    dataset = _open_dataset(args.data, args.split)
    try:
        result = search_bandwidths(
            model,
            dataset,
            images=args.images,
            candidates=args.candidates,
            device=args.device,
            progress=not args.no_progress,
            vote_groups=_vote_groups(args),
        )
    except FileNotFoundError as e:
        raise CLIError(str(e)) from e
    except ValueError as e:
        raise CLIError(str(e)) from e
    path = result.save(args.out)
    names = result.to_json()["bandwidths"]
    print(
        f"searched {len(result.candidates)} bandwidths on {result.images} image(s) in "
        f"{result.seconds:.1f} s: " + ", ".join(f"{k} {v:g}" for k, v in names.items())
    )
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# eval


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--bandwidths",
        default=None,
        help="per-class bandwidth JSON (panonet search-bandwidth); default 2*delta_v = 0.5",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
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
    p.add_argument(
        "--min-instance-size", type=int, default=0, help="drop smaller instances (pixels)"
    )
    p.add_argument(
        "--vote-groups",
        action="store_true",
        help="cluster people, four-wheelers and two-wheelers each as one group and give each "
        "instance its pixels' majority class (pass it to search-bandwidth, eval and predict)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from panonet._atomic import write_json_atomic
    from panonet.evaluation.run import evaluate_model, format_tables
    from panonet.inference.predictor import Predictor

    if args.images is not None and args.images < 1:
        raise CLIError(f"--images must be >= 1, got {args.images}")
    if args.num_vis < 0:
        raise CLIError(f"--num-vis must be >= 0, got {args.num_vis}")
    dataset = _open_dataset(args.data, args.split)
    model = _open_checkpoint(args.checkpoint)
    try:
        predictor = Predictor(
            model,
            device=args.device,
            bandwidths=args.bandwidths,
            min_instance_size=args.min_instance_size,
            vote_groups=_vote_groups(args),
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
    print(format_tables(result))
    if args.out:
        print(f"wrote {write_json_atomic(args.out, result)}")
    return 0


# --------------------------------------------------------------------------------------------
# mirror-test


def _add_mirror_test(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mirror-test",
        help="count identical twins merged into one instance (paper Fig. 5)",
        description=(
            "Mirror the left half of each image (and its ground truth) onto the right half, so "
            "every thing on the left gets an identical twin, and count the twin pairs each model "
            "merges into one instance. Give several checkpoints to compare them (e.g. with and "
            "without coordinates). By default the clustering runs on the ground-truth semantic "
            "map, so the count measures the embedding alone."
        ),
    )
    p.add_argument("--checkpoint", required=True, nargs="+", help="model checkpoint(s)")
    p.add_argument("--data", required=True, help="dataset root (leftImg8bit/, gtFine/)")
    p.add_argument("--split", default="val", help="split (default: val)")
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
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--save-vis", default=None, metavar="DIR", help="write pictures")
    p.add_argument("--num-vis", type=int, default=4, help="pictures per checkpoint (default: 4)")
    p.add_argument("--out", default=None, help="JSON file for the counts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_mirror_test)


def _run_mirror_test(args: argparse.Namespace) -> int:
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
    dataset = _open_dataset(args.data, args.split)
    results = {}
    for k, (ckpt, bw) in enumerate(zip(ckpts, bws, strict=True)):
        model = _open_checkpoint(ckpt)
        vis = None
        if args.save_vis:
            vis = Path(args.save_vis) / (
                Path(ckpt).stem if len(ckpts) == 1 else f"{k}_{Path(ckpt).stem}"
            )
        try:
            predictor = Predictor(model, device=args.device, bandwidths=bw)
            result = run_mirror_test(
                predictor,
                dataset,
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
        results[f"{ckpt} ({coords} coordinates)"] = {**result, "checkpoint": str(ckpt)}
    print(format_mirror(results))
    if args.out:
        print(f"wrote {write_json_atomic(args.out, results)}")
    return 0


def _open_dataset(root: str, split: str):
    from panonet.data.cityscapes import CityscapesPanoptic

    try:
        return CityscapesPanoptic(root, split)
    except FileNotFoundError as e:
        # The dataset's message spans lines (the expected layout); one line is enough here.
        raise CLIError(str(e).splitlines()[0]) from e


def _open_checkpoint(path: str):
    import pickle

    from panonet.models.checkpoint import load_model

    if not os.path.isfile(path):
        raise CLIError(f"no such checkpoint: {path}")
    try:
        return load_model(path)
    except ValueError as e:
        raise CLIError(str(e).splitlines()[0]) from e
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        # torch.load's messages run over many lines; the kind of failure is what matters here.
        raise CLIError(
            f"cannot read checkpoint {path}: {type(e).__name__} (not a panonet checkpoint?)"
        ) from e


# --------------------------------------------------------------------------------------------
# bench


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--bandwidths", default=None, help="per-class bandwidth JSON (default 0.5)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--half", action="store_true", help="float16 network (CUDA only)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
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
    H, W = _parse_size(args.size)
    if min(H, W) < 32:
        raise CLIError(f"--size must be at least 32x32, got {args.size}")
    model = _open_checkpoint(args.checkpoint) if args.checkpoint else PanoNet().eval()
    try:
        predictor = Predictor(model, device=args.device, bandwidths=args.bandwidths, half=args.half)
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


# --------------------------------------------------------------------------------------------
# demo


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthesize, train, search bandwidths, evaluate, draw: the whole pipeline",
        description=(
            "The whole pipeline on synthetic street scenes: synthesize a dataset, train both "
            "stages, search the per-class bandwidths, evaluate on the val split (Table I), and "
            "write overlays, the mirrored-twin test and the training curves. About 10 minutes "
            "on a 2-core CPU; a GPU is used when present. Run it again to continue an "
            "interrupted demo."
        ),
    )
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--quick", action="store_true", help="tiny version (well under 2 minutes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
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


# --------------------------------------------------------------------------------------------

_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_export,
    _add_synth,
    _add_train,
    _add_search_bandwidth,
    _add_predict,
    _add_eval,
    _add_mirror_test,
    _add_bench,
    _add_demo,
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
