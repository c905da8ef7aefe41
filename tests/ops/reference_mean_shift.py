"""A NumPy reference of scikit-learn's MeanShift (bin seeding, flat kernel), written from its
algorithm with brute-force distances (the helpers that compare clusterings up to relabelling
live in panonet.ops.testing, shared with the benchmarks).

Distances are accumulated over the coordinates in order d = 0..D-1 and compared squared with
bandwidth^2, as sklearn's KD-tree does, so that the window of a mean is the same set of points.
"""

from collections import defaultdict

import numpy as np

from panonet.ops.testing import ambiguous_points, assert_same_clustering, sq_dist

__all__ = ["ambiguous_points", "assert_same_clustering", "mean_shift_reference", "sq_dist"]


def mean_shift_reference(
    X,
    bandwidth: float,
    *,
    bin_seeding: bool = True,
    min_bin_freq: int = 1,
    max_iter: int = 300,
    cluster_all: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> labels (N,) int64, centers (K, D) float64; K = 0 where sklearn would raise."""
    X = np.asarray(X, dtype=np.float64)
    n, D = X.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, D))
    bw = float(bandwidth)
    seeds = X
    if bin_seeding:
        counts: dict[tuple, int] = defaultdict(int)
        for point in X:
            counts[tuple(np.round(point / bw))] += 1  # insertion order = first appearance
        bins = np.array([k for k, c in counts.items() if c >= min_bin_freq], dtype=np.float32)
        if len(bins) != n:
            seeds = bins.reshape(-1, D) * np.float32(bw)
    centers: dict[tuple, int] = {}
    for seed in seeds:
        mean = np.asarray(seed, dtype=np.float64)
        size = 0
        for it in range(max_iter + 1):
            inside = sq_dist(X, mean) <= bw * bw
            size = int(inside.sum())
            if size == 0:
                break
            old, mean = mean, X[inside].mean(axis=0)
            if np.linalg.norm(mean - old) <= 1e-3 * bw or it == max_iter:
                break
        if size:
            centers[tuple(mean)] = size
    if not centers:
        return -np.ones(n, dtype=np.int64), np.zeros((0, D))
    ranked = sorted(centers.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    C = np.array([c for c, _ in ranked])
    keep = np.ones(len(C), dtype=bool)
    for i in range(len(C)):
        if keep[i]:
            keep[sq_dist(C, C[i]) <= bw * bw] = False
            keep[i] = True
    C = C[keep]
    d2 = np.stack([sq_dist(X, c) for c in C], axis=1)
    labels = d2.argmin(axis=1)
    if not cluster_all:
        labels[np.sqrt(d2.min(axis=1)) > bw] = -1
    return labels.astype(np.int64), C
