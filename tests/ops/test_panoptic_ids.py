"""panonet.ops.panoptic_ids: Cityscapes panoptic ids from semantic and instance maps."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import panoptic_ids
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet.panoptic_ids.default
C, THINGS = 19, list(range(11, 19))
LABELS = torch.arange(C, dtype=torch.int64) * 2 + 7  # any labelIds, distinct from trainIds
THING_INDEX = torch.full((C,), -1, dtype=torch.int64)
THING_INDEX[THINGS] = torch.arange(len(THINGS))


def tables(device="cpu"):
    return LABELS.to(device), THING_INDEX.to(device)


def reference(sem: np.ndarray, inst: np.ndarray, divisor: int = 1000, labels=LABELS, things=THINGS):
    """The rule, pixel by pixel and class by class: (ids, most ids of a class in an image), with
    ``labels[c]`` the labelId of trainId ``c`` and ``things`` the thing trainIds."""
    out = np.zeros_like(sem)
    most = 0
    for b in range(sem.shape[0]):
        for c in range(len(labels)):
            here = sem[b] == c
            if c not in things:
                out[b][here] = labels[c]
                continue
            ids = np.unique(inst[b][here & (inst[b] > 0)])
            most = max(most, ids.size)
            for j, k in enumerate(ids):
                out[b][here & (inst[b] == k)] = labels[c] * divisor + j
    return out, most


def maps(seed, B, H, W, K):
    rng = np.random.default_rng(seed)
    sem = rng.integers(-1, C + 2, (B, H, W))
    sem[rng.random((B, H, W)) < 0.1] = 255
    inst = rng.integers(0, K + 1, (B, H, W))
    return sem, inst


@hsettings(deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 3),
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    K=st.integers(0, 30),
    slack=st.integers(0, 5),
    divisor=st.sampled_from([1000, 7]),
)
def test_matches_the_rule(seed, B, H, W, K, slack, divisor):
    sem, inst = maps(seed, B, H, W, K)
    want, most = reference(sem, inst, divisor)
    got, got_most = panoptic_ids(
        torch.from_numpy(sem),
        torch.from_numpy(inst),
        *tables(),
        num_things=len(THINGS),
        max_instance_id=K + slack,
        label_divisor=divisor,
    )
    assert got.dtype == torch.int64 and np.array_equal(got.numpy(), want)
    assert int(got_most) == most


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_and_integer_dtypes(device):
    sem, inst = maps(1, 2, 12, 17, 9)
    want, _ = reference(sem, inst)
    kwargs = dict(num_things=len(THINGS), max_instance_id=9)
    s, i = torch.from_numpy(sem).to(device), torch.from_numpy(inst).to(device)
    got, _ = panoptic_ids(s[1], i[1], *tables(device), **kwargs)
    assert np.array_equal(got.cpu().numpy(), want[1])
    small = s.clamp(0, 255).to(torch.uint8)  # uint8 trainIds; -1 becomes 0 (a stuff class)
    want_small, _ = reference(small.cpu().numpy().astype(np.int64), inst)
    got, _ = panoptic_ids(small, i.int(), *tables(device), **kwargs)
    assert np.array_equal(got.cpu().numpy(), want_small)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_and_no_things(device):
    kwargs = dict(num_things=len(THINGS), max_instance_id=3)
    empty = torch.zeros(2, 0, 5, dtype=torch.int64, device=device)
    got, most = panoptic_ids(empty, empty, *tables(device), **kwargs)
    assert got.shape == (2, 0, 5) and int(most) == 0
    stuff = torch.full((4, 4), 2, device=device)
    got, most = panoptic_ids(stuff, torch.ones_like(stuff), *tables(device), **kwargs)
    assert (got == LABELS[2]).all() and int(most) == 0


def test_cpu_checks_the_ids_of_thing_pixels():
    sem = torch.tensor([[11, 0]])
    kwargs = dict(num_things=len(THINGS), max_instance_id=4)
    with pytest.raises(ValueError, match=r"instance ids in \[0, max_instance_id = 4\].* got 5"):
        panoptic_ids(sem, torch.tensor([[5, 0]]), *tables(), **kwargs)
    with pytest.raises(ValueError, match="got -1"):
        panoptic_ids(sem, torch.tensor([[-1, 0]]), *tables(), **kwargs)
    # Stuff pixels' ids are ignored, whatever they are.
    got, _ = panoptic_ids(sem, torch.tensor([[1, 99]]), *tables(), **kwargs)
    assert got.tolist() == [[LABELS[11] * 1000, LABELS[0]]]


I64 = dict(dtype=torch.int64)


@pytest.mark.parametrize(
    "sem, inst, error, pattern",
    [
        (torch.zeros(3, **I64), torch.zeros(3, **I64), ValueError, r"\(B, H, W\) or \(H, W\)"),
        (torch.zeros(2, 3, **I64), torch.zeros(3, 2, **I64), ValueError, "semantic map's shape"),
        (torch.zeros(2, 3, **I64), torch.zeros(2, 3), TypeError, "integer"),
    ],
)
def test_bad_maps(sem, inst, error, pattern):
    with pytest.raises(error, match=pattern):
        panoptic_ids(sem, inst, *tables(), num_things=8, max_instance_id=3)


def test_bad_tables_and_bounds():
    m = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="one length C >= 1"):
        panoptic_ids(m, m, LABELS, THING_INDEX[:5], num_things=8, max_instance_id=3)
    with pytest.raises(ValueError, match="1-D int64 tables"):
        panoptic_ids(m, m, LABELS.int(), THING_INDEX, num_things=8, max_instance_id=3)
    with pytest.raises(ValueError, match=r"thing_index in \[-1, 2\)"):
        panoptic_ids(m, m, LABELS, THING_INDEX, num_things=2, max_instance_id=3)
    with pytest.raises(ValueError, match="max_instance_id >= 0"):
        panoptic_ids(m, m, LABELS, THING_INDEX, num_things=8, max_instance_id=-1)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    sem, inst = maps(2, 2, 6, 7, 5)
    args = (torch.from_numpy(sem).to(device), torch.from_numpy(inst).to(device), *tables(device))
    torch.library.opcheck(OP, (*args, len(THINGS), 5, 1000))


@requires_cuda
def test_cuda_matches_cpu():
    sem, inst = maps(3, 3, 64, 96, 200)
    s, i = torch.from_numpy(sem), torch.from_numpy(inst)
    kwargs = dict(num_things=len(THINGS), max_instance_id=210)
    want, want_most = panoptic_ids(s, i, *tables(), **kwargs)
    got, got_most = panoptic_ids(s.cuda(), i.cuda(), *tables("cuda"), **kwargs)
    assert torch.equal(got.cpu(), want) and int(got_most) == int(want_most)
