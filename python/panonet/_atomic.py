"""Atomic file writes: an interrupted run never leaves a truncated output under the final name."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["publish_mode", "write_atomic", "write_json_atomic"]


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import (single-threaded).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def publish_mode(tmp: str | os.PathLike) -> None:
    """Gives a ``tempfile.mkstemp`` file (created 0600) the permissions a plain ``open`` would
    have (0666 minus the umask), so outputs renamed from it are not private to their owner."""
    os.chmod(tmp, 0o666 & ~_UMASK)


def write_atomic(
    path: str | os.PathLike, write: Callable[[str], object], *, stable_tmp: bool = False
) -> Path:
    """Calls ``write(tmp)`` on a temporary file next to ``path``, then renames it onto ``path``.

    The temporary file is hidden (leading dot) and keeps ``path``'s suffix, so writers that
    infer the format from the name still work; it is removed if ``write`` fails. The parent
    folder is created. Returns ``path`` as a Path.

    With ``stable_tmp`` the temporary file is ``<name>.tmp``, the same every time: a process
    killed mid-write leaves a file that the next write of ``path`` reuses and renames away
    (resumable outputs end clean), at the price of one writer per path at a time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if stable_tmp:
        tmp = str(path.with_name(path.name + ".tmp"))
        Path(tmp).unlink(missing_ok=True)  # a killed run's leftover, maybe not ours to write
        Path(tmp).touch()
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    try:
        publish_mode(tmp)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_safe(x: object) -> object:
    """NaN / inf become null: strict JSON has no NaN."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_json_atomic(path: str | os.PathLike, data: object) -> Path:
    """``data`` as indented strict JSON (NaN and inf written as null), atomically."""
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
