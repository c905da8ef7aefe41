"""The minimum instance size, searched like the bandwidths (on training images, for things PQ).

A model trained for minutes predicts thing classes in scattered fragments (a few pixels of
"person" on a pole, a rim of "car" around a truck); each fragment becomes an instance and a
false positive of panoptic quality. Dropping instances below a size trades those false positives
against small true instances; where the balance lies depends on the model and the data, so it is
chosen on a few training images, like the per-class bandwidths (paper Sec. III-D), and never on
the evaluation set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from panonet.evaluation.panoptic import PanopticStats

__all__ = ["DEFAULT_MIN_SIZES", "MinSizeSearchResult", "search_min_instance_size"]

DEFAULT_MIN_SIZES = (32, 64, 128, 256, 512, 1024)
"""Candidates in output pixels; at 256x512 (the synthetic scenes) 32 is 2x2 pixels of the 1/4
output and 1024 a 32x32 block (0.8 % of the image)."""


@dataclass
class MinSizeSearchResult:
    """What :func:`search_min_instance_size` found.

    Attributes:
        candidates: the sizes tried (output pixels), ascending.
        things_pq: things PQ on the search images for each candidate (fractions; NaN when the
            images hold no thing and no prediction of one).
        best: the candidate with the highest things PQ (the smallest among ties; the smallest
            candidate when every score is NaN).
        images: how many images were used.
    """

    candidates: list[int]
    things_pq: list[float]
    best: int
    images: int

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "things_pq": [None if math.isnan(v) else v for v in self.things_pq],
            "best": self.best,
            "images": self.images,
        }


def search_min_instance_size(
    predictor: Any,
    dataset: Sequence[dict[str, Any]],
    *,
    images: int | None = 20,
    candidates: Sequence[int] | None = None,
    progress: bool = True,
) -> MinSizeSearchResult:
    """Runs ``predictor`` with each candidate minimum instance size over the first ``images``
    items of ``dataset`` and keeps the size with the best things PQ. The network runs once per
    image (:meth:`~panonet.inference.Predictor.run_network`), the post-processing once per
    image and candidate.

    Args:
        predictor: a :class:`~panonet.inference.Predictor` with its bandwidths (its own
            ``min_instance_size`` is not used; :meth:`~panonet.inference.Predictor.with_settings`
            makes one per candidate on the same network).
        dataset: items like :class:`panonet.data.CityscapesPanoptic`'s (``image`` (3, H, W)
            uint8, ``semantic`` (H, W) trainIds, ``instance`` (H, W) ids or -1); training images.
        images: how many items (None: all).
        candidates: sizes in output pixels, integers >= 0; default :data:`DEFAULT_MIN_SIZES`.
        progress: a progress bar over the candidates.

    Returns:
        :class:`MinSizeSearchResult`.

    Raises:
        ValueError: no candidates, a candidate that is not an integer >= 0, ``images`` < 1, or
            an empty dataset.
    """
    fn = "search_min_instance_size"
    sizes = list(DEFAULT_MIN_SIZES if candidates is None else candidates)
    if not sizes:
        raise ValueError(f"{fn}: expected at least one candidate size, got none")
    bad = [s for s in sizes if isinstance(s, bool) or int(s) != s or s < 0]
    if bad:
        raise ValueError(f"{fn}: expected candidate sizes as integers >= 0, got {bad}")
    sizes = sorted({int(s) for s in sizes})
    if images is not None and images < 1:
        raise ValueError(f"{fn}: expected images >= 1 (or None), got {images}")
    n = len(dataset) if images is None else min(images, len(dataset))
    if n == 0:
        raise ValueError(f"{fn}: the dataset is empty")
    items = [dataset[k] for k in range(n)]
    # The network once per image; only the post-processing differs between the candidates.
    outputs = [
        predictor.run_network(item["image"])
        for item in tqdm(items, desc="network (size search)", disable=not progress)
    ]
    scores = []
    for size in tqdm(sizes, desc="minimum instance size", disable=not progress):
        candidate = predictor.with_settings(min_instance_size=size)
        stats = PanopticStats()
        for item, output in zip(items, outputs, strict=True):
            out = candidate.predict(output)
            stats.update(
                out["panoptic"], gt_semantic=item["semantic"], gt_instance=item["instance"]
            )
        scores.append(float(stats.summary()["Things"]["pq"]))
    ranked = [
        (-s if not math.isnan(s) else math.inf, size) for s, size in zip(scores, sizes, strict=True)
    ]
    best = min(ranked)[1]  # highest PQ, then the smallest size; all NaN: the smallest
    return MinSizeSearchResult(sizes, scores, best, n)
