"""The host model of the CUDA mean-shift (panonet::_mean_shift_gpu_work): it must be the same
algorithm (same clustering as the CPU op, which matches sklearn), and its work counts must show
what the pruning by projection saves."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import mean_shift
from tests.ops.test_mean_shift import blobs

OP = torch.ops.panonet._mean_shift_gpu_work


def counts_of(counts: torch.Tensor) -> dict:
    names = (
        "seeds",
        "iterations",
        "bins_full",
        "bins_projection",
        "straddling",
        "points_tested",
        "labels_full",
        "labels_projection",
        "points_straddling",
        "suppression_rounds",
        "suppression_distances",
        "iterations_merged_per_step",
        "distinct_means",
        "index_searches",
        "warp_steps",
        "longest_climb_steps",
    )
    return dict(zip(names, counts.tolist(), strict=True))


@hsettings(max_examples=40)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 600),
    D=st.sampled_from([1, 3, 12]),
    k=st.integers(1, 6),
    bw=st.floats(0.2, 2.0),
    bin_seeding=st.booleans(),
)
def test_same_clustering_as_the_cpu_op(seed, n, D, k, bw, bin_seeding):
    X = torch.tensor(blobs(seed, n, D, k, spread=0.4, scale=3.0))
    counts, labels, centers = OP(X, bw, bin_seeding, 1, 300)
    cpu_labels, cpu_centers = mean_shift(X, bw, bin_seeding=bin_seeding)
    assert len(centers) == len(cpu_centers)
    torch.testing.assert_close(centers, cpu_centers, rtol=0, atol=1e-9 * bw)
    np.testing.assert_array_equal(labels.numpy(), cpu_labels.numpy())
    c = counts_of(counts)
    assert c["bins_projection"] <= c["bins_full"]
    assert c["labels_projection"] <= c["labels_full"] == n * len(centers)
    assert c["seeds"] <= c["iterations"] <= c["seeds"] * 301
    assert c["points_tested"] <= c["points_straddling"]
    assert (c["suppression_rounds"] >= 1) == (len(centers) > 0)
    assert c["distinct_means"] <= c["iterations_merged_per_step"] <= c["iterations"]


@hsettings(max_examples=30)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 300),
    D=st.sampled_from([1, 2, 12]),
    bw=st.floats(0.2, 2.0),
    hash_bits=st.integers(1, 3),
)
def test_hash_collisions_keep_bins_apart(seed, n, D, bw, hash_bits):
    # With 1-3 bits of hash nearly every bin shares its hash with others: the GPU's bins (runs of
    # one hash split by exact key comparison) must still be sklearn's.
    X = torch.tensor(blobs(seed, n, D, 4, spread=0.4, scale=3.0))
    counts, labels, centers = OP(X, bw, True, 1, 300, hash_bits)
    cpu_labels, cpu_centers = mean_shift(X, bw)
    assert len(centers) == len(cpu_centers)
    torch.testing.assert_close(centers, cpu_centers, rtol=0, atol=1e-9 * bw)
    np.testing.assert_array_equal(labels.numpy(), cpu_labels.numpy())


def test_suppression_chain_takes_rounds_and_matches_greedy():
    # Points on a line 0.9 bandwidth apart, every point a seed: the means end in a chain of near
    # centers that the greedy thins from its strongest end, which the parallel form can only
    # settle a link per round (8 rounds here).
    X = torch.zeros(9, 3, dtype=torch.float64)
    X[:, 0] = torch.arange(9, dtype=torch.float64) * 0.9
    counts, labels, centers = OP(X, 1.0, False, 1, 300)
    cpu_labels, cpu_centers = mean_shift(X, 1.0, bin_seeding=False)
    torch.testing.assert_close(centers, cpu_centers, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels.numpy(), cpu_labels.numpy())
    assert counts_of(counts)["suppression_rounds"] >= 2


def test_many_clusters_cost_near_linear_work():
    # Every point its own cluster: a full scan tests n bins per seed; the index on two axes
    # (mean_shift_grid.h) about one (its own), and about one distance per center to suppress.
    X = torch.tensor(np.random.default_rng(5).normal(scale=700.0, size=(4000, 12)))
    counts, labels, centers = OP(X, 0.5, True, 1, 300)
    c = counts_of(counts)
    assert len(centers) == 4000 and c["iterations"] == 4000
    assert c["bins_full"] == 4000 * 4000
    assert c["bins_projection"] < 2 * 4000
    assert c["labels_projection"] < 2 * 4000
    assert c["suppression_rounds"] <= 3 and c["suppression_distances"] < 4000
    assert c["index_searches"] <= 2 * 4 * (c["iterations"] + 4000)


def test_many_clusters_work_grows_linearly():
    # 4x the points, 4x the clusters: the work per seed must stay flat (the one-axis index of
    # before grew ~15x per 4x: its reach holds ever more rows).
    work = []
    for n in (2000, 8000):
        X = torch.tensor(np.random.default_rng(6).normal(scale=700.0, size=(n, 12)))
        work.append(counts_of(OP(X, 0.5, True, 1, 300)[0]))
    for name in ("bins_projection", "suppression_distances", "labels_projection"):
        assert work[1][name] <= 4.5 * max(work[0][name], 1), name
    assert work[1]["index_searches"] <= 5 * work[0]["index_searches"]


def test_coordinates_beyond_the_cells_range_still_cluster_exactly():
    # Spread over 1e12 bandwidths: cells past 2^32 are clamped into one column, which the
    # searches then bound by key only (more rows looked at, the same decisions). Seeded from the
    # points: sklearn's float32 bin seeds would land nowhere near them at this scale.
    X = torch.tensor(np.random.default_rng(7).normal(scale=1e11, size=(300, 3)))
    X = torch.cat([X, X[:50] + 0.01])  # some clusters of two
    counts, labels, centers = OP(X, 0.5, False, 1, 300)
    cpu_labels, cpu_centers = mean_shift(X, 0.5, bin_seeding=False)
    assert len(centers) == len(cpu_centers) == 300
    torch.testing.assert_close(centers, cpu_centers, rtol=0, atol=0)
    np.testing.assert_array_equal(labels.numpy(), cpu_labels.numpy())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_points(bad):
    X = torch.zeros(5, 2, dtype=torch.float64)
    X[2, 1] = bad
    with pytest.raises(ValueError, match="expected a finite points"):
        OP(X, 1.0, True, 1, 300)


@pytest.mark.parametrize("bits", [0, 65])
def test_hash_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=r"expected hash_bits in \[1, 64\]"):
        OP(torch.zeros(3, 2, dtype=torch.float64), 1.0, True, 1, 300, bits)
