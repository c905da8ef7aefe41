"""panonet.ops.upsample_instances: instance ids resized, masked by class, filtered, renumbered."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import upsample_instances
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet.upsample_instances.default


def reference(inst, sem_low, H, W, full=None, min_size=0):
    """The rule, step by step in NumPy: (B, h, w) ids and classes -> (B, H, W) ids."""
    B, h, w = inst.shape
    iy = ((2 * np.arange(H) + 1) * h) // (2 * H)
    ix = ((2 * np.arange(W) + 1) * w) // (2 * W)
    out = np.zeros((B, H, W), dtype=np.int64)
    for b in range(B):
        up = inst[b][iy[:, None], ix[None, :]]
        if full is not None:
            # The class of each id: that of its low-resolution pixels (they share one).
            cls = np.zeros(inst.max() + 1, dtype=np.int64)
            cls[inst[b]] = sem_low[b]
            up = np.where((up == 0) | (cls[up] == full[b]), up, 0)
        ids, counts = np.unique(up[up > 0], return_counts=True)
        kept = ids[counts >= max(min_size, 1)]
        new = np.zeros(inst.max() + 1, dtype=np.int64)
        new[kept] = np.arange(1, kept.size + 1)
        out[b] = new[up]
    return out


def frame(seed, B, h, w, K, H, W, classes=5):
    """Ids in [0, K] whose pixels share a class, the low-res classes, and full-res classes."""
    rng = np.random.default_rng(seed)
    inst = rng.integers(0, K + 1, (B, h, w))
    id_class = rng.integers(0, classes, (B, K + 1))
    sem = np.stack([np.where(inst[b] > 0, id_class[b][inst[b]], 0) for b in range(B)])
    sem = np.where(inst > 0, sem, rng.integers(0, classes, (B, h, w)))
    full = rng.integers(0, classes, (B, H, W))
    # Mostly the upsampled low-res classes, so that the mask keeps a good part of each id.
    iy = ((2 * np.arange(H) + 1) * h) // (2 * H)
    ix = ((2 * np.arange(W) + 1) * w) // (2 * W)
    keep = rng.random((B, H, W)) < 0.8
    full = np.where(keep, sem[:, iy[:, None], ix[None, :]], full)
    return inst, sem, full


@hsettings(deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 2),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    K=st.integers(0, 12),
    H=st.integers(1, 14),
    W=st.integers(1, 14),
    min_size=st.integers(0, 6),
    masked=st.booleans(),
)
def test_matches_the_rule(seed, B, h, w, K, H, W, min_size, masked):
    inst, sem, full = frame(seed, B, h, w, K, H, W)
    want = reference(inst, sem, H, W, full if masked else None, min_size)
    got = upsample_instances(
        torch.from_numpy(inst),
        torch.from_numpy(sem),
        (H, W),
        semantic_fullres=torch.from_numpy(full) if masked else None,
        max_instance_id=K + 2,
        min_size=min_size,
    )
    assert got.dtype == torch.int64 and np.array_equal(got.numpy(), want)


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_and_integer_dtypes(device):
    inst, sem, full = frame(1, 2, 8, 12, 20, 32, 48)
    want = reference(inst, sem, 32, 48, full, 3)
    t = lambda a, dtype=torch.int64: torch.from_numpy(a).to(device, dtype)  # noqa: E731
    got = upsample_instances(
        t(inst[1], torch.int32), t(sem[1], torch.uint8), (32, 48),
        semantic_fullres=t(full[1], torch.int32), max_instance_id=20, min_size=3,
    )  # fmt: skip
    assert np.array_equal(got.cpu().numpy(), want[1])


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    z = torch.zeros(2, 4, 5, dtype=torch.int64, device=device)
    assert upsample_instances(z, z, (0, 7), max_instance_id=3).shape == (2, 0, 7)
    assert upsample_instances(z[:0], z[:0], (6, 7), max_instance_id=3).shape == (0, 6, 7)


def test_cpu_checks_the_ids():
    inst = torch.tensor([[0, 5]])
    with pytest.raises(ValueError, match=r"ids in \[0, max_instance_id = 4\], got 5"):
        upsample_instances(inst, torch.zeros_like(inst), (2, 4), max_instance_id=4)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(instance=torch.zeros(3, dtype=torch.int64)), ValueError, r"\(B, h, w\) or \(h, w\)"),
        (dict(semantic_lowres=torch.zeros(2, 3, dtype=torch.int64)), ValueError, "instance map's"),
        (dict(instance=torch.zeros(2, 2)), TypeError, "integer maps"),
        (dict(semantic_fullres=torch.zeros(4, 5, dtype=torch.int64)), ValueError, "size"),
        (dict(size=(-1, 4)), ValueError, r"ints >= 0"),
        (dict(min_size=-1), ValueError, "min_size >= 0"),
    ],
)
def test_bad_inputs(kwargs, error, pattern):
    args = dict(
        instance=torch.zeros(2, 2, dtype=torch.int64),
        semantic_lowres=torch.zeros(2, 2, dtype=torch.int64),
        size=(4, 4),
        semantic_fullres=None,
        max_instance_id=3,
        min_size=0,
    )
    args.update(kwargs)
    if args["instance"].shape != (2, 2) and "semantic_lowres" not in kwargs:
        args["semantic_lowres"] = torch.zeros(args["instance"].shape, dtype=torch.int64)
    with pytest.raises(error, match=pattern):
        upsample_instances(
            args["instance"],
            args["semantic_lowres"],
            args["size"],
            semantic_fullres=args["semantic_fullres"],
            max_instance_id=args["max_instance_id"],
            min_size=args["min_size"],
        )


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    inst, sem, full = (torch.from_numpy(a).to(device) for a in frame(2, 2, 5, 6, 7, 10, 12))
    torch.library.opcheck(OP, (inst, sem, full, [10, 12], 7, 2))
    torch.library.opcheck(OP, (inst[0], sem[0], None, [10, 12], 7, 0))


@requires_cuda
def test_cuda_matches_cpu():
    inst, sem, full = (torch.from_numpy(a) for a in frame(3, 3, 64, 128, 300, 256, 512))
    for masked, min_size in [(True, 0), (True, 40), (False, 5)]:
        kwargs = dict(max_instance_id=300, min_size=min_size)
        want = upsample_instances(
            inst, sem, (256, 512), semantic_fullres=full if masked else None, **kwargs
        )
        got = upsample_instances(
            inst.cuda(), sem.cuda(), (256, 512),
            semantic_fullres=full.cuda() if masked else None, **kwargs,
        )  # fmt: skip
        assert torch.equal(got.cpu(), want)
