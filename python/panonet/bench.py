"""Timing of the whole predictor on one frame (``panonet bench``): network, clustering, merge.

The kernel benchmarks against their references live in ``benchmarks/``; this is the user-facing
number: how long one frame of a given size takes on this machine, per stage, as the median of
``runs`` timed calls after ``warmup`` untimed ones, with the device synchronised at every stage
boundary (:class:`~panonet.inference.Predictor` does that).
"""

from __future__ import annotations

import datetime
import platform
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["device_name", "time_predictor"]


def _real_time_twin(predictor: Any, *, cuda_graph: bool = False) -> Any:
    """The same network and settings without stage timings, its maps left on the device; with
    ``cuda_graph``, its device work replayed as a CUDA graph (and not compiled)."""
    return predictor.with_settings(
        stage_timings=False,
        output_device=None,
        cuda_graph=cuda_graph,
        sync_free=predictor.sync_free or cuda_graph,
        compile_network=predictor.compile_network and not cuda_graph,
    )


def _median_total(
    predictor: Any, image: np.ndarray, runs: int, warmup: int, desc: str, progress: bool
) -> float:
    totals = []
    for i in tqdm(range(warmup + runs), desc=desc, disable=not progress):
        timings = predictor.predict(image)["timings"]
        if i >= warmup:
            totals.append(float(timings["total"]))
    return float(np.median(totals))


def device_name(device: str | torch.device) -> str:
    """Human-readable name of ``device``: the GPU's name, or the CPU model and thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def time_predictor(
    predictor: Any,
    image: np.ndarray,
    *,
    runs: int = 10,
    warmup: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Median per-stage timings of ``predictor.predict(image)``.

    Args:
        predictor: a :class:`~panonet.inference.Predictor`.
        image: (H, W, 3) uint8 RGB frame.
        runs: timed calls (>= 1); the median of each stage is reported.
        warmup: untimed calls first (allocator, cuDNN autotuning, OpenMP thread start).
        progress: tqdm progress bar.

    Returns:
        ``{"median_ms": {stage: ms}, "stage_sum_ms", "end_to_end_ms" (median total of the
        real-time settings: no stage timings, maps left on the device, one wait per frame),
        "fps_real_time", on CUDA also "end_to_end_graph_ms" and "fps_graph" (the real-time
        settings with ``cuda_graph=True``), "runs", "warmup", "fps" (1000 / median total with
        stage timings),
        "image_size": [H, W], "device": device_name, "instances": instances in the last
        frame, "date", "torch"}``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"time_predictor: expected runs >= 1, warmup >= 0, got {runs}, {warmup}")
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"time_predictor: expected an (H, W, 3) uint8 array, got {got}")
    samples: dict[str, list[float]] = {}
    out: dict[str, Any] = {}
    for i in tqdm(range(warmup + runs), desc="bench", disable=not progress):
        out = predictor.predict(image)
        if i >= warmup:
            for stage, ms in out["timings"].items():
                samples.setdefault(stage, []).append(float(ms))
    median = {stage: float(np.median(v)) for stage, v in samples.items()}
    # The same frame as a real-time consumer runs it: no wait for the device after each stage,
    # maps left on the device, one wait per frame.
    lean = _real_time_twin(predictor)
    end_to_end = _median_total(lean, image, runs, warmup, "bench, real time", progress)
    graphed: dict[str, float] = {}
    if torch.device(predictor.device).type == "cuda":
        # And as one CUDA graph per frame (captured in the first warm-up call).
        ms = _median_total(
            _real_time_twin(predictor, cuda_graph=True),
            image,
            runs,
            max(warmup, 1),
            "bench, CUDA graph",
            progress,
        )
        graphed = {"end_to_end_graph_ms": ms, "fps_graph": 1000.0 / ms}
    return {
        **graphed,
        "median_ms": median,
        "stage_sum_ms": float(sum(ms for stage, ms in median.items() if stage != "total")),
        "end_to_end_ms": end_to_end,
        "fps_real_time": 1000.0 / end_to_end,
        "runs": runs,
        "warmup": warmup,
        "fps": 1000.0 / median["total"],
        "image_size": [int(image.shape[0]), int(image.shape[1])],
        "device": device_name(predictor.device),
        "instances": int(out["instance"].max()) if out else 0,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
    }
