"""``panonet export``: a model to TorchScript or ONNX."""

from __future__ import annotations

import argparse

from panonet.cli.common import CLIError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
