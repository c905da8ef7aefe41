"""panonet.inference.panoptic_ids: the forms that read nothing back from the device
(max_instance_id given) give what the checked forms give, and merge(check_inputs=False) makes no
host synchronization at all."""

import importlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.data.labels import THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.inference import bandwidth_table, merge
from panonet.inference.panoptic_ids import (
    instances_per_class,
    limit_instances_per_class,
    panoptic_from_semantic_instance,
    warn_instances_over_limit,
)
from panonet.sync_points import SyncPoints, cuda_syncs
from tests.conftest import requires_cuda
from tests.ops.test_panoptic_ids import reference


def maps(seed: int, B: int, H: int, W: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random trainIds (some 255 and -1) and instance ids in [0, K], each id of one class."""
    rng = np.random.default_rng(seed)
    sem = rng.integers(0, 19, (B, H, W))
    sem[rng.random((B, H, W)) < 0.1] = 255
    sem[rng.random((B, H, W)) < 0.05] = -1
    inst = rng.integers(0, K + 1, (B, H, W))
    # Each id one class: pixels of a thing id take the id's class.
    id_class = rng.choice(sorted(THING_TRAIN_IDS), size=(B, K + 1))
    thing = rng.random((B, H, W)) < 0.6
    for b in range(B):
        sem[b][thing[b] & (inst[b] > 0)] = id_class[b][inst[b][thing[b] & (inst[b] > 0)]]
    inst[~thing] = 0
    return torch.tensor(sem), torch.tensor(inst)


@hsettings(max_examples=40)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 3),
    K=st.integers(0, 40),
    limit=st.integers(1, 6),
)
def test_bounded_forms_equal_the_checked_ones(seed, B, K, limit):
    sem, inst = maps(seed, B, 9, 11, K)
    bound = K + int(np.random.default_rng(seed).integers(0, 5))  # any bound >= the ids
    limited, removed = limit_instances_per_class(sem, inst, limit)
    limited_b, removed_b = limit_instances_per_class(sem, inst, limit, max_instance_id=bound)
    assert torch.equal(limited_b, limited) and int(removed_b) == int(removed)
    pan = panoptic_from_semantic_instance(sem, limited)
    pan_b = panoptic_from_semantic_instance(sem, limited, max_instance_id=bound)
    assert torch.equal(pan_b, pan)
    # Panoptic ids by brute force: labelId * 1000 + rank of the id among its class's ids.
    want, _ = reference(
        sem.numpy(), limited.numpy(), labels=TRAIN_TO_LABEL, things=sorted(THING_TRAIN_IDS)
    )
    assert torch.equal(pan, torch.from_numpy(want))
    # Ids far beyond the pixels' count take the sorting path: the same ranks, so the same map.
    assert torch.equal(panoptic_from_semantic_instance(sem, limited * 10**12), pan)
    # Counts per (image, class) by brute force.
    counts = instances_per_class(sem, inst, 19, max_instance_id=bound)
    for b in range(B):
        for c in range(19):
            ids = torch.unique(inst[b][(sem[b] == c) & (inst[b] > 0)])
            assert counts[b, c] == ids.numel()
    # Removed: the surplus over the limit, per image and class.
    assert int(removed) == int((counts - limit).clamp(min=0).sum())


@pytest.mark.filterwarnings("ignore:the embedding looks untrained")
def test_merge_unchecked_reads_nothing_back_and_matches():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 19, 16, 24, generator=gen)
    emb = torch.randn(2, 12, 16, 24, generator=gen) * 3
    bw = bandwidth_table()
    checked = merge(logits, emb, bw, size=(64, 96), max_instances_per_class=5)
    with SyncPoints(where=True) as points:
        free = merge(logits, emb, bw, size=(64, 96), max_instances_per_class=5, check_inputs=False)
    assert points.total == 0, dict(points.places)
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(free[key], checked[key])
    assert free["instances_per_class"].shape == (2, 19)
    assert "instances_per_class" not in checked


def test_predictor_sync_free_path_waits_once_per_frame():
    # The path a GPU takes, run on the CPU: the same maps, and of the host synchronizations it
    # would make only the frame's upload and the one read at the end remain (18 before).
    from panonet.inference import Predictor
    from panonet.models import PanoNet

    torch.manual_seed(0)
    model = PanoNet()
    frame = np.random.default_rng(1).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    plain = Predictor(model, stage_timings=False, output_device=None)
    lean = Predictor(model, stage_timings=False, output_device=None, sync_free=True)
    expected = plain.predict(frame)
    with SyncPoints(where=True) as points:
        got = lean.predict(frame)
    assert points.counts == {"tensor from host data": 1, "scalar read": 1}, dict(points.places)
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(got[key], expected[key])


@requires_cuda
def test_cuda_predictor_waits_once_per_frame():
    # Issue 13: at most one host synchronization per frame (the read of the frame's status),
    # seen by torch's own sync debugging on a GPU.

    from panonet.inference import Predictor
    from panonet.models import PanoNet

    torch.manual_seed(0)
    lean = Predictor(PanoNet(), device="cuda", stage_timings=False, output_device=None)
    frame = np.random.default_rng(2).integers(0, 256, (256, 512, 3), dtype=np.uint8)
    lean.predict(frame)  # warm-up: cuDNN autotuning, tables uploaded once
    syncs = cuda_syncs(lambda: lean.predict(frame))
    assert len(syncs) <= 1, syncs


@requires_cuda
@pytest.mark.filterwarnings("ignore:the embedding looks untrained")
def test_cuda_graph_of_the_post_processing():
    # merge(check_inputs=False) captured once and replayed on another frame: eager's maps.
    gen = torch.Generator().manual_seed(5)
    frames = [
        (torch.randn(1, 19, 32, 64, generator=gen), torch.randn(1, 12, 32, 64, generator=gen))
    ]
    frames.append(
        (torch.randn(1, 19, 32, 64, generator=gen), torch.randn(1, 12, 32, 64, generator=gen))
    )
    bw = bandwidth_table().cuda()
    logits, emb = frames[0][0].cuda().clone(), frames[0][1].cuda().clone()
    kwargs = dict(size=(128, 256), check_inputs=False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        merge(logits, emb, bw, **kwargs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = merge(logits, emb, bw, **kwargs)
    for lg, em in reversed(frames):
        logits.copy_(lg)
        emb.copy_(em)
        graph.replay()
        eager = merge(lg, em, bandwidth_table(), size=(128, 256))
        for key in ("semantic", "instance", "panoptic"):
            torch.testing.assert_close(out[key].cpu(), eager[key])


def test_over_limit_warning_from_counts_on_the_host_reads_nothing_back(monkeypatch):
    # The sync-free Predictor hands over the counts it has already read with its status: saying
    # that a class overflowed must not cost a second wait for the device.
    ids_module = importlib.import_module("panonet.inference.panoptic_ids")
    monkeypatch.setattr(ids_module, "_REPORTED_CLASSES", set())
    counts = np.zeros((2, 19), dtype=np.int64)
    counts[0, 11], counts[1, 11], counts[1, 13] = 1200, 1500, 40  # person, car
    with SyncPoints() as points:
        with pytest.warns(UserWarning, match=r"person 1500, more than the 1000 .*\(700 in this"):
            warn_instances_over_limit(counts, 1000)
    assert points.total == 0
