"""Pictures of panoptic maps: colours, instance borders, overlays on the image (paper Fig. 3),
and the PQ-vs-speed plot of the paper's Fig. 1.

The map functions are pure: NumPy arrays or tensors in, (H, W, 3) uint8 NumPy images out.
Panoptic maps use the Cityscapes convention (``labelId * 1000 + j`` for things, ``labelId`` for
stuff, 0 for void).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from panonet._atomic import write_atomic
from panonet.data.labels import LABEL_TO_TRAIN, PALETTE

__all__ = [
    "PAPER_POINTS",
    "training_curves",
    "overlay",
    "panoptic_colors",
    "pq_fps_plot",
    "save_visualization",
    "segment_borders",
    "side_by_side",
]

# Per-instance colour offsets: instance j of a class is drawn in the class colour shifted by
# _JITTER[j], so neighbouring cars are told apart while staying "car-coloured". Entry 0 is no
# shift; the rest are fixed pseudo-random offsets of at least 30 levels in some channel.
_rng = np.random.default_rng(0)
_JITTER = _rng.integers(-70, 71, size=(1000, 3))
_JITTER[np.abs(_JITTER).max(axis=1) < 30, 0] = 60
_JITTER[0] = 0


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_panoptic(panoptic: np.ndarray, fn: str) -> np.ndarray:
    if panoptic.ndim != 2 or not np.issubdtype(panoptic.dtype, np.integer):
        raise ValueError(
            f"{fn}: expected an integer (H, W) panoptic map, got {panoptic.dtype} of shape "
            f"{panoptic.shape}"
        )
    return panoptic.astype(np.int64, copy=False)


def _check_image(image: np.ndarray, shape: tuple[int, int], fn: str) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{fn}: expected a uint8 RGB image of shape (H, W, 3), got {image.dtype} of shape "
            f"{image.shape}"
        )
    if image.shape[:2] != shape:
        raise ValueError(
            f"{fn}: image is {image.shape[:2]} but the panoptic map is {shape}; expected equal"
        )
    return image


def panoptic_colors(panoptic: np.ndarray | torch.Tensor) -> np.ndarray:
    """Colour image of a panoptic map: class colours (Cityscapes palette), each thing instance
    shifted slightly so that instances of one class differ; void black.

    Args:
        panoptic: (H, W) integer Cityscapes panoptic ids.

    Returns:
        (H, W, 3) uint8.
    """
    pan = _check_panoptic(_as_numpy(panoptic), "panoptic_colors")
    label = np.where(pan >= 1000, pan // 1000, pan)
    train = LABEL_TO_TRAIN[np.clip(label, 0, len(LABEL_TO_TRAIN) - 1)]
    train = np.where((label < 0) | (label >= len(LABEL_TO_TRAIN)), 255, train)
    color = PALETTE[train].astype(np.int64)
    thing = pan >= 1000
    color[thing] += _JITTER[pan[thing] % 1000]
    return np.clip(color, 0, 255).astype(np.uint8)


def segment_borders(panoptic: np.ndarray | torch.Tensor) -> np.ndarray:
    """Pixels whose right or lower neighbour belongs to another segment.

    Args:
        panoptic: (H, W) integer segment ids.

    Returns:
        (H, W) bool.
    """
    pan = _check_panoptic(_as_numpy(panoptic), "segment_borders")
    border = np.zeros(pan.shape, dtype=bool)
    border[:, :-1] |= pan[:, :-1] != pan[:, 1:]
    border[:-1, :] |= pan[:-1, :] != pan[1:, :]
    return border


def overlay(
    image: np.ndarray | torch.Tensor,
    panoptic: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
    border_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Panoptic colours blended on the image, with segment borders drawn on top.

    Args:
        image: (H, W, 3) uint8 RGB.
        panoptic: (H, W) integer panoptic ids.
        alpha: weight of the colours (0: image only, 1: colours only).
        border_color: RGB of the borders.

    Returns:
        (H, W, 3) uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: expected alpha in [0, 1], got {alpha}")
    pan = _check_panoptic(_as_numpy(panoptic), "overlay")
    img = _check_image(_as_numpy(image), pan.shape, "overlay")
    blend = (1 - alpha) * img.astype(np.float32) + alpha * panoptic_colors(pan)
    out = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    out[segment_borders(pan)] = border_color
    return out


def side_by_side(
    image: np.ndarray | torch.Tensor, panoptic: np.ndarray | torch.Tensor, *, alpha: float = 0.5
) -> np.ndarray:
    """The overlay and the panoptic colour map next to each other: (H, 2W, 3) uint8."""
    pan = _check_panoptic(_as_numpy(panoptic), "side_by_side")
    return np.concatenate([overlay(image, pan, alpha=alpha), panoptic_colors(pan)], axis=1)


def save_visualization(
    path: str | os.PathLike,
    image: np.ndarray | torch.Tensor,
    panoptic: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
) -> Path:
    """Writes :func:`side_by_side` as a PNG (atomically: temp file + rename). Returns the path."""
    picture = side_by_side(image, panoptic, alpha=alpha)
    return write_atomic(path, lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))


# The paper's speed / accuracy points (Cityscapes val, full 1024x2048 images), as printed in
# /work/shared/reference/panonet-paper.txt. PQ in percent; FPS from Table IV's "fps" column.
PAPER_POINTS: tuple[dict[str, Any], ...] = (
    # Table I row "Li et al. [3]" (PQ 53.8, runtime 7000 ms); Table IV only bounds it (< 0.5
    # fps), so the FPS is Table I's runtime: 1000 / 7000.
    {"name": "Li et al.", "pq": 53.8, "fps": 1000.0 / 7000.0},
    # Table IV row "MR-CNN-PSP [1]": PQ 58.0, 0.9 fps (Table I: 1105 ms).
    {"name": "MR-CNN-PSP", "pq": 58.0, "fps": 0.9},
    # Table IV row "Panoptic FPN [5]": PQ 58.1, 2 fps (Table I: 500 ms).
    {"name": "Panoptic FPN", "pq": 58.1, "fps": 2.0},
    # Table IV row "UPSNet [4]": PQ 59.3, 4.2 fps (Table I: 236 ms).
    {"name": "UPSNet", "pq": 59.3, "fps": 4.2},
    # Table IV rows "DeeperLab ... [6]", in order: PQ 56.5 / 52.3 / 48.1 / 39.3 at
    # 3.2 / 6.7 / 10.2 / 24 fps. The last two rows carry the same name in the paper.
    {"name": "DeeperLab (Xception-71)", "pq": 56.5, "fps": 3.2},
    {"name": "DeeperLab (Wider MNV2)", "pq": 52.3, "fps": 6.7},
    {"name": "DeeperLab (Light Wider MNV2)", "pq": 48.1, "fps": 10.2},
    {"name": "DeeperLab (Light Wider MNV2)", "pq": 39.3, "fps": 24.0},
    # Table I / Table IV row "PanoNet": PQ 55.1, 20 fps (50 ms) on a Titan X.
    {"name": "PanoNet (paper, Titan X)", "pq": 55.1, "fps": 20.0},
)
"""The points of the paper's Fig. 1: ``{"name", "pq" (percent), "fps"}``, Tables I and IV."""


def _point(p: Mapping[str, Any], what: str) -> tuple[str, float, float]:
    try:
        name, pq, fps = str(p["name"]), float(p["pq"]), float(p["fps"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"pq_fps_plot: {what} needs 'name', numeric 'pq' and 'fps'") from None
    if not (np.isfinite(pq) and 0.0 <= pq <= 100.0):
        raise ValueError(f"pq_fps_plot: {what} {name!r}: PQ must be a percentage, got {pq}")
    if not (np.isfinite(fps) and fps > 0.0):
        raise ValueError(f"pq_fps_plot: {what} {name!r}: FPS must be > 0 (log axis), got {fps}")
    return name, pq, fps


def pq_fps_plot(
    path: str | os.PathLike,
    points: Sequence[Mapping[str, Any]] = PAPER_POINTS,
    *,
    ours: Mapping[str, Any],
    title: str = "Panoptic quality vs speed (Cityscapes val, 1024x2048)",
) -> Path:
    """Writes a Fig. 1-style scatter plot: FPS on a log x axis, PQ on y, one labelled marker
    per method, and our measured point highlighted with the device it ran on.

    Rendered with matplotlib's Agg canvas directly (no pyplot, no display, no global backend
    change), so it works headless and from worker threads.

    Args:
        path: output PNG (parent folders are created; written atomically).
        points: reference points, each ``{"name": str, "pq": percent, "fps": float > 0}``;
            default :data:`PAPER_POINTS`.
        ours: ``{"name", "pq", "fps", "device"}``: the measured point; PQ in percent (100 x the
            fraction :meth:`panonet.evaluation.PanopticStats.summary` returns), ``device`` the
            machine it was timed on (e.g. ``"NVIDIA H100"``), shown in its label.
        title: the figure title.

    Returns:
        The PNG path.

    Raises:
        ValueError: a point without name / pq / fps, PQ outside [0, 100] or FPS <= 0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ref = [_point(p, "point") for p in points]
    name, pq, fps = _point(ours, "ours")
    device = str(ours.get("device", "")).strip()
    if not device:
        raise ValueError("pq_fps_plot: ours needs the 'device' it was measured on")

    fig = Figure(figsize=(7.5, 5.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    if ref:
        ax.scatter(
            [f for _, _, f in ref],
            [q for _, q, _ in ref],
            s=40,
            color="tab:blue",
            edgecolor="black",
            linewidth=0.5,
            zorder=3,
            label="paper (Tables I, IV)",
        )
        # Labels alternately right and left of their point in order of speed, so that
        # neighbours on the x axis (Panoptic FPN, DeeperLab, UPSNet) do not write over each
        # other even when a far-off measured point squeezes the PQ axis.
        rank = np.argsort(np.argsort([f for _, _, f in ref], kind="stable"), kind="stable")
        for (label, q, f), r in zip(ref, rank, strict=True):
            right = r % 2 == 0
            ax.annotate(
                label,
                (f, q),
                xytext=(7 if right else -7, -3),
                textcoords="offset points",
                ha="left" if right else "right",
                fontsize=7,
            )
    ax.scatter(
        [fps],
        [pq],
        s=180,
        marker="*",
        color="tab:red",
        edgecolor="black",
        linewidth=0.6,
        zorder=4,
        label=f"{name} (measured, {device})",
    )
    ax.annotate(
        f"{name} on {device}\nPQ {pq:.1f}, {fps:.1f} FPS",
        (fps, pq),
        xytext=(8, -22),
        textcoords="offset points",
        fontsize=8,
        color="tab:red",
        fontweight="bold",
    )
    # Axis ranges that show every point with some margin, whatever our measurement is.
    all_fps = [f for _, _, f in ref] + [fps]
    all_pq = [q for _, q, _ in ref] + [pq]
    ax.set_xlim(min(all_fps) / 2.0, max(all_fps) * 3.0)
    ax.set_ylim(max(0.0, min(all_pq) - 5.0), min(100.0, max(all_pq) + 5.0))
    ax.axvline(20.0, color="gray", linestyle=":", linewidth=1)  # the paper's "real time"
    ax.set_xlabel("inference speed (frames per second, log scale)")
    ax.set_ylabel("PQ (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.6)
    # Legend under the axes: inside, it could hide a point anywhere in the PQ range.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()

    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))


def training_curves(log: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Plots a training run's JSONL log (``panonet train``'s ``metrics.jsonl``): the semantic
    and instance loss terms per step (thin) with a 25-step running mean (thick), validation
    mIoU on a second axis, and the stage switch. Saved as PNG (Agg, no display).

    Args:
        log: path of the metrics.jsonl file.
        path: PNG to write (atomically).

    Returns:
        ``path``.

    Raises:
        ValueError: the log holds no training records.
    """
    import json

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train, val, switch = [], [], None
    for line in Path(log).read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "train":
            train.append(record)
            if switch is None and record.get("stage") == 2:
                switch = record["step"]
        elif record.get("kind") == "val" and record.get("miou") is not None:
            val.append(record)
    if not train:
        raise ValueError(f"training_curves: no training records in {log}")
    steps = np.array([r["step"] for r in train])

    fig = Figure(figsize=(8.0, 4.5), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    window = min(25, len(train))
    for key, color in (("sem", "tab:blue"), ("inst", "tab:orange"), ("total", "black")):
        values = np.array([r[key] for r in train], dtype=float)
        ax.plot(steps, values, color=color, linewidth=0.5, alpha=0.35)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color=color, linewidth=1.8, label=f"{key} loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (log scale)")
    if switch is not None:
        ax.axvline(switch, color="gray", linestyle="--", linewidth=1)
        ax.annotate(
            "stage 2: + coordinates",
            (switch, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
            color="gray",
        )
    if val:
        ax2 = ax.twinx()
        ax2.plot(
            [r["step"] for r in val],
            [100 * r["miou"] for r in val],
            "o-",
            color="tab:green",
            label="val mIoU",
        )
        ax2.set_ylabel("validation mIoU (%)", color="tab:green")
        ax2.set_ylim(0, 100)
        ax2.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()

    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
