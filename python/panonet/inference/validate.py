"""Argument checks shared by the post-processing functions (messages: what was expected, what
arrived, and in which function)."""

import torch

__all__ = [
    "as_batched_labels",
    "check_float",
    "check_int",
    "check_nonneg_int",
    "paired_label_maps",
]


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


def paired_label_maps(semantic, instance, fn: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """A semantic and an instance map of one shape, (B, H, W) or (H, W), as int64 (B, H, W)
    tensors, and whether they came without the batch dimension."""
    check_int(semantic, fn, "semantic")
    check_int(instance, fn, "instance")
    if instance.shape != semantic.shape or semantic.dim() not in (2, 3):
        raise ValueError(
            f"{fn}: expected semantic and instance of one shape (B, H, W) or (H, W), got "
            f"{tuple(semantic.shape)} and {tuple(instance.shape)}"
        )
    unbatched = semantic.dim() == 2
    sem = (semantic.unsqueeze(0) if unbatched else semantic).long()
    inst = (instance.unsqueeze(0) if unbatched else instance).long()
    return sem, inst, unbatched
