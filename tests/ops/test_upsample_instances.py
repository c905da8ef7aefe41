"""panonet.ops.upsample_instances: instance ids resized, masked by class, filtered, renumbered."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import upsample_instances
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet.upsample_instances.default


def reached(inst, sem_low, H, W, Y, X, c, reach):
    """The id pixel (Y, X) of class c reaches: the nearest low-resolution pixel of class c with an
    id, within ``reach`` rows and columns of its source pixel, by the distance between pixel
    centres in source pixels (exact rationals), first in row-major order on ties; 0 if none."""
    h, w = inst.shape
    cy, cx = Fraction((2 * Y + 1) * h, 2 * H), Fraction((2 * X + 1) * w, 2 * W)
    sy0, sx0 = int(cy), int(cx)  # floor: the source pixel
    best = None
    for sy in range(max(sy0 - reach, 0), min(sy0 + reach, h - 1) + 1):
        for sx in range(max(sx0 - reach, 0), min(sx0 + reach, w - 1) + 1):
            if inst[sy, sx] > 0 and sem_low[sy, sx] == c:
                d = (sy + Fraction(1, 2) - cy) ** 2 + (sx + Fraction(1, 2) - cx) ** 2
                if best is None or d < best[0]:
                    best = (d, int(inst[sy, sx]))
    return 0 if best is None else best[1]


def reference(inst, sem_low, H, W, full=None, min_size=0, reach=0):
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
            if reach > 0:
                source_class = sem_low[b][iy[:, None], ix[None, :]]
                for Y, X in zip(*np.nonzero(source_class != full[b]), strict=True):
                    up[Y, X] = reached(inst[b], sem_low[b], H, W, Y, X, full[b][Y, X], reach)
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
    reach=st.integers(0, 3),
)
def test_matches_the_rule(seed, B, h, w, K, H, W, min_size, masked, reach):
    inst, sem, full = frame(seed, B, h, w, K, H, W)
    want = reference(inst, sem, H, W, full if masked else None, min_size, reach)
    got = upsample_instances(
        torch.from_numpy(inst),
        torch.from_numpy(sem),
        (H, W),
        semantic_fullres=torch.from_numpy(full) if masked else None,
        max_instance_id=K + 2,
        min_size=min_size,
        reach=reach,
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
def test_reach_gives_thin_parts_their_instance(device):
    # A 2x4 map upsampled 4x: two car instances (class 13) left and right of a road pixel
    # (class 0, id 0). At full resolution a thin car part lies over the road pixel's cell, and a
    # person (11) pixel has no person instance anywhere.
    inst = torch.tensor([[1, 0, 2, 0], [0, 0, 0, 0]], device=device)
    sem = torch.tensor([[13, 0, 13, 0], [0, 0, 0, 0]], device=device)
    full = torch.zeros(8, 16, dtype=torch.int64, device=device)
    full[0:4, 0:4] = 13  # car 1's own cell
    full[0:4, 8:12] = 13  # car 2's
    full[1, 4:8] = 13  # the thin part, in the road pixel's cell (columns 4-7)
    full[6, 6] = 11  # a person pixel
    args = dict(semantic_fullres=full, max_instance_id=2)
    plain = upsample_instances(inst, sem, (8, 16), **args)
    assert plain[1, 4:8].tolist() == [0, 0, 0, 0]  # dropped: its source is road
    got = upsample_instances(inst, sem, (8, 16), reach=1, **args)
    # Columns 4 and 5 lie nearer car 1's cell (centre at column 1.5), 6 and 7 car 2's (9.5).
    assert got[1, 4:8].tolist() == [1, 1, 2, 2]
    assert got[6, 6] == 0  # no person instance within reach
    keep = torch.ones_like(got, dtype=torch.bool)
    keep[1, 4:8] = False
    assert torch.equal(got[keep], plain[keep])  # the rest as without reach
    # Reach counts low-resolution rows and columns from the source pixel: a car part over the
    # third and the fourth cell of a row whose only car is in the first.
    inst = torch.tensor([[1, 0, 0, 0]], device=device)
    sem = torch.tensor([[13, 0, 0, 0]], device=device)
    full = torch.tensor([[13] * 4 + [0] * 4 + [13] * 8], device=device)
    got = [
        upsample_instances(inst, sem, (1, 16), semantic_fullres=full, max_instance_id=1, reach=r)
        for r in range(4)
    ]
    got = [g[0].tolist() for g in got]
    assert got[0] == got[1] == [1] * 4 + [0] * 12
    assert got[2] == [1] * 4 + [0] * 4 + [1] * 4 + [0] * 4
    assert got[3] == [1] * 4 + [0] * 4 + [1] * 8


def test_reach_checks():
    z = torch.zeros(1, 2, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="expected reach >= 0, got -1"):
        upsample_instances(z, z, (4, 4), semantic_fullres=z.new_zeros(1, 4, 4),
                           max_instance_id=1, reach=-1)  # fmt: skip
    # (2 reach + 1) H W must stay below 2^31 for the exact distances; checked before allocating.
    big = (1 << 15, 1 << 15)
    with pytest.raises(ValueError, match=r"\(2 reach \+ 1\) H W < 2\^31"):
        upsample_instances(z[:0], z[:0], big, semantic_fullres=z.new_zeros(0, *big),
                           max_instance_id=1, reach=1)  # fmt: skip
    assert upsample_instances(z[:0], z[:0], big, max_instance_id=1).shape == (0, *big)


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
    torch.library.opcheck(OP, (inst, sem, full, [10, 12], 7, 2, 2))
    torch.library.opcheck(OP, (inst[0], sem[0], None, [10, 12], 7, 0))


@requires_cuda
def test_cuda_matches_cpu():
    inst, sem, full = (torch.from_numpy(a) for a in frame(3, 3, 64, 128, 300, 256, 512))
    for masked, min_size, reach in [(True, 0, 0), (True, 40, 0), (False, 5, 0), (True, 0, 2),
                                    (True, 40, 3)]:  # fmt: skip
        kwargs = dict(max_instance_id=300, min_size=min_size, reach=reach)
        want = upsample_instances(
            inst, sem, (256, 512), semantic_fullres=full if masked else None, **kwargs
        )
        got = upsample_instances(
            inst.cuda(), sem.cuda(), (256, 512),
            semantic_fullres=full.cuda() if masked else None, **kwargs,
        )  # fmt: skip
        assert torch.equal(got.cpu(), want)
