"""The input convention shared by the metrics: label maps as tensors or arrays, turned into int64
tensors on one device, and ids compacted to dense indices."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["DENSE_ID_LIMIT", "LabelMap", "as_long_tensor", "compact_ids", "first_device"]

LabelMap = torch.Tensor | np.ndarray

# Above this many distinct id values the dense id -> index table would cost more memory than a
# sort; Cityscapes ids stay below 34 * 1000.
DENSE_ID_LIMIT = 1 << 20


def as_long_tensor(x: LabelMap, fn: str, what: str, device: torch.device | None) -> torch.Tensor:
    """int64 tensor view or copy of an integer tensor / array-like, moved to ``device``."""
    if isinstance(x, torch.Tensor):
        t = x
        bad_dtype = t.is_floating_point() or t.is_complex() or t.dtype == torch.bool
    else:
        a = np.asarray(x)
        bad_dtype = not np.issubdtype(a.dtype, np.integer)
        if not bad_dtype:
            # int64 in numpy first: torch lacks most ops on uint16/uint32 (16-bit PNGs, rgb2id
            # maps), and cannot wrap read-only arrays without a warning.
            a = a.astype(np.int64, copy=False)
            t = torch.from_numpy(a if a.flags.writeable else a.copy())
    if bad_dtype:
        # Float labels usually mean logits or probabilities were passed by mistake.
        raise TypeError(f"{fn}: expected integer {what}, got dtype {x.dtype}")
    if device is not None:
        t = t.to(device)
    return t.long()


def first_device(*xs: Any) -> torch.device | None:
    """The device of the first tensor among ``xs`` (None if there is none)."""
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x.device
    return None


def compact_ids(ids: torch.Tensor, hi: int, scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct values of a flat id tensor in [0, hi], and ``scale`` times each element's index
    among them (the scale folds the row stride of a joint index into the lookup for free)."""
    if hi < DENSE_ID_LIMIT:
        # Dense lookup table: O(pixels), no sort (a sort of 2M ids costs ~10x more on a CPU).
        present = torch.bincount(ids, minlength=hi + 1) > 0
        lut = (torch.cumsum(present, 0) - 1) * scale
        return present.nonzero().view(-1), lut.index_select(0, ids)
    uniq, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    return uniq, inverse * scale if scale != 1 else inverse
