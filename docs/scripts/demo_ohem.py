"""Issue 14 (docs/RESULTS.md, "Hard-pixel mining of the cross-entropy"): `panonet demo` on the
CPU with the loss's ohem_keep replaced, everything else as the demo (panonet.demo.FULL).

Usage: python docs/scripts/demo_ohem.py OUT OHEM_KEEP
   e.g. python docs/scripts/demo_ohem.py /tmp/ohem25 0.25
"""

import dataclasses
import json
import sys

from panonet import demo
from panonet.evaluation.run import format_summary

out, keep = sys.argv[1], float(sys.argv[2])
demo_train_config = demo.train_config


def train_config(*args, **kwargs):
    cfg = demo_train_config(*args, **kwargs)
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, ohem_keep=keep))


demo.train_config = train_config
metrics = demo.run_demo(out, device="cpu", progress=False)
print(json.dumps(metrics["seconds"]))
print(format_summary(metrics["evaluation"]))
