# Issue 14 experiment runner (docs/RESULTS.md, "Things quality in the demo"): the demo recipe
# (panonet.demo.FULL + train_config) with overrides, then bandwidth search and evaluation.
# Usage: python docs/scripts/demo_experiment.py NAME 'JSON spec'
#   e.g. NAME=steps4200 spec='{"train": {"stage1_steps": 3000, "stage2_steps": 1200}, "eval": {"min_size": 32}}'
# Writes /tmp/exp/NAME/ (run, bandwidths.json, result.json) and /tmp/exp/data_* (the scenes).
"""Experiment runner: python run.py NAME '{"data": {...}, "train": {...}, "eval": {...}}'"""
import dataclasses, json, sys, time
from pathlib import Path
import torch
from panonet import demo
from panonet.data.synthetic import generate
from panonet.data.cityscapes import CityscapesPanoptic
from panonet.train.trainer import FINAL_CHECKPOINT, run_training
from panonet.train.config import LossConfig, OptimConfig
from panonet.models.checkpoint import load_model
from panonet.inference.bandwidth_search import search_bandwidths
from panonet.inference.predictor import Predictor
from panonet.evaluation.run import evaluate_model

name = sys.argv[1]; spec = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
out = Path("/tmp/exp") / name; out.mkdir(parents=True, exist_ok=True)
d = spec.get("data", {})
size = tuple(d.get("size", (256, 512)))
gen_kw = d.get("gen", {})
dkey = f"data_{size[0]}x{size[1]}_{d.get('train',300)}_{d.get('val',30)}" + "".join(f"_{k}{v}" for k, v in sorted(gen_kw.items()))
data = Path("/tmp/exp") / dkey
t0 = time.perf_counter()
generate(data, train=d.get("train", 300), val=d.get("val", 30), size=size, progress=False, **gen_kw)
tsynth = time.perf_counter() - t0
s = dataclasses.replace(demo.FULL, size=size)
cfg = demo.train_config(s, data, "cpu", False)
tr = dict(spec.get("train", {}))
if "optim" in tr: cfg.optim = dataclasses.replace(cfg.optim, **tr.pop("optim"))
if "stage2_optim" in tr: cfg.stage2_optim = dataclasses.replace(cfg.stage2_optim, **tr.pop("stage2_optim"))
if "loss" in tr: cfg.loss = dataclasses.replace(cfg.loss, **tr.pop("loss"))
for k, v in tr.items():
    setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
cfg.__post_init__()
run = out / "run"
t0 = time.perf_counter()
if not (run / "checkpoints" / FINAL_CHECKPOINT).is_file():
    run_training(cfg, run, resume="auto")
ttrain = time.perf_counter() - t0
model = load_model(run / "checkpoints" / FINAL_CHECKPOINT)
ev = spec.get("eval", {})
t0 = time.perf_counter()
search = search_bandwidths(model, CityscapesPanoptic(data, "train"), images=20, device="cpu", progress=False)
bw = search.save(out / "bandwidths.json")
tsearch = time.perf_counter() - t0
val = CityscapesPanoptic(data, "val")
res = {}
t0 = time.perf_counter()
for src in ev.get("sources", ["pred", "gt"]):
    p = Predictor(model, device="cpu", bandwidths=bw, min_instance_size=ev.get("min_size", 0))
    r = evaluate_model(p, val, semantic_source=src, progress=False,
                       save_vis=out / f"vis_{src}" if src == "pred" else None, num_vis=6)
    res[src] = r
teval = time.perf_counter() - t0
json.dump({"spec": spec, "res": res, "bw": search.to_json()["bandwidths"],
           "times": dict(synth=tsynth, train=ttrain, search=tsearch, eval=teval)},
          open(out / "result.json", "w"), indent=1)
def line(r):
    p = r["panoptic"]
    return (f"PQ {100*p['All']['pq']:.1f} PQ_Th {100*p['Things']['pq']:.1f} PQ_St {100*p['Stuff']['pq']:.1f} "
            f"mIoU {100*r['semantic']['miou']:.1f} AP {100*r['instance']['AP']:.1f}")
print(name, json.dumps(spec))
print(f"times synth {tsynth:.0f}s train {ttrain:.0f}s search {tsearch:.0f}s eval {teval:.0f}s")
for src, r in res.items(): print(src, line(r))
