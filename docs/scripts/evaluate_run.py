# Evaluates a training run: bandwidth search on train, PQ / mIoU on val, a few overlays.
# Usage: python docs/scripts/evaluate_run.py CHECKPOINT DATA_ROOT OUT_DIR
import json, sys, time, torch
from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation import confusion_matrix, iou_from_confusion
from panonet.evaluation.panoptic import PanopticStats, gt_panoptic_from_semantic_instance
from panonet.inference import Predictor
from panonet.inference.bandwidth_search import search_bandwidths
from panonet.models.checkpoint import load_model
from panonet.viz import save_visualization

ckpt, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
model = load_model(ckpt)
t = time.perf_counter()
res = search_bandwidths(model, CityscapesPanoptic(data, "train"), images=20, progress=False)
res.save(f"{out}/bandwidths.json")
print("search", round(time.perf_counter() - t, 1), "s", res.to_json()["bandwidths"])
val = CityscapesPanoptic(data, "val")
results = {}
for name, bw in [("searched", f"{out}/bandwidths.json"), ("default 0.5", None)]:
    pred = Predictor(model, bandwidths=bw)
    stats, cm = PanopticStats(), torch.zeros(19, 19, dtype=torch.int64)
    for k in range(len(val)):
        item = val[k]
        o = pred.predict(item["image"])
        stats.update(o["panoptic"], gt_panoptic_from_semantic_instance(item["semantic"], item["instance"]))
        cm += confusion_matrix(o["semantic"], item["semantic"])
        if name == "searched" and k < 4:
            save_visualization(f"{out}/vis_{k}.png", item["image"].permute(1, 2, 0).numpy(), o["panoptic"])
    s = stats.summary()
    _, miou = iou_from_confusion(cm)
    results[name] = {"PQ": s["All"]["pq"], "SQ": s["All"]["sq"], "RQ": s["All"]["rq"], "PQ_th": s["Things"]["pq"], "PQ_st": s["Stuff"]["pq"], "mIoU": miou,
                     "per_class_pq": {k: round(v["pq"], 3) for k, v in s["per_class"].items() if v["tp"] + v["fp"] + v["fn"] > 0}}
    print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results[name].items()})
json.dump(results, open(f"{out}/metrics.json", "w"), indent=1)
