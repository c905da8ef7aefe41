"""The decoded store: items read through it equal decoded items, a stored image is not decoded
again (by another dataset object, another process), and an entry that is stale, interrupted or
damaged is decoded and saved again."""

import os
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from panonet.data import CityscapesPanoptic
from panonet.data import cityscapes as cityscapes_module
from panonet.data.decoded_store import DecodedStore
from panonet.data.synthetic import generate
from panonet.data.transforms import collate


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate(root, train=4, val=1, size=(64, 128), seed=0, progress=False)
    return root


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts the PNG reads (three per decoded image)."""
    calls = {"n": 0}
    read = cityscapes_module._read_png

    def counting(*args, **kwargs):
        calls["n"] += 1
        return read(*args, **kwargs)

    monkeypatch.setattr(cityscapes_module, "_read_png", counting)
    return calls


def assert_items_equal(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("compact", [False, True])
def test_items_through_the_store_equal_decoded_items(scenes, tmp_path, count_decodes, compact):
    plain = CityscapesPanoptic(scenes, "train", compact=compact)
    want = [plain[i] for i in range(4)]
    count_decodes["n"] = 0
    stored = CityscapesPanoptic(scenes, "train", compact=compact, decoded_dir=tmp_path / "d")
    first = [stored[i] for i in range(4)]  # decoded and saved
    assert count_decodes["n"] == 12
    again = CityscapesPanoptic(scenes, "train", compact=compact, decoded_dir=tmp_path / "d")
    second = [again[i] for i in range(4)]  # memory-mapped: no PNG read
    assert count_decodes["n"] == 12
    for i in range(4):
        assert_items_equal(first[i], want[i])
        assert_items_equal(second[i], want[i])
    # Items are writable copies: a transform that writes cannot reach the store.
    second[0]["image"][:] = 0
    assert_items_equal(again[0], want[0])


def test_loader_workers_read_and_fill_one_store(scenes, tmp_path, count_decodes):
    """Two worker processes fill the store in their first epoch; the main process then reads
    every image from it."""
    stored = CityscapesPanoptic(scenes, "train", decoded_dir=tmp_path / "d")
    loader = DataLoader(stored, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    plain = CityscapesPanoptic(scenes, "train")
    want = [plain[i] for i in range(4)]
    assert torch.equal(batches[1]["instance"][0], want[2]["instance"])
    count_decodes["n"] = 0
    for i in range(4):
        assert_items_equal(stored[i], want[i])
    assert count_decodes["n"] == 0


def test_a_changed_source_is_decoded_again(scenes, tmp_path, count_decodes):
    stored = CityscapesPanoptic(scenes, "train", decoded_dir=tmp_path / "d")
    stored[1]
    label = stored.samples[1][1]
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    count_decodes["n"] = 0
    again = CityscapesPanoptic(scenes, "train", decoded_dir=tmp_path / "d")
    assert_items_equal(again[1], CityscapesPanoptic(scenes, "train")[1])
    assert count_decodes["n"] == 6  # decoded by the store's reader, then by the plain dataset
    count_decodes["n"] = 0
    again[1]
    assert count_decodes["n"] == 0  # saved again with the new stamps


@pytest.mark.parametrize("damage", ["no sources.json", "truncated array", "other dtype"])
def test_an_interrupted_or_damaged_entry_is_decoded_again(scenes, tmp_path, damage):
    stored = CityscapesPanoptic(scenes, "train", decoded_dir=tmp_path / "d")
    want = stored[0]
    entry = tmp_path / "d" / stored.samples[0][0].relative_to(scenes).with_suffix("")
    if damage == "no sources.json":
        (entry / "sources.json").unlink()
    elif damage == "truncated array":
        data = (entry / "instance.npy").read_bytes()
        (entry / "instance.npy").write_bytes(data[: len(data) // 2])
    else:
        np.save(entry / "instance.npy", np.zeros((64, 128), np.int64))
    store = DecodedStore(tmp_path / "d")
    key = entry.relative_to(tmp_path / "d").as_posix()
    assert store.load(key, stored.samples[0]) is None
    again = CityscapesPanoptic(scenes, "train", decoded_dir=tmp_path / "d")
    assert_items_equal(again[0], want)
    assert store.load(key, stored.samples[0]) is not None


def test_a_store_that_cannot_be_written_warns_once_and_decodes(scenes, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DecodedStore, "save", full)
    stored = CityscapesPanoptic(scenes, "train", decoded_dir=tmp_path / "d")
    with pytest.warns(RuntimeWarning, match="cannot save decoded images.*No space left"):
        item = stored[0]
    assert_items_equal(item, CityscapesPanoptic(scenes, "train")[0])
    assert stored.store is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stored[1]
