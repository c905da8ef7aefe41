"""Issue 14 (docs/RESULTS.md, "Where the people go"): for one trained model, the recall and
precision of the thin thing classes in its semantic map (and what their wrongly predicted
pixels are in truth), the things' PQ and AP clustered on the ground-truth semantic map, and the
things' PQ on val at each minimum instance size.

Usage: python docs/scripts/thin_classes.py DEMO_OUT [SIZES...]
   e.g. python docs/scripts/thin_classes.py demo-output 0 32 64 128 256 512 1024
"""

import sys

import numpy as np

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.data.labels import CLASSES
from panonet.evaluation.run import evaluate_model
from panonet.inference import Predictor

out = sys.argv[1]
sizes = [int(s) for s in sys.argv[2:]] or [0, 32, 64, 128, 256, 512, 1024]
predictor = Predictor(f"{out}/run/checkpoints/final.pt", bandwidths=f"{out}/bandwidths.json")
val = CityscapesPanoptic(f"{out}/data", "val")
names = [c.name for c in sorted(CLASSES, key=lambda c: c.train_id)]
C = len(names)
cm = np.zeros((C, C), np.int64)
for k in range(len(val)):
    item = val[k]
    pred = predictor.predict(item["image"])["semantic"].numpy().ravel()
    gt = item["semantic"].numpy().ravel()
    keep = gt < C
    cm += np.bincount(gt[keep] * C + pred[keep], minlength=C * C).reshape(C, C)
for name in ("person", "rider", "bicycle", "motorcycle", "car"):
    c = names.index(name)
    column = cm[:, c] / max(cm[:, c].sum(), 1)
    others = [(names[k], round(100 * column[k])) for k in np.argsort(-column) if k != c][:3]
    print(
        f"{name}: recall {cm[c, c] / cm[c].sum():.2f} precision {cm[c, c] / cm[:, c].sum():.2f};"
        f" predicted {name} pixels that are in truth (%): {others}"
    )
things = ("person", "rider", "car", "truck", "bus", "motorcycle", "bicycle")
gt = evaluate_model(
    predictor.with_settings(min_instance_size=32), val, semantic_source="gt", progress=False
)
print(
    "ground-truth semantics, PQ:",
    {c: round(100 * gt["panoptic"]["per_class"][c]["pq"], 1) for c in things},
)
print(
    "ground-truth semantics, AP:",
    {c: round(100 * gt["instance"]["per_class"][c]["AP"], 1) for c in things},
)
for size in sizes:
    r = evaluate_model(predictor.with_settings(min_instance_size=size), val, progress=False)
    per = r["panoptic"]["per_class"]
    print(
        f"minimum size {size}: things PQ {100 * r['panoptic']['Things']['pq']:.1f}",
        {c: round(100 * per[c]["pq"], 1) for c in things},
    )
