"""State-dict checks and the stage-1 -> stage-2 surgery of PanoNet's two-stage training.

Stage 1 trains the instance branch on RGB only (``use_coords=False``); stage 2 adds the two
coordinate input channels (sec. III-C). :func:`widen_stage1_state_dict` turns a stage-1 state dict
into one for the stage-2 model by giving each input conv two zero-initialised input channels, so
the stage-2 model starts out computing exactly the stage-1 function; everything else must match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = ["check_state_dict", "state_dict_mismatch", "widen_stage1_state_dict"]

_MAX_LISTED = 8


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def state_dict_mismatch(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape mismatches) of ``state_dict`` against ``model.state_dict()``.

    Shape mismatches read ``"key: checkpoint (a, b) vs model (c, d)"``. All three lists are empty
    exactly when ``model.load_state_dict(state_dict, strict=True)`` would succeed.
    """
    target = model.state_dict()
    missing = sorted(k for k in target if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in target)
    shapes = []
    for k in sorted(target.keys() & state_dict.keys()):
        src = state_dict[k]
        if not isinstance(src, torch.Tensor):
            shapes.append(f"{k}: checkpoint {type(src).__name__} vs model tensor")
        elif tuple(src.shape) != tuple(target[k].shape):
            shapes.append(f"{k}: checkpoint {tuple(src.shape)} vs model {tuple(target[k].shape)}")
    return missing, unexpected, shapes


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str = "state dict"
) -> None:
    """Raise ValueError naming every missing / unexpected / mis-shaped key, if there are any."""
    missing, unexpected, shapes = state_dict_mismatch(model, state_dict)
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {_listing(shapes)}")
    config = getattr(model, "config", None)
    name = type(model).__name__ + (
        "(" + ", ".join(f"{k}={v!r}" for k, v in config.items()) + ")" if config else ""
    )
    raise ValueError(f"{what} does not match {name}: " + "; ".join(parts))


def widen_stage1_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    input_conv_keys: Iterable[str],
    *,
    extra_channels: int = 2,
) -> dict[str, torch.Tensor]:
    """A copy of ``state_dict`` with the input convs widened for ``model``, checked to fit.

    Each key of ``input_conv_keys`` whose conv weight is (O, C, k, k) in ``state_dict`` and
    (O, C + extra_channels, k, k) in ``model`` gets ``extra_channels`` zero input channels
    appended (the new channels are the last ones, where the model concatenates its coordinate
    maps). Keys that already have the model's shape are kept, so a stage-2 state dict also
    passes. Anything else that does not match raises.

    Raises:
        ValueError: naming the missing, unexpected and mis-shaped keys left after widening.
    """
    target = model.state_dict()
    out = dict(state_dict)
    for key in input_conv_keys:
        src, tgt = out.get(key), target.get(key)
        if not isinstance(src, torch.Tensor) or tgt is None or src.dim() != 4:
            continue
        if (
            src.shape[1] + extra_channels == tgt.shape[1]
            and src.shape[0] == tgt.shape[0]
            and src.shape[2:] == tgt.shape[2:]
        ):
            widened = src.new_zeros(tgt.shape)
            widened[:, : src.shape[1]] = src
            out[key] = widened
    check_state_dict(model, out, what="stage-1 state dict (after widening the input convs)")
    return out
