"""panonet.inference.merge: semantic, instance and panoptic post-processing."""

import importlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from panonet.data.labels import THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.inference import bandwidth_table, merge
from panonet.inference.guided_upsample import GuidedUpsampling, guided_semantic
from panonet.inference.merge import (
    THING_VOTE_GROUPS,
    instances_from_embedding,
    panoptic_from_semantic_instance,
    resize_labels,
    semantic_from_logits,
    vote_instance_classes,
)

ROAD, SKY, PERSON, CAR, TRUCK = 0, 10, 11, 13, 14  # trainIds
BW = bandwidth_table()


def two_cars(B=1):
    """A 4x6 low-res frame: road column, two car blobs far apart in embedding space, one
    ignore pixel. Returns (embedding (B,2,4,6), semantic (B,4,6))."""
    sem = torch.full((4, 6), CAR)
    sem[:, 0] = ROAD
    sem[0, 5] = 255
    emb = torch.zeros(2, 4, 6)
    emb[0, :, 3:] = 5.0  # right car far from the left one (bandwidth 0.5)
    emb[1, 2:, 1:3] = 0.1  # small spread inside the left car, well within the bandwidth
    return emb.expand(B, -1, -1, -1).clone(), sem.expand(B, -1, -1).clone()


# --- semantic_from_logits and resize_labels -----------------------------------------------------


def test_semantic_from_logits_argmax_and_upsampling():
    logits = torch.randn(2, 5, 3, 4)
    out = semantic_from_logits(logits)
    assert out.dtype == torch.int64 and torch.equal(out, logits.argmax(1))
    up = semantic_from_logits(logits, (12, 16))
    ref = F.interpolate(logits, size=(12, 16), mode="bilinear", align_corners=False).argmax(1)
    assert up.shape == (2, 12, 16) and torch.equal(up, ref)
    assert torch.equal(semantic_from_logits(logits[1], (12, 16)), ref[1])  # unbatched


def test_semantic_from_logits_errors():
    with pytest.raises(TypeError, match="floating dtype, got torch.int64"):
        semantic_from_logits(torch.zeros(1, 2, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(B, C, h, w\) or \(C, h, w\), got \(3, 3\)"):
        semantic_from_logits(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="positive size"):
        semantic_from_logits(torch.zeros(2, 3, 3), (0, 4))


@pytest.mark.parametrize("h, w, H, W", [(2, 3, 8, 12), (5, 7, 13, 9), (3, 3, 7, 7), (4, 4, 3, 5)])
def test_resize_labels_is_nearest_exact(h, w, H, W):
    labels = torch.randint(0, 1000, (2, h, w))
    out = resize_labels(labels, (H, W))
    ref = F.interpolate(labels[:, None].double(), size=(H, W), mode="nearest-exact")[:, 0]
    assert out.dtype == torch.int64 and torch.equal(out, ref.long())
    assert set(out.unique().tolist()) <= set(labels.unique().tolist())


def test_resize_labels_x4_blocks_and_identity():
    labels = torch.arange(6).view(2, 3)
    assert torch.equal(
        resize_labels(labels, (8, 12)), labels.repeat_interleave(4, 0).repeat_interleave(4, 1)
    )
    assert torch.equal(resize_labels(labels, (2, 3)), labels)


# --- instances_from_embedding ------------------------------------------------------------------


def test_instances_hand_made(device):
    emb, sem = two_cars(B=2)
    sem[1, :, 3:] = ROAD  # image 1: only the left car
    inst = instances_from_embedding(emb.to(device), sem.to(device), BW).cpu()
    assert inst.dtype == torch.int64 and inst.shape == sem.shape
    for b in range(2):
        thing = sem[b] == CAR
        assert (inst[b][~thing] == 0).all()  # stuff and ignore: exactly 0
        assert (inst[b][thing] > 0).all()  # every car pixel clustered
    left, right = inst[0, :, 1:3].unique(), inst[0, 1:, 3:].unique()
    assert len(left) == len(right) == 1 and left.item() != right.item()
    assert sorted(inst[0].unique().tolist()) == [0, 1, 2]
    assert sorted(inst[1].unique().tolist()) == [0, 1]  # numbering restarts per image


def test_instances_upsampling_is_nearest():
    emb, sem = two_cars()
    low = instances_from_embedding(emb, sem, BW)
    up = instances_from_embedding(emb, sem, BW, size=(13, 22))
    assert up.shape == (1, 13, 22)
    assert torch.equal(up, resize_labels(low, (13, 22)))
    assert set(up.unique().tolist()) == set(low.unique().tolist())  # no interpolated ids
    up4 = instances_from_embedding(emb[0], sem[0], BW, size=(16, 24))  # unbatched, x4
    assert torch.equal(up4, low[0].repeat_interleave(4, 0).repeat_interleave(4, 1))


def test_min_instance_size_counts_output_pixels():
    emb, sem = two_cars()
    sem[:, :, 1:3] = ROAD
    sem[:, 0, 1] = CAR  # left car: 1 low-res pixel = 4 pixels at 2x; right car: 11 -> 44
    inst = instances_from_embedding(emb, sem, BW, size=(8, 12))
    counts = sorted(inst[inst > 0].bincount().tolist()[1:])
    assert counts == [4, 44]
    kept = instances_from_embedding(emb, sem, BW, size=(8, 12), min_instance_size=4)
    assert torch.equal(kept, inst)  # exactly min_instance_size pixels: kept
    pruned = instances_from_embedding(emb, sem, BW, size=(8, 12), min_instance_size=5)
    assert sorted(pruned.unique().tolist()) == [0, 1]  # renumbered to 1..K
    assert (pruned > 0).sum() == 44 and (pruned[0, :2, 2:4] == 0).all()


def test_semantic_fullres_masks_instances_to_their_class():
    emb, sem = two_cars()
    full = resize_labels(sem, (8, 12))
    full[0, 4:, 2:4] = PERSON  # inside the left car: another class at full resolution
    full[0, 0:2, 0:2] = CAR  # a car pixel at full res where the low-res map says road
    inst = instances_from_embedding(emb, sem, BW, semantic_fullres=full, reach=0)
    plain = instances_from_embedding(emb, sem, BW, size=(8, 12))
    assert inst.shape == (1, 8, 12)
    assert (inst[0, 4:, 2:4] == 0).all() and (plain[0, 4:, 2:4] > 0).all()
    assert (inst[0, 0:2, 0:2] == 0).all()
    same = full == resize_labels(sem, (8, 12))
    assert torch.equal(inst[same], plain[same])
    # With the default reach the car pixels over the road take the nearest car instance (the
    # left car's, one low-resolution column over); no person instance is near the person pixels.
    reached = instances_from_embedding(emb, sem, BW, semantic_fullres=full)
    assert (reached[0, 0:2, 0:2] == plain[0, 0, 2]).all() and plain[0, 0, 2] > 0
    assert (reached[0, 4:, 2:4] == 0).all()
    assert torch.equal(reached[same], plain[same])


def test_instances_errors():
    emb, sem = two_cars()
    with pytest.raises(TypeError, match="semantic_lowres with an integer dtype"):
        instances_from_embedding(emb, sem.float(), BW)
    with pytest.raises(ValueError, match=r"expected semantic_lowres of shape \(1, 4, 6\)"):
        instances_from_embedding(emb, sem[:, :3], BW)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        instances_from_embedding(emb, sem[0], BW)
    with pytest.raises(ValueError, match="bandwidth as a"):
        instances_from_embedding(emb, sem, BW[None])
    with pytest.raises(ValueError, match="does not match semantic_fullres"):
        instances_from_embedding(emb, sem, BW, size=(4, 4), semantic_fullres=sem)
    with pytest.raises(ValueError, match="batch size 1"):
        instances_from_embedding(emb, sem, BW, semantic_fullres=sem.expand(2, -1, -1))
    with pytest.raises(ValueError, match="min_instance_size as an integer >= 0"):
        instances_from_embedding(emb, sem, BW, min_instance_size=-1)


# --- panoptic_from_semantic_instance -----------------------------------------------------------


def test_panoptic_by_hand(device):
    sem = torch.tensor(
        [
            [ROAD, ROAD, CAR, CAR, 255],
            [SKY, CAR, CAR, PERSON, PERSON],
            [SKY, CAR, 255, PERSON, CAR],
        ]
    )
    inst = torch.tensor(
        [
            [3, 0, 7, 7, 9],  # road pixel with an instance id: still stuff
            [0, 2, 7, 7, 0],
            [0, 2, 0, 0, 0],
        ]
    )
    # car instances 2 and 7 -> 26000, 26001 (increasing instance id); person instance 7 ->
    # 24000; person/car pixels with instance 0 -> void 0; ignore -> 0; road 7, sky 23.
    want = torch.tensor(
        [
            [7, 7, 26001, 26001, 0],
            [23, 26000, 26001, 24000, 0],
            [23, 26000, 0, 0, 0],
        ]
    )
    pan = panoptic_from_semantic_instance(sem.to(device), inst.to(device))
    assert pan.dtype == torch.int64 and pan.device.type == device
    assert torch.equal(pan.cpu(), want)
    # Batched: j restarts per image.
    batch = panoptic_from_semantic_instance(torch.stack([sem, sem]), torch.stack([inst, inst * 2]))
    assert torch.equal(batch[0], want) and torch.equal(batch[1], want)


def test_panoptic_custom_table_and_errors():
    sem = torch.tensor([[0, 1, 1, 2]])
    inst = torch.tensor([[5, 4, 6, 1]])
    pan = panoptic_from_semantic_instance(sem, inst, train_to_label=[3, 4, 9], thing_train_ids=[1])
    assert pan.tolist() == [[3, 4000, 4001, 9]]
    with pytest.raises(ValueError, match=r"instance of the semantic map's shape \(1, 4\)"):
        panoptic_from_semantic_instance(sem, inst[:, :3])
    with pytest.raises(TypeError, match="semantic with an integer dtype"):
        panoptic_from_semantic_instance(sem.float(), inst)
    with pytest.raises(ValueError, match="instance ids must be >= 0"):
        panoptic_from_semantic_instance(sem, -inst)
    with pytest.raises(ValueError, match=r"thing_train_ids must lie in \[0, 3\)"):
        panoptic_from_semantic_instance(sem, inst, train_to_label=[3, 4, 9], thing_train_ids=[3])
    many = torch.full((1, 1001), CAR)
    with pytest.raises(ValueError, match="more than 1000 instances"):
        panoptic_from_semantic_instance(many, torch.arange(1, 1002)[None])


LABEL_IDS = TRAIN_TO_LABEL.tolist()
THINGS = set(THING_TRAIN_IDS)


@hsettings(max_examples=150)
@given(
    sem=hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=3, max_dims=3, max_side=6),
        elements=st.sampled_from([0, 3, 10, 11, 13, 13, 18, 255, -1, 19]),
    ),  # fmt: skip
    data=st.data(),
)
def test_panoptic_property(sem, data):
    inst = data.draw(hnp.arrays(np.int64, sem.shape, elements=st.integers(0, 4)))
    pan = panoptic_from_semantic_instance(torch.from_numpy(sem), torch.from_numpy(inst)).numpy()
    for b in range(sem.shape[0]):
        segments: dict[tuple[int, int], int] = {}
        for s, k, p in zip(sem[b].ravel(), inst[b].ravel(), pan[b].ravel(), strict=True):
            if not 0 <= s < 19 or (s in THINGS and k == 0):
                assert p == 0  # void: ignore, unknown ids, unclustered thing pixels
            elif s not in THINGS:
                assert p == LABEL_IDS[s]  # stuff decodes directly to its labelId
            else:
                assert p // 1000 == LABEL_IDS[s]  # thing: labelId * 1000 + j
                assert segments.setdefault((int(s), int(k)), int(p)) == p  # one id per pair
        assert len(set(segments.values())) == len(segments)  # distinct pairs, distinct ids
        for c in THINGS:  # j = rank of the instance id within its class
            ks = sorted(k for (s, k) in segments if s == c)
            assert [segments[(c, k)] % 1000 for k in ks] == list(range(len(ks)))


# --- merge end to end ---------------------------------------------------------------------------


def test_merge_two_blobs_same_class(device):
    h, w = 8, 8
    logits = torch.zeros(1, 19, h, w)
    logits[0, ROAD] = 5.0
    blob_a = (slice(1, 3), slice(1, 3))
    blob_b = (slice(4, 7), slice(4, 7))
    emb = torch.randn(1, 12, h, w, generator=torch.Generator().manual_seed(0)) * 0.02
    for blob, center in ((blob_a, 0.0), (blob_b, 3.0)):
        logits[0, CAR][blob] = 10.0
        emb[0, 0][blob] += center
    out = merge(logits.to(device), emb.to(device), BW.to(device), size=(32, 32))
    assert set(out) == {"semantic", "instance", "panoptic"}
    for v in out.values():
        assert v.dtype == torch.int64 and v.shape == (1, 32, 32) and v.device.type == device
    sem, inst, pan = (out[k].cpu() for k in ("semantic", "instance", "panoptic"))
    assert torch.equal(sem, semantic_from_logits(logits, (32, 32)))
    assert sorted(inst.unique().tolist()) == [0, 1, 2]
    assert sorted(pan.unique().tolist()) == [7, 26000, 26001]
    # Each blob is one segment (checked in its interior, away from the bilinear boundary).
    a, b = pan[0, 6:10, 6:10].unique(), pan[0, 18:26, 18:26].unique()
    assert len(a) == len(b) == 1 and {a.item(), b.item()} == {26000, 26001}
    assert ((pan == 7) == (sem == ROAD)).all()
    assert ((inst > 0) == (sem == CAR)).all()
    # Unbatched inputs give unbatched outputs.
    single = merge(logits[0], emb[0], BW, size=(32, 32))
    assert torch.equal(single["panoptic"], pan[0])


def test_merge_errors():
    logits, emb = torch.zeros(1, 19, 4, 4), torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="expected 19 bandwidths .* got 18"):
        merge(logits, emb, BW[:18], size=(8, 8))
    with pytest.raises(ValueError, match="batch and spatial dims matching"):
        merge(logits, torch.zeros(1, 3, 4, 5), BW, size=(8, 8))
    with pytest.raises(ValueError, match="with 4 dims"):
        merge(logits, emb[0], BW, size=(8, 8))
    with pytest.raises(TypeError, match="embedding_lowres with a floating dtype"):
        merge(logits, emb.long(), BW, size=(8, 8))
    with pytest.raises(ValueError, match=r"expected size as \(H, W\)"):
        merge(logits, emb, BW, size=8)


def test_merge_with_a_given_semantic_map_clusters_on_it():
    # Ground-truth semantics (the evaluation's AP_GT path): the given map is the output semantic
    # map, and its nearest-exact resize to the embedding's grid is what is clustered.
    emb, sem_low = two_cars()
    sem_full = resize_labels(sem_low, (8, 12))
    out = merge(None, emb, BW, size=(8, 12), semantic=sem_full)
    assert torch.equal(out["semantic"], sem_full)
    expected = instances_from_embedding(emb, sem_low, BW, semantic_fullres=sem_full)
    assert torch.equal(out["instance"], expected)
    assert torch.equal(out["panoptic"], panoptic_from_semantic_instance(sem_full, expected))
    # The logits, when also given, do not change anything.
    logits = torch.randn(1, 19, 4, 6)
    again = merge(logits, emb, BW, size=(8, 12), semantic=sem_full)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_merge_gives_thin_parts_of_a_given_map_their_instance():
    # A car part at full resolution over a road pixel of the embedding's grid (thinner than the
    # grid): by default it takes the nearest car instance; with instance_reach=0 it has none.
    emb, sem_low = two_cars()
    sem_full = resize_labels(sem_low, (8, 12))
    # Row 2, column 1: source pixel (1, 0), road (which is read from row 3, column 1).
    sem_full[0, 2, 1] = CAR
    out = merge(None, emb, BW, size=(8, 12), semantic=sem_full)
    left_car = out["instance"][0, 2, 2]  # column 2: source (1, 1), the left car
    assert left_car > 0 and out["instance"][0, 2, 1] == left_car
    assert out["panoptic"][0, 2, 1] == out["panoptic"][0, 2, 2]
    plain = merge(None, emb, BW, size=(8, 12), semantic=sem_full, instance_reach=0)
    assert plain["instance"][0, 2, 1] == 0
    differs = out["instance"] != plain["instance"]
    assert differs.sum() == 1 and differs[0, 2, 1]
    with pytest.raises(ValueError, match=r"reach as an integer >= 0, got -1"):
        merge(None, emb, BW, size=(8, 12), semantic=sem_full, instance_reach=-1)


def test_merge_at_the_embedding_resolution_is_the_op():
    # The bandwidth search's use: semantic map and output at the embedding's own resolution;
    # the instance map is then the op's own, renumbered by nothing.
    emb = torch.randn(2, 12, 24, 40, generator=torch.Generator().manual_seed(1))
    sem = torch.randint(0, 19, (2, 24, 40), generator=torch.Generator().manual_seed(2))
    table = torch.zeros(19)
    table[list(THING_TRAIN_IDS)] = 4.0
    out = merge(None, emb, table, size=(24, 40), semantic=sem)
    from panonet.ops import cluster_instances

    assert torch.equal(out["instance"], cluster_instances(emb, sem, table))


def test_merge_limits_instances_per_class_and_says_so_once(monkeypatch):
    # Every pixel of a person its own cluster (a spread embedding, as an untrained network's):
    # more instances than the limit; the largest are kept, and a warning names the class and
    # its cluster count, once.
    ids_module = importlib.import_module("panonet.inference.panoptic_ids")
    monkeypatch.setattr(ids_module, "_REPORTED_CLASSES", set())
    emb = torch.randn(1, 3, 6, 8, generator=torch.Generator().manual_seed(3)) * 100
    sem = torch.full((1, 6, 8), PERSON)
    with pytest.warns(UserWarning, match=r"looks untrained .* person 48, more than the 10 "):
        out = merge(None, emb, BW, size=(6, 8), semantic=sem, max_instances_per_class=10)
    assert (out["instance"] > 0).sum() == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the second frame is quiet
        again = merge(None, emb, BW, size=(6, 8), semantic=sem, max_instances_per_class=10)
    assert torch.equal(again["instance"], out["instance"])


def test_merge_needs_logits_or_semantic():
    with pytest.raises(ValueError, match="expected semantic_logits_lowres or semantic"):
        merge(None, torch.zeros(1, 3, 4, 4), BW, size=(8, 8))
    with pytest.raises(ValueError, match=r"expected semantic of shape \(1, 8, 8\)"):
        merge(None, torch.zeros(1, 3, 4, 4), BW, size=(8, 8), semantic=torch.zeros(1, 4, 4).long())


# --- class vote (one clustering for all thing classes, majority class per instance) ----------


def test_vote_instance_classes_by_hand():
    sem = torch.tensor([[CAR, CAR, PERSON, ROAD], [CAR, PERSON, PERSON, 255]])
    inst = torch.tensor([[1, 1, 1, 0], [1, 2, 2, 2]])
    is_thing = torch.zeros(19, dtype=torch.bool)
    is_thing[list(THING_TRAIN_IDS)] = True
    out = vote_instance_classes(sem, inst, is_thing)
    # Instance 1: 3 car vs 1 person pixels -> car everywhere; instance 2: 2 person pixels and one
    # ignore pixel -> person, the ignore pixel too (it is part of the instance); 0 unchanged.
    expected = torch.tensor([[CAR, CAR, CAR, ROAD], [CAR, PERSON, PERSON, PERSON]])
    assert torch.equal(out, expected) and out.dtype == torch.int64
    # Batched, and a tie (1 car, 1 person) goes to the lower trainId (person = 11 < car = 13).
    tie = vote_instance_classes(torch.tensor([[[CAR, PERSON]]]), torch.tensor([[[3, 3]]]), is_thing)
    assert torch.equal(tie, torch.tensor([[[PERSON, PERSON]]]))
    # An instance with no thing pixel at all keeps its pixels' classes.
    none = vote_instance_classes(torch.tensor([[ROAD, SKY]]), torch.tensor([[1, 1]]), is_thing)
    assert torch.equal(none, torch.tensor([[ROAD, SKY]]))
    with pytest.raises(ValueError, match="of one shape"):
        vote_instance_classes(sem, inst[:1], is_thing)


def test_merge_vote_groups_keep_a_mislabelled_object_whole():
    # One object (one embedding blob) whose pixels the semantic map splits 9 car / 7 truck:
    # clustered per class it is two fragments of two classes; voting within the vehicle group
    # it is one car.
    h, w = 8, 8
    logits = torch.zeros(1, 19, h, w)
    logits[0, ROAD] = 5.0
    emb = torch.zeros(1, 12, h, w)
    logits[0, CAR, 2:6, 2:6] = 10.0
    logits[0, TRUCK, 4:6, 3:6] = 20.0
    logits[0, TRUCK, 5, 2] = 20.0  # 7 of the object's 16 pixels look like a truck
    emb[0, 0, 2:6, 2:6] = 3.0
    plain = merge(logits, emb, BW, size=(h, w))
    voted = merge(logits, emb, BW, size=(h, w), vote_groups=THING_VOTE_GROUPS)
    assert sorted(plain["instance"].unique().tolist()) == [0, 1, 2]
    assert sorted(voted["instance"].unique().tolist()) == [0, 1]
    obj = voted["instance"][0] == 1
    assert obj.sum() == 16 and (voted["semantic"][0][obj] == CAR).all()
    assert voted["panoptic"][0][obj].unique().tolist() == [26000]
    # Stuff is untouched by the vote.
    road = plain["semantic"] == ROAD
    assert torch.equal(voted["semantic"][road], plain["semantic"][road])
    # Two separate blobs of one class stay two instances with the vote.
    emb2 = emb.clone()
    emb2[0, 1, 2:4, 2:6] = 5.0
    two = merge(logits, emb2, BW, size=(h, w), vote_groups=THING_VOTE_GROUPS)
    assert sorted(two["instance"].unique().tolist()) == [0, 1, 2]
    # Classes of different groups are never merged: as a person, the 7 pixels stay apart.
    logits[0, PERSON] = logits[0, TRUCK]
    logits[0, TRUCK] = 0.0
    apart = merge(logits, emb, BW, size=(h, w), vote_groups=THING_VOTE_GROUPS)
    per_class = merge(logits, emb, BW, size=(h, w))
    assert all(torch.equal(apart[k], per_class[k]) for k in per_class)
    assert sorted(apart["instance"].unique().tolist()) == [0, 1, 2]


def test_merge_vote_group_uses_the_median_bandwidth_of_its_classes():
    # Pixels 0.6 apart: one cluster at bandwidth 1.0, two at 0.3; a group is clustered with the
    # median of its classes' bandwidths.
    logits = torch.zeros(1, 19, 1, 4)
    logits[0, CAR] = 10.0
    emb = torch.tensor([0.0, 0.0, 0.6, 0.6]).view(1, 1, 1, 4)
    groups = [THING_TRAIN_IDS]
    narrow = bandwidth_table(dict.fromkeys(THING_TRAIN_IDS, 0.3))
    wide = bandwidth_table({**dict.fromkeys(THING_TRAIN_IDS, 1.0), CAR: 0.3})
    assert int(merge(logits, emb, narrow, size=(1, 4), vote_groups=groups)["instance"].max()) == 2
    assert int(merge(logits, emb, wide, size=(1, 4), vote_groups=groups)["instance"].max()) == 1
    with pytest.raises(ValueError, match="disjoint"):
        merge(logits, emb, wide, size=(1, 4), vote_groups=[(CAR, TRUCK), (TRUCK,)])


def test_merge_with_guided_upsampling():

    h, w = 8, 8
    logits = torch.zeros(1, 19, h, w)
    logits[0, ROAD] = 5.0
    logits[0, CAR, 2:6, 2:6] = 10.0
    emb = torch.zeros(1, 12, h, w)
    img = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    )
    settings = GuidedUpsampling(1.0, 0.2, 4, cluster=False)
    out = merge(logits, emb, BW, size=(32, 32), guided_upsampling=settings, image=img)
    want = guided_semantic(logits, img, settings)
    assert torch.equal(out["semantic"], want)
    # Without cluster, clustering runs on the low-resolution argmax: one car, masked to the
    # car pixels.
    assert sorted(out["instance"].unique().tolist()) == [0, 1]
    assert ((out["instance"] > 0) == (want == CAR)).all()
    single = merge(logits[0], emb[0], BW, size=(32, 32), guided_upsampling=settings, image=img[0])
    assert torch.equal(single["panoptic"], out["panoptic"][0])
    with pytest.raises(ValueError, match="expected the image .* got NoneType"):
        merge(logits, emb, BW, size=(32, 32), guided_upsampling=settings)
    with pytest.raises(ValueError, match=r"expected an image of shape \(1, 32, 32, 3\) .* got"):
        merge(logits, emb, BW, size=(32, 32), guided_upsampling=settings, image=img[:, :16])


def test_merge_guided_cluster_clusters_the_guided_map_like_a_given_map():
    # cluster=True: the guided map is the output map and, resized nearest-exact to the
    # embedding's grid, the map clustered: exactly merge with that map given as ``semantic``.
    rng = np.random.default_rng(1)
    h, w = 8, 12
    logits = torch.from_numpy(rng.normal(size=(2, 19, h, w)).astype(np.float32))
    logits[:, CAR] += 1.5
    emb = torch.from_numpy(rng.normal(scale=0.3, size=(2, 12, h, w)).astype(np.float32))
    emb[:, 0, :, w // 2 :] += 3.0  # two instances per class: left and right
    img = torch.from_numpy(rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8))
    settings = GuidedUpsampling(1.0, 0.2, 4, cluster=True)
    out = merge(logits, emb, BW, size=(32, 48), guided_upsampling=settings, image=img)
    guided = guided_semantic(logits, img, settings)
    want = merge(logits, emb, BW, size=(32, 48), semantic=guided)
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(out[key], want[key]), key
    # ... and not what clustering the low-resolution argmax gives on these logits.
    plain = GuidedUpsampling(1.0, 0.2, 4, cluster=False)
    other = merge(logits, emb, BW, size=(32, 48), guided_upsampling=plain, image=img)
    assert torch.equal(other["semantic"], out["semantic"])
    assert not torch.equal(other["instance"], out["instance"])
