"""Cityscapes in its original directory layout, as panoptic training items.

Layout (as distributed by cityscapes-dataset.com; :mod:`panonet.data.synthetic` writes the same)::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png      RGB image
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png       8-bit labelIds
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_instanceIds.png    16-bit ids

``instanceIds`` holds ``labelId * 1000 + k`` on the pixels of the k-th individually annotated
object of a thing class, and the plain ``labelId`` (< 1000) everywhere else: stuff, void, and
thing-class *group* regions (e.g. a crowd, id 24, or a row of cars, id 26) whose members were
not separated. Only ids >= 1000 are instances.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from panonet.data.decoded_store import DecodedStore
from panonet.data.labels import label_to_train_ids

__all__ = ["IMAGE_SUFFIX", "CityscapesPanoptic", "DatasetError", "gt_paths"]

IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"
_INSTANCE_SUFFIX = "_gtFine_instanceIds.png"


class DatasetError(ValueError):
    """A dataset file exists but cannot be used (unreadable, corrupt, wrong size or format).

    The message names the file. (Missing files and directories raise ``FileNotFoundError``.)
    """


def gt_paths(root: str | os.PathLike, split: str, image: str | os.PathLike) -> tuple[Path, Path]:
    """The (labelIds, instanceIds) ground-truth paths of an image under ``root``.

    Args:
        root: dataset root (holding ``leftImg8bit/`` and ``gtFine/``).
        split: e.g. ``"train"``.
        image: path of a ``*_leftImg8bit.png`` under ``root/leftImg8bit/{split}/{city}/``.
    """
    image = Path(image)
    if not image.name.endswith(IMAGE_SUFFIX):
        raise ValueError(f"not a Cityscapes image name (*{IMAGE_SUFFIX}): {image}")
    stem = image.name[: -len(IMAGE_SUFFIX)]
    gt_dir = Path(root) / "gtFine" / split / image.parent.name
    return gt_dir / (stem + _LABEL_SUFFIX), gt_dir / (stem + _INSTANCE_SUFFIX)


class CityscapesPanoptic(Dataset):
    """Images with semantic (trainId) and instance targets from a Cityscapes-layout tree.

    The file list is built once, in sorted order (by city, then file name), so indices are
    deterministic; every image's two ground-truth files must exist (checked here, so a broken
    tree fails at construction rather than hours into training). The PNGs are decoded in
    ``__getitem__``, where an unreadable file or mismatched sizes raise :class:`DatasetError`.

    Each item is a dict:

    - ``image``: (3, H, W) uint8 RGB;
    - ``semantic``: (H, W) int64 (uint8 if ``compact``) trainIds 0..18, 255 (ignore) for void
      and unevaluated classes (via :func:`panonet.data.labels.label_to_train_ids`);
    - ``instance``: (H, W) int64 (int32 if ``compact``) Cityscapes instance id (``labelId *
      1000 + k``, e.g. 26001) on the pixels of individually labelled things, -1 elsewhere:
      stuff, void and group regions (instanceIds < 1000);
    - ``file``: the image's path (str).

    ``transform``, if given, is applied to the item dict (see :mod:`panonet.data.transforms`).

    Args:
        root: dataset root (holding ``leftImg8bit/`` and ``gtFine/``).
        split: subdirectory, e.g. ``"train"``, ``"val"``.
        transform: optional callable ``item -> item``.
        cache: keep each image's decoded arrays (with the trainIds already looked up) in memory
            after its first read, so that later epochs skip the PNG decoding (~5 ms per 256x512
            image on one core) and the lookup. For small datasets: about 1 MB per 256x512 image
            (the demo's 300: ~300 MB), held by every DataLoader worker process separately.
        compact: labels in the dtypes they are decoded to, ``semantic`` uint8 and ``instance``
            int32, instead of int64: an eighth and a half of the bytes, for items that are
            copied to the training device before they are augmented
            (:mod:`panonet.train.device_augment`).
        decoded_dir: a folder (:class:`panonet.data.decoded_store.DecodedStore`) where each
            image's decoded arrays are saved at its first read and memory-mapped at later ones,
            by every process: for large datasets on GPUs, where PNG decoding (~0.1 s per
            1024x2048 image and core) limits the training speed. 16 MB per 1024x2048 image.
            A failed save (a full disk) is reported once as a warning and saving stops.

    Raises:
        FileNotFoundError: a missing ``leftImg8bit/{split}`` or ``gtFine/{split}`` directory, a
            split without images, or images without their ground truth (named in the message).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *,
        transform=None,
        cache: bool = False,
        compact: bool = False,
        decoded_dir: str | os.PathLike | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = str(split)
        self.transform = transform
        self.cache = bool(cache)
        self.compact = bool(compact)
        self.store = DecodedStore(decoded_dir) if decoded_dir is not None else None
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        image_dir = self.root / "leftImg8bit" / self.split
        gt_dir = self.root / "gtFine" / self.split
        for d in (image_dir, gt_dir):
            if not d.is_dir():
                raise FileNotFoundError(
                    f"CityscapesPanoptic: no directory {d} (expected the Cityscapes layout "
                    f"root/leftImg8bit/{self.split}/<city>/*{IMAGE_SUFFIX} and "
                    f"root/gtFine/{self.split}/<city>/*{_LABEL_SUFFIX})"
                )
        # Only city subdirectories count, as in the official layout; sorting the (city, name)
        # pairs fixes the order independently of the file system's listing order.
        images = sorted(p for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}") if p.is_file())
        if not images:
            raise FileNotFoundError(
                f"CityscapesPanoptic: split '{self.split}' is empty: no */*{IMAGE_SUFFIX} under "
                f"{image_dir}"
            )
        samples: list[tuple[Path, Path, Path]] = []
        missing: list[Path] = []
        for image in images:
            label, instance = gt_paths(self.root, self.split, image)
            missing.extend(p for p in (label, instance) if not p.is_file())
            samples.append((image, label, instance))
        if missing:
            shown = "\n  ".join(str(p) for p in missing[:5])
            more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(
                f"CityscapesPanoptic: {len(missing)} ground-truth file(s) missing in split "
                f"'{self.split}':\n  {shown}{more}"
            )
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def files(self) -> list[str]:
        """Image paths in index order."""
        return [str(image) for image, _, _ in self.samples]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"CityscapesPanoptic: index {index} out of range [0, {len(self)})")
        index %= len(self)
        image_path = self.samples[index][0]
        decoded = self._decoded.get(index)
        if decoded is None:
            decoded = self._load(index)
            if self.cache:
                self._decoded[index] = decoded
        image, train_ids, instance = decoded
        # New arrays (copies): a transform that writes into an item cannot alter the cache or
        # the store's read-only maps.
        item = {
            "image": torch.from_numpy(np.array(image)),
            "semantic": torch.from_numpy(train_ids.astype(np.uint8 if self.compact else np.int64)),
            "instance": torch.from_numpy(instance.astype(np.int32 if self.compact else np.int64)),
            "file": str(image_path),
        }
        if self.transform is not None:
            item = self.transform(item)
        return item

    def _load(self, index: int) -> tuple[np.ndarray, ...]:
        """Sample ``index``'s decoded arrays: from the store when it holds them, else decoded
        (and saved there)."""
        if self.store is None:
            return self._decode(index)
        sources = self.samples[index]
        key = sources[0].relative_to(self.root).with_suffix("").as_posix()
        decoded = self.store.load(key, sources)
        if decoded is None:
            decoded = self._decode(index)
            try:
                self.store.save(key, sources, decoded)
            except OSError as error:
                warnings.warn(
                    f"CityscapesPanoptic: cannot save decoded images to {self.store.folder} "
                    f"({error}); decoding every read from now on",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.store = None
        return decoded

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``index`` as the items hold it, in compact dtypes: image (3, H, W) uint8
        (transposed here once, so that every later read of the cache or the store is a plain
        copy), trainIds (H, W) uint8, instance ids (H, W) int32 (-1 off things)."""
        image_path, label_path, instance_path = self.samples[index]
        image = _read_png(image_path, "RGB")
        label_ids = _read_png(label_path, "labelIds")
        instance_ids = _read_png(instance_path, "instanceIds")
        size = image.shape[:2]
        for path, array in ((label_path, label_ids), (instance_path, instance_ids)):
            if array.shape != size:
                raise DatasetError(
                    f"{path}: size {array.shape[1]}x{array.shape[0]} (WxH) does not match its "
                    f"image {image_path} of size {size[1]}x{size[0]}"
                )
        train_ids = label_to_train_ids(label_ids).astype(np.uint8)  # 0..18 and 255
        instance = instance_ids.astype(np.int32)  # first: a uint16 PNG cannot hold the -1
        instance[instance < 1000] = -1
        return np.ascontiguousarray(image.transpose(2, 0, 1)), train_ids, instance

    def __repr__(self) -> str:
        return f"CityscapesPanoptic(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def _read_png(path: Path, kind: str) -> np.ndarray:
    """Decode one file fully: (H, W, 3) uint8 for ``"RGB"``, else (H, W) integers.

    Every decoding failure (truncated data, bad CRC, not an image at all, which PIL reports as
    OSError, SyntaxError, ValueError, zlib errors...) becomes a :class:`DatasetError` naming the
    file, chained to the original exception.
    """
    try:
        with Image.open(path) as im:
            im.load()  # open() is lazy: decode now so that truncated data fails here
            mode = im.mode
            if kind == "RGB":
                if mode not in ("RGB", "RGBA", "L", "P"):
                    raise DatasetError(f"{path}: expected an RGB image, got PIL mode {mode}")
                # convert() copies the whole image even when it is RGB already.
                return np.asarray(im if mode == "RGB" else im.convert("RGB"))
            if mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(
                    f"{path}: expected a single-channel {kind} PNG, got PIL mode {mode}"
                )
            array = np.asarray(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure means the same: unusable file
        raise DatasetError(f"{path}: cannot read {kind} PNG ({type(e).__name__}: {e})") from e
    if kind == "labelIds" and (array.min() < 0 or array.max() > 255):
        raise DatasetError(f"{path}: labelIds outside 0..255")
    return array
