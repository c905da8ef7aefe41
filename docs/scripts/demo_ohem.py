"""Issue 14 (docs/RESULTS.md, "Hard-pixel mining of the cross-entropy"): `panonet demo` on the
CPU with the loss's ohem_keep replaced, everything else as the demo (panonet.demo.FULL).

Usage: python docs/scripts/demo_ohem.py OUT OHEM_KEEP
   e.g. python docs/scripts/demo_ohem.py /tmp/ohem25 0.25
"""

import dataclasses
import json
import sys

from panonet import demo

out, keep = sys.argv[1], float(sys.argv[2])
demo_train_config = demo.train_config


def train_config(*args, **kwargs):
    cfg = demo_train_config(*args, **kwargs)
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, ohem_keep=keep))


demo.train_config = train_config
metrics = demo.run_demo(out, device="cpu", progress=False)
evaluation = metrics["evaluation"]
pan = evaluation["panoptic"]
print(json.dumps(metrics["seconds"]))
values = (
    pan["All"]["pq"],
    pan["Things"]["pq"],
    pan["Stuff"]["pq"],
    evaluation["semantic"]["miou"],
    evaluation["instance"]["AP"],
)
pq, pq_th, pq_st, miou, ap = (100 * v for v in values)
print(f"PQ {pq:.1f} PQ_Th {pq_th:.1f} PQ_St {pq_st:.1f} mIoU {miou:.1f} AP {ap:.1f}")
