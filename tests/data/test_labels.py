"""panonet.data.labels: the class table must agree with cityscapesscripts' official table."""

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import name2label

from panonet.data.labels import (
    CLASS_NAMES,
    CLASSES,
    IGNORE_INDEX,
    LABEL_TO_TRAIN,
    NUM_CLASSES,
    PALETTE,
    STUFF_TRAIN_IDS,
    THING_TRAIN_IDS,
    TRAIN_TO_LABEL,
    label_to_train_ids,
    train_to_label_ids,
)

TRAIN_LABELS = [lab for lab in cs_labels if 0 <= lab.trainId < 19]


def test_counts_and_known_entries():
    assert NUM_CLASSES == 19 and IGNORE_INDEX == 255
    assert len(CLASSES) == len(CLASS_NAMES) == len(TRAIN_TO_LABEL) == 19
    car = CLASSES[13]
    assert (car.name, car.train_id, car.label_id, car.is_thing) == ("car", 13, 26, True)
    assert CLASS_NAMES[0] == "road" and TRAIN_TO_LABEL[0] == 7
    assert THING_TRAIN_IDS == tuple(range(11, 19))
    assert [CLASS_NAMES[t] for t in THING_TRAIN_IDS] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"
    ]  # fmt: skip
    assert STUFF_TRAIN_IDS == tuple(range(11))


@pytest.mark.parametrize("label", TRAIN_LABELS, ids=lambda lab: lab.name)
def test_every_train_class_matches_cityscapesscripts(label):
    c = CLASSES[label.trainId]
    assert c.train_id == label.trainId
    assert c.name == label.name == CLASS_NAMES[label.trainId]
    assert c.label_id == label.id == TRAIN_TO_LABEL[label.trainId]
    assert c.color == tuple(label.color) == tuple(PALETTE[label.trainId])
    assert c.is_thing == label.hasInstances
    assert LABEL_TO_TRAIN[label.id] == label.trainId


def test_label_to_train_covers_every_cityscapes_label():
    for label in cs_labels:
        if label.id < 0:  # license plate: not a valid index, ignored by the functions
            assert label_to_train_ids(np.array([label.id]))[0] == IGNORE_INDEX
            continue
        expected = label.trainId if 0 <= label.trainId < 19 else IGNORE_INDEX
        assert LABEL_TO_TRAIN[label.id] == expected, label.name
    assert LABEL_TO_TRAIN.shape == (256,)
    assert set(LABEL_TO_TRAIN[34:].tolist()) == {IGNORE_INDEX}


def test_palette():
    assert PALETTE.shape == (256, 3) and PALETTE.dtype == np.uint8
    assert tuple(PALETTE[13]) == tuple(name2label["car"].color)
    assert not PALETTE[19:].any()  # ignore (255) and unused ids are black


def test_tables_are_read_only():
    for table in (TRAIN_TO_LABEL, LABEL_TO_TRAIN, PALETTE):
        with pytest.raises(ValueError):
            table[0] = 1


def test_label_to_train_numpy_and_torch():
    ids = np.array([[7, 26, 0], [24, 33, 9]], dtype=np.uint8)  # road car unlabeled person ...
    expected = np.array([[0, 13, 255], [11, 18, 255]])
    out = label_to_train_ids(ids)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)
    t = label_to_train_ids(torch.from_numpy(ids))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
    assert torch.equal(t, torch.from_numpy(expected))
    # Ids outside the table (license plate -1, instanceIds-like values) are ignored.
    assert label_to_train_ids(torch.tensor([-1, 300, 26001])).tolist() == [255, 255, 255]


def test_uint8_label_maps_take_the_same_ids_as_wider_ones():
    """A label PNG's uint8 map is looked up directly (every value is in the table): the same
    int64 trainIds as the general path gives the same ids in int64, for all 256 values."""
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = label_to_train_ids(ids)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, label_to_train_ids(ids.astype(np.int64)))
    assert set(np.unique(out)) == set(range(19)) | {255}


def test_train_to_label_round_trip():
    train = torch.tensor([[0, 13, 255], [11, 18, 19]])
    assert train_to_label_ids(train).tolist() == [[7, 26, 0], [24, 33, 0]]
    assert train_to_label_ids(train, ignore_label_id=255)[0, 2] == 255
    all_ids = np.arange(19)
    np.testing.assert_array_equal(label_to_train_ids(train_to_label_ids(all_ids)), all_ids)


def test_float_maps_rejected():
    with pytest.raises(TypeError, match="integer"):
        label_to_train_ids(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="integer"):
        train_to_label_ids(np.zeros(2))
