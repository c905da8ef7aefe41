"""A NumPy reference of scikit-learn's MeanShift (bin seeding, flat kernel), written from its
algorithm with brute-force distances; and helpers that compare clusterings up to relabelling.

Distances are accumulated over the coordinates in order d = 0..D-1 and compared squared with
bandwidth^2, as sklearn's KD-tree does, so that the window of a mean is the same set of points.
"""

from collections import defaultdict

import numpy as np


def sq_dist(X: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N, D), (D,) -> (N,) squared distances, summed over d in order."""
    out = np.zeros(len(X))
    for d in range(X.shape[1]):
        out = out + (X[:, d] - q[d]) ** 2
    return out


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


def ambiguous_points(X, centers, bandwidth, cluster_all, rtol=1e-9) -> np.ndarray:
    """Points whose label is decided by a tie within rounding: their two nearest centers are
    equally far within rtol, or (cluster_all=False) their nearest center is at the bandwidth."""
    X = np.asarray(X, dtype=np.float64)
    if len(centers) == 0 or len(X) == 0:
        return np.zeros(len(X), dtype=bool)
    dist = np.sqrt(np.stack([sq_dist(X, c) for c in centers], axis=1))
    near = np.sort(dist, axis=1)
    scale = 1.0 + near[:, 0]
    tie = np.zeros(len(X), dtype=bool)
    if len(centers) > 1:
        tie |= near[:, 1] - near[:, 0] <= rtol * scale
    if not cluster_all:
        tie |= np.abs(near[:, 0] - bandwidth) <= rtol * scale
    return tie


def assert_same_clustering(
    labels, centers, ref_labels, ref_centers, X, bandwidth, cluster_all, center_tol
):
    """Same number of clusters, centers within center_tol (matched to the nearest reference
    center, each used once), labels equal up to that relabelling except at ambiguous points."""
    labels, centers = np.asarray(labels), np.asarray(centers, dtype=np.float64)
    ref_labels, ref_centers = np.asarray(ref_labels), np.asarray(ref_centers, dtype=np.float64)
    assert centers.shape == ref_centers.shape, f"{centers.shape} centers vs {ref_centers.shape}"
    mapping = np.full(len(centers) + 1, -1)
    used = set()
    for i, c in enumerate(centers):
        j = int(np.argmin(np.linalg.norm(ref_centers - c, axis=1)))
        assert j not in used, f"two centers match reference center {j}"
        used.add(j)
        err = np.abs(ref_centers[j] - c).max()
        assert err <= center_tol, f"center {i} off by {err} > {center_tol}"
        mapping[i] = j
    relabelled = np.where(labels >= 0, mapping[labels], -1)
    clear = ~ambiguous_points(X, ref_centers, bandwidth, cluster_all)
    mismatch = np.flatnonzero(clear & (relabelled != ref_labels))
    assert mismatch.size == 0, f"{mismatch.size} labels differ, e.g. points {mismatch[:5]}"
