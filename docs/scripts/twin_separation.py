"""How far apart the embedding puts the synthetic scenes' own twins, against the bandwidth that
clusters them (issue 14's twin analysis in docs/RESULTS.md).

For each pair of twins (the same sprite twice at one depth, ``Scene.twins``) and, as a contrast,
each pair of other instances of the same class in the same image, at the network's 1/4 output
(ground-truth instances resized nearest): the distance between the two instances' mean
embeddings and each instance's spread (mean distance of its pixels to its mean), both divided
by the class's bandwidth. Mean-shift keeps two instances apart only when their means are more
than about a bandwidth apart and their spreads well under one; the loss asks for means 2 δ_d = 2
apart and spreads under δ_v = 0.25. Train images show what the model fitted, val what carries over.

Usage: python docs/scripts/twin_separation.py DATA BANDWIDTHS CKPT [CKPT ...]
       (environment: IMAGES, images per split, default 50; SPLITS, default "train val")
"""

from __future__ import annotations

import json
import os
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.data.labels import CLASSES, LABEL_DIVISOR
from panonet.data.synthetic import scene_of
from panonet.models.checkpoint import load_model
from panonet.models.panonet import preprocess

NAMES = {c.label_id: c.name for c in CLASSES}


@torch.no_grad()
def pairs_of(model, item, bandwidth: dict[str, float]) -> tuple[list, list]:
    """(twin rows, other-pair rows) of one image; a row is (mean distance, spread a, spread b)
    in bandwidths."""
    scene = scene_of(item["file"])
    emb = model(preprocess(item["image"].permute(1, 2, 0)[None], device="cpu")).embedding[0][0]
    ids = torch.from_numpy(scene.instance_ids.astype(np.int64))[None, None].float()
    small = F.interpolate(ids, size=emb.shape[1:], mode="nearest")[0, 0].long()
    stats = {}
    for g in torch.unique(small[small >= LABEL_DIVISOR]).tolist():
        name = NAMES.get(g // LABEL_DIVISOR)
        if name not in bandwidth:
            continue
        e = emb[:, small == g]
        if e.shape[1] < 3:
            continue
        mean = e.mean(1)
        stats[g] = (name, mean, float((e - mean[:, None]).norm(dim=0).mean()))

    def row(a: int, b: int) -> tuple[float, float, float]:
        bw = bandwidth[stats[a][0]]
        d = float((stats[a][1] - stats[b][1]).norm())
        return d / bw, stats[a][2] / bw, stats[b][2] / bw

    twins = {(a, b) for a, b, *_ in scene.twins if a in stats and b in stats}
    others = [
        (a, b)
        for a in stats
        for b in stats
        if a < b and a // LABEL_DIVISOR == b // LABEL_DIVISOR
        and (a, b) not in twins and (b, a) not in twins
    ]
    return [row(a, b) for a, b in twins], [row(a, b) for a, b in others]


def summary(rows: list) -> str:
    if not rows:
        return "no pairs"
    d = [r[0] for r in rows]
    spread = [s for r in rows for s in r[1:]]
    return (
        f"{len(rows)} pairs: means apart median {statistics.median(d):.2f} bw, "
        f"> 1 bw {100 * sum(x > 1 for x in d) / len(d):.0f} %, "
        f"> 2 bw {100 * sum(x > 2 for x in d) / len(d):.0f} %; "
        f"spread median {statistics.median(spread):.2f} bw"
    )


def main(data: str, bandwidths: str, checkpoints: list[str]) -> None:
    bandwidth = json.loads(open(bandwidths).read())["bandwidths"]
    images = int(os.environ.get("IMAGES", "50"))
    for ckpt in checkpoints:
        model = load_model(ckpt).eval()
        print(f"{ckpt} (coordinates: {model.use_coords})")
        for split in os.environ.get("SPLITS", "train val").split():
            ds = CityscapesPanoptic(data, split)
            twins, others = [], []
            for k in range(min(images, len(ds))):
                t, o = pairs_of(model, ds[k], bandwidth)
                twins += t
                others += o
            print(f"  {split} twins:  {summary(twins)}")
            print(f"  {split} others: {summary(others)}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
