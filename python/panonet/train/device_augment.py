"""Training augmentation on the training device (``TrainConfig.augment_on = "device"``).

The DataLoader's workers then only decode each image (or take it from the cache or the decoded
store), in compact dtypes (:class:`panonet.data.CityscapesPanoptic` with ``compact``), check its
class ids and hand the full-size items over with their augmentation seeds (:class:`DeferItems`,
the loader's ``collate_fn``). The training process copies them to its device without waiting
(``non_blocking`` from the loader's pinned memory) and runs the same seeded transforms there
(:func:`augment_on_device`). Why: at the paper's crop the whole-image bilinear scaling alone
takes ~0.2 s of a CPU core per image, so 16 loader workers deliver tens of images per second
against the hundreds a GPU trains on; on the GPU it is a few kernels per image.

The random draws are the loader's (host draws from the same :func:`~panonet.train.sampling.
item_seed`) and the transforms read nothing back from the device (only sizes, which the host
knows), so on the CPU the batches equal the loader's to the bit; on a GPU the resizing and
jitter run on the GPU's kernels, whose float results may differ from the CPU's in the last
bits before the rounding to uint8.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from panonet.data.transforms import Item, collate
from panonet.train.loss import check_class_ids
from panonet.train.sampling import SeededItems

__all__ = ["DeferItems", "DeferredItems", "augment_on_device"]


@dataclasses.dataclass
class DeferredItems:
    """A batch of decoded, not yet augmented full-size items and their augmentation seeds, as
    the loader delivers it for augmentation on the device.

    Attributes:
        items: dataset items (``image`` (3, H, W) uint8, ``semantic`` (H, W) and ``instance``
            (H, W) integer maps, ``file``); their sizes may differ.
        seeds: one :func:`~panonet.train.sampling.item_seed` per item.
    """

    items: list[Item]
    seeds: list[int]

    def pin_memory(self) -> DeferredItems:
        """A copy with the tensors in pinned host memory (the DataLoader calls this with
        ``pin_memory=True``), so that their uploads do not wait for the device."""
        pinned = [
            {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
            for item in self.items
        ]
        return DeferredItems(pinned, list(self.seeds))


class DeferItems:
    """The loader's ``collate_fn`` for augmentation on the device: checks each item's class ids
    on the host (in the worker, where a GPU would have to synchronize) and keeps the items
    whole.

    Args:
        num_classes, ignore_index: the ids :func:`~panonet.train.loss.check_class_ids` allows.
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)

    def __call__(self, pairs: Sequence[tuple[Item, int]]) -> DeferredItems:
        if len(pairs) == 0:
            raise ValueError("DeferItems: empty batch")
        for item, _ in pairs:
            check_class_ids(item["semantic"], self.num_classes, self.ignore_index)
        return DeferredItems([item for item, _ in pairs], [int(seed) for _, seed in pairs])


def augment_on_device(
    batch: DeferredItems, items: SeededItems, device: torch.device | str
) -> dict[str, Any]:
    """Uploads the items of ``batch`` to ``device``, augments each with ``items``' transform
    and its seed (:meth:`SeededItems.augment`) there, and collates them. Reads no value back
    from the device.

    Returns:
        The batch the loader would have collated (:func:`panonet.data.transforms.collate`):
        ``image`` (B, 3, h, w) uint8, ``semantic`` and ``instance`` (B, h, w) int64 on
        ``device``; ``offset`` and ``full_size`` (B, 2) int64 on the host; ``file`` a list.
    """
    device = torch.device(device)
    augmented = []
    for item, seed in zip(batch.items, batch.seeds, strict=True):
        uploaded = {
            k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in item.items()
        }
        augmented.append(items.augment(uploaded, seed))
    out = collate(augmented)
    # Widened after the crop: on the device, and on a crop's pixels rather than the image's.
    for key in ("semantic", "instance"):
        out[key] = out[key].long()
    return out
