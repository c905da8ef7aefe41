"""The nearest-center search of the CUDA mean-shift labels (panonet::_nearest_by_projection),
run on the host, against a brute-force scan: the same center for every point, including exact
ties (lowest index wins), which integer-valued data produce in numbers."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import panonet.ops  # noqa: F401  (registers torch.ops.panonet)
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet._nearest_by_projection


def brute_force(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Lowest index among the centers at the smallest squared distance (summed over d in order,
    as the kernels do)."""
    d2 = np.zeros((len(X), len(C)))
    for d in range(X.shape[1]):
        d2 += (X[:, d, None] - C[None, :, d]) ** 2
    return np.argmin(d2, axis=1) if len(C) else -np.ones(len(X), dtype=np.int64)


@hsettings(max_examples=80)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 300),
    k=st.integers(0, 60),
    D=st.sampled_from([1, 2, 3, 12]),
    integer=st.booleans(),
)
def test_matches_brute_force(seed, n, k, D, integer):
    rng = np.random.default_rng(seed)
    if integer:  # small integer grids: many exact distance ties
        X, C = rng.integers(-3, 4, (n, D)).astype(float), rng.integers(-3, 4, (k, D)).astype(float)
    else:
        X, C = rng.normal(size=(n, D)) * 5, rng.normal(size=(k, D)) * 5
    labels, visited = OP(torch.tensor(X), torch.tensor(C))
    np.testing.assert_array_equal(labels.numpy(), brute_force(X, C))
    assert ((visited >= min(k, 1)) & (visited <= k)).all()


def test_many_spread_centers_visit_few():
    # Centers of an untrained embedding (std 700, 12-D), points at the centers: the search
    # must look at a handful of centers, not all of them.
    rng = np.random.default_rng(3)
    C = rng.normal(size=(20000, 12)) * 700
    X = C[rng.permutation(20000)[:2000]] + rng.normal(size=(2000, 12)) * 0.01
    labels, visited = OP(torch.tensor(X), torch.tensor(C))
    np.testing.assert_array_equal(labels.numpy(), brute_force(X, C))
    assert visited.double().mean() < 50


@requires_cuda
@pytest.mark.parametrize("D", [3, 12])
def test_cuda_runs_the_same_search(D):
    rng = np.random.default_rng(D)
    X, C = rng.integers(-3, 4, (5000, D)).astype(float), rng.integers(-3, 4, (300, D)).astype(float)
    cpu = OP(torch.tensor(X), torch.tensor(C))
    gpu = OP(torch.tensor(X, device="cuda"), torch.tensor(C, device="cuda"))
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_shapes(device):
    with pytest.raises(ValueError, match=r"expected points \(N, D\) and centers \(K, D\)"):
        OP(torch.zeros(3, 2, device=device), torch.zeros(4, 3, device=device))
