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
import time
import warnings

import numpy as np
import torch
from _common import (
    print_table,
    resolve_device,
    summarize,
    synchronize,
    time_call,
    write_results,
)
from sklearn.cluster import MeanShift, get_bin_seeds

from panonet.cuda_graph import capture
from panonet.ops import cluster_instances, mean_shift
from panonet.ops.testing import assert_same_clustering

# (points, clusters, bandwidths).
CPU_CASES = [(10_000, 8, (0.5, 0.7)), (30_000, 15, (0.5, 0.7)), (100_000, 30, (0.5, 0.7))]
GPU_ONLY_CASES = [(500_000, 30, (0.5, 0.7)), (2_000_000, 60, (0.5,))]
# "Many clusters": an untrained network's embedding (12-D, std 700) at bandwidth 0.5, where
# every point is its own bin, seed and cluster. Sizes 4x apart: the cost must grow near-linearly.
MANY_SIZES = (8_192, 32_768, 131_072, 524_288)
MANY_SCALING_TARGET = 6.0  # 4x the points may cost at most this many times the time
# Targets (median ms) per device: issue "GPU kernels that earn their place" (H200 / H100).
TARGETS_MS = {
    "cuda": {
        (100_000, 0.5): 1.5,
        (100_000, 0.7): 1.5,
        (500_000, 0.5): 5.0,
        (500_000, 0.7): 4.0,
        (2_000_000, 0.5): 25.0,
        "frame": 1.0,
        ("many", 131_072): 50.0,
    },
    "cpu": {("many", 131_072): 1000.0},
}


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
    parser.add_argument(
        "--work-only",
        action="store_true",
        help="only count the CUDA algorithm's work on the bench data (runs on the CPU, no GPU)",
    )
    args = parser.parse_args()
    if args.work_only:
        work = gpu_work(CPU_CASES + GPU_ONLY_CASES, MANY_SIZES)
        write_results("mean_shift_gpu_work", torch.device("cpu"), {"work": work}, args.out)
        return
    device = resolve_device(args.device)
    cases = CPU_CASES[:1] if args.quick else CPU_CASES
    if device.type == "cuda" and not args.quick:
        cases = cases + GPU_ONLY_CASES

    rows = []
    targets = TARGETS_MS.get(device.type, {})
    for n, k, bandwidths in cases:
        X = embedding_blobs(n, k)
        points = torch.tensor(X, device=device)
        for bw in bandwidths:
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
            mark_target(row, targets.get((n, bw)), stats["median_ms"])
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
    mark_target(frame_row, targets.get("frame"), frame_stats["median_ms"])
    if device.type == "cuda":
        # The same call replayed as a CUDA graph (check_inputs=False, the table on the device):
        # the kernels' time without the host's launches, as a graphed Predictor runs it.
        table = bandwidth.to(device)
        graph, _ = capture(lambda: cluster_instances(emb, sem, table, check_inputs=False), device)
        graph_stats = summarize(time_call(graph.replay, device, warmup=2, runs=args.runs))
        frame_row["graph_median_ms"] = graph_stats["median_ms"]
    print(frame_row)
    # Written now and again at the end: a run stopped during the many-clusters cases keeps these.
    write_results("mean_shift", device, {"rows": rows, "frame": frame_row}, args.out)

    many = many_clusters(device, MANY_SIZES[:2] if args.quick else MANY_SIZES, targets)

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
            ("target_ms", "target ms"),
            ("met", "met"),
        ],
    )
    print(
        f"\ncluster_instances, 256x512 frame, {instances} instances of 8 thing classes: "
        f"median {frame_stats['median_ms']:.2f} ms ({frame_row['found']} found)"
        + (
            f", replayed as a CUDA graph {frame_row['graph_median_ms']:.2f} ms"
            if "graph_median_ms" in frame_row
            else ""
        )
        + (
            f"; target {frame_row['target_ms']} ms: {verdict(frame_row)}"
            if "met" in frame_row
            else ""
        )
    )
    print("\nmany clusters: 12-D points of std 700, bandwidth 0.5 (every point its own cluster)")
    many_table = print_table(
        many,
        [
            ("points", "points"),
            ("found", "clusters"),
            ("op_median_ms", "op median ms"),
            ("growth", "x time vs 1/4 the points"),
            ("growth_met", f"growth <= {MANY_SCALING_TARGET}"),
            ("target_ms", "target ms"),
            ("met", "met"),
            ("check", "checked against"),
        ],
    )
    write_results(
        "mean_shift",
        device,
        {
            "rows": rows,
            "frame": frame_row,
            "many_clusters": many,
            "table": table,
            "many_table": many_table,
        },
        args.out,
    )


WORK_COUNTS = (
    "seeds",
    "iterations",
    "bins_full_scan",
    "bins_projection",
    "straddling_bins",
    "points_tested",
    "label_distances_full_scan",
    "label_distances_projection",
    "points_of_straddling_bins",
    "suppression_rounds",
    "suppression_distances",
    "iterations_merged_per_step",
    "distinct_means",
    "index_searches",
    "warp_steps",
    "longest_climb_steps",
)


def gpu_work(cases, many_sizes) -> list[dict]:
    """Work of the CUDA mean-shift on the bench data, counted by running its algorithm on the
    host (torch.ops.panonet._mean_shift_gpu_work): window tests of bins by a full scan of the
    group (the algorithm before any pruning) and within the reach of its index on two axes (now;
    mean_shift_grid.h) with the index's binary searches,
    points tested in straddling bins (before: all of them; now: those that the triangle
    inequality with their bin's center leaves undecided), label distances by a full scan and by
    the projection search; rounds and distances of the device-side suppression; the climb
    iterations left if seeds at one mean were merged after every step, and the distinct means
    of all steps (a perfect memo), which bound what merging seeds could save. The model's
    clustering is checked against the CPU op first."""
    rows = []
    data = [(f"blobs {n} x 12, {k} clusters", embedding_blobs(n, k), bws) for n, k, bws in cases]
    data += [
        (
            f"many clusters {n} x 12",
            np.random.default_rng(1).normal(scale=700.0, size=(n, 12)),
            (0.5,),
        )
        for n in many_sizes
    ]
    for name, X, bandwidths in data:
        points = torch.tensor(X)
        for bw in bandwidths:
            counts, labels, centers = torch.ops.panonet._mean_shift_gpu_work(
                points, bw, True, 1, 300
            )
            if len(X) <= 200_000:
                cpu_labels, cpu_centers = mean_shift(points, bw)
                assert len(cpu_centers) == len(centers)
                assert torch.equal(cpu_labels, labels)
                torch.testing.assert_close(cpu_centers, centers, rtol=0, atol=1e-9 * bw)
            row = {"case": name, "bandwidth": bw, "clusters": len(centers)}
            row.update(dict(zip(WORK_COUNTS, counts.tolist(), strict=True)))
            row["window_work_ratio"] = (row["bins_projection"] + row["points_tested"]) / (
                row["bins_full_scan"] + row["points_of_straddling_bins"]
            )
            rows.append(row)
            print(row, flush=True)
    print("\nwork of the CUDA mean-shift, counted on the host (before: full scans; now: index)")
    print_table(
        rows,
        [
            ("case", "case"),
            ("bandwidth", "bw"),
            ("seeds", "seeds"),
            ("iterations", "iterations"),
            ("bins_full_scan", "bins tested, full scan"),
            ("bins_projection", "bins tested, index"),
            ("index_searches", "index searches"),
            ("warp_steps", "climb warp steps"),
            ("longest_climb_steps", "longest climb, warp steps"),
            ("points_of_straddling_bins", "points tested before"),
            ("points_tested", "points tested now"),
            ("window_work_ratio", "window work now / before"),
            ("label_distances_full_scan", "label distances, full scan"),
            ("label_distances_projection", "label distances, projection"),
            ("suppression_rounds", "suppression rounds"),
            ("suppression_distances", "suppression distances"),
            ("iterations_merged_per_step", "iterations, seeds at one mean merged"),
            ("distinct_means", "distinct means (perfect memo)"),
        ],
    )
    return rows


def mark_target(row: dict, target_ms: float | None, median_ms: float) -> None:
    if target_ms is not None:
        row["target_ms"] = target_ms
        row["met"] = bool(median_ms <= target_ms)


def verdict(row: dict) -> str:
    return "met" if row["met"] else "NOT met"


def many_clusters(device: torch.device, sizes, targets: dict) -> list[dict]:
    """Times mean_shift where every point is its own cluster; the smallest size is compared
    with sklearn, the others checked to give one cluster per point with the point as center."""
    rows: list[dict] = []
    for n in sizes:
        X = np.random.default_rng(1).normal(scale=700.0, size=(n, 12))
        points = torch.tensor(X, device=device)
        labels, centers = mean_shift(points, 0.5)
        row: dict = {"points": n, "found": len(centers)}
        if n == sizes[0]:
            fitted, _ = sklearn_fit(X, 0.5, n_jobs=1)  # joblib per seed: 25x slower
            assert_same_clustering(
                labels.cpu().numpy(),
                centers.cpu().numpy(),
                fitted.labels_,
                fitted.cluster_centers_,
                X,
                0.5,
                True,
                1e-4 * 0.5,
            )
            row["check"] = "sklearn"
        else:
            labels_np = labels.cpu().numpy()
            assert len(centers) == n and np.array_equal(np.sort(labels_np), np.arange(n))
            assert np.array_equal(centers.cpu().numpy()[labels_np], X)
            row["check"] = "one cluster per point"
        runs = 3 if n >= 500_000 else 5
        stats = summarize(
            time_call(lambda p=points: mean_shift(p, 0.5), device, warmup=1, runs=runs)
        )
        row.update({f"op_{key}": value for key, value in stats.items()})
        if rows and rows[-1]["points"] * 4 == n:
            row["growth"] = stats["median_ms"] / rows[-1]["op_median_ms"]
            row["growth_met"] = bool(row["growth"] <= MANY_SCALING_TARGET)
        mark_target(row, targets.get(("many", n)), stats["median_ms"])
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    main()
