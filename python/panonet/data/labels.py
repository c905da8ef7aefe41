"""The Cityscapes class table: the one place that says which trainId is which class.

Everything here is derived from ``cityscapesscripts.helpers.labels`` (the official table), never
retyped, so trainIds, labelIds, thing/stuff and colours cannot drift from the benchmark.

Vocabulary:

- *labelId*: the 34 (+ license plate, id -1) Cityscapes ids stored in ``*_labelIds.png``.
- *trainId*: the 19 evaluated classes, 0..18, that the network predicts; every other labelId maps
  to :data:`IGNORE_INDEX` (255).
- *thing*: a class with instances (``hasInstances`` and evaluated): trainIds 11..18.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

__all__ = [
    "CLASSES",
    "LABEL_DIVISOR",
    "CLASS_NAMES",
    "IGNORE_INDEX",
    "LABEL_TO_TRAIN",
    "NUM_CLASSES",
    "PALETTE",
    "STUFF_TRAIN_IDS",
    "THING_TRAIN_IDS",
    "TRAIN_TO_LABEL",
    "TrainClass",
    "label_to_train_ids",
    "train_to_label_ids",
]

NUM_CLASSES = 19
"""Number of train classes (trainIds 0..18)."""

IGNORE_INDEX = 255
"""trainId of every pixel that is not one of the 19 classes (void, or not evaluated)."""

LABEL_DIVISOR = 1000
"""Cityscapes id convention (gtFine_instanceIds, panoptic maps): a thing segment's id is
labelId * 1000 + j, stuff is the plain labelId, 0 is void."""


@dataclass(frozen=True)
class TrainClass:
    """One of the 19 train classes, as in cityscapesscripts' table."""

    train_id: int
    name: str
    label_id: int
    color: tuple[int, int, int]
    is_thing: bool


def _build_classes() -> tuple[TrainClass, ...]:
    by_train_id: dict[int, TrainClass] = {}
    for label in _CITYSCAPES_LABELS:
        if not 0 <= label.trainId < NUM_CLASSES:
            continue
        if label.trainId in by_train_id:  # the official table has exactly one label per trainId
            raise RuntimeError(f"cityscapesscripts lists trainId {label.trainId} twice")
        by_train_id[label.trainId] = TrainClass(
            train_id=label.trainId,
            name=label.name,
            label_id=label.id,
            color=tuple(label.color),
            is_thing=bool(label.hasInstances),
        )
    if sorted(by_train_id) != list(range(NUM_CLASSES)):
        raise RuntimeError(
            f"cityscapesscripts' table does not cover trainIds 0..{NUM_CLASSES - 1}: "
            f"got {sorted(by_train_id)}"
        )
    return tuple(by_train_id[t] for t in range(NUM_CLASSES))


CLASSES: tuple[TrainClass, ...] = _build_classes()
"""The 19 train classes, indexed by trainId."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
"""Class name per trainId, e.g. ``CLASS_NAMES[13] == "car"``."""

THING_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in CLASSES if c.is_thing)
"""trainIds of the thing classes (person, rider, car, truck, bus, train, motorcycle, bicycle)."""

STUFF_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in CLASSES if not c.is_thing)
"""trainIds of the stuff classes (road ... sky)."""


def _readonly(array: np.ndarray) -> np.ndarray:
    # Module-level tables are shared by every caller: make accidental in-place edits fail loudly.
    array.setflags(write=False)
    return array


TRAIN_TO_LABEL: np.ndarray = _readonly(np.array([c.label_id for c in CLASSES], dtype=np.int64))
"""(NUM_CLASSES,) int64: labelId of each trainId, e.g. ``TRAIN_TO_LABEL[13] == 26`` (car)."""


def _build_label_to_train() -> np.ndarray:
    # 256 entries so that any uint8 labelIds image indexes it directly; labelIds that are not a
    # train class (void, parking, caravan, ...) and unused entries map to IGNORE_INDEX.
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for c in CLASSES:
        table[c.label_id] = c.train_id
    return _readonly(table)


LABEL_TO_TRAIN: np.ndarray = _build_label_to_train()
"""(256,) int64: trainId of each labelId 0..255 (:data:`IGNORE_INDEX` when not a train class)."""


def _build_palette() -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)  # ignore (255) and unused ids: black
    for c in CLASSES:
        palette[c.train_id] = c.color
    return _readonly(palette)


PALETTE: np.ndarray = _build_palette()
"""(256, 3) uint8 RGB colour per trainId (Cityscapes colours; ignore and unused ids black),
usable directly as a PIL "P"-mode palette via ``PALETTE.flatten()``."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _lookup(ids: ArrayT, table: np.ndarray, fill: int, what: str) -> ArrayT:
    """``table[ids]`` where ids lies in ``[0, len(table))``, else ``fill``; int64, same type."""
    if isinstance(ids, torch.Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{what}: expected an integer tensor, got dtype {ids.dtype}")
        lut = torch.tensor(table, device=ids.device)
        ids64 = ids.long()
        valid = (ids64 >= 0) & (ids64 < len(table))
        return torch.where(valid, lut[ids64.clamp(0, len(table) - 1)], fill)
    array = np.asarray(ids)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{what}: expected an integer array, got dtype {array.dtype}")
    if array.dtype == np.uint8 and len(table) >= 256:
        # Every uint8 id is in the table (a label PNG's): one gather, a quarter of the time.
        return table[array]
    ids64 = array.astype(np.int64)
    valid = (ids64 >= 0) & (ids64 < len(table))
    return np.where(valid, table[np.clip(ids64, 0, len(table) - 1)], fill)


def label_to_train_ids(label_id_map: ArrayT) -> ArrayT:
    """Map Cityscapes labelIds to trainIds.

    Args:
        label_id_map: integer numpy array or torch tensor of labelIds, any shape (e.g. a
            ``*_labelIds.png`` as (H, W) uint8).

    Returns:
        int64 trainIds of the same shape and type (numpy in, numpy out; tensors stay on their
        device): 0..18 for the train classes, :data:`IGNORE_INDEX` for every other labelId,
        including void, non-evaluated classes, license plate (-1) and ids outside the table.
    """
    return _lookup(label_id_map, LABEL_TO_TRAIN, IGNORE_INDEX, "label_to_train_ids")


def train_to_label_ids(train_id_map: ArrayT, *, ignore_label_id: int = 0) -> ArrayT:
    """Map trainIds back to Cityscapes labelIds (e.g. for the official evaluation scripts).

    Args:
        train_id_map: integer numpy array or torch tensor of trainIds, any shape.
        ignore_label_id: labelId written for :data:`IGNORE_INDEX` and any id outside 0..18;
            default 0, Cityscapes' ``unlabeled``.

    Returns:
        int64 labelIds of the same shape and type (tensors stay on their device).
    """
    return _lookup(train_id_map, TRAIN_TO_LABEL, int(ignore_label_id), "train_to_label_ids")
