"""The semantic map at full resolution from the 1/4-resolution logits, guided by the image.

The network's logits are 4x coarser than the image; upsampled bilinearly (the paper's ICNet),
a thin thing (a person 5 pixels wide, a bicycle's frame) becomes a blob that spills onto the
road or the wall behind it, and the instance masks, which keep only the pixels of their class,
inherit the blob. Joint bilateral upsampling (Kopf et al., "Joint Bilateral Upsampling",
SIGGRAPH 2007) weighs each low-resolution logit by how close it is (spatial term) and by how
much the image around it looks like the output pixel (range term), so that class boundaries
follow the image's edges. Not in the paper: an option of the post-processing
(:func:`panonet.inference.merge.merge`, ``Predictor(guided_upsampling=...)``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from panonet.ops.guided_upsample_argmax import MAX_WINDOW, guided_upsample_argmax

__all__ = ["GuidedUpsampling", "check_guided_upsampling", "guided_semantic"]


@dataclass(frozen=True)
class GuidedUpsampling:
    """Settings of :func:`guided_semantic`.

    Attributes:
        sigma_spatial: width of the spatial Gaussian, in low-resolution pixels (> 0).
        sigma_range: width of the range Gaussian on the RGB difference, with colours in [0, 1]
            (> 0).
        window: low-resolution pixels per side of the neighbourhood, even, 2 to 8: the
            ``window / 2`` rows and columns on either side of the output pixel's position on
            the low-resolution grid (2: the four pixels bilinear interpolation uses).
        cluster: the instances are clustered on this map, resized to the embedding's grid
            by nearest-exact (as a given ``semantic`` map is), instead of on the argmax of the
            low-resolution logits: thin things found by the guided map get their instances.
    """

    # Chosen on the demo's 20 search images (training images; docs/RESULTS.md): of 11
    # settings, the best things PQ at 36 neighbours; window 8 (64) added 1 PQ of stuff.
    sigma_spatial: float = 2.0
    sigma_range: float = 0.05
    window: int = 6
    cluster: bool = True

    @classmethod
    def parse(cls, text: str) -> GuidedUpsampling:
        """From ``"SIGMA_S,SIGMA_R,WINDOW[,CLUSTER]"`` (e.g. ``"2,0.05,6"`` or ``"2,0.05,6,0"``;
        CLUSTER 1 or 0, default: the field's default). Raises ValueError."""
        parts = text.split(",")
        if len(parts) not in (3, 4):
            raise ValueError("three or four values")
        kwargs = {}
        if len(parts) == 4:
            if parts[3].strip() not in ("0", "1"):
                raise ValueError(f"CLUSTER 0 or 1, got {parts[3]!r}")
            kwargs["cluster"] = parts[3].strip() == "1"
        return cls(float(parts[0]), float(parts[1]), int(parts[2]), **kwargs)

    def to_json(self) -> dict[str, float | int]:
        """The settings by name (what ``eval``, ``search-bandwidth`` and ``search-min-size``
        record)."""
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        for name in ("sigma_spatial", "sigma_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (0 < float(value) < math.inf):
                raise ValueError(f"GuidedUpsampling: expected a finite {name} > 0, got {value!r}")
        w = self.window
        if isinstance(w, bool) or not isinstance(w, int) or not 2 <= w <= MAX_WINDOW or w % 2:
            raise ValueError(
                f"GuidedUpsampling: expected an even window in [2, {MAX_WINDOW}], got {w!r}"
            )
        if not isinstance(self.cluster, bool):
            raise ValueError(f"GuidedUpsampling: expected cluster as a bool, got {self.cluster!r}")


def check_guided_upsampling(value: object, fn: str) -> GuidedUpsampling | None:
    """``value`` if it is a :class:`GuidedUpsampling` or None, else TypeError naming ``fn``."""
    if value is not None and not isinstance(value, GuidedUpsampling):
        raise TypeError(
            f"{fn}: expected guided_upsampling as a GuidedUpsampling or None, got "
            f"{type(value).__name__}"
        )
    return value


def guided_semantic(
    logits: torch.Tensor, image: torch.Tensor, settings: GuidedUpsampling | None = None
) -> torch.Tensor:
    """Full-resolution trainIds: the argmax of the jointly bilaterally upsampled logits
    (:func:`panonet.ops.guided_upsample_argmax` with ``settings``, whose formula it states).

    No value is read back from the device.

    Args:
        logits: (B, C, h, w) floating logits.
        image: (B, H, W, 3) uint8 RGB, the network's input, on the logits' device.
        settings: :class:`GuidedUpsampling` (its defaults when None).

    Returns:
        (B, H, W) int64 trainIds on the logits' device.

    Raises:
        ValueError: tensors of other shapes or dtypes, different batch sizes or devices.
    """
    s = settings if settings is not None else GuidedUpsampling()
    try:
        return guided_upsample_argmax(logits, image, s.sigma_spatial, s.sigma_range, s.window)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"guided_semantic: {str(e).splitlines()[0]}") from e
