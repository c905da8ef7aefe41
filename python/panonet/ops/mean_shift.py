"""Bin-seeded flat-kernel mean-shift with scikit-learn's exact semantics, as one operator."""

import torch

from panonet.ops import _extension  # noqa: F401  (registers torch.ops.panonet)

__all__ = ["mean_shift"]


def mean_shift(
    points: torch.Tensor,
    bandwidth: float,
    *,
    bin_seeding: bool = True,
    min_bin_freq: int = 1,
    max_iter: int = 300,
    cluster_all: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-shift clustering, the same result as ``sklearn.cluster.MeanShift(...).fit(points)``.

    Seeds are the bins of size ``bandwidth`` holding at least ``min_bin_freq`` points (or every
    point, where sklearn falls back to that); each seed moves to the mean of the points within
    ``bandwidth`` (inclusive) until it shifts by at most ``1e-3 * bandwidth`` or after
    ``max_iter`` iterations; converged centers are ranked by how many points their last window
    held and those within ``bandwidth`` of a better-ranked one are dropped; every point takes
    its nearest center.

    Args:
        points: (N, D) float32 or float64, on the CPU or a GPU; finite.
        bandwidth: radius of the flat kernel, > 0.
        bin_seeding: seed from occupied bins (True) or from every point (False).
        min_bin_freq: minimum number of points in a bin for it to seed, >= 1.
        max_iter: maximum number of iterations per seed, >= 0.
        cluster_all: label every point; if False, points farther than ``bandwidth`` from every
            center get -1.

    Returns:
        ``labels``: (N,) int64 index into ``centers`` (or -1), and ``centers``: (K, D) in the
        dtype of ``points``, in ``sklearn``'s ``cluster_centers_`` order.

    Where sklearn raises because no seed had any point within ``bandwidth`` (possible with
    bin seeding in many dimensions) or because N = 0, this returns K = 0 centers and labels -1.
    Internally the CPU computes in float64; float32 input is converted.
    """
    return torch.ops.panonet.mean_shift(
        points.detach(),
        float(bandwidth),
        bool(bin_seeding),
        int(min_bin_freq),
        int(max_iter),
        bool(cluster_all),
    )


@torch.library.register_fake("panonet::mean_shift")
def _mean_shift_fake(points, bandwidth, bin_seeding, min_bin_freq, max_iter, cluster_all):
    if points.dim() != 2:
        raise ValueError(
            "panonet.ops.mean_shift: expected points of shape (N, D), got a "
            f"{points.dim()}-D tensor of shape {list(points.shape)}"
        )
    num_centers = torch.library.get_ctx().new_dynamic_size()
    return (
        points.new_empty((points.shape[0],), dtype=torch.int64),
        points.new_empty((num_centers, points.shape[1])),
    )
