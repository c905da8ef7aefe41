"""Issue 14 (docs/RESULTS.md, fourteenth session): where a demo model finds people, seen up
close. For the val images with the most people matched (IoU > 0.5 with one predicted person
instance), a crop around those people, scaled up 3x (nearest), in three columns: the image with
the predicted segments' borders, the prediction in panoptic colours (each instance its own
shade), the ground truth in panoptic colours.

Usage: python docs/scripts/people_crops.py DEMO_OUT PNG [ROWS]
   e.g. python docs/scripts/people_crops.py demo-output docs/images/demo-people.png 3
"""

import json
import sys

import numpy as np
from PIL import Image

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.panoptic import gt_panoptic_from_semantic_instance
from panonet.inference import GuidedUpsampling, Predictor
from panonet.viz import overlay, panoptic_colors

PERSON_LABEL = 24  # Cityscapes labelId of "person"
SCALE, CROP_H, CROP_W = 3, 64, 128

out, png = sys.argv[1], sys.argv[2]
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 3
min_size = json.loads(open(f"{out}/metrics.json").read())["min_instance_size"]
predictor = Predictor(
    f"{out}/run/checkpoints/final.pt",
    bandwidths=f"{out}/bandwidths.json",
    min_instance_size=min_size,
    guided_upsampling=GuidedUpsampling(),
)
dataset = CityscapesPanoptic(f"{out}/data", "val")

found = []
for k in range(len(dataset)):
    item = dataset[k]
    image = item["image"].permute(1, 2, 0).numpy()
    pred = predictor.predict(image)["panoptic"].numpy()
    gt = gt_panoptic_from_semantic_instance(item["semantic"], item["instance"]).numpy()
    matched = []
    for g in np.unique(gt[(gt // 1000) == PERSON_LABEL]):
        mask = gt == g
        ids, counts = np.unique(pred[mask], return_counts=True)
        p = ids[np.argmax(counts)]
        if p // 1000 != PERSON_LABEL:
            continue
        union = np.logical_or(mask, pred == p).sum()
        if counts.max() / union > 0.5:
            matched.append(np.argwhere(mask).mean(axis=0))
    if matched:
        found.append((len(matched), k, image, pred, gt, np.array(matched)))
found.sort(key=lambda f: -f[0])

panels = []
for n, k, image, pred, gt, centres in found[:rows]:
    H, W = gt.shape
    cy, cx = np.median(centres, axis=0)
    y0 = int(np.clip(cy - CROP_H / 2, 0, H - CROP_H))
    x0 = int(np.clip(cx - CROP_W / 2, 0, W - CROP_W))
    window = np.s_[y0 : y0 + CROP_H, x0 : x0 + CROP_W]
    row = np.concatenate(
        [
            overlay(image, pred)[window],
            panoptic_colors(pred)[window],
            panoptic_colors(gt)[window],
        ],
        axis=1,
    )
    panels.append(row.repeat(SCALE, axis=0).repeat(SCALE, axis=1))
    print(f"val image {k}: {n} people matched; crop y {y0}, x {x0}")
gap = np.full((4, panels[0].shape[1], 3), 255, dtype=np.uint8)
picture = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=0)
Image.fromarray(picture).save(png)
print(f"wrote {png}")
