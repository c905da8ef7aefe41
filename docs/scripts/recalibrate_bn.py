# Re-estimates BatchNorm running statistics of the run in docs/RESULTS.md on 64 train images.
import torch
from torch import nn
from panonet.data.cityscapes import CityscapesPanoptic
from panonet.models.checkpoint import load_model, save_checkpoint
from panonet.models.panonet import preprocess
m = load_model("/tmp/e2e/run/checkpoints/final.pt")
bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
for b in bns:
    b.reset_running_stats(); b.momentum = None  # cumulative average
m.train()
ds = CityscapesPanoptic("/tmp/e2e/data", "train")
with torch.no_grad():
    for k in range(0, 64, 4):
        imgs = torch.stack([ds[k + j]["image"] for j in range(4)]).permute(0, 2, 3, 1)
        m(preprocess(imgs))
for b in bns: b.momentum = 0.1
save_checkpoint("/tmp/e2e/recal.pt", m.eval())
