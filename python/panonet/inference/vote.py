"""Clustering groups of look-alike thing classes together, each instance then taking the class
most of its pixels have (``merge(vote_groups=...)``).

An object whose pixels the semantic map splits between two classes of a group (a truck partly
labelled bus) stays one instance of one class instead of two fragments. With a bound on the
instance ids (``max_instance_id``) nothing here reads values back from the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import torch

from panonet.data.labels import CLASSES
from panonet.inference.validate import paired_label_maps

__all__ = ["THING_VOTE_GROUPS", "VoteTables", "relabel", "vote_instance_classes", "vote_tables"]


def _train_ids(*names: str) -> tuple[int, ...]:
    by_name = {c.name: c.train_id for c in CLASSES}
    return tuple(by_name[n] for n in names)


THING_VOTE_GROUPS: tuple[tuple[int, ...], ...] = (
    _train_ids("person", "rider"),
    _train_ids("car", "truck", "bus", "train"),
    _train_ids("motorcycle", "bicycle"),
)
"""Thing classes that look alike and are clustered together under ``merge(vote_groups=...)``:
people, four-wheeled vehicles, two-wheelers. A rider and the bicycle under them are in different
groups, so they stay two instances even where their embeddings are close."""


class VoteTables(NamedTuple):
    """Tables of :func:`vote_tables`, on the bandwidth table's device."""

    anchor_of: torch.Tensor  # (C,) int64: the class each class's pixels are relabelled to
    bandwidth: torch.Tensor  # (C,) the bandwidth table for the relabelled map
    voters: torch.Tensor  # (C,) bool: the classes that take part in a group's vote


def vote_tables(bandwidth: torch.Tensor, groups: Sequence[Sequence[int]]) -> VoteTables:
    """Tables for clustering groups of classes together.

    A group's pixels are relabelled to its first class, which gets the median of the group's
    positive bandwidths (the lower middle value for an even count; 0, not clustered, if none);
    the other classes of the group get 0. Computed on the bandwidth's device without reading
    its values back.

    Args:
        bandwidth: (C,) floating per-class bandwidths.
        groups: disjoint, non-empty groups of class ids in ``[0, C)``.

    Raises:
        ValueError: groups that overlap, are empty or hold ids outside ``[0, C)``.
    """
    C = bandwidth.numel()
    key = tuple(tuple(int(c) for c in g) for g in groups)
    anchor_of, voters, members = _group_tables(key, C, str(bandwidth.device))
    grouped = bandwidth.detach().clone()
    for idx in members:
        values = bandwidth.detach().index_select(0, idx)
        median = torch.nanmedian(torch.where(values > 0, values, torch.nan))
        grouped.index_fill_(0, idx, 0.0)
        grouped.index_copy_(0, idx[:1], torch.nan_to_num(median, nan=0.0).view(1))
    return VoteTables(anchor_of, grouped, voters)


def relabel(sem: torch.Tensor, anchor_of: torch.Tensor) -> torch.Tensor:
    """``sem`` with each class id in ``[0, len(anchor_of))`` replaced by ``anchor_of[id]``
    (other ids, such as 255, unchanged)."""
    C = anchor_of.numel()
    valid = (sem >= 0) & (sem < C)
    return torch.where(valid, anchor_of.to(sem.device)[sem.clamp(0, C - 1)], sem)


def vote_instance_classes(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    voters: torch.Tensor,
    *,
    max_instance_id: int | None = None,
) -> torch.Tensor:
    """Gives every pixel of an instance the class that most of the instance's voting pixels have.

    Args:
        semantic: (B, H, W) or (H, W) integer trainIds (ids outside ``[0, len(voters))``,
            such as 255, count for no class).
        instance: integer instance ids >= 0 of the same shape, 0 = none; ids need only be
            unique per image.
        voters: (C,) bool, True for the classes that take part in the vote.
        max_instance_id: a bound the caller guarantees on the ids; then nothing is read back
            from the device (None: the largest id is read).

    Returns:
        int64 trainIds of ``semantic``'s shape: on pixels of an instance with at least one
        voting pixel, that instance's majority voting class (ties: the lowest trainId);
        everywhere else ``semantic`` unchanged.
    """
    fn = "vote_instance_classes"
    sem, inst, unbatched = paired_label_maps(semantic, instance, fn)
    C = voters.numel()
    if max_instance_id is None:
        if inst.numel() == 0 or int(inst.max()) == 0:
            return semantic.long().clone()
        K = int(inst.max()) + 1
    else:
        K = int(max_instance_id) + 1
        inst = inst.clamp(0, K - 1)
    B = inst.shape[0]
    valid = (sem >= 0) & (sem < C)
    cls = sem.clamp(0, C - 1)
    votes = (inst > 0) & valid & voters.to(sem.device)[cls]
    # One histogram row per (image, instance): counts over keys id * C + class, one more slot
    # per image for the pixels that do not vote.
    keys = torch.where(votes, inst * C + cls, K * C).flatten(1)
    hist = torch.zeros(B, K * C + 1, dtype=torch.int64, device=sem.device)
    hist.scatter_add_(1, keys, torch.ones_like(keys))
    hist = hist[:, : K * C].view(B, K, C)
    winner = hist.argmax(dim=2)  # first maximum: ties go to the lowest trainId
    has_vote = hist.sum(dim=2) > 0
    inst_cls = torch.gather(winner, 1, inst.flatten(1)).view_as(inst)
    inst_ok = torch.gather(has_vote, 1, inst.flatten(1)).view_as(inst)
    out = torch.where((inst > 0) & inst_ok, inst_cls, sem)
    return out.squeeze(0) if unbatched else out


@lru_cache(maxsize=32)
def _group_tables(
    groups: tuple[tuple[int, ...], ...], C: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """(anchor_of, voters, each group's member ids) on ``device``: they depend on the groups
    only, and are uploaded once per device (an upload waits for a GPU)."""
    seen: set[int] = set()
    for members in groups:
        if not members or any(not 0 <= c < C for c in members) or seen & set(members):
            raise ValueError(
                f"merge: expected vote_groups as disjoint, non-empty groups of class ids in "
                f"[0, {C}), got {[list(g) for g in groups]}"
            )
        seen.update(members)
    with torch.inference_mode(False):  # cached: usable in and out of inference mode
        anchor_of = torch.arange(C)
        voters = torch.zeros(C, dtype=torch.bool)
        for members in groups:
            anchor_of[list(members)] = members[0]
            voters[list(members)] = True
        idx = tuple(torch.tensor(m, dtype=torch.int64).to(device) for m in groups)
        return anchor_of.to(device), voters.to(device), idx
