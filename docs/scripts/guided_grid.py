"""Issue 14 (docs/RESULTS.md, "Joint bilateral upsampling of the logits"): PQ, things PQ,
stuff PQ, mIoU and AP of one model with bilinear upsampling and with each guided-upsampling
setting, on the first IMAGES images of a split.

Usage: python docs/scripts/guided_grid.py DEMO_OUT SPLIT IMAGES|all MIN_SIZE [S,R,W ...]
   e.g. python docs/scripts/guided_grid.py demo-output train 20 512 1,0.05,6 2,0.05,6
"""

import sys
import time

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.run import evaluate_model, format_summary
from panonet.inference import GuidedUpsampling, Predictor

out, split, images, min_size = sys.argv[1:5]
predictor = Predictor(
    f"{out}/run/checkpoints/final.pt",
    bandwidths=f"{out}/bandwidths.json",
    min_instance_size=int(min_size),
)
dataset = CityscapesPanoptic(f"{out}/data", split)
settings = [None] + [GuidedUpsampling.parse(arg) for arg in sys.argv[5:]]
for guided in settings:
    start = time.perf_counter()
    result = evaluate_model(
        predictor.with_settings(guided_upsampling=guided),
        dataset,
        images=None if images == "all" else int(images),
        progress=False,
    )
    name = (
        "bilinear"
        if guided is None
        else f"{guided.sigma_spatial:g},{guided.sigma_range:g},{guided.window}"
    )
    per = result["panoptic"]["per_class"]
    people = {c: round(100 * per[c]["pq"], 1) for c in ("person", "rider", "bicycle")}
    print(
        f"{name}: {format_summary(result)} {people} ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
