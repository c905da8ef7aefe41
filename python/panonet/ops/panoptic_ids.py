"""Cityscapes panoptic ids from a semantic and an instance map, in two passes over the maps."""

import torch

from panonet.ops import _extension  # noqa: F401  (registers torch.ops.panonet)

__all__ = ["panoptic_ids"]


def panoptic_ids(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    label_of_class: torch.Tensor,
    thing_index: torch.Tensor,
    *,
    num_things: int,
    max_instance_id: int,
    label_divisor: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Panoptic ids per pixel, and the most instances one thing class has in one image.

    Per pixel with trainId ``c`` and instance id ``k``: ``label_of_class[c]`` if ``c`` is
    stuff (``thing_index[c] == -1``); ``label_of_class[c] * label_divisor + j`` if ``c`` is a
    thing class and ``k > 0``, where ``j`` ranks ``k`` among the image's ids of that class
    (0 for the smallest); 0 (void) for a thing pixel with ``k == 0`` or ``c`` outside
    ``[0, C)``. What :func:`panonet.inference.panoptic_ids.panoptic_from_semantic_instance`
    computes, which checks its inputs and calls this.

    Args:
        semantic: (B, H, W) or (H, W) integer trainIds.
        instance: integer ids of the same shape, in ``[0, max_instance_id]`` on thing pixels
            (the CPU raises otherwise; CUDA clamps them, reading nothing back).
        label_of_class: (C,) int64 labelId per trainId, on the maps' device.
        thing_index: (C,) int64 index of each trainId among the thing classes, -1 for stuff,
            values below ``num_things``.
        num_things: the number of thing classes.
        max_instance_id: the bound on the ids; the kernels hold a table of
            ``num_things * (max_instance_id + 1)`` entries per image.
        label_divisor: 1000 in Cityscapes.

    Returns:
        (int64 panoptic ids of ``semantic``'s shape, int64 0-dim tensor: the most distinct ids
        of one thing class in one image; beyond ``label_divisor`` that class's ids collide).
        Both on the maps' device; nothing waits for a GPU.
    """
    return torch.ops.panonet.panoptic_ids(
        semantic,
        instance,
        label_of_class,
        thing_index,
        int(num_things),
        int(max_instance_id),
        int(label_divisor),
    )


@torch.library.register_fake("panonet::panoptic_ids")
def _panoptic_ids_fake(
    semantic, instance, label_of_class, thing_index, num_things, max_instance_id, label_divisor
):
    return (
        semantic.new_empty(semantic.shape, dtype=torch.int64),
        semantic.new_empty((), dtype=torch.int64),
    )
