"""PanoNet checkpoints: ``{"model": state_dict, "config": PanoNet kwargs, ...extra}`` files.

One loader for the CLI, the predictor and the trainer. Files are read with
``torch.load(weights_only=True)`` (no pickled code runs), so everything saved in them must be
tensors, containers and plain Python scalars/strings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from panonet._atomic import write_atomic
from panonet.models.panonet import PanoNet
from panonet.models.surgery import check_state_dict, state_dict_mismatch

__all__ = ["load_model", "save_checkpoint"]

_CONFIG_KEYS = (
    "num_classes",
    "embedding_dim",
    "use_coords",
    "share_weights",
    "width",
    "coord_scale",
    "coord_output",
    "detail",
)


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel keeps the model in .module, torch.compile in ._orig_mod; a
    # checkpoint must hold the plain model's keys so that it loads anywhere.
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Write ``{"model": state dict on CPU, "config": model.config, **extra}`` atomically.

    The file is written to a temporary file in the same directory and moved over ``path`` with
    ``os.replace``, so a crash mid-write never leaves a truncated checkpoint behind. ``extra``
    (epoch, optimizer state, ...) must be loadable with ``weights_only=True``.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: ``extra`` uses the reserved keys "model" or "config".
    """
    reserved = {"model", "config"} & extra.keys()
    if reserved:
        raise ValueError(f"save_checkpoint: {sorted(reserved)} are reserved keys of the file")
    model = _unwrap(model)
    payload: dict[str, Any] = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": dict(getattr(model, "config", {})),
        **extra,
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint

    return write_atomic(path, write)


def load_model(path_or_state: str | os.PathLike | Mapping[str, Any], **overrides: Any) -> PanoNet:
    """Build a PanoNet from a checkpoint and load its weights (strictly), in eval mode, on CPU.

    Args:
        path_or_state: a file path, or an already loaded object: either a raw PanoNet state
            dict or a dict with key "model" (the state dict) and optionally "config" (PanoNet
            keyword arguments, as written by :func:`save_checkpoint`).
        overrides: PanoNet keyword arguments that replace the checkpoint's "config" (for a raw
            state dict, the defaults ``PanoNet()``).

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint, unknown config keys, or weights that do not fit the
            configuration; the message names the missing / unexpected / mis-shaped keys.
    """
    where = "checkpoint"
    if isinstance(path_or_state, (str, os.PathLike)):
        where = f"checkpoint {os.fspath(path_or_state)}"
        obj = torch.load(path_or_state, map_location="cpu", weights_only=True)
    else:
        obj = path_or_state
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a state dict or a dict with 'model', got {type(obj)}")
    if isinstance(obj.get("model"), Mapping):
        state, config = obj["model"], dict(obj.get("config") or {})
    else:
        state, config = obj, {}
    config.update(overrides)
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown PanoNet config keys {unknown}; known: {_CONFIG_KEYS}")
    model = PanoNet(**config)

    missing, unexpected, shapes = state_dict_mismatch(model, state)
    if shapes and not (missing or unexpected):
        stage1 = all(s.split(":")[0] in model.input_conv_keys() for s in shapes)
        if stage1 and model.use_coords:
            where += (
                " (its input convs have no coordinate channels: a stage-1 checkpoint? load it "
                "with use_coords=False, or into a stage-2 model with PanoNet.load_stage1)"
            )
    check_state_dict(model, state, what=where)
    model.load_state_dict(state, strict=True)
    return model.eval()
