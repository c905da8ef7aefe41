"""Issue 14 (docs/RESULTS.md, "The minimum instance size, searched on training images"): PQ,
things PQ and AP of one model with each candidate minimum instance size, on the first 20 train
images (where panonet.inference.min_size_search chooses) and on the val set (where it is judged).

Usage: python docs/scripts/min_size_check.py CHECKPOINT BANDWIDTHS DATA [SIZES...]
   e.g. python docs/scripts/min_size_check.py /tmp/alpha/coord_output8/checkpoints/final.pt \\
        /tmp/alpha/coord_output8/bandwidths_wide.json /tmp/alpha/data 32 128 256 512 1024
"""

import sys

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.run import evaluate_model
from panonet.inference.predictor import Predictor

checkpoint, bandwidths, data = sys.argv[1:4]
sizes = [int(s) for s in sys.argv[4:]] or [32, 64, 128, 256, 512, 1024]
predictor = Predictor(checkpoint, bandwidths=bandwidths)
train, val = CityscapesPanoptic(data, "train"), CityscapesPanoptic(data, "val")


def scores(result: dict) -> str:
    pq = result["panoptic"]
    return (
        f"PQ {100 * pq['All']['pq']:.1f} things PQ {100 * pq['Things']['pq']:.1f} "
        f"AP {100 * result['instance']['AP']:.1f}"
    )


for size in sizes:
    p = predictor.with_settings(min_instance_size=size)
    searched = evaluate_model(p, train, images=20, progress=False)
    judged = evaluate_model(p, val, progress=False)
    print(f"{size:5d} px  20 train images: {scores(searched)} | val: {scores(judged)}", flush=True)
