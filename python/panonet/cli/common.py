"""What the subcommands of the ``panonet`` command line share: the error they report, the
options several of them declare, and the opening of checkpoints and datasets with one-line
errors."""

from __future__ import annotations

import argparse
import os

__all__ = [
    "CLIError",
    "add_bandwidths",
    "add_device",
    "add_guided_upsampling",
    "add_instance_reach",
    "add_min_instance_size",
    "add_no_progress",
    "add_search_inputs",
    "add_vote_groups",
    "guided_upsampling",
    "instance_reach",
    "min_instance_size",
    "open_checkpoint",
    "open_dataset",
    "parse_size",
    "vote_groups",
]


class CLIError(Exception):
    """An error to report as ``panonet <cmd>: error: ...`` with exit status 2, no traceback."""


def add_device(p: argparse.ArgumentParser, *, default: str = "cpu") -> None:
    """``--device``: where the model runs."""
    choices = "auto, cpu, cuda, cuda:N" if default == "auto" else "cpu, cuda, cuda:1, ..."
    p.add_argument("--device", default=default, help=f"{choices} (default: {default})")


def add_precision(p: argparse.ArgumentParser) -> None:
    """``--precision`` (and ``--half``, its float16 shorthand): the network's arithmetic."""
    p.add_argument(
        "--precision",
        choices=("float32", "float16", "bfloat16"),
        default=None,
        help="network arithmetic: float32 (default), float16 (CUDA) or bfloat16 (CUDA, or a "
        "CPU with bfloat16 units such as AMX; slow on CPUs without them); clustering stays "
        "float32",
    )
    p.add_argument("--half", action="store_true", help="same as --precision float16 (CUDA only)")


def precision(args: argparse.Namespace) -> str:
    """The ``Predictor(precision=...)`` that ``--precision`` / ``--half`` ask for."""
    if args.half and args.precision not in (None, "float16"):
        raise CLIError(f"--half means --precision float16, got --precision {args.precision}")
    return "float16" if args.half else args.precision or "float32"


def add_compile(p: argparse.ArgumentParser) -> None:
    """``--compile``: ``Predictor(compile_network=True)``."""
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network with its weights frozen: compiles at the first frame "
        "of each size (tens of seconds on a CPU), faster after it",
    )


def add_search_inputs(p: argparse.ArgumentParser, *, images: int) -> None:
    """What a post-processing search runs on: ``--checkpoint``, ``--data``, ``--split``
    (default train: never search on the evaluation split) and ``--images``."""
    p.add_argument("--checkpoint", required=True, help="model checkpoint")
    p.add_argument("--data", required=True, help="dataset root (leftImg8bit/, gtFine/)")
    p.add_argument("--split", default="train", help="split to search on (default: train)")
    p.add_argument("--images", type=int, default=images, help=f"images used (default: {images})")


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (for logs and CI)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_bandwidths(p: argparse.ArgumentParser) -> None:
    """``--bandwidths``: one per-class bandwidth JSON (panonet search-bandwidth)."""
    p.add_argument(
        "--bandwidths",
        default=None,
        help="per-class bandwidth JSON (panonet search-bandwidth); default 2*delta_v = 0.5",
    )


def add_min_instance_size(p: argparse.ArgumentParser) -> None:
    """``--min-instance-size``: instances with fewer output pixels are dropped (a number, or the
    JSON of ``panonet search-min-size``; see :func:`min_instance_size`)."""
    p.add_argument(
        "--min-instance-size",
        default="0",
        metavar="PIXELS|JSON",
        help="drop instances with fewer pixels: a number, or the JSON written by panonet "
        "search-min-size (its best size) (default: 0)",
    )


def min_instance_size(args: argparse.Namespace) -> int:
    """The pixel count ``--min-instance-size`` asks for: the number given, or the ``best`` of
    the ``panonet search-min-size`` JSON it names."""
    text = str(args.min_instance_size)
    size = int(text) if text.lstrip("-").isdigit() else _searched_min_size(text)
    if size < 0:
        raise CLIError(f"--min-instance-size must be >= 0, got {size}")
    return size


def add_instance_reach(p: argparse.ArgumentParser) -> None:
    """``--instance-reach``: how far a thing pixel looks for an instance of its class (see
    :func:`instance_reach`)."""
    p.add_argument(
        "--instance-reach",
        type=int,
        default=None,
        metavar="R",
        help="how far (in 1/4-resolution pixels) a thing pixel whose class the 1/4 grid lacks "
        "there looks for an instance of its class (default: the Predictor's, "
        "panonet.inference.merge.INSTANCE_REACH; 0: nowhere, the rule before 2026-12-02)",
    )


def add_guided_upsampling(p: argparse.ArgumentParser) -> None:
    """``--guided-upsampling``: the semantic map upsampled along the image's edges (see
    :func:`guided_upsampling`)."""
    p.add_argument(
        "--guided-upsampling",
        nargs="?",
        const="",
        default=None,
        metavar="SIGMA_S,SIGMA_R,WINDOW[,CLUSTER]",
        help="upsample the semantic logits guided by the image (joint bilateral; not in the "
        "paper: thin things keep their shape); alone: the default settings of "
        "panonet.inference.GuidedUpsampling, or its settings, CLUSTER 1 to cluster the "
        "instances on the guided map, 0 on the low-resolution argmax (default: off, bilinear)",
    )


def guided_upsampling(args: argparse.Namespace):
    """The ``Predictor(guided_upsampling=...)`` that ``--guided-upsampling`` asks for: None,
    :class:`~panonet.inference.guided_upsample.GuidedUpsampling`'s defaults, or its settings
    ``SIGMA_S,SIGMA_R,WINDOW[,CLUSTER]``."""
    from panonet.inference.guided_upsample import GuidedUpsampling

    text = args.guided_upsampling
    if text is None:
        return None
    if text == "":
        return GuidedUpsampling()
    try:
        return GuidedUpsampling.parse(text)
    except ValueError as e:
        raise CLIError(
            f"--guided-upsampling: expected SIGMA_S,SIGMA_R,WINDOW[,CLUSTER] (e.g. 1.5,0.05,6 or "
            f"2,0.05,6,1), got "
            f"{text!r} ({e})"
        ) from None


def _searched_min_size(path: str) -> int:
    """The ``best`` of a ``panonet search-min-size`` JSON."""
    import json
    from pathlib import Path

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(
            f"--min-instance-size: expected a number of pixels or a search-min-size JSON "
            f"file, got {path!r} (no such file)"
        ) from None
    except (OSError, ValueError) as e:
        raise CLIError(f"--min-instance-size: cannot read {path}: {e}") from None
    best = record.get("best") if isinstance(record, dict) else None
    if not isinstance(best, int) or isinstance(best, bool):
        raise CLIError(
            f"--min-instance-size: expected the JSON of panonet search-min-size (an integer "
            f"'best'), got {path} with best={best!r}"
        )
    return best


def instance_reach(args: argparse.Namespace) -> dict[str, int]:
    """The Predictor's keyword for ``--instance-reach``: none when it was not given (the
    Predictor's default then applies; importing it here would load torch for ``--help``)."""
    if args.instance_reach is None:
        return {}
    if args.instance_reach < 0:
        raise CLIError(f"--instance-reach must be >= 0, got {args.instance_reach}")
    return {"instance_reach": args.instance_reach}


def add_vote_groups(p: argparse.ArgumentParser) -> None:
    """``--vote-groups``: cluster groups of thing classes together (see :func:`vote_groups`)."""
    p.add_argument(
        "--vote-groups",
        action="store_true",
        help="cluster people, four-wheelers and two-wheelers each as one group and give each "
        "instance its pixels' majority class (pass it to search-bandwidth, eval and predict)",
    )


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024)."""
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        H, W = int(parts[0]), int(parts[1])
    except ValueError:
        raise CLIError(f"--size must be HxW with integers, e.g. 512x1024; got {text!r}") from None
    return H, W


def vote_groups(args: argparse.Namespace) -> tuple[tuple[int, ...], ...] | None:
    """The post-processing's vote groups for ``--vote-groups`` (None: class-wise)."""
    from panonet.inference.merge import THING_VOTE_GROUPS

    return THING_VOTE_GROUPS if args.vote_groups else None


def open_dataset(root: str, split: str):
    from panonet.data.cityscapes import CityscapesPanoptic

    try:
        return CityscapesPanoptic(root, split)
    except FileNotFoundError as e:
        # The dataset's message spans lines (the expected layout); one line is enough here.
        raise CLIError(str(e).splitlines()[0]) from e


def open_checkpoint(path: str):
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
