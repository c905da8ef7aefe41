"""Per-class mean-shift bandwidths: the table :func:`panonet.ops.cluster_instances` consumes.

PanoNet (Sec. III-D) clusters each thing class's embeddings with its own bandwidth, starting
from the variance margin and searched per class on the training set. Callers pass
``default = 2 * delta_v`` (0.5 for the paper's delta_v = 0.25): the hinge of the variance loss
pulls pixels to within delta_v of their center, so two pixels of one instance are at most
2 * delta_v apart. Stuff classes get 0, which the op reads as "do not cluster".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path

import torch

from panonet.data.labels import CLASS_NAMES, THING_TRAIN_IDS

__all__ = ["BandwidthSpec", "bandwidth_table"]

BandwidthSpec = (
    torch.Tensor | Sequence[float] | Mapping[int | str, float] | str | os.PathLike | None
)
"""What :func:`bandwidth_table` accepts (see there)."""


def bandwidth_table(
    bandwidths: BandwidthSpec = None,
    *,
    num_classes: int = len(CLASS_NAMES),
    thing_train_ids: Iterable[int] = THING_TRAIN_IDS,
    default: float = 0.5,
) -> torch.Tensor:
    """Build the (num_classes,) bandwidth table for :func:`panonet.ops.cluster_instances`.

    Args:
        bandwidths: one of

            - ``None``: every thing class gets ``default``;
            - a (num_classes,) tensor or sequence, indexed by trainId: thing classes need a
              finite value > 0, stuff classes a value <= 0 (normalised to 0);
            - a mapping ``{trainId: bw}``, with trainId an int, a string of digits or a class
              name (``"car"``, case-insensitive); thing classes not named get ``default``;
              naming a stuff class is an error (stuff is never clustered);
            - a path (``str`` or :class:`os.PathLike`) to a JSON file holding such a mapping
              (or sequence), at top level or under a ``"bandwidths"`` key.
        num_classes: number of trainIds C.
        thing_train_ids: trainIds that are clustered; every other class is stuff.
        default: bandwidth of thing classes not given explicitly; must be finite and > 0.

    Returns:
        (num_classes,) float32 CPU tensor: > 0 for thing classes, 0 for stuff classes.

    Raises:
        ValueError: wrong length, unknown class, a non-positive or NaN thing bandwidth, a
            bandwidth for a stuff class, or an unreadable / invalid JSON file (named).
        TypeError: an unsupported ``bandwidths`` type or a non-numeric value.
    """
    num_classes = int(num_classes)
    if num_classes <= 0:
        raise ValueError(f"bandwidth_table: num_classes must be > 0, got {num_classes}")
    things = sorted({int(t) for t in thing_train_ids})
    bad = [t for t in things if not 0 <= t < num_classes]
    if bad:
        raise ValueError(
            f"bandwidth_table: thing_train_ids must lie in [0, {num_classes}), got {bad}"
        )
    default = _number(default, "default")
    if not (math.isfinite(default) and default > 0):
        raise ValueError(f"bandwidth_table: default must be finite and > 0, got {default}")

    if isinstance(bandwidths, (str, os.PathLike)):
        path = Path(bandwidths)
        spec = _read_json(path)
        try:
            return _table(spec, num_classes, things, default)
        except (ValueError, TypeError) as err:
            # Name the file: the caller only sees a path, not the mapping that was in it.
            raise type(err)(f"{err} (in bandwidth file {path})") from err
    return _table(bandwidths, num_classes, things, default)


def _table(spec, num_classes: int, things: list[int], default: float) -> torch.Tensor:
    thing_set = set(things)
    table = torch.zeros(num_classes, dtype=torch.float32)
    if spec is None:
        table[things] = default
        return table

    if isinstance(spec, Mapping):
        table[things] = default
        seen: dict[int, object] = {}
        for key, value in spec.items():
            c = _class_index(key, num_classes)
            if c in seen:
                raise ValueError(
                    f"bandwidth_table: class {_describe(c)} given twice (as {seen[c]!r} and "
                    f"{key!r})"
                )
            seen[c] = key
            if c not in thing_set:
                raise ValueError(
                    f"bandwidth_table: got a bandwidth for stuff class {_describe(c)}; stuff "
                    f"classes are never clustered, remove the entry (thing classes: {things})"
                )
            table[c] = _thing_value(value, c)
        return table

    if isinstance(spec, torch.Tensor):
        if spec.dim() != 1:
            raise ValueError(
                f"bandwidth_table: expected a 1-D (num_classes={num_classes},) tensor, got "
                f"shape {tuple(spec.shape)}"
            )
        values = spec.detach().cpu().tolist()
    elif isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        values = list(spec)
    else:
        raise TypeError(
            "bandwidth_table: expected None, a tensor, a sequence, a mapping or a JSON path, "
            f"got {type(spec).__name__}"
        )
    if len(values) != num_classes:
        raise ValueError(
            f"bandwidth_table: expected {num_classes} bandwidths (one per trainId), got "
            f"{len(values)}"
        )
    for c, value in enumerate(values):
        if c in thing_set:
            table[c] = _thing_value(value, c)
        else:
            v = _number(value, f"class {_describe(c)}")
            if not v <= 0:  # also catches NaN
                raise ValueError(
                    f"bandwidth_table: stuff class {_describe(c)} must have bandwidth <= 0 "
                    f"(not clustered), got {v}; thing classes: {things}"
                )
    return table


def _thing_value(value, c: int) -> float:
    v = _number(value, f"class {_describe(c)}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(
            f"bandwidth_table: thing class {_describe(c)} needs a finite bandwidth > 0, got {v}"
        )
    return v


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool:
        return float(value)
    # bool is a Real (an int); True as a bandwidth is almost certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"bandwidth_table: {what}: expected a number, got {value!r}")
    return float(value)


def _class_index(key, num_classes: int) -> int:
    if isinstance(key, bool):
        raise ValueError(f"bandwidth_table: unknown class {key!r}")
    if isinstance(key, int):
        c = key
    elif isinstance(key, str) and key.strip().isdigit():
        c = int(key.strip())
    elif isinstance(key, str):
        name = key.strip().lower()
        names = list(CLASS_NAMES[:num_classes])
        if name not in names:
            raise ValueError(
                f"bandwidth_table: unknown class {key!r}; expected a trainId in "
                f"[0, {num_classes}) or one of {names}"
            )
        c = names.index(name)
    else:
        raise ValueError(f"bandwidth_table: unknown class {key!r} (type {type(key).__name__})")
    if not 0 <= c < num_classes:
        raise ValueError(f"bandwidth_table: unknown class id {key!r}; expected [0, {num_classes})")
    return c


def _describe(c: int) -> str:
    return f"{c} ({CLASS_NAMES[c]})" if c < len(CLASS_NAMES) else str(c)


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"bandwidth_table: cannot read bandwidth file {path}: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"bandwidth_table: invalid JSON in bandwidth file {path}: {err}") from err
    if isinstance(data, Mapping) and "bandwidths" in data:
        data = data["bandwidths"]
    if not isinstance(data, (Mapping, list)):
        raise ValueError(
            f"bandwidth_table: bandwidth file {path} must hold a mapping {{class: bandwidth}} "
            f"(or a list, one per trainId), at top level or under 'bandwidths'; got "
            f"{type(data).__name__}"
        )
    return data
