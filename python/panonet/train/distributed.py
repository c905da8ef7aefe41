"""Process-group setup for multi-process training under ``torchrun`` (env:// rendezvous).

``torchrun --nproc_per_node N -m panonet train ...`` (or ``python -m torch.distributed.run``)
starts N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set; :func:`init_distributed` joins them into one process group: NCCL when the
processes train on GPUs, gloo on the CPU. A plain ``python -m panonet train`` (no
``WORLD_SIZE``, or ``WORLD_SIZE=1``) stays a single process without a group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "destroy_distributed", "dist_info", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job: ``rank`` of ``world_size``, GPU ``local_rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """The current process group's rank / size (single process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return DistInfo(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    return DistInfo()


def init_distributed(device: str = "auto") -> bool:
    """Join the torchrun process group if the environment asks for one.

    Args:
        device: the training device setting (:attr:`panonet.train.TrainConfig.device`): GPUs
            ("auto" with CUDA available, "cuda", "cuda:N") use NCCL and pin each process to
            ``cuda:LOCAL_RANK``; the CPU uses gloo.

    Returns:
        True when this call created the group (the caller should then call
        :func:`destroy_distributed` at the end), False for a single process or an already
        initialised group.

    Raises:
        RuntimeError: ``WORLD_SIZE > 1`` but torch.distributed is unavailable.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        # Before the NCCL group exists: each process owns one GPU.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
    return True


def destroy_distributed(*, barrier: bool = True) -> None:
    """Leave the process group.

    Args:
        barrier: wait for every rank first, so that no rank tears the group down while another
            still communicates (rank 0 writing the final checkpoint). Pass False after an error
            or an interruption, when the other ranks may never arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()
