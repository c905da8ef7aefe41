"""The twin tests (paper Fig. 5): the mirrored and shifted images and ground truth, the twin
pairs and their distances, and the classification of each pair on hand-made predictions."""

import math

import numpy as np
import pytest
import torch

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.data.synthetic import generate, scene_of
from panonet.evaluation.mirror import (
    TWIN_OFFSET,
    format_mirror,
    mirror_left_half,
    pair_distances,
    pair_outcomes,
    run_mirror_test,
    shift_left_half,
    twin_outcomes,
)
from panonet.inference import Predictor
from panonet.models import PanoNet
from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)


def scene(W: int):
    """An 8 x W scene: car 26001 away from the seam, car 26002 touching it, person 24001 on the
    right half (overwritten by the mirror), a group region 26 (no instance number)."""
    H = 8
    image = torch.arange(3 * H * W, dtype=torch.int64).reshape(3, H, W).remainder(251)
    image = image.to(torch.uint8)
    semantic = torch.full((H, W), 0, dtype=torch.int64)
    instance = torch.full((H, W), 7, dtype=torch.int64)
    half = W // 2
    semantic[1:3, 0:2] = 13
    instance[1:3, 0:2] = 26001
    semantic[4:6, half - 2 : half] = 13
    instance[4:6, half - 2 : half] = 26002
    semantic[6:8, 0:1] = 13
    instance[6:8, 0:1] = 26
    semantic[0:2, W - 2 :] = 11
    instance[0:2, W - 2 :] = 24001
    return image, semantic, instance


@pytest.mark.parametrize("W", [10, 11])
def test_mirror_left_half_copies_the_left_half_and_names_the_twins(W):
    image, semantic, instance = scene(W)
    img, sem, inst, pairs = mirror_left_half(image, semantic, instance)
    half = W // 2
    assert torch.equal(img[:, :, :half], image[:, :, :half])
    assert torch.equal(img[:, :, W - half :], image[:, :, :half].flip(-1))
    assert torch.equal(sem[:, W - half :], semantic[:, :half].flip(-1))
    if W % 2:
        assert torch.equal(img[:, :, half], image[:, :, half]), "odd width: middle column kept"
    # Twins get new ids; stuff and group ids are copied as they are.
    assert torch.equal(inst[1:3, W - 2 :], torch.full((2, 2), 26001 + TWIN_OFFSET))
    assert torch.equal(inst[6:8, W - 1 :], torch.full((2, 1), 26))
    assert not (inst == 24001).any(), "the right half's own things are overwritten"
    # 26002 touches the seam (it and its mirror form one blob): no pair.
    assert pairs == [(26001, 26001 + TWIN_OFFSET)]
    assert image.shape == img.shape and img.dtype == torch.uint8


@pytest.mark.parametrize("W", [10, 11])
def test_shift_left_half_copies_the_left_half_unflipped(W):
    image, semantic, instance = scene(W)
    img, sem, inst, pairs = shift_left_half(image, semantic, instance)
    half = W // 2
    assert torch.equal(img[:, :, :half], image[:, :, :half])
    assert torch.equal(img[:, :, W - half :], image[:, :, :half])
    assert torch.equal(sem[:, W - half :], semantic[:, :half])
    if W % 2:
        assert torch.equal(img[:, :, half], image[:, :, half]), "odd width: middle column kept"
    # 26001 (columns 0-1) lands at W - half, next to the seam: no pair; nor 26002 (touching it
    # from the left). The group region 26 is copied without a new id.
    assert torch.equal(inst[1:3, W - half : W - half + 2], torch.full((2, 2), 26001 + TWIN_OFFSET))
    assert torch.equal(inst[6:8, W - half : W - half + 1], torch.full((2, 1), 26))
    assert pairs == []
    # A thing clear of both seam columns gets a pair, at the same rows, half columns apart.
    instance[3:4, 1:3] = 26003
    semantic[3:4, 1:3] = 13
    img, sem, inst, pairs = shift_left_half(image, semantic, instance)
    assert pairs == [(26003, 26003 + TWIN_OFFSET)]
    assert torch.equal(inst[3, W - half + 1 : W - half + 3], torch.full((2,), 26003 + TWIN_OFFSET))
    with pytest.raises(ValueError, match=r"shift_left_half: expected image \(3, H, W\)"):
        shift_left_half(image[0], semantic, instance)


def test_pair_distances_are_in_coordinate_channel_units():
    gt = torch.zeros(2, 11, dtype=torch.int64)
    gt[0, 0:2] = 1001  # centroid column 0.5
    gt[0, 9:11] = 1001 + TWIN_OFFSET  # centroid column 9.5: 9 columns = 2 * 9 / 10 units
    gt[1, 4] = 1002
    gt[:, 6] = 1002 + TWIN_OFFSET  # centroid 6: 2 * 2 / 10
    pairs = [(1001, 1001 + TWIN_OFFSET), (1002, 1002 + TWIN_OFFSET)]
    assert pair_distances(gt, pairs) == pytest.approx([1.8, 0.4], abs=1e-12)
    # The x channel's difference between the centroids, whatever the order of the pair.
    assert pair_distances(gt, [(1002 + TWIN_OFFSET, 1002)]) == pytest.approx([0.4], abs=1e-12)


def test_mirror_left_half_rejects_mismatched_shapes():
    image, semantic, instance = scene(10)
    with pytest.raises(ValueError, match=r"expected semantic of shape \(8, 10\)"):
        mirror_left_half(image, semantic[:, :9], instance)
    with pytest.raises(ValueError, match=r"expected image \(3, H, W\)"):
        mirror_left_half(image[0], semantic, instance)


def test_twin_outcomes_classifies_each_pair():
    gt = torch.zeros(4, 8, dtype=torch.int64)
    pairs = []
    for row, g in enumerate([1001, 1002, 1003, 1004]):
        gt[row, 0:3] = g
        gt[row, 5:8] = g + TWIN_OFFSET
        pairs.append((g, g + TWIN_OFFSET))
    pred = torch.zeros(4, 8, dtype=torch.int64)
    pred[0, 0:3] = 1
    pred[0, 5:8] = 1  # one instance over both twins: merged
    pred[1, 0:3] = 2
    pred[1, 5:8] = 3  # separated
    pred[2, 0:3] = 4
    pred[2, 5] = 5  # right twin: one pixel of three covered, not a majority: missed
    pred[3, 0:2] = 6
    pred[3, 2] = 7
    pred[3, 5:8] = 8  # majority (2 of 3) is enough: separated
    counts = twin_outcomes(pred, gt, pairs)
    assert counts == {"merged": 1, "separated": 2, "missed": 1, "skipped": 0}
    assert pair_outcomes(pred, gt, pairs) == ["merged", "separated", "missed", "separated"]
    assert twin_outcomes(pred, gt, pairs, min_pixels=4)["skipped"] == 4
    with pytest.raises(ValueError, match="same size"):
        twin_outcomes(pred[:2], gt, pairs)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    generate(root, train=0, val=2, size=(64, 128), seed=3, progress=False)
    return CityscapesPanoptic(root, "val")


@pytest.mark.usefixtures("native_cpu_convolutions")
def test_run_mirror_test_scene_variant_takes_the_generators_twins(data):
    torch.manual_seed(0)
    predictor = Predictor(PanoNet().eval())
    result = run_mirror_test(predictor, data, variant="scene", progress=False)
    twins = [scene_of(it["file"]).twins for it in data]
    assert result["pairs"] == sum(len(t) for t in twins) > 0
    assert sum(result[k] for k in ("merged", "separated", "missed", "skipped")) == result["pairs"]
    # Side-by-side twins are closer than half the image apart.
    assert result["variant"] == "scene" and ">= 1" not in result["by_distance"]


@pytest.mark.usefixtures("native_cpu_convolutions")
@pytest.mark.parametrize("variant", ["mirror", "shift"])
def test_run_mirror_test_counts_every_pair_once(data, tmp_path, variant):
    torch.manual_seed(0)
    predictor = Predictor(PanoNet().eval())
    result = run_mirror_test(
        predictor, data, variant=variant, progress=False, save_vis=tmp_path, num_vis=1
    )
    build = mirror_left_half if variant == "mirror" else shift_left_half
    built = [build(it["image"], it["semantic"], it["instance"]) for it in data]
    assert result["pairs"] == sum(len(b[3]) for b in built) > 0
    parts = ("merged", "separated", "missed", "skipped")
    assert sum(result[k] for k in parts) == result["pairs"]
    found = result["merged"] + result["separated"]
    frac = result["merged_fraction"]
    assert (math.isnan(frac) and found == 0) or frac == pytest.approx(result["merged"] / found)
    assert result["use_coords"] is True and result["semantic_source"] == "gt"
    assert result["variant"] == variant
    assert [p.name for p in tmp_path.iterdir()] == [f"{variant}_0.png"]
    # The distance bands split the same pairs: every pair in exactly one band.
    bands = result["by_distance"]
    for k in ("pairs", *parts):
        assert sum(b[k] for b in bands.values()) == result[k]
    distances = [d for _, _, inst, pairs in built for d in pair_distances(inst, pairs)]
    if variant == "shift":
        # Every shifted pair is W - W // 2 columns apart: 2 * 64 / 127 > 1.
        assert list(bands) == [">= 1"] and min(distances) == pytest.approx(128 / 127)
    assert bands.get(">= 1", {"pairs": 0})["pairs"] == sum(d >= 1 for d in distances)
    table = format_mirror({"m": result})
    assert table.count("\n") == 2 and "distance >= 1" in table
    with pytest.raises(ValueError, match="semantic_source"):
        run_mirror_test(predictor, data, semantic_source="bad")
    with pytest.raises(ValueError, match=r"one of \('mirror', 'shift', 'scene'\), got 'flip'"):
        run_mirror_test(predictor, data, variant="flip")
    assert isinstance(np.asarray(result["min_pixels"]).item(), int)
