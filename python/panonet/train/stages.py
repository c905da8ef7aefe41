"""The passage from training stage 1 (no coordinate input) to stage 2 (paper Sec. III-C)."""

from __future__ import annotations

from panonet.models.panonet import PanoNet

__all__ = ["stage2_model"]


def stage2_model(stage1: PanoNet) -> PanoNet:
    """A ``use_coords=True`` PanoNet with ``stage1``'s weights (coordinate channels zero).

    The stage-2 model computes the stage-1 function (up to float summation order), on the
    CPU; the caller moves it.
    """
    config = {**stage1.config, "use_coords": True}
    model = PanoNet(**config)
    state = {k: v.detach().cpu() for k, v in stage1.state_dict().items()}
    model.load_stage1(state)
    return model
