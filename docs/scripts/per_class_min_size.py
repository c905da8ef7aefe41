"""Issue 14 (docs/RESULTS.md, fourteenth session): a minimum instance size per thing class,
each chosen on the search images like the demo's one size, against that one size. Prints each
candidate's things PQ and per-class PQ on the val set and the val things PQ of the per-class
choice. A class's PQ depends only on its own segments, so the per-class choice's things PQ is
the mean of each class's PQ at its own size (no second evaluation needed).

Usage: python docs/scripts/per_class_min_size.py DEMO_OUT [SEARCH_IMAGES]
"""

import sys

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.run import evaluate_model
from panonet.inference import GuidedUpsampling, Predictor
from panonet.inference.min_size_search import DEFAULT_MIN_SIZES

THINGS = ("person", "rider", "car", "truck", "bus", "motorcycle", "bicycle")

out = sys.argv[1]
search_images = int(sys.argv[2]) if len(sys.argv) > 2 else 20
predictor = Predictor(
    f"{out}/run/checkpoints/final.pt",
    bandwidths=f"{out}/bandwidths.json",
    guided_upsampling=GuidedUpsampling(),
)
pq: dict[tuple[str, int], dict[str, float | None]] = {}
things: dict[tuple[str, int], float] = {}
for split, images in (("train", search_images), ("val", None)):
    dataset = CityscapesPanoptic(f"{out}/data", split)
    for size in DEFAULT_MIN_SIZES:
        result = evaluate_model(
            predictor.with_settings(min_instance_size=size),
            dataset,
            images=images,
            progress=False,
        )
        per = result["panoptic"]["per_class"]
        pq[split, size] = {
            c: per[c]["pq"] if per[c]["tp"] + per[c]["fp"] + per[c]["fn"] else None for c in THINGS
        }
        things[split, size] = result["panoptic"]["Things"]["pq"]

choice = {}
for c in THINGS:
    # The best on the search images; the smallest among ties; a class never seen: the largest.
    scores = [
        (pq["train", s][c] if pq["train", s][c] is not None else -1.0, -s)
        for s in DEFAULT_MIN_SIZES
    ]
    choice[c] = -max(scores)[1]
for size in DEFAULT_MIN_SIZES:
    per = {c: round(100 * (pq["val", size][c] or 0.0), 1) for c in THINGS}
    print(
        f"size {size}: search things PQ {100 * things['train', size]:.1f}, "
        f"val things PQ {100 * things['val', size]:.1f} {per}"
    )
scored = [pq["val", choice[c]][c] for c in THINGS if pq["val", choice[c]][c] is not None]
print(f"per-class sizes {choice}: val things PQ {100 * sum(scored) / len(scored):.1f}")
