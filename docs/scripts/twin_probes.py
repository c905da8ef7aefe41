"""Two probes behind docs/RESULTS.md's twin analysis (issue 14): where a model gets position from.

1. Position without content: the embedding along one row of a uniform road-coloured image (the
   mean colour of the bottom fifth of val image 0). A model without coordinate input that still
   varies along the row takes position from the image borders (zero padding).
2. The x coordinate removed: a model with coordinates run on the twin tests with its x channel
   set to 0 at test time. If the merged rates barely move, the model does not use it.

Usage: python docs/scripts/twin_probes.py DATA BANDWIDTHS CKPT [CKPT ...]
   e.g. python docs/scripts/twin_probes.py runs/paper/data \
            runs/paper/seed0/coords_true/bandwidths.json runs/paper/seed0/*/checkpoints/final.pt
"""

from __future__ import annotations

import sys

import torch

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.evaluation.mirror import format_mirror, run_mirror_test
from panonet.inference.predictor import Predictor
from panonet.models.checkpoint import load_model
from panonet.models.panonet import preprocess


@torch.no_grad()
def position_without_content(model, image: torch.Tensor) -> str:
    """Embedding distances along a row of a uniform image: centre to quarter width, end to end,
    and the median change per unit of the x channel."""
    H, W = image.shape[1:]
    road = image[:, H * 4 // 5 :, :].float().mean((1, 2)).round().to(torch.uint8)
    flat = road[:, None, None].expand(3, H, W).permute(1, 2, 0).contiguous()
    emb = model(preprocess(flat[None], device="cpu")).embedding[0][0]  # (D, H/4, W/4)
    row = emb[:, emb.shape[1] * 5 // 8, :]
    w = row.shape[1]
    slope = (row[:, 1:] - row[:, :-1]).norm(dim=0) * (w - 1) / 2
    return (
        f"centre -> quarter {float((row[:, w // 2] - row[:, w // 4]).norm()):.2f}, "
        f"end -> end {float((row[:, 0] - row[:, -1]).norm()):.2f}, "
        f"median |de/dx| {float(slope.median()):.2f}"
    )


def without_x(model):
    """The model with its x coordinate channel removed: the weights that read it (channel 3 of
    each conv in ``input_conv_keys``, after RGB) set to 0. Each of those convs is linear in its
    input, so this is exactly the model run with x = 0."""
    state = model.state_dict()
    with torch.no_grad():
        for key in model.input_conv_keys():
            state[key][:, 3] = 0
    return model


def main(data: str, bandwidths: str, checkpoints: list[str]) -> None:
    val = CityscapesPanoptic(data, "val")
    image = val[0]["image"]
    results = {}
    for ckpt in checkpoints:
        model = load_model(ckpt).eval()
        print(f"{ckpt} (coordinates: {model.use_coords}): {position_without_content(model, image)}")
        if not model.use_coords:
            continue
        for name, m in (("as trained", model), ("x channel = 0", without_x(load_model(ckpt)))):
            predictor = Predictor(m.eval(), bandwidths=bandwidths)
            for variant in ("mirror", "scene"):
                results[f"{ckpt} {name}, {variant}"] = run_mirror_test(
                    predictor, val, variant=variant, progress=False
                )
    if results:
        print(format_mirror(results))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
