"""panonet.ops.cluster_instances: class-wise mean-shift of a pixel embedding into instance ids."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import cluster_instances, mean_shift
from tests.conftest import DEVICES, requires_cuda

OP = torch.ops.panonet.cluster_instances.default
THINGS = list(range(11, 19))  # Cityscapes trainIds of the "thing" classes


def make_frame(seed, B=2, D=6, H=24, W=32, ignore_frac=0.05, spread=0.05, instances=4):
    """Stuff blocks (classes 0-10), thing rectangles (11-18) whose pixels scatter around one
    embedding center per instance, some 255 (ignore) and negative pixels."""
    rng = np.random.default_rng(seed)
    sem = np.repeat(np.repeat(rng.integers(0, 11, (B, H // 8 + 1, W // 8 + 1)), 8, 1), 8, 2)
    sem = sem[:, :H, :W].copy()
    inst = np.zeros((B, H, W), dtype=np.int64)
    k = 0
    for b in range(B):
        for _ in range(instances):
            h, w = rng.integers(2, H // 2 + 2), rng.integers(2, W // 2 + 2)
            y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
            k += 1
            sem[b, y : y + h, x : x + w] = rng.choice(THINGS)
            inst[b, y : y + h, x : x + w] = k
    sem[rng.random((B, H, W)) < ignore_frac] = 255
    sem[rng.random((B, H, W)) < ignore_frac / 2] = -1
    centers = rng.uniform(-2, 2, size=(k + 1, D))
    emb = centers[inst].transpose(0, 3, 1, 2) + rng.normal(scale=spread, size=(B, D, H, W))
    return torch.tensor(emb, dtype=torch.float32), torch.tensor(sem)


def bandwidths(value=0.5, num_classes=19):
    bw = torch.full((num_classes,), -1.0)
    bw[THINGS] = value
    return bw


def by_hand(embedding, semantic, bandwidth, min_bin_freq=1, max_iter=300):
    """The specification, written as a loop: mean_shift per image and clustered class."""
    emb, sem = embedding.double(), semantic.long()
    out = torch.zeros(sem.shape, dtype=torch.int64)
    for b in range(sem.shape[0]):
        next_id = 1
        for c in range(len(bandwidth)):
            mask = sem[b] == c
            if bandwidth[c] <= 0 or not mask.any():
                continue
            points = emb[b][:, mask].T
            labels, centers = mean_shift(
                points, float(bandwidth[c]), min_bin_freq=min_bin_freq, max_iter=max_iter
            )
            out[b][mask] = torch.where(labels >= 0, next_id + labels, 0)
            next_id += len(centers)
    return out


@pytest.mark.parametrize("device", DEVICES)
@hsettings(max_examples=40)
@given(
    seed=st.integers(0, 2**31 - 1),
    D=st.integers(1, 12),
    spread=st.floats(0.01, 0.8),
    bw=st.floats(0.1, 2.0),
    min_bin_freq=st.integers(1, 3),
)
def test_matches_mean_shift_per_class(device, seed, D, spread, bw, min_bin_freq):
    embedding, semantic = make_frame(seed, D=D, spread=spread)
    table = bandwidths(bw)
    table[12] = bw * 1.7  # per-class bandwidths
    out = cluster_instances(
        embedding.to(device), semantic.to(device), table, min_bin_freq=min_bin_freq
    )
    assert out.dtype == torch.int64 and out.shape == semantic.shape
    torch.testing.assert_close(out.cpu(), by_hand(embedding, semantic, table, min_bin_freq))


@pytest.mark.parametrize("device", DEVICES)
def test_ids_unique_per_image_and_zero_off_things(device):
    embedding, semantic = make_frame(1, B=3, D=8)
    out = cluster_instances(embedding.to(device), semantic.to(device), bandwidths()).cpu()
    clustered = torch.isin(semantic, torch.tensor(THINGS))
    assert torch.all((out == 0) == ~clustered)  # 0 exactly on stuff, ignore and negative ids
    for b in range(3):
        ids = out[b][out[b] > 0]
        assert ids.min() == 1
        assert torch.equal(torch.unique(ids), torch.arange(1, int(ids.max()) + 1))
        # an id never spans two classes
        for i in torch.unique(ids):
            assert len(torch.unique(semantic[b][out[b] == i])) == 1


@pytest.mark.parametrize("device", DEVICES)
def test_separates_instances_of_one_class(device):
    # Two cars with distinct embeddings: two ids; the paper's position-free failure case (the
    # same embedding for both) gives one.
    sem = torch.zeros(20, 20, dtype=torch.int64)
    sem[2:8, 2:8] = 13
    sem[12:18, 12:18] = 13
    emb = torch.zeros(3, 20, 20)
    emb[:, 12:18, 12:18] = 2.0
    out = cluster_instances(emb.to(device), sem.to(device), bandwidths()).cpu()
    assert out[4, 4] != out[14, 14] and out[4, 4] > 0 and out[14, 14] > 0
    twins = cluster_instances(torch.zeros(3, 20, 20, device=device), sem.to(device), bandwidths())
    assert twins.cpu()[4, 4] == twins.cpu()[14, 14] == 1


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_equals_batched(device):
    embedding, semantic = make_frame(2, B=2)
    batched = cluster_instances(embedding.to(device), semantic.to(device), bandwidths()).cpu()
    for b in range(2):
        single = cluster_instances(embedding[b].to(device), semantic[b].to(device), bandwidths())
        assert single.shape == semantic[b].shape
        torch.testing.assert_close(single.cpu(), batched[b])


@pytest.mark.parametrize("device", DEVICES)
def test_bandwidth_as_mapping_or_sequence(device):
    embedding, semantic = make_frame(3)
    expected = cluster_instances(embedding, semantic, bandwidths(0.6))
    as_dict = {c: 0.6 for c in THINGS}
    as_list = bandwidths(0.6).tolist()
    for table in (as_dict, as_list):
        got = cluster_instances(embedding.to(device), semantic.to(device), table).cpu()
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_absent_class_all_ignore_and_empty(device):
    embedding, semantic = make_frame(4)
    only_stuff = semantic.clamp(max=10)
    out = cluster_instances(embedding.to(device), only_stuff.to(device), bandwidths())
    assert torch.count_nonzero(out) == 0
    ignore = torch.full_like(semantic, 255)
    assert torch.count_nonzero(cluster_instances(embedding, ignore, bandwidths())) == 0
    empty = cluster_instances(
        torch.zeros(0, 4, 5, 6, device=device),
        torch.zeros(0, 5, 6, dtype=torch.int64, device=device),
        bandwidths(),
    )
    assert empty.shape == (0, 5, 6)


@pytest.mark.parametrize("sem_dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_semantic_integer_dtypes(sem_dtype):
    embedding, semantic = make_frame(5)
    semantic = semantic.clamp(min=0)  # uint8 cannot hold -1
    expected = cluster_instances(embedding, semantic, bandwidths())
    got = cluster_instances(embedding, semantic.to(sem_dtype), bandwidths())
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    embedding, semantic = make_frame(6)
    torch.library.opcheck(OP, (embedding.to(device), semantic.to(device), bandwidths(), 1, 300))


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (
            lambda e, s, b: (e[0, 0], s, b),
            ValueError,
            r"expected embedding of shape \(B, D, H, W\) or \(D, H, W\), got a 2-D",
        ),
        (lambda e, s, b: (e, s[0], b), ValueError, r"expected semantic of shape \(B, H, W\)"),
        (lambda e, s, b: (e, s[:, :5], b), ValueError, r"to match embedding of shape"),
        (lambda e, s, b: (e, s.float(), b), TypeError, r"integer dtype \(class ids\), got Float"),
        (lambda e, s, b: (e.long(), s, b), TypeError, r"float32 or float64, got Long"),
        (lambda e, s, b: (e, s, b[:8]), ValueError, r"bandwidth has 8 entries .* contains class"),
        (lambda e, s, b: (e, s, b.reshape(1, -1)), ValueError, r"shape \(num_classes,\)"),
        (lambda e, s, b: (e, s, b.long()), TypeError, r"bandwidth of a floating dtype"),
        (
            lambda e, s, b: (e, s, torch.where(b > 0, float("nan"), b)),
            ValueError,
            r"expected a finite bandwidth, got NaN or Inf",
        ),
        (lambda e, s, b: (e, s.to("meta"), b), ValueError, r"same device, got cpu and meta"),
    ],
)
def test_bad_input(make, error, pattern):
    embedding, semantic, table = make(*make_frame(7), bandwidths())
    with pytest.raises(error, match=pattern):
        cluster_instances(embedding, semantic, table)


def test_non_finite_embedding():
    embedding, semantic = make_frame(8)
    embedding[0, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"expected a finite embedding, got NaN or Inf"):
        cluster_instances(embedding, semantic, bandwidths())


@requires_cuda
def test_cuda_matches_cpu_frame():
    embedding, semantic = make_frame(9, B=2, D=12, H=128, W=256, instances=12, spread=0.1)
    cpu = cluster_instances(embedding, semantic, bandwidths())
    gpu = cluster_instances(embedding.cuda(), semantic.cuda(), bandwidths().cuda()).cpu()
    torch.testing.assert_close(gpu, cpu)


@requires_cuda
def test_cuda_check_inputs_false_matches_checked():
    # Unchecked is the same computation; an id the table does not cover is simply not clustered.
    embedding, semantic = make_frame(10, B=2, D=12, H=64, W=96, instances=8, spread=0.1)
    table = bandwidths().cuda()
    checked = cluster_instances(embedding.cuda(), semantic.cuda(), table)
    unchecked = cluster_instances(embedding.cuda(), semantic.cuda(), table, check_inputs=False)
    torch.testing.assert_close(unchecked, checked)
    semantic[0, :4, :4] = 30  # beyond the 19-entry table
    short = cluster_instances(embedding.cuda(), semantic.cuda(), table, check_inputs=False).cpu()
    assert (short[0, :4, :4] == 0).all()


@requires_cuda
def test_cuda_never_waits_for_the_gpu():
    # Issue 12: no host synchronization in the clustering of a frame.
    embedding, semantic = make_frame(11, B=2, D=12, H=128, W=256, instances=12, spread=0.1)
    expected = cluster_instances(embedding, semantic, bandwidths())
    emb, sem, table = embedding.cuda(), semantic.cuda(), bandwidths().cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ids = cluster_instances(emb, sem, table, check_inputs=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(ids.cpu(), expected)


@requires_cuda
def test_cuda_graph_capture_and_replay_on_new_inputs():
    # Captured once, replayed on other frames of the same shape: the same ids as eager calls.
    frames = [make_frame(s, B=2, D=12, H=64, W=128, instances=10, spread=0.1) for s in (12, 13)]
    emb = frames[0][0].cuda().clone()
    sem = frames[0][1].cuda().clone()
    table = bandwidths().cuda()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch's docs advise
        cluster_instances(emb, sem, table, check_inputs=False)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ids = cluster_instances(emb, sem, table, check_inputs=False)
    for embedding, semantic in reversed(frames):
        emb.copy_(embedding)
        sem.copy_(semantic)
        graph.replay()
        eager = cluster_instances(embedding, semantic, bandwidths())
        torch.testing.assert_close(ids.cpu(), eager)
