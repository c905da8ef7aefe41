"""The tables of docs/scripts/paper_experiments.sh: every number as the mean over the seeds with
the per-seed values beside it, and the differences the paper's claims are about taken per seed.

Usage: python docs/scripts/paper_table.py OUT   (the folder paper_experiments.sh wrote)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

VARIANTS = {
    "coords_true": "with coordinates",
    "coords_false": "without coordinates",
    "shared": "shared weights (IV-e)",
}
BANDS = ("[0, 0.25)", "[0.25, 0.5)", "[0.5, 1)", ">= 1")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def cell(values: list[float], digits: int = 1) -> str:
    """Mean, then the per-seed values and their range (max - min)."""
    if not values:
        return "-"
    each = ", ".join(f"{v:.{digits}f}" for v in values)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    spread = max(values) - min(values)
    return f"{statistics.fmean(values):.{digits}f} ({each}; range {spread:.{digits}f})"


def metrics(run: Path) -> dict[str, float] | None:
    if not (run / "eval.json").is_file() or not (run / "eval_gt.json").is_file():
        return None
    pred, gt = load(run / "eval.json"), load(run / "eval_gt.json")
    pan = pred["panoptic"]
    return {
        "PQ": 100 * pan["All"]["pq"],
        "PQ_Th": 100 * pan["Things"]["pq"],
        "PQ_St": 100 * pan["Stuff"]["pq"],
        "mIoU": 100 * pred["semantic"]["miou"],
        "AP": 100 * pred["instance"]["AP"],
        "AP_GT": 100 * gt["instance"]["AP"],
        # Absent from runs evaluated before the size was searched (a fixed 32 then).
        "min size": float(pred.get("min_instance_size", 32)),
    }


def twins(path: Path) -> dict[bool, dict]:
    """The twin-test results of one seed by ``use_coords``."""
    return {r["use_coords"]: r for r in load(path).values()} if path.is_file() else {}


def percent(merged: int, found: int) -> float | None:
    return 100 * merged / found if found else None


def main(out: Path) -> None:
    seeds = sorted(out.glob("seed*"), key=lambda p: int(p.name[4:]))
    print(
        f"# PanoNet on synthetic scenes: {len(seeds)} seed(s) ({', '.join(p.name for p in seeds)})"
    )
    print("\nEach cell: mean over the seeds (each seed's value; range = max - min).\n")
    cols = ("PQ", "PQ_Th", "PQ_St", "mIoU", "AP", "AP_GT")
    print("| variant | " + " | ".join(cols) + " | min size (PQ, AP) |")
    print("|---|" + "---|" * (len(cols) + 1))
    per = {v: [metrics(s / v) for s in seeds] for v in VARIANTS}
    for v, name in VARIANTS.items():
        got = [m for m in per[v] if m is not None]
        sizes = ", ".join(f"{m['min size']:.0f}" for m in got)
        print(
            f"| {name} | " + " | ".join(cell([m[c] for m in got]) for c in cols) + f" | {sizes} |"
        )
    pairs = [
        (a, b) for a, b in zip(per["coords_true"], per["coords_false"], strict=True) if a and b
    ]
    print(
        "| difference, with - without (per seed) | "
        + " | ".join(cell([a[c] - b[c] for a, b in pairs]) for c in cols)
        + " | |"
    )

    # The twin set of paper_experiments.sh (twins_*.json); runs before 2026-12-02 used the
    # 50 val images (mirror.json, ...).
    prefix = "twins_" if any(s.glob("twins_*.json") for s in seeds) else ""
    where = "the twin set" if prefix else "the val set"
    for test in ("mirror", "shift", "scene"):
        print(f"\n## Twin test: {test} (ground-truth semantics, {where}; merged / found pairs)\n")
        print("| model | merged % | " + " | ".join(f"distance {b}" for b in BANDS) + " |")
        print("|---|---|" + "---|" * len(BANDS))
        results = [twins(s / f"{prefix}{test}.json") for s in seeds]
        fractions: dict[bool, list[float]] = {True: [], False: []}
        for coords in (True, False):
            got = [r[coords] for r in results if coords in r]
            frac = [
                100 * r["merged_fraction"]
                for r in got
                if r["merged_fraction"] == r["merged_fraction"]
            ]
            fractions[coords] = frac
            bands = []
            for b in BANDS:
                m = sum(r.get("by_distance", {}).get(b, {}).get("merged", 0) for r in got)
                f = m + sum(r.get("by_distance", {}).get(b, {}).get("separated", 0) for r in got)
                bands.append(f"{m}/{f} ({100 * m / f:.0f} %)" if f else "-")
            name = "with coordinates" if coords else "without coordinates"
            print(f"| {name} | {cell(frac)} | " + " | ".join(bands) + " |")
        ratios = [a / b for a, b in zip(fractions[True], fractions[False], strict=False) if b]
        print(f"\nwith / without, per seed: {cell(ratios, 2)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/paper"))
