"""Comparing clusterings up to relabelling: what the tests and benchmarks of the mean-shift ops
check against scikit-learn, public for anyone who does the same.

Distances are accumulated over the coordinates in order d = 0..D-1, as sklearn's KD-tree does.
"""

import numpy as np

__all__ = ["ambiguous_points", "assert_same_clustering", "sq_dist"]


def sq_dist(X: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N, D), (D,) -> (N,) squared distances, summed over d in order."""
    out = np.zeros(len(X))
    for d in range(X.shape[1]):
        out = out + (X[:, d] - q[d]) ** 2
    return out


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
