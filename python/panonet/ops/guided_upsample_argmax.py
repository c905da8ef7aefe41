"""Per-pixel class of logits upsampled along the image's edges (joint bilateral upsampling)."""

import torch

from panonet.ops import _extension  # noqa: F401  (registers torch.ops.panonet)

__all__ = ["MAX_WINDOW", "guided_upsample_argmax"]

MAX_WINDOW = 8
"""The largest window (the kernels keep a pixel's window^2 weights in a fixed array)."""


def guided_upsample_argmax(
    logits: torch.Tensor,
    image: torch.Tensor,
    sigma_spatial: float,
    sigma_range: float,
    window: int,
) -> torch.Tensor:
    """The class of each image pixel from the low-resolution logits of its neighbours, weighted
    by distance and by colour (Kopf et al., "Joint Bilateral Upsampling", 2007).

    For output pixel p, at position ``((y + 0.5) h / H - 0.5, (x + 0.5) w / W - 0.5)`` on the
    logits' grid, and each grid pixel q of the ``window`` x ``window`` neighbourhood starting
    ``window / 2 - 1`` rows and columns before that position's floor (inside the grid), the
    weight is ``exp(-|q - p|^2 / (2 sigma_spatial^2) - |I(p) - G(q)|^2 / (2 sigma_range^2))``,
    with I the image's RGB / 255 and G the image averaged over q's area (adaptive average
    pooling to (h, w)). The class is the argmax of ``sum_q weight(p, q) logits(q)`` (the first
    on ties, a NaN's class where there is one); the weights are divided by their largest, so
    they cannot all underflow. The image's edges become the classes' edges where the logits
    are uncertain.

    Args:
        logits: (B, C, h, w) float16, bfloat16, float32 or float64, C, h, w >= 1, on the CPU or
            a GPU.
        image: (B, H, W, 3) uint8 RGB on the logits' device (the network's input).
        sigma_spatial: in grid pixels, finite > 0.
        sigma_range: on colours in [0, 1], finite > 0.
        window: even, 2 to :data:`MAX_WINDOW` (2: the four pixels bilinear interpolation reads).

    Returns:
        (B, H, W) int64 classes on the logits' device. Arithmetic in float32 (float64 for
        float64 logits); CPU and CUDA differ only in the rounding of ``exp``, so their classes
        agree except where two classes' sums are within rounding of each other. Nothing is read
        back from the device.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(image, torch.Tensor):
        raise TypeError(
            "panonet.ops.guided_upsample_argmax: expected logits and image as tensors, got "
            f"{type(logits).__name__} and {type(image).__name__}"
        )
    return torch.ops.panonet.guided_upsample_argmax(
        logits.detach(), image, float(sigma_spatial), float(sigma_range), int(window)
    )


@torch.library.register_fake("panonet::guided_upsample_argmax")
def _guided_upsample_argmax_fake(logits, image, sigma_spatial, sigma_range, window):
    return logits.new_empty((image.shape[0], image.shape[1], image.shape[2]), dtype=torch.int64)
