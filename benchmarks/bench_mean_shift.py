"""Benchmark of panonet.ops.mean_shift and cluster_instances against scikit-learn's MeanShift.

Embedding-like data: 12-D blobs whose centers are >= 2 apart and whose members lie within
0.25-0.6 of their center (Gaussian, per-coordinate std = radius / (sqrt(12) + 3)). For every
case the clustering is checked against sklearn first (same number of clusters, centers within
1e-4 * bandwidth, labels equal up to relabelling except at distance ties), then timed: sklearn
with n_jobs=1 (its default, n_jobs=None, is one job too) and n_jobs=-1 (all cores), median of
--sklearn-runs fits each, and the op (median of --runs calls after warm-up, device
synchronized). Both medians, so that one slow or fast sklearn fit does not set the ratio.

    python benchmarks/bench_mean_shift.py [--device cpu|cuda|auto] [--quick] [--sklearn-runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import print_table, resolve_device, summarize, synchronize, time_call, write_results
from sklearn.cluster import MeanShift, get_bin_seeds

from panonet.ops import cluster_instances, mean_shift

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.ops.reference_mean_shift import assert_same_clustering  # noqa: E402

# (points, clusters); bandwidths 0.5 and 0.7 each.
CPU_CASES = [(10_000, 8), (30_000, 15), (100_000, 30)]
GPU_ONLY_CASES = [(500_000, 30)]
BANDWIDTHS = (0.5, 0.7)


def embedding_blobs(n: int, k: int, D: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers: list[np.ndarray] = []
    while len(centers) < k:
        c = rng.uniform(-1.5, 1.5, size=D)
        if all(np.linalg.norm(c - o) >= 2.0 for o in centers):
            centers.append(c)
    radius = rng.uniform(0.25, 0.6, size=k)
    label = rng.integers(0, k, n)
    std = radius[label] / (np.sqrt(D) + 3)
    return np.array(centers)[label] + rng.normal(size=(n, D)) * std[:, None]


def frame(H: int = 256, W: int = 512, D: int = 12, seed: int = 0):
    """A 1/4-scale Cityscapes-like frame: stuff blocks (classes 0-10) and 3-6 instances of each
    of the 8 thing classes (11-18), each instance's pixels around its own embedding center."""
    rng = np.random.default_rng(seed)
    sem = np.repeat(np.repeat(rng.integers(0, 11, (H // 32, W // 32)), 32, 0), 32, 1)
    inst = np.zeros((H, W), dtype=np.int64)
    k = 0
    for c in range(11, 19):
        for _ in range(rng.integers(3, 7)):
            h, w = rng.integers(10, 60), rng.integers(10, 80)
            y, x = rng.integers(0, H - h), rng.integers(0, W - w)
            k += 1
            sem[y : y + h, x : x + w] = c
            inst[y : y + h, x : x + w] = k
    centers = rng.uniform(-1.5, 1.5, size=(k + 1, D))
    std = rng.uniform(0.25, 0.6, size=k + 1) / (np.sqrt(D) + 3)
    emb = centers[inst].transpose(2, 0, 1) + rng.normal(size=(D, H, W)) * std[inst][None]
    return torch.tensor(emb, dtype=torch.float32), torch.tensor(sem), k


def sklearn_fit(X: np.ndarray, bw: float, n_jobs: int) -> tuple[MeanShift, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = MeanShift(bandwidth=bw, bin_seeding=True, n_jobs=n_jobs).fit(X)
    return fitted, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs of the op (median)")
    parser.add_argument(
        "--sklearn-runs", type=int, default=3, help="fits of sklearn per case (median)"
    )
    parser.add_argument("--quick", action="store_true", help="only the 10k-point cases")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cases = CPU_CASES[:1] if args.quick else CPU_CASES
    if device.type == "cuda" and not args.quick:
        cases = cases + GPU_ONLY_CASES

    rows = []
    for n, k in cases:
        X = embedding_blobs(n, k)
        points = torch.tensor(X, device=device)
        for bw in BANDWIDTHS:
            labels, centers = mean_shift(points, bw)
            row = {
                "points": n,
                "clusters": k,
                "bandwidth": bw,
                "seeds": len(get_bin_seeds(X, bw)),
                "found": len(centers),
            }
            if n <= 100_000:  # sklearn on 500k points takes minutes
                fitted, seconds = sklearn_fit(X, bw, n_jobs=1)
                assert_same_clustering(
                    labels.cpu().numpy(),
                    centers.cpu().numpy(),
                    fitted.labels_,
                    fitted.cluster_centers_,
                    X,
                    bw,
                    True,
                    1e-4 * bw,
                )
                row["identical_to_sklearn"] = True
                for name, jobs in (("1job", 1), ("alljobs", -1)):
                    times = [seconds * 1e3] if jobs == 1 else []
                    while len(times) < args.sklearn_runs:
                        times.append(sklearn_fit(X, bw, n_jobs=jobs)[1] * 1e3)
                    row[f"sklearn_{name}_runs_ms"] = times
                    row[f"sklearn_{name}_ms"] = float(np.median(times))
            stats = summarize(
                time_call(lambda p=points, b=bw: mean_shift(p, b), device, warmup=2, runs=args.runs)
            )
            row.update({f"op_{key}": value for key, value in stats.items()})
            if "sklearn_1job_ms" in row:
                row["speedup_vs_1job"] = row["sklearn_1job_ms"] / stats["median_ms"]
                row["speedup_vs_alljobs"] = row["sklearn_alljobs_ms"] / stats["median_ms"]
            rows.append(row)
            print(row, flush=True)

    # The frame case: cluster_instances on a 256 x 512 embedding with 8 thing classes.
    emb, sem, instances = frame()
    emb, sem = emb.to(device), sem.to(device)
    bandwidth = torch.full((19,), -1.0)
    bandwidth[11:] = 0.5
    out = cluster_instances(emb, sem, bandwidth)
    synchronize(device)
    frame_stats = summarize(
        time_call(lambda: cluster_instances(emb, sem, bandwidth), device, warmup=2, runs=args.runs)
    )
    frame_row = {
        "case": "cluster_instances 256x512, 8 thing classes",
        "instances": instances,
        "found": int(out.max()),
        "thing_pixels": int((sem >= 11).sum()),
        **{f"op_{key}": value for key, value in frame_stats.items()},
    }
    print(frame_row)

    print(f"\nmean_shift on {device} vs sklearn.cluster.MeanShift(bin_seeding=True) (ms)")
    table = print_table(
        rows,
        [
            ("points", "points"),
            ("clusters", "clusters"),
            ("bandwidth", "bandwidth"),
            ("seeds", "bin seeds"),
            ("sklearn_1job_ms", "sklearn n_jobs=1"),
            ("sklearn_alljobs_ms", "sklearn n_jobs=-1"),
            ("op_median_ms", "op median"),
            ("speedup_vs_1job", "x vs 1 job"),
            ("speedup_vs_alljobs", "x vs all jobs"),
            ("identical_to_sklearn", "same clusters"),
        ],
    )
    print(
        f"\ncluster_instances, 256x512 frame, {instances} instances of 8 thing classes: "
        f"median {frame_stats['median_ms']:.2f} ms ({frame_row['found']} found)"
    )
    write_results(
        "mean_shift",
        device,
        {"rows": rows, "frame": frame_row, "table": table},
        args.out,
    )


if __name__ == "__main__":
    main()
