"""Class-wise mean-shift of a pixel embedding into instance ids (PanoNet Sec. III-D)."""

from collections.abc import Mapping, Sequence

import torch

from panonet.ops import _extension  # noqa: F401  (registers torch.ops.panonet)

__all__ = ["cluster_instances"]


def cluster_instances(
    embedding: torch.Tensor,
    semantic: torch.Tensor,
    bandwidth: torch.Tensor | Sequence[float] | Mapping[int, float],
    *,
    min_bin_freq: int = 1,
    max_iter: int = 300,
    check_inputs: bool = True,
) -> torch.Tensor:
    """Instance ids from mean-shift of each clustered class's pixel embeddings, per image.

    For every image and every class ``c`` present with ``bandwidth[c] > 0``, the embeddings of
    that class's pixels are clustered by :func:`panonet.ops.mean_shift` (bin seeding,
    ``cluster_all=True``) with that class's bandwidth.

    Args:
        embedding: (B, D, H, W) or (D, H, W) floating pixel embeddings.
        semantic: (B, H, W) or (H, W) integer class ids on the same device. Negative ids and ids
            >= 255 (Cityscapes' ignore) are never clustered; an id in [len(bandwidth), 255) is an
            error (the bandwidth table does not cover it).
        bandwidth: (num_classes,) float tensor, sequence, or ``{class: bandwidth}`` mapping
            (missing classes: not clustered); a value <= 0 marks a class not to cluster (stuff).
        min_bin_freq, max_iter: as in :func:`panonet.ops.mean_shift`.
        check_inputs: on CUDA, ``False`` skips the checks that read values back from the GPU
            (a finite embedding and bandwidth; class ids that the table covers), each of which
            waits for it: the call then never synchronizes with the host and can be captured in
            a CUDA graph (give ``bandwidth`` as a tensor on the GPU for that). Unchecked, class
            ids in ``[len(bandwidth), 255)`` are not clustered and pixels of a class whose
            embedding holds NaN or Inf get unspecified ids. On the CPU the checks always run
            (they do not wait for anything).

    Returns:
        int64 instance ids of ``semantic``'s shape: 0 where not clustered, 1..K unique within
        each image, numbered by class id and then in each class by center rank.
    """
    if isinstance(bandwidth, Mapping):
        size = max((int(c) + 1 for c in bandwidth), default=0)
        table = torch.zeros(size, dtype=torch.float64)
        for c, value in bandwidth.items():
            table[int(c)] = float(value)
        bandwidth = table
    elif not isinstance(bandwidth, torch.Tensor):
        bandwidth = torch.tensor(list(bandwidth), dtype=torch.float64)
    return torch.ops.panonet.cluster_instances(
        embedding.detach(),
        semantic,
        bandwidth,
        int(min_bin_freq),
        int(max_iter),
        bool(check_inputs),
    )


@torch.library.register_fake("panonet::cluster_instances")
def _cluster_instances_fake(
    embedding, semantic, bandwidth, min_bin_freq, max_iter, check_inputs=True
):
    if embedding.device != semantic.device:
        raise ValueError(
            "panonet.ops.cluster_instances: expected embedding and semantic on the same device, "
            f"got {embedding.device} and {semantic.device}"
        )
    return semantic.new_empty(semantic.shape, dtype=torch.int64)
