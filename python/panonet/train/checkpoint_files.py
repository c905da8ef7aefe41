"""Where a training run keeps its checkpoints, which one a resumed run continues from, and what
changed in the config since it was written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_KIND",
    "FINAL_CHECKPOINT",
    "LAST_CHECKPOINT",
    "STAGE1_CHECKPOINT",
    "config_changes",
    "find_checkpoint",
]

CHECKPOINT_KIND = "panonet-train/1"
"""Value of a training checkpoint's ``kind`` key (bumped when the layout changes)."""

LAST_CHECKPOINT = "last.pt"
"""Periodic / interruption checkpoint, overwritten atomically."""
STAGE1_CHECKPOINT = "stage1.pt"
"""The state at the end of stage 1 (stage-1 model, before the surgery)."""
FINAL_CHECKPOINT = "final.pt"
"""The state at the end of the run."""


def find_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The checkpoint that ``--resume auto`` continues from: the newer of ``last.pt`` and
    ``final.pt`` in ``checkpoint_dir``, None when there is neither."""
    found = [
        p
        for p in (Path(checkpoint_dir) / LAST_CHECKPOINT, Path(checkpoint_dir) / FINAL_CHECKPOINT)
        if p.is_file()
    ]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every differing (nested) config value."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif (list(a) if isinstance(a, (list, tuple)) else a) != (
            list(b) if isinstance(b, (list, tuple)) else b
        ):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
