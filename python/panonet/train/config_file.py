"""Reading a training configuration: a TOML or JSON file, then ``KEY=VALUE`` overrides, into a
:class:`~panonet.train.config.TrainConfig`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from panonet.train.config import TrainConfig

__all__ = ["load_train_config", "parse_override", "toml_loads"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.01"`` -> (["optim", "lr"], 0.01): a dotted key and a TOML value.

    The value is read as a TOML value (``64``, ``0.5``, ``true``, ``[64, 128]``, ``"text"``);
    ``none``/``null`` mean None; anything else that is not valid TOML is taken as a string
    (``data_root=/data/cityscapes`` works without quotes).

    Raises:
        ValueError: no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"expected an override KEY=VALUE (e.g. optim.lr=0.01), got {text!r}")
    if raw.lower() in ("none", "null"):
        return key.split("."), None
    try:
        value = toml_loads(f"v = {raw}")["v"]
    except ValueError:
        value = raw
    return key.split("."), value


def load_train_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Read a TOML or JSON config file (or start from the defaults) and apply overrides.

    Args:
        path: a ``.toml`` or ``.json`` file (see the module docstring), or None for defaults.
        overrides: ``KEY=VALUE`` strings (:func:`parse_override`), applied in order; a dotted
            key sets a field of the optim / stage2_optim / loss table.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unreadable file, an unknown key or an invalid value, naming it.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                data = toml_loads(text)
        except ValueError as e:
            raise ValueError(f"{path}: cannot parse the config: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a table of keys at the top level")
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = {} if child is None else child
                if not isinstance(child, dict):
                    raise ValueError(f"override {text!r}: {k} is not a table")
                node[k] = child
            node = child
        node[keys[-1]] = value
    try:
        return TrainConfig.from_dict(data)
    except TypeError as e:  # e.g. a table given where a value was expected
        raise ValueError(f"invalid config{f' {path}' if path else ''}: {e}") from e


def toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ValueError(
                "TOML configs need Python >= 3.11 or the tomli package; use a .json config"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(str(e)) from None
