"""CityscapesPanoptic on tiny Cityscapes trees fabricated here with PIL."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from panonet.data import CityscapesPanoptic, DatasetError, collate
from panonet.data.labels import IGNORE_INDEX

H, W = 6, 8
# labelIds: 7 road, 26 car, 24 person, 1 ego vehicle, 0 unlabeled, 23 sky.
LABEL_IDS = np.array(
    [
        [23, 23, 23, 23, 23, 23, 23, 23],
        [26, 26, 26, 26, 26, 24, 24, 0],
        [26, 26, 26, 26, 26, 24, 24, 0],
        [7, 7, 26, 26, 7, 7, 7, 7],
        [7, 7, 26, 26, 7, 7, 7, 7],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    dtype=np.uint8,
)
# Two individual cars (26000, 26001), a car *group* (26: no instance number), a person (24001).
INSTANCE_IDS = np.array(
    [
        [23, 23, 23, 23, 23, 23, 23, 23],
        [26000, 26000, 26001, 26001, 26, 24001, 24001, 0],
        [26000, 26000, 26001, 26001, 26, 24001, 24001, 0],
        [7, 7, 26, 26, 7, 7, 7, 7],
        [7, 7, 26, 26, 7, 7, 7, 7],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    dtype=np.uint16,
)


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(root: Path, split: str, city: str, stem: str, *, image=None, label=None, inst=None):
    """One sample in the Cityscapes layout; returns (image, labelIds, instanceIds) paths."""
    img_dir = root / "leftImg8bit" / split / city
    gt_dir = root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    paths = (
        img_dir / f"{stem}_leftImg8bit.png",
        gt_dir / f"{stem}_gtFine_labelIds.png",
        gt_dir / f"{stem}_gtFine_instanceIds.png",
    )
    Image.fromarray(_image(0) if image is None else image).save(paths[0])
    Image.fromarray(LABEL_IDS if label is None else label).save(paths[1])
    Image.fromarray(INSTANCE_IDS if inst is None else inst).save(paths[2])  # 16-bit, "I;16"
    return paths


@pytest.fixture
def tree(tmp_path) -> Path:
    # Written out of order on purpose: the dataset must sort by city, then name.
    _write(tmp_path, "train", "zurich", "zurich_000001_000019", image=_image(3))
    _write(tmp_path, "train", "aachen", "aachen_000002_000019", image=_image(2))
    _write(tmp_path, "train", "aachen", "aachen_000000_000019", image=_image(1))
    return tmp_path


def test_item_contents_and_conventions(tree):
    ds = CityscapesPanoptic(tree, "train")
    assert len(ds) == 3
    assert [Path(f).name for f in ds.files] == [
        "aachen_000000_000019_leftImg8bit.png",
        "aachen_000002_000019_leftImg8bit.png",
        "zurich_000001_000019_leftImg8bit.png",
    ]
    item = ds[0]
    assert set(item) == {"image", "semantic", "instance", "file"}
    assert item["file"] == ds.files[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, H, W)
    assert torch.equal(item["image"], torch.from_numpy(_image(1)).permute(2, 0, 1))

    sem, inst = item["semantic"], item["instance"]
    assert sem.dtype == inst.dtype == torch.int64 and sem.shape == inst.shape == (H, W)
    # trainIds through cityscapesscripts' table: sky 10, car 13, person 11, road 0; ego vehicle
    # and unlabeled are ignored.
    assert sem[0].tolist() == [10] * W
    assert sem[1].tolist() == [13, 13, 13, 13, 13, 11, 11, IGNORE_INDEX]
    assert sem[3].tolist() == [0, 0, 13, 13, 0, 0, 0, 0]
    assert sem[5].tolist() == [IGNORE_INDEX] * W
    # Instances only where instanceIds >= 1000; the car group (26) is a car without instance.
    assert inst[1].tolist() == [26000, 26000, 26001, 26001, -1, 24001, 24001, -1]
    assert (inst[3:] == -1).all() and (inst[0] == -1).all()
    assert sem[1, 4] == 13 and inst[1, 4] == -1


def test_transform_is_applied(tree):
    def transform(item):
        return {**item, "seen": True}

    assert CityscapesPanoptic(tree, "train", transform=transform)[1]["seen"] is True


def test_cache_decodes_each_file_once_and_hands_out_independent_items(tree, monkeypatch):
    import panonet.data.cityscapes as cityscapes

    reads: list[str] = []
    read_png = cityscapes._read_png

    def counting_read(path, kind):
        reads.append(path.name)
        return read_png(path, kind)

    monkeypatch.setattr(cityscapes, "_read_png", counting_read)
    plain, cached = CityscapesPanoptic(tree, "train"), CityscapesPanoptic(tree, "train", cache=True)
    first = cached[1]
    for key in ("image", "semantic", "instance"):
        first[key].fill_(7)  # a caller's in-place change must not reach the cache
    reads.clear()
    for index in (1, -len(cached) + 1, 0, 0):
        item, expected = cached[index], plain[index]
        for key in ("image", "semantic", "instance"):
            assert torch.equal(item[key], expected[key]), key
    # plain decodes 3 files per item (4 items); cached only item 0's, once.
    assert len(reads) == 4 * 3 + 3


def test_dataloader_with_collate(tree):
    loader = DataLoader(CityscapesPanoptic(tree, "train"), batch_size=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, H, W) and batch["instance"].shape == (2, H, W)
    assert isinstance(batch["file"], list) and len(batch["file"]) == 2


def test_missing_ground_truth_names_the_file(tree):
    missing = tree / "gtFine/train/zurich/zurich_000001_000019_gtFine_instanceIds.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match="zurich_000001_000019_gtFine_instanceIds.png"):
        CityscapesPanoptic(tree, "train")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad_crc"])
def test_corrupt_png_names_the_file(tree, damage):
    path = tree / "gtFine/train/aachen/aachen_000002_000019_gtFine_labelIds.png"
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = b"this is not a png" * 4
    else:  # flip a byte inside the image data: zlib / CRC failure
        data = data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:]
    path.write_bytes(data)
    ds = CityscapesPanoptic(tree, "train")  # construction only checks existence
    ds[0]  # other samples stay readable
    with pytest.raises(DatasetError, match="aachen_000002_000019_gtFine_labelIds.png"):
        ds[1]


def test_size_mismatch_names_the_file(tmp_path):
    _write(tmp_path, "val", "bonn", "bonn_000000_000019", image=_image(0, H + 1, W))
    with pytest.raises(
        DatasetError, match="bonn_000000_000019_gtFine_labelIds.png.*does not match"
    ):
        CityscapesPanoptic(tmp_path, "val")[0]


def test_label_png_with_colour_channels_is_rejected(tmp_path):
    rgb_label = np.repeat(LABEL_IDS[..., None], 3, axis=2)
    _write(tmp_path, "val", "bonn", "bonn_000000_000019", label=rgb_label)
    with pytest.raises(DatasetError, match="labelIds.png: expected a single-channel"):
        CityscapesPanoptic(tmp_path, "val")[0]


def test_empty_split_and_missing_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/train"):
        CityscapesPanoptic(tmp_path, "train")
    (tmp_path / "leftImg8bit/train/aachen").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="gtFine/train"):
        CityscapesPanoptic(tmp_path, "train")
    (tmp_path / "gtFine/train/aachen").mkdir(parents=True)
    # A half-written file from an interrupted writer does not count as an image.
    (tmp_path / "leftImg8bit/train/aachen/a_000000_000019_leftImg8bit.png.tmp").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="split 'train' is empty"):
        CityscapesPanoptic(tmp_path, "train")


def test_index_out_of_range(tree):
    ds = CityscapesPanoptic(tree, "train")
    with pytest.raises(IndexError):
        ds[3]
    assert ds[-1]["file"] == ds.files[2]
