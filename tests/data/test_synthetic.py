"""Synthetic street scenes: determinism, Cityscapes id conventions, resume, read by the loader."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from panonet.data import CityscapesPanoptic
from panonet.data.labels import (
    IGNORE_INDEX,
    LABEL_TO_TRAIN,
    PALETTE,
    THING_TRAIN_IDS,
    TRAIN_TO_LABEL,
)
from panonet.data.synthetic import MANIFEST, generate, render, scene_of

SIZE = (64, 128)
THING_LABEL_IDS = {int(TRAIN_TO_LABEL[t]) for t in THING_TRAIN_IDS}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    summary = generate(root, train=3, val=2, size=SIZE, seed=0, progress=False)
    assert (summary.written, summary.skipped) == (5, 0)
    return root


def test_layout_and_names(dataset):
    images = sorted(p.relative_to(dataset) for p in dataset.rglob("*_leftImg8bit.png"))
    assert len(images) == 5
    assert {p.parts[:2] for p in images} == {("leftImg8bit", "train"), ("leftImg8bit", "val")}
    for p in images:
        stem = p.name[: -len("_leftImg8bit.png")]
        city, seq, frame = stem.split("_")
        assert p.parent.name == city and len(seq) == 6 and frame == "000019"
        gt = dataset / "gtFine" / p.parts[1] / city
        for suffix in ("labelIds", "instanceIds", "color"):
            assert (gt / f"{stem}_gtFine_{suffix}.png").is_file()
    assert not list(dataset.rglob("*.tmp"))
    assert (dataset / MANIFEST).is_file()


def test_id_conventions(dataset):
    for label_path in sorted(dataset.rglob("*_gtFine_labelIds.png")):
        stem = str(label_path)[: -len("labelIds.png")]
        with Image.open(label_path) as im:
            assert im.mode == "L"
            label = np.asarray(im).astype(np.int64)
        with Image.open(stem + "instanceIds.png") as im:
            assert im.mode.startswith("I")  # 16-bit like Cityscapes
            inst = np.asarray(im).astype(np.int64)
        with Image.open(stem + "color.png") as im:
            color = np.asarray(im.convert("RGB"))
        assert set(np.unique(label).tolist()) <= set(id2label)
        is_inst = inst >= 1000
        assert is_inst.any()
        # Instances: labelId * 1000 + k, of a thing class, agreeing with labelIds.
        assert np.array_equal(inst[is_inst] // 1000, label[is_inst])
        assert set(np.unique(label[is_inst]).tolist()) <= THING_LABEL_IDS
        # Elsewhere: the plain labelId (stuff, void and group regions).
        assert np.array_equal(inst[~is_inst], label[~is_inst])
        # k counts 0, 1, ... per class with no gaps.
        ids = np.unique(inst[is_inst])
        for cls in np.unique(ids // 1000):
            ks = ids[ids // 1000 == cls] % 1000
            assert ks.tolist() == list(range(len(ks)))
        assert np.array_equal(color, PALETTE[LABEL_TO_TRAIN[label]])


def test_loader_reads_generated_tree(dataset):
    for split, n in (("train", 3), ("val", 2)):
        ds = CityscapesPanoptic(dataset, split)
        assert len(ds) == n
        for item in ds:
            sem, inst = item["semantic"], item["instance"]
            assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.uint8
            assert set(sem.unique().tolist()) <= set(range(19)) | {IGNORE_INDEX}
            assert (inst >= 0).any()
            # Every instance pixel is a thing class in the semantic map.
            thing_sem = torch.isin(sem[inst >= 0], torch.tensor(THING_TRAIN_IDS))
            assert thing_sem.all()


def test_same_seed_identical_bytes_other_seed_differs(dataset, tmp_path):
    again = tmp_path / "again"
    generate(again, train=3, val=2, size=SIZE, seed=0, progress=False)
    assert _files(again) == _files(dataset)

    other = tmp_path / "other"
    generate(other, train=3, size=SIZE, seed=1, progress=False)
    a, b = _files(dataset), _files(other)
    images = [k for k in b if k.endswith("_leftImg8bit.png")]
    assert images and all(a[k] != b[k] for k in images)


def test_resume_skips_complete_and_redoes_partial(dataset, tmp_path):
    root = tmp_path / "resume"
    generate(root, train=2, size=SIZE, seed=0, progress=False)
    # Simulate an interruption in the middle of image 1: its image not yet renamed into place,
    # a leftover temp file, and its label file from before.
    image1 = sorted(root.rglob("*_leftImg8bit.png"))[1]
    image1.unlink()
    image1.with_name(image1.name + ".tmp").write_bytes(b"half a png")
    summary = generate(root, train=3, val=2, size=SIZE, seed=0, progress=False)
    assert (summary.written, summary.skipped) == (4, 1)
    # The resumed tree equals an uninterrupted run (no leftovers once every image is done).
    assert _files(root) == _files(dataset)


def test_refuses_to_mix_generations(tmp_path):
    generate(tmp_path, train=1, size=SIZE, seed=0, progress=False)
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path, train=1, size=SIZE, seed=1, progress=False)
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path, train=1, size=(64, 96), seed=0, progress=False)
    foreign = tmp_path / "cityscapes"
    (foreign / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="did not write"):
        generate(foreign, train=1, size=SIZE, progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [{"size": (8, 128)}, {"size": (64,)}, {"train": -1}, {"cities": ["a_b"]}, {"seed": -3}],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate(tmp_path, **{"train": 1, "size": SIZE, **kwargs})


def test_scene_of_renders_a_written_image_again(dataset, tmp_path):
    for split in ("train", "val"):
        data = CityscapesPanoptic(dataset, split)
        for k in range(len(data)):
            item = data[k]
            scene = scene_of(item["file"])
            assert np.array_equal(scene.image, item["image"].permute(1, 2, 0).numpy())
            things = scene.instance_ids >= 1000
            assert np.array_equal(scene.instance_ids[things], item["instance"].numpy()[things])
    image = next((dataset / "leftImg8bit" / "val").rglob("*.png"))
    with pytest.raises(ValueError, match=r"expected <root>/leftImg8bit/<split>/<city>/"):
        scene_of(image.with_name("frame.png"))
    # The name of another split's city, and a dataset without a manifest.
    wrong = image.parents[1] / "synthhausen" / image.name.replace("renderdorf", "synthhausen")
    with pytest.raises(ValueError, match="city 'synthhausen' is not one of the val cities"):
        scene_of(wrong)
    bare = tmp_path / "leftImg8bit" / "val" / "renderdorf" / image.name
    with pytest.raises(ValueError, match=f"has no readable {MANIFEST}"):
        scene_of(bare)


def test_group_regions_twins_and_perspective():
    scenes = [render((96, 192), seed) for seed in range(6)]
    # Group regions: thing-class pixels without an instance number (instanceIds = labelId).
    groups = [np.isin(s.label_ids, list(THING_LABEL_IDS)) & (s.instance_ids < 1000) for s in scenes]
    assert any(g.any() for g in groups)

    # Twins are pixel-identical where both are visible, at different positions.
    assert sum(_identical_twins(s) for s in scenes) >= 3

    # Scale with depth: cars whose bottom is lower in the image are taller.
    bottoms, heights = [], []
    for s in scenes:
        inst = s.instance_ids.astype(np.int64)
        for i in np.unique(inst[inst // 1000 == 26]):
            ys = np.nonzero((inst == i).any(axis=1))[0]
            bottoms.append(ys.max())
            heights.append(ys.max() - ys.min() + 1)
    assert len(bottoms) >= 10 and np.corrcoef(bottoms, heights)[0, 1] > 0.5


def _identical_twins(scene) -> int:
    """Asserts that each of ``scene.twins`` is a pair of distinct instances of one class whose
    pixels are identical where both are visible; returns how many overlap on >= 10 pixels."""
    inst = scene.instance_ids.astype(np.int64)
    pairs = 0
    for a, b, dy, dx in scene.twins:
        assert (dy, dx) != (0, 0) and a != b and a // 1000 == b // 1000
        ys, xs = np.nonzero(inst == a)
        ys2, xs2 = ys + dy, xs + dx
        inside = (ys2 >= 0) & (ys2 < inst.shape[0]) & (xs2 >= 0) & (xs2 < inst.shape[1])
        ys, xs, ys2, xs2 = ys[inside], xs[inside], ys2[inside], xs2[inside]
        both = inst[ys2, xs2] == b
        if both.sum() >= 10:
            pairs += 1
            assert np.array_equal(
                scene.image[ys[both], xs[both]], scene.image[ys2[both], xs2[both]]
            )
    return pairs


def test_twin_rows_and_groups(tmp_path):
    seeds = range(10)
    plain = [render((96, 192), seed) for seed in seeds]
    # twin_groups=2 is the default's draw: the same scenes, byte for byte.
    for seed, scene in zip(seeds, plain, strict=True):
        same = render((96, 192), seed, twin_groups=2)
        assert np.array_equal(same.image, scene.image) and same.twins == scene.twins
    rows = [render((96, 192), seed, twin_row=4, twin_groups=4) for seed in seeds]
    identical = sum(_identical_twins(s) for s in rows)
    assert identical > 1.5 * sum(_identical_twins(s) for s in plain)
    # Rows of three or more: a copy that is the second of one pair and the first of the next.
    chained = sum(len({a for a, *_ in s.twins} & {b for _, b, *_ in s.twins}) for s in rows)
    assert chained >= 2
    # Pairs only by default: no instance in two pairs.
    assert all(len({a for a, *_ in s.twins} & {b for _, b, *_ in s.twins}) == 0 for s in plain)

    generate(tmp_path / "rows", val=2, size=(64, 128), twin_row=3, twin_groups=3, progress=False)
    manifest = json.loads((tmp_path / "rows" / MANIFEST).read_text())
    assert (manifest["twin_row"], manifest["twin_groups"]) == (3, 3)
    for image in sorted((tmp_path / "rows" / "leftImg8bit" / "val").rglob("*.png")):
        again = scene_of(image)  # rendered with the manifest's options
        assert np.array_equal(again.image, np.asarray(Image.open(image).convert("RGB")))
    with pytest.raises(ValueError, match="twin_row: 3 there vs None now"):
        generate(tmp_path / "rows", val=2, size=(64, 128), twin_groups=3, progress=False)
    for kwargs in ({"twin_row": 1}, {"twin_row": 2.5}, {"twin_row": True}, {"twin_groups": 0}):
        name = next(iter(kwargs))
        with pytest.raises(ValueError, match=f"expected {name} as an integer >= "):
            render((32, 64), 0, **kwargs)


def _instance_areas(scene) -> list[int]:
    ids = scene.instance_ids[scene.instance_ids >= 1000]
    return np.unique(ids, return_counts=True)[1].tolist()


def test_max_thing_depth_makes_instances_bigger_and_is_recorded(tmp_path):
    free = [render((96, 192), seed) for seed in range(8)]
    near = [render((96, 192), seed, max_thing_depth=20.0) for seed in range(8)]
    free_areas = sum((_instance_areas(s) for s in free), [])
    near_areas = sum((_instance_areas(s) for s in near), [])
    assert near_areas and np.median(near_areas) > 1.5 * np.median(free_areas)
    assert min(near_areas) > 0
    generate(tmp_path / "near", train=1, size=(32, 64), max_thing_depth=25, progress=False)
    manifest = json.loads((tmp_path / "near" / MANIFEST).read_text())
    assert manifest["max_thing_depth"] == 25.0
    # Without the option the manifest has no such key (older datasets stay valid).
    generate(tmp_path / "free", train=1, size=(32, 64), progress=False)
    assert "max_thing_depth" not in json.loads((tmp_path / "free" / MANIFEST).read_text())
    with pytest.raises(ValueError, match="max_thing_depth: 25.0 there vs 30.0 now"):
        generate(tmp_path / "near", train=1, size=(32, 64), max_thing_depth=30, progress=False)
    with pytest.raises(ValueError, match="max_thing_depth: 25.0 there vs None now"):
        generate(tmp_path / "near", train=1, size=(32, 64), progress=False)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_thing_depth"):
            render((32, 64), 0, max_thing_depth=bad)
