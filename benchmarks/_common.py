"""Shared benchmark plumbing: device naming, synchronized timing, tables and JSON results.

Every benchmark checks correctness first, then warms up, synchronizes the device around each
timed call and reports the median of many runs (plus the interquartile range).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from panonet.bench import device_name

RESULTS = Path(__file__).resolve().parent / "results"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name} requested but torch.cuda.is_available() is False")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], device: torch.device, *, warmup: int, runs: int
) -> list[float]:
    """Seconds per call of fn, each call bracketed by device synchronization."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def time_back_to_back(fn: Callable[[], object], device: torch.device, *, runs: int) -> float:
    """Seconds per call of fn over runs calls queued one after another, with one
    synchronization at the end (device events on CUDA): the rate a stream of calls sustains,
    the larger of the device's time and the host's launch time per call. time_call's wait
    after every call adds the two instead."""
    fn()
    synchronize(device)
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        return (time.perf_counter() - start) / runs
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(runs):
        fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1e3 / runs


def summarize(times: Sequence[float]) -> dict:
    """Median, quartiles and extremes of a list of seconds, in milliseconds."""
    ms = sorted(t * 1e3 for t in times)
    quartiles = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else [ms[0]] * 3
    return {
        "median_ms": statistics.median(ms),
        "p25_ms": quartiles[0],
        "p75_ms": quartiles[2],
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "runs": len(ms),
    }


def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Prints rows as a Markdown table (columns: (key, header)) and returns it."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if value < 100 else f"{value:.1f}"
        return str(value)

    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    return text


def write_results(name: str, device: torch.device, payload: dict, out: str | None) -> Path:
    """Writes payload plus device and date to benchmarks/results/<name>-<device>-<date>.json."""
    now = _dt.datetime.now(_dt.timezone.utc)
    record = {
        "benchmark": name,
        "device": device_name(device),
        "device_type": device.type,
        "date": now.isoformat(timespec="seconds"),
        "torch": torch.__version__,
        **payload,
    }
    path = Path(out) if out else RESULTS / f"{name}-{device.type}-{now:%Y-%m-%d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def op_bench_setup(description: str) -> tuple[argparse.Namespace, torch.device, int]:
    """The options of the post-processing ops' benchmarks: --device (auto), --runs (CPU 10,
    CUDA 100), --out. Returns the parsed options, the device and the number of timed runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (CPU 10, CUDA 100)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    return args, device, args.runs or (100 if device.type == "cuda" else 10)


def op_against_reference(
    name: str, op_fn: Callable[[], object], ref_fn: Callable[[], object], device, runs: int
) -> tuple[list[dict], str]:
    """Times the reference, then the op (synchronized, 2 warm-up calls, median); returns the two
    rows (with the op's speedup) and the Markdown table printed."""
    ref = summarize(time_call(ref_fn, device, warmup=2, runs=runs))
    op = summarize(time_call(op_fn, device, warmup=2, runs=runs))
    rows = [
        {"implementation": "tensor operations (reference)", **ref, "speedup": 1.0},
        {"implementation": name, **op, "speedup": ref["median_ms"] / op["median_ms"]},
    ]
    columns = [("implementation", "implementation"), ("median_ms", "median ms"), ("speedup", "×")]
    return rows, print_table(rows, columns)
