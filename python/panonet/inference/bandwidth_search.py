"""Per-class mean-shift bandwidth search (paper Sec. III-D).

The discriminative loss pulls each pixel to within delta_v of its instance mean but never to
zero, so the best clustering bandwidth of a class is somewhat above delta_v and differs between
classes. The paper searches, once, on the training set, for the bandwidth that maximises each
thing class's panoptic quality. With the exact fast mean-shift op this takes minutes.

The search runs at the embedding's resolution (1/4 of the image): the network is run once per
image, then only the clustering is repeated per candidate bandwidth, and the ground truth is
resized to 1/4 with nearest-exact sampling. Every thing class is clustered with the same
candidate in one pass (a class's PQ depends only on its own instances), so the cost is
``len(candidates) x images`` clusterings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from panonet._atomic import write_atomic
from panonet.data.labels import CLASSES, NUM_CLASSES, THING_TRAIN_IDS
from panonet.data.transforms import resize_labels
from panonet.evaluation.panoptic import PanopticStats, gt_panoptic_from_semantic_instance
from panonet.evaluation.semantic_source import SemanticSource, check_semantic_source
from panonet.inference.guided_upsample import (
    GuidedUpsampling,
    check_guided_upsampling,
    guided_semantic,
)
from panonet.inference.merge import merge
from panonet.models.fold import fold_batchnorm
from panonet.models.panonet import PanoNet, preprocess

__all__ = [
    "BandwidthSearchResult",
    "default_candidates",
    "search_bandwidths",
    "search_bandwidths_on_embeddings",
]


def default_candidates(delta_v: float = 0.25) -> list[float]:
    """delta_v x 1.0, 1.2, ..., 4.0, then x 5, 6, 7, 8, 10, 12 (0.25 to 3.0 for the paper's
    delta_v = 0.25). The wide end is for instances the network leaves spread out: large ones,
    and embeddings with the coordinates added (``PanoNet(coord_output=...)``), whose searched
    bandwidths reach 2.5-3 (``docs/RESULTS.md``)."""
    fine = [1.0 + 0.2 * i for i in range(16)]
    return [round(delta_v * f, 6) for f in (*fine, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0)]


@dataclass
class BandwidthSearchResult:
    """Outcome of a bandwidth search.

    Attributes:
        candidates: the bandwidths tried, ascending.
        pq: (len(candidates), num_classes) float64 panoptic quality of each class at each
            candidate (NaN where the class had no segment in ground truth nor prediction).
        best: {trainId: bandwidth} for every thing class that had data: among the candidates
            that reach the class's highest PQ, the middle one (a plateau of equally good
            bandwidths is common; its middle is the choice least sensitive to other images).
        images: number of images searched on.
        seconds: wall time of the search (network + clustering + scoring).
        semantic_source: the semantic map the clustering ran on: "pred" (the network's, as
            ``predict`` and ``eval`` use it) or "gt" (the ground truth, as ``eval --semantic
            gt`` and the twin tests use it).
        guided_upsampling: with "pred", the guided-upsampling settings (``to_json``) whose map
            was clustered (:func:`search_bandwidths`), else None.
    """

    candidates: list[float]
    pq: torch.Tensor
    best: dict[int, float]
    images: int
    seconds: float
    semantic_source: SemanticSource = "pred"
    guided_upsampling: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON the Predictor reads (``bandwidths`` by class name) plus the search record."""
        names = {c.train_id: c.name for c in CLASSES}
        return {
            "bandwidths": {names[t]: b for t, b in sorted(self.best.items())},
            "pq": {
                names[t]: {
                    f"{b:g}": (None if torch.isnan(self.pq[i, t]) else float(self.pq[i, t]))
                    for i, b in enumerate(self.candidates)
                }
                for t in sorted(self.best)
            },
            "candidates": self.candidates,
            "images": self.images,
            "seconds": self.seconds,
            "semantic_source": self.semantic_source,
            "guided_upsampling": self.guided_upsampling,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Writes :meth:`to_json` to ``path`` atomically (temp file + rename)."""
        text = json.dumps(self.to_json(), indent=2) + "\n"
        return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _class_pq(stats: PanopticStats) -> torch.Tensor:
    """(num_classes,) float64 PQ per class, NaN where TP + FP + FN = 0."""
    tp, fp, fn = (torch.as_tensor(x, dtype=torch.float64) for x in (stats.tp, stats.fp, stats.fn))
    iou = torch.as_tensor(stats.iou, dtype=torch.float64)
    denom = tp + fp / 2 + fn / 2
    return torch.where(denom > 0, iou / denom.clamp_min(1e-300), torch.nan)


def search_bandwidths_on_embeddings(
    samples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    candidates: Sequence[float] | None = None,
    *,
    thing_train_ids: Iterable[int] = THING_TRAIN_IDS,
    num_classes: int = NUM_CLASSES,
    progress: bool = False,
    vote_groups: Sequence[Sequence[int]] | None = None,
) -> BandwidthSearchResult:
    """Best bandwidth per thing class for precomputed embeddings.

    Args:
        samples: per image ``(embedding (D, h, w) float, semantic (h, w) int64 trainIds the
            clustering runs on (usually predicted), gt_panoptic (h, w) int64 Cityscapes
            panoptic ids at the same resolution)``.
        candidates: bandwidths to try (> 0); default :func:`default_candidates`.
        thing_train_ids: the classes to search.
        num_classes: length of the bandwidth table.
        progress: show a progress bar over candidates.
        vote_groups: search for post-processing with ``merge(vote_groups=...)``: the classes
            of a group are clustered together with one bandwidth, so one candidate is chosen
            per group, the one with the highest mean PQ over the group's classes that occur.

    Returns:
        :class:`BandwidthSearchResult` (``seconds`` covers only the clustering and scoring).
    """
    start = time.perf_counter()
    cands = sorted(float(c) for c in (candidates or default_candidates()))
    if not cands or any(not c > 0 for c in cands):
        raise ValueError(f"search_bandwidths: expected positive candidate bandwidths, got {cands}")
    if not samples:
        raise ValueError("search_bandwidths: got no images to search on")
    things = sorted({int(t) for t in thing_train_ids})
    pq = torch.full((len(cands), num_classes), torch.nan, dtype=torch.float64)
    for i, bw in enumerate(tqdm(cands, desc="bandwidths", disable=not progress)):
        table = torch.zeros(num_classes)
        table[things] = bw
        stats = PanopticStats()
        for emb, sem, gt in samples:
            # The Predictor's post-processing, at the embedding's resolution and on the given
            # semantic map (a too small bandwidth on a poor embedding can give > 1000
            # instances of a class: the largest are kept, as the Predictor does).
            out = merge(
                None,
                emb,
                table.to(emb.device),
                size=tuple(sem.shape[-2:]),
                semantic=sem,
                vote_groups=vote_groups,
            )
            stats.update(out["panoptic"], gt)
        pq[i] = _class_pq(stats)
    best: dict[int, float] = {}
    grouped: set[int] = set()
    for group in vote_groups or ():
        members = [int(t) for t in group]
        grouped.update(members)
        seen = [t for t in members if t in things and not torch.isnan(pq[:, t]).all()]
        if not seen:
            continue  # no class of the group occurred: keep the defaults
        mean = torch.nan_to_num(pq[:, seen], nan=0.0).mean(dim=1)
        tied = torch.nonzero(mean >= mean.max() - 1e-12).flatten()
        value = cands[int(tied[(tied.numel() - 1) // 2])]
        best.update({t: value for t in seen})
    for t in things:
        if t in grouped:
            continue
        column = pq[:, t]
        if torch.isnan(column).all():
            continue  # the class never occurred: no evidence, keep the default
        scores = torch.nan_to_num(column, nan=-1.0)
        tied = torch.nonzero(scores >= scores.max() - 1e-12).flatten()
        best[t] = cands[int(tied[(tied.numel() - 1) // 2])]
    return BandwidthSearchResult(cands, pq, best, len(samples), time.perf_counter() - start)


@torch.inference_mode()
def search_bandwidths(
    model: PanoNet,
    dataset: Sequence[dict[str, Any]],
    *,
    images: int | None = 50,
    candidates: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    vote_groups: Sequence[Sequence[int]] | None = None,
    semantic_source: SemanticSource = "pred",
    guided_upsampling: GuidedUpsampling | None = None,
) -> BandwidthSearchResult:
    """Runs ``model`` on the first ``images`` items of ``dataset`` and searches bandwidths.

    Args:
        model: a trained PanoNet.
        dataset: items as :class:`panonet.data.CityscapesPanoptic` returns them (``image``
            (3, H, W) uint8, ``semantic`` (H, W) trainIds, ``instance`` (H, W) ids or -1).
        images: how many items to use (None: all).
        candidates: bandwidths to try; default :func:`default_candidates`.
        device: where the network and the clustering run.
        progress: progress bars.
        vote_groups: one bandwidth per group of classes, for ``merge(vote_groups=...)`` (see
            :func:`search_bandwidths_on_embeddings`).
        semantic_source: the semantic map each class is clustered on: "pred" (the network's;
            the bandwidths for ``predict`` and ``eval``) or "gt" (the items' ``semantic``,
            resized nearest to the embedding: the bandwidths for what clusters on the ground
            truth, AP_GT and the twin tests, chosen by the embedding alone).
        guided_upsampling: the Predictor's setting; with "pred" and its ``cluster``, the
            classes are clustered on the guided map resized to the embedding's grid, as the
            Predictor clusters them (without ``cluster`` it does not change what is clustered).

    Returns:
        :class:`BandwidthSearchResult`; ``seconds`` includes the network passes.
    """
    check_semantic_source(semantic_source, "search_bandwidths")
    guided = check_guided_upsampling(guided_upsampling, "search_bandwidths")
    guided = guided if guided is not None and guided.cluster else None
    start = time.perf_counter()
    device = torch.device(device)
    # The network as the Predictor runs it (BatchNorm folded; ``model`` is left as it was).
    model = fold_batchnorm(model).to(device)
    n = len(dataset) if images is None else min(images, len(dataset))
    samples = []
    for k in tqdm(range(n), desc="embeddings", disable=not progress):
        item = dataset[k]
        image = item["image"].permute(1, 2, 0)  # (H, W, 3) for preprocess
        out = model(preprocess(image, device=device))
        emb = out.embedding[0][0].float().contiguous()
        if semantic_source == "gt":
            sem = resize_labels(item["semantic"].long(), tuple(emb.shape[-2:])).to(device)
        elif guided is not None:
            full = guided_semantic(out.semantic[0], image[None].to(device), guided)[0]
            sem = resize_labels(full, tuple(emb.shape[-2:]))
        else:
            sem = out.semantic[0][0].max(dim=0).indices
        gt = gt_panoptic_from_semantic_instance(item["semantic"], item["instance"])
        samples.append((emb, sem, resize_labels(gt, tuple(sem.shape)).to(device)))
    result = search_bandwidths_on_embeddings(
        samples, candidates, progress=progress, vote_groups=vote_groups
    )
    result.seconds = time.perf_counter() - start
    result.semantic_source = semantic_source
    result.guided_upsampling = None if guided is None else guided.to_json()
    return result
