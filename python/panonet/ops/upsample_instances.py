"""Instance ids brought to the output resolution, masked by class, filtered and renumbered."""

import torch

from panonet.ops import _extension  # noqa: F401  (registers torch.ops.panonet)

__all__ = ["upsample_instances"]


def upsample_instances(
    instance: torch.Tensor,
    semantic_lowres: torch.Tensor,
    size: tuple[int, int],
    *,
    semantic_fullres: torch.Tensor | None = None,
    max_instance_id: int,
    min_size: int = 0,
    reach: int = 0,
) -> torch.Tensor:
    """The low-resolution instance map at the output resolution, in passes over the output.

    What :func:`panonet.inference.merge.instances_from_embedding` does after clustering:

    1. each output pixel takes the id of its source pixel, nearest neighbour with half-pixel
       centres (``floor((t + 0.5) * h / H)``, exactly, as
       :func:`panonet.data.transforms.resize_labels`);
    2. where ``semantic_fullres`` is given, a pixel keeps its id only if its class there equals
       the id's class (that of the id's low-resolution pixels in ``semantic_lowres``, which share
       one, as :func:`panonet.ops.cluster_instances` gives them); with ``reach`` > 0, a pixel
       whose source pixel has another class than its own (a structure thinner than the
       low-resolution grid, such as a bicycle's frame or a leg, or a boundary that moved in the
       upsampling) takes instead the id of the nearest low-resolution pixel of its own class with
       an id > 0 within ``reach`` rows and columns of the source pixel (distance between pixel
       centres, exact; ties to the first in row-major order), or 0 if there is none;
    3. ids with fewer than ``max(min_size, 1)`` pixels after that become 0, and the rest are
       renumbered 1..K in their order, per image.

    Args:
        instance: (B, h, w) or (h, w) integer ids in ``[0, max_instance_id]``.
        semantic_lowres: integer classes of the same shape.
        size: output (H, W).
        semantic_fullres: optional (B, H, W) or (H, W) integer classes at the output size.
        max_instance_id: the bound on the ids (the kernels hold tables of that length per
            image); ids beyond it raise on the CPU and are clamped on CUDA (nothing is read
            back from a GPU).
        min_size: the smallest id kept, in output pixels.
        reach: how far (in low-resolution pixels) a pixel whose source has another class looks
            for an instance of its class; 0 (default): not at all. Needs (2 reach + 1) H W < 2^31.

    Returns:
        int64 ids, (B, H, W) or (H, W), on the maps' device.
    """
    size = tuple(size)
    if len(size) != 2:
        raise ValueError(f"panonet.ops.upsample_instances: expected size (H, W), got {size}")
    return torch.ops.panonet.upsample_instances(
        instance,
        semantic_lowres,
        semantic_fullres,
        [int(size[0]), int(size[1])],
        int(max_instance_id),
        int(min_size),
        int(reach),
    )


@torch.library.register_fake("panonet::upsample_instances")
def _upsample_instances_fake(
    instance, semantic_lowres, semantic_fullres, size, max_instance_id, min_size, reach=0
):
    H, W = size
    shape = (H, W) if instance.dim() == 2 else (instance.shape[0], H, W)
    return instance.new_empty(shape, dtype=torch.int64)
