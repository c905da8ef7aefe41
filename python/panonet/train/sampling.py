"""Training data order: seeded augmentation (each image's by its (seed, epoch, index)) and a
resumable, infinite, rank-aware batch sampler; see :mod:`panonet.train.trainer` for how they make
a resumed run exact."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ["SeededItems", "StepBatchSampler", "item_seed"]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of dataset image ``index`` in ``epoch``: a 63-bit integer.

    Mixed by numpy's SeedSequence, so nearby (seed, epoch, index) give unrelated streams.
    """
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededItems(Dataset):
    """``dataset[index]`` augmented by ``transform`` with RNG seeded per (epoch, index).

    Keys are ``(index, epoch)`` pairs (what :class:`StepBatchSampler` yields). The transform
    draws from torch's global CPU generator (the transforms' default), which is seeded with
    :func:`item_seed` for the item and restored afterwards, so the main process's RNG is left
    untouched when loading without workers.

    With ``deferred`` the item is returned unaugmented together with its seed, ``(item,
    seed)``, and :meth:`augment` applies the transform later, elsewhere (on the training device:
    :mod:`panonet.train.device_augment`) with the same draws.

    Returns the transformed item (see :mod:`panonet.data.transforms`), or ``(item, seed)``.
    """

    def __init__(self, dataset: Dataset, transform, seed: int, *, deferred: bool = False) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self.deferred = bool(deferred)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        item = self.dataset[index]
        seed = item_seed(self.seed, epoch, index)
        return (item, seed) if self.deferred else self.augment(item, seed)

    def augment(self, item: dict[str, Any], seed: int) -> dict[str, Any]:
        """``transform(item)`` with torch's global CPU generator seeded with ``seed`` (an
        :func:`item_seed`) and restored afterwards; the item's tensors may be on any device."""
        if self.transform is None:
            return item
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would also reseed (and, with
            # devices=[], not restore) the CUDA generators.
            torch.default_generator.manual_seed(seed)
            return self.transform(item)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite per-rank batches of ``(index, epoch)`` keys, starting at a global step.

    Epoch ``e`` is ``sampler``'s permutation after ``sampler.set_epoch(e)`` (a
    DistributedSampler with ``drop_last=True``: rank r gets elements r, r + W, r + 2W, ... of
    the seeded permutation), cut into batches of ``batch_size`` (the last partial batch is
    dropped, so every step has a full global batch). Global step ``s`` is batch
    ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch`` on every rank.

    Args:
        sampler: the DistributedSampler (``num_replicas`` / ``rank`` given explicitly, also for
            a single process).
        batch_size: images per batch on this rank.
        start_step: the first global step to produce.

    Raises:
        ValueError: the dataset is too small for one batch per rank.
    """

    def __init__(self, sampler: DistributedSampler, batch_size: int, start_step: int = 0) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.steps_per_epoch = len(sampler) // self.batch_size
        if self.steps_per_epoch < 1:
            world = sampler.num_replicas
            raise ValueError(
                f"the training split has {len(sampler.dataset)} images, fewer than one global "
                f"batch ({self.batch_size * world} = {self.batch_size} per process x {world})"
            )
        self.start_step = int(start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, first = divmod(self.start_step, self.steps_per_epoch)
        b = self.batch_size
        while True:
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for i in range(first, self.steps_per_epoch):
                yield [(int(idx), epoch) for idx in order[i * b : (i + 1) * b]]
            first = 0
            epoch += 1
