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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["GuidedUpsampling", "check_guided_upsampling", "guided_semantic"]


@dataclass(frozen=True)
class GuidedUpsampling:
    """Settings of :func:`guided_semantic`.

    Attributes:
        sigma_spatial: width of the spatial Gaussian, in low-resolution pixels (> 0).
        sigma_range: width of the range Gaussian on the RGB difference, with colours in [0, 1]
            (> 0).
        window: low-resolution pixels per side of the neighbourhood, even (>= 2): the
            ``window / 2`` rows and columns on either side of the output pixel's position on
            the low-resolution grid (2: the four pixels bilinear interpolation uses).
    """

    # Chosen on the demo's 20 search images (training images; docs/RESULTS.md): of 11
    # settings, the best things PQ at 36 neighbours; window 8 (64) added 1 PQ of stuff.
    sigma_spatial: float = 2.0
    sigma_range: float = 0.05
    window: int = 6

    def __post_init__(self) -> None:
        for name in ("sigma_spatial", "sigma_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (0 < float(value) < math.inf):
                raise ValueError(f"GuidedUpsampling: expected a finite {name} > 0, got {value!r}")
        w = self.window
        if isinstance(w, bool) or not isinstance(w, int) or w < 2 or w % 2:
            raise ValueError(f"GuidedUpsampling: expected an even window >= 2, got {w!r}")


def check_guided_upsampling(value: object, fn: str) -> GuidedUpsampling | None:
    """``value`` if it is a :class:`GuidedUpsampling` or None, else TypeError naming ``fn``."""
    if value is not None and not isinstance(value, GuidedUpsampling):
        raise TypeError(
            f"{fn}: expected guided_upsampling as a GuidedUpsampling or None, got "
            f"{type(value).__name__}"
        )
    return value


def _positions(out: int, low: int, device: torch.device) -> torch.Tensor:
    """Each output pixel's position on the low-resolution grid (pixel centres, the geometry of
    ``F.interpolate(..., align_corners=False)``), float64."""
    return (torch.arange(out, device=device, dtype=torch.float64) + 0.5) * (low / out) - 0.5


def guided_semantic(
    logits: torch.Tensor, image: torch.Tensor, settings: GuidedUpsampling | None = None
) -> torch.Tensor:
    """Full-resolution trainIds: the argmax of the jointly bilaterally upsampled logits.

    For an output pixel p at position (y, x) on the low-resolution grid and each low-resolution
    pixel q of its ``window`` x ``window`` neighbourhood (inside the grid), the weight is
    ``exp(-|q - (y, x)|^2 / (2 s^2)) * exp(-(|I(p) - G(q)|^2 - m(p)) / (2 r^2))``, with I the
    image's RGB in [0, 1], G the image averaged over each low-resolution pixel's area, and m(p)
    the smallest ``|I(p) - G(q)|^2`` over the neighbourhood (a per-pixel constant: it leaves the
    normalised weights unchanged and keeps the largest range term at 1, so weights cannot all
    underflow). The class is the argmax over the classes of ``sum_q w(p, q) logits(q)`` (the
    normalisation by ``sum_q w`` does not change it); ties go to the lower class id.

    No value is read back from the device. Work: ``window^2`` passes over a (B, C, H, W) tensor.

    Args:
        logits: (B, C, h, w) floating logits.
        image: (B, H, W, 3) uint8 RGB, the network's input (H >= h, W >= w).
        settings: :class:`GuidedUpsampling` (its defaults when None).

    Returns:
        (B, H, W) int64 trainIds on the logits' device.

    Raises:
        ValueError: tensors of other shapes or dtypes, different batch sizes or devices, an
            image smaller than the logits.
    """
    fn = "guided_semantic"
    s = settings if settings is not None else GuidedUpsampling()
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or not logits.is_floating_point():
        got = (
            f"{logits.dtype} of shape {tuple(logits.shape)}"
            if isinstance(logits, torch.Tensor)
            else type(logits).__name__
        )
        raise ValueError(f"{fn}: expected floating logits of shape (B, C, h, w), got {got}")
    if (
        not isinstance(image, torch.Tensor)
        or image.dim() != 4
        or image.shape[-1] != 3
        or image.dtype != torch.uint8
    ):
        got = (
            f"{image.dtype} of shape {tuple(image.shape)}"
            if isinstance(image, torch.Tensor)
            else type(image).__name__
        )
        raise ValueError(f"{fn}: expected a uint8 image of shape (B, H, W, 3), got {got}")
    B, C, h, w = logits.shape
    H, W = int(image.shape[1]), int(image.shape[2])
    if image.shape[0] != B or H < h or W < w:
        raise ValueError(
            f"{fn}: expected an image of shape ({B}, >= {h}, >= {w}, 3) for logits of shape "
            f"{tuple(logits.shape)}, got {tuple(image.shape)}"
        )
    if image.device != logits.device:
        raise ValueError(
            f"{fn}: expected the image on the logits' device {logits.device}, got {image.device}"
        )
    device = logits.device
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    rgb = image.permute(0, 3, 1, 2).to(dtype) / 255.0  # (B, 3, H, W)
    guide = F.adaptive_avg_pool2d(rgb, (h, w))  # (B, 3, h, w)
    yc, xc = _positions(H, h, device), _positions(W, w, device)
    y0, x0 = torch.floor(yc).long(), torch.floor(xc).long()
    offsets = range(1 - s.window // 2, s.window // 2 + 1)

    def axis(
        base: torch.Tensor, pos: torch.Tensor, d: int, n: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Neighbour indices (clamped into the grid), spatial weights (0 outside the grid) and
        a penalty that keeps outside neighbours out of m(p) (inf outside, else 0)."""
        q = base + d
        inside = (q >= 0) & (q < n)
        weight = torch.exp(-((q.to(torch.float64) - pos) ** 2) / (2 * s.sigma_spatial**2))
        weight = torch.where(inside, weight, 0.0).to(dtype)
        penalty = torch.where(inside, 0.0, math.inf).to(dtype)
        return q.clamp(0, n - 1), weight, penalty

    rows = [axis(y0, yc, d, h) for d in offsets]
    cols = [axis(x0, xc, d, w) for d in offsets]
    # Columns are gathered once per column offset at the low resolution, (B, ., h, W); whole
    # rows are then copied per row offset (gathers along the contiguous axis are the slow ones).
    guide_cols = [guide.index_select(3, qx) for qx, _, _ in cols]
    logit_cols = [logits.to(dtype).index_select(3, qx) for qx, _, _ in cols]

    def colour_distance(qy: torch.Tensor, k: int) -> torch.Tensor:
        return (rgb - guide_cols[k].index_select(2, qy)).square_().sum(dim=1)  # (B, H, W)

    # m(p): the smallest colour distance over the neighbourhood's pixels inside the grid.
    nearest = torch.full((B, H, W), math.inf, dtype=dtype, device=device)
    for qy, _, pen_y in rows:
        for k, (_, _, pen_x) in enumerate(cols):
            d2 = colour_distance(qy, k) + (pen_y[:, None] + pen_x[None, :])
            torch.minimum(nearest, d2, out=nearest)
    total = torch.zeros((B, C, H, W), dtype=dtype, device=device)
    inv = 1.0 / (2 * s.sigma_range**2)
    for qy, wy, _ in rows:
        for k, (_, wx, _) in enumerate(cols):
            # Inside the grid d2 >= m(p); outside it may be below (the clamp keeps its
            # exponential finite) and its spatial weight is 0.
            weight = colour_distance(qy, k).sub_(nearest).clamp_(min=0).mul_(-inv).exp_()
            weight.mul_(wy[:, None] * wx[None, :])
            total.addcmul_(weight[:, None], logit_cols[k].index_select(2, qy))
    return total.max(dim=1).indices
