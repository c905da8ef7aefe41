"""panonet.ops.mean_shift against a NumPy reference of sklearn's algorithm and sklearn itself.

Tolerances. Whether a point is in a window is decided by the same float64 test in the op, the
reference and sklearn's KD-tree (squared distance summed over d in order, compared with
bandwidth^2), so windows, trajectories and cluster counts agree exactly; means differ only in the
summation order (a few ulps), far inside the required 1e-4 * bandwidth. Labels are compared up
to relabelling except at ties: a point whose two nearest centers are equally far within a
relative 1e-9, or (cluster_all=False) whose nearest center is at the bandwidth within 1e-9.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sklearn.cluster import MeanShift

from panonet.ops import mean_shift
from tests.conftest import DEVICES, requires_cuda
from tests.ops.reference_mean_shift import assert_same_clustering, mean_shift_reference

OP = torch.ops.panonet.mean_shift.default


def blobs(seed, n, D, k, spread=0.3, scale=3.0):
    """n points in k Gaussian blobs in D dimensions."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-scale, scale, size=(max(k, 1), D))
    return centers[rng.integers(0, max(k, 1), n)] + rng.normal(scale=spread, size=(n, D))


def sklearn_mean_shift(X, bandwidth, **kwargs):
    """sklearn's result, with K = 0 / labels -1 where it raises for lack of any window."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = MeanShift(bandwidth=bandwidth, **kwargs).fit(X)
        return fitted.labels_, fitted.cluster_centers_
    except ValueError as error:
        # No seed had a point within bandwidth, or (no bin met min_bin_freq) there was no seed.
        assert "No point was within bandwidth" in str(error) or "empty sequence" in str(error)
        return -np.ones(len(X), dtype=np.int64), np.zeros((0, X.shape[1]))


def run_op(X, bandwidth, device="cpu", dtype=torch.float64, **kwargs):
    labels, centers = mean_shift(torch.tensor(X, dtype=dtype, device=device), bandwidth, **kwargs)
    assert labels.dtype == torch.int64 and labels.shape == (len(X),)
    assert centers.dtype == dtype and centers.shape[1] == X.shape[1]
    return labels.cpu().numpy(), centers.cpu().double().numpy()


@st.composite
def cases(draw):
    D = draw(st.integers(1, 16))
    X = blobs(
        draw(st.integers(0, 2**31 - 1)),
        n=draw(st.integers(1, 300)),
        D=D,
        k=draw(st.integers(1, 6)),
        spread=draw(st.floats(0.02, 1.0)),
        scale=draw(st.floats(0.5, 4.0)),
    )
    params = {
        "bin_seeding": draw(st.booleans()),
        "min_bin_freq": draw(st.integers(1, 4)),
        "cluster_all": draw(st.booleans()),
        "max_iter": draw(st.sampled_from([0, 1, 5, 300])),
    }
    return X, draw(st.floats(0.05, 4.0)), params


@pytest.mark.parametrize("device", DEVICES)
@hsettings(max_examples=150)
@given(case=cases(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_matches_reference(device, case, dtype):
    X, bw, params = case
    X = X.astype(np.float32).astype(np.float64) if dtype == torch.float32 else X
    labels, centers = run_op(X, bw, device, dtype, **params)
    ref_labels, ref_centers = mean_shift_reference(X, bw, **params)
    tol = 1e-4 * bw if dtype == torch.float64 else 1e-4 * bw + 4e-7 * (1 + np.abs(X).max())
    assert_same_clustering(
        labels, centers, ref_labels, ref_centers, X, bw, params["cluster_all"], tol
    )


@hsettings(max_examples=60)
@given(case=cases())
def test_matches_sklearn(case):
    X, bw, params = case
    labels, centers = run_op(X, bw, **params)
    sk_labels, sk_centers = sklearn_mean_shift(X, bw, **params)
    assert_same_clustering(
        labels, centers, sk_labels, sk_centers, X, bw, params["cluster_all"], 1e-4 * bw
    )


@pytest.mark.parametrize("n, D, k, bw", [(3000, 12, 8, 0.5), (2000, 3, 5, 0.7), (4000, 16, 4, 1.0)])
def test_matches_sklearn_larger(n, D, k, bw):
    # Embedding-like data: tight blobs ~2 apart, many seeds per blob, straddling windows.
    X = blobs(7, n, D, k, spread=0.45 / (np.sqrt(D) + 3), scale=1.5)
    labels, centers = run_op(X, bw)
    sk_labels, sk_centers = sklearn_mean_shift(X, bw, bin_seeding=True)
    assert_same_clustering(labels, centers, sk_labels, sk_centers, X, bw, True, 1e-4 * bw)
    assert len(centers) > 1


def test_centers_in_sklearn_order_exactly():
    X = blobs(3, 800, 4, 6, spread=0.2)
    labels, centers = run_op(X, 0.8)
    sk_labels, sk_centers = sklearn_mean_shift(X, 0.8, bin_seeding=True)
    np.testing.assert_allclose(centers, sk_centers, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, sk_labels)


@pytest.mark.parametrize("device", DEVICES)
def test_many_clusters_matches_sklearn(device):
    # An untrained embedding: coordinates of std 700, bandwidth 0.5, so every point is its own
    # bin, seed and cluster (sklearn falls back to the points as seeds). Exercises the index over
    # centers (suppression, labels) with thousands of centers and the index's box pruning.
    X = np.random.default_rng(23).normal(scale=700.0, size=(3000, 12))
    labels, centers = run_op(X, 0.5, device)
    sk_labels, sk_centers = sklearn_mean_shift(X, 0.5, bin_seeding=True)
    assert len(centers) == len(sk_centers) == 3000
    np.testing.assert_allclose(centers, sk_centers, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, sk_labels)


@pytest.mark.parametrize("cluster_all", [True, False])
def test_chains_of_close_centers_suppressed_in_sklearn_order(cluster_all):
    # Seeds that stop on distinct means spaced below the bandwidth along lines (max_iter=0
    # freezes every seed after one step): the greedy suppression must keep exactly sklearn's
    # centers, in its order, through the index, and label points by the nearest kept center.
    rng = np.random.default_rng(29)
    lines = [
        rng.uniform(-20, 20, size=3) + np.outer(np.arange(40) * 0.3, rng.normal(size=3))
        for _ in range(25)
    ]
    X = np.concatenate(lines) + rng.normal(scale=0.05, size=(1000, 3))
    kwargs = dict(bin_seeding=False, max_iter=0, cluster_all=cluster_all)
    labels, centers = run_op(X, 0.5, **kwargs)
    sk_labels, sk_centers = sklearn_mean_shift(X, 0.5, **kwargs)
    assert len(centers) == len(sk_centers) > 25
    assert_same_clustering(labels, centers, sk_labels, sk_centers, X, 0.5, cluster_all, 1e-9)


def test_baseline_and_avx2_builds_agree(monkeypatch):
    X = blobs(5, 3000, 12, 6, spread=0.1)
    fast = run_op(X, 0.5)
    monkeypatch.setenv("PANONET_MS_BASELINE", "1")
    base = run_op(X, 0.5)
    np.testing.assert_array_equal(fast[0], base[0])
    np.testing.assert_allclose(fast[1], base[1], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Degenerate inputs.


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty(device, dtype):
    labels, centers = mean_shift(torch.zeros(0, 5, dtype=dtype, device=device), 1.0)
    assert labels.shape == (0,) and centers.shape == (0, 5) and centers.dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
def test_single_point(device):
    labels, centers = run_op(np.array([[1.5, -2.0, 0.25]]), 0.3, device)
    np.testing.assert_array_equal(labels, [0])
    np.testing.assert_array_equal(centers, [[1.5, -2.0, 0.25]])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cluster_all", [True, False])
def test_all_points_identical(device, cluster_all):
    X = np.tile([[0.3, 7.0]], (50, 1))
    labels, centers = run_op(X, 0.5, device, cluster_all=cluster_all)
    np.testing.assert_array_equal(labels, np.zeros(50))
    np.testing.assert_allclose(centers, [[0.3, 7.0]], rtol=0, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_one_dimension(device):
    X = np.concatenate([np.linspace(0, 0.4, 40), np.linspace(5, 5.3, 30)])[:, None]
    labels, centers = run_op(X, 1.0, device)
    assert len(centers) == 2
    assert len(set(labels[:40])) == 1 and len(set(labels[40:])) == 1 and labels[0] != labels[-1]
    sk_labels, sk_centers = sklearn_mean_shift(X, 1.0, bin_seeding=True)
    assert_same_clustering(labels, centers, sk_labels, sk_centers, X, 1.0, True, 1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_tiny_bandwidth_every_point_its_own_cluster(device):
    X = blobs(11, 60, 3, 2, spread=1.0)
    labels, centers = run_op(X, 1e-6, device)
    assert len(centers) == 60
    assert sorted(labels.tolist()) == list(range(60))
    np.testing.assert_allclose(centers[labels], X, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_huge_bandwidth_one_cluster(device):
    X = blobs(13, 500, 5, 4, spread=0.5)
    labels, centers = run_op(X, 1e6, device)
    assert len(centers) == 1 and np.all(labels == 0)
    np.testing.assert_allclose(centers[0], X.mean(axis=0), rtol=1e-12, atol=1e-12)


def test_no_seed_reaches_any_point():
    # Two points in bins whose seed (the bin corner's image) is farther than the bandwidth from
    # both: sklearn raises; panonet returns no cluster.
    X = np.array([[0.45] * 16, [-0.45] * 16])
    labels, centers = run_op(X, 1.0, min_bin_freq=1)
    sk_labels, sk_centers = sklearn_mean_shift(X, 1.0, bin_seeding=True)
    assert len(sk_centers) == 0
    assert len(centers) == 0 and np.all(labels == -1)


def test_min_bin_freq_above_every_bin_gives_no_cluster():
    X = blobs(17, 30, 2, 3, spread=2.0)
    labels, centers = run_op(X, 0.01, min_bin_freq=5)
    assert len(centers) == 0 and np.all(labels == -1)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    X = torch.tensor(blobs(19, 200, 4, 3), device=device)
    torch.library.opcheck(OP, (X, 0.8, True, 1, 300, True))
    torch.library.opcheck(OP, (X.float(), 0.8, False, 2, 10, False))


# ---------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "points, bandwidth, kwargs, error, pattern",
    [
        (torch.zeros(5, 2), 0.0, {}, ValueError, r"expected a finite bandwidth > 0, got 0"),
        (torch.zeros(5, 2), -1.0, {}, ValueError, r"expected a finite bandwidth > 0, got -1"),
        (torch.zeros(5, 2), float("nan"), {}, ValueError, r"finite bandwidth > 0, got nan"),
        (torch.zeros(5), 1.0, {}, ValueError, r"expected points of shape \(N, D\), got a 1-D"),
        (torch.zeros(2, 5, 2), 1.0, {}, ValueError, r"shape \(N, D\), got a 3-D tensor"),
        (torch.zeros(5, 0), 1.0, {}, ValueError, r"at least one feature \(D >= 1\)"),
        (torch.zeros(5, 2, dtype=torch.int64), 1.0, {}, TypeError, r"float32 or float64, got Long"),
        (torch.zeros(5, 2), 1.0, {"min_bin_freq": 0}, ValueError, r"min_bin_freq >= 1, got 0"),
        (torch.zeros(5, 2), 1.0, {"max_iter": -1}, ValueError, r"max_iter >= 0, got -1"),
    ],
)
def test_bad_input(points, bandwidth, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        mean_shift(points, bandwidth, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_points(device, value):
    X = torch.zeros(10, 3, device=device)
    X[4, 1] = value
    with pytest.raises(ValueError, match=r"expected a finite points, got NaN or Inf"):
        mean_shift(X, 1.0)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "n, D, k, bw", [(5000, 12, 10, 0.5), (20000, 12, 30, 0.7), (300, 2, 3, 1.0)]
)
def test_cuda_matches_cpu(dtype, n, D, k, bw):
    X = blobs(23, n, D, k, spread=0.45 / (np.sqrt(D) + 3), scale=1.5)
    X = X.astype(np.float32).astype(np.float64) if dtype == torch.float32 else X
    gpu_labels, gpu_centers = run_op(X, bw, "cuda", dtype)
    cpu_labels, cpu_centers = run_op(X, bw, "cpu", torch.float64)
    tol = 1e-4 * bw if dtype == torch.float64 else 1e-4 * bw + 4e-7 * (1 + np.abs(X).max())
    assert_same_clustering(gpu_labels, gpu_centers, cpu_labels, cpu_centers, X, bw, True, tol)


def _hard_case(name: str) -> tuple[np.ndarray, float, bool]:
    if name == "chain":  # near centers that the suppression settles one link per round
        X = np.zeros((9, 3))
        X[:, 0] = np.arange(9) * 0.9
        return X, 1.0, False
    if name == "many clusters":  # every point its own bin, seed and center
        return np.random.default_rng(3).normal(scale=700.0, size=(3000, 12)), 0.5, True
    if name == "duplicates":  # bitwise-equal points and means from different seeds
        base = np.random.default_rng(4).normal(size=(40, 5))
        return np.repeat(base, 7, axis=0), 0.8, False
    if name == "beyond cells":  # spread over 1e12 bandwidths: the GPU index's cells clamp
        X = np.random.default_rng(6).normal(scale=1e11, size=(400, 3))
        return np.concatenate([X, X[:60] + 0.01]), 0.5, False
    assert name == "wide"  # wider than the GPU kernels take: computed on the CPU
    return np.random.default_rng(5).normal(size=(200, 70)), 6.0, True


@requires_cuda
@pytest.mark.parametrize("case", ["chain", "many clusters", "duplicates", "beyond cells", "wide"])
def test_cuda_matches_cpu_hard_cases(case):
    X, bw, bin_seeding = _hard_case(case)
    points = torch.tensor(X)
    cpu_labels, cpu_centers = mean_shift(points, bw, bin_seeding=bin_seeding)
    gpu_labels, gpu_centers = mean_shift(points.cuda(), bw, bin_seeding=bin_seeding)
    # Same centers in the same order, to rounding: each device associates the window sums its
    # own way (the CPU's node sums, the GPU's warp sums), which moves a mean by a few ulps. So a
    # point equidistant from two centers in exact arithmetic (the chain's 1.8 between 0.9 and
    # 2.7; seen on the H200) may go either way; every other label must agree.
    tol = 1e-9 * bw * (1 + np.abs(X).max())
    torch.testing.assert_close(gpu_centers.cpu(), cpu_centers, rtol=0, atol=tol)
    assert_same_clustering(
        gpu_labels.cpu(), gpu_centers.cpu(), cpu_labels, cpu_centers, X, bw, True, tol
    )
