"""Argument checks shared by the post-processing functions (messages: what was expected, what
arrived, and in which function)."""

import torch

__all__ = ["as_batched_labels", "check_float", "check_int", "check_nonneg_int"]


def check_float(x, fn: str, name: str) -> None:
    """Raises TypeError unless ``x`` is a floating tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: expected {name} with a floating dtype, got {x.dtype}")


def check_int(x, fn: str, name: str) -> None:
    """Raises TypeError unless ``x`` is an integer (not bool) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{fn}: expected {name} with an integer dtype, got {x.dtype}")


def as_batched_labels(x, unbatched: bool, fn: str, name: str) -> torch.Tensor:
    """An integer label map (H, W) when ``unbatched``, else (B, H, W), returned as (B, H, W)."""
    check_int(x, fn, name)
    want = 2 if unbatched else 3
    if x.dim() != want:
        layout = "(H, W)" if unbatched else "(B, H, W)"
        raise ValueError(
            f"{fn}: expected {name} of shape {layout} (like the embedding), got {tuple(x.shape)}"
        )
    return x.unsqueeze(0) if unbatched else x


def check_nonneg_int(value, fn: str, name: str) -> int:
    """``value`` as an int, or ValueError unless it is an integer >= 0."""
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{fn}: expected {name} as an integer >= 0, got {value!r}")
    return int(value)
