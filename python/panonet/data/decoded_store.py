"""Decoded training samples on disk, memory-mapped: each image's PNGs are decoded once, then
read by every loader worker, training process and later run at the speed of memory.

Decoding a Cityscapes image's three PNGs (1024x2048) takes ~0.1 s of a CPU core, so a GPU that
trains on hundreds of images per second would need tens of cores for the decoding alone. The
store keeps what :class:`panonet.data.CityscapesPanoptic` decodes (RGB (3, H, W) uint8,
trainIds (H, W) uint8, instance ids (H, W) int32) as ``.npy`` files, 16 MB per 1024x2048
image (48 GB for Cityscapes' 2975 training images), and maps them into memory on reading, so
the operating system's page cache holds each image once for all processes.

Layout: ``<folder>/<key>/{image,train_ids,instance}.npy`` and ``sources.json``, written last:
an entry without it (an interrupted write) does not exist. ``sources.json`` records each
source file's size and modification time; an entry whose sources changed is not returned (the
caller decodes and saves it again). Every file is written atomically, so concurrent writers of
one entry (two workers in their first epoch) leave a whole entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from panonet._atomic import write_atomic, write_json_atomic

__all__ = ["ARRAYS", "DecodedStore"]

ARRAYS = (("image", np.uint8, 3), ("train_ids", np.uint8, 2), ("instance", np.int32, 2))
"""(name, dtype, number of dimensions) of an entry's arrays, in the order they are returned."""


class DecodedStore:
    """A folder of decoded samples, one entry per key.

    Args:
        folder: where the entries go (created on the first save).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def load(self, key: str, sources: Sequence[Path]) -> tuple[np.ndarray, ...] | None:
        """The entry's arrays, memory-mapped read-only, or None: no whole entry, its sources
        changed since it was saved, or an unreadable or inconsistent file (then it is saved
        again by the caller)."""
        entry = self.folder / key
        try:
            recorded = json.loads((entry / "sources.json").read_text(encoding="utf-8"))
            if recorded != _stamps(sources):
                return None
            arrays = tuple(np.load(entry / f"{name}.npy", mmap_mode="r") for name, _, _ in ARRAYS)
        except (OSError, ValueError):
            return None
        for array, (_, dtype, ndim) in zip(arrays, ARRAYS, strict=True):
            if (
                array.dtype != dtype
                or array.ndim != ndim
                or array.shape[-2:] != arrays[0].shape[-2:]
            ):
                return None
        return arrays

    def save(self, key: str, sources: Sequence[Path], arrays: Sequence[np.ndarray]) -> None:
        """Writes the entry (arrays as in :data:`ARRAYS`), ``sources.json`` last.

        Raises:
            OSError: the entry could not be written (e.g. the disk is full); nothing partial
                stays under the final names.
        """
        entry = self.folder / key
        (entry / "sources.json").unlink(missing_ok=True)  # the entry is incomplete from here
        for (name, _, _), array in zip(ARRAYS, arrays, strict=True):
            write_atomic(entry / f"{name}.npy", lambda tmp, a=array: np.save(tmp, a))
        write_json_atomic(entry / "sources.json", _stamps(sources))


def _stamps(sources: Sequence[Path]) -> list[list]:
    """[name, size, modification time (ns)] of each source file."""
    stamps = []
    for path in sources:
        stat = Path(path).stat()
        stamps.append([Path(path).name, stat.st_size, stat.st_mtime_ns])
    return stamps
