"""What passes between the Predictor's two halves: the images it accepts (checked and made one
(N, H, W, 3) uint8 batch) and the network's output that its post-processing takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MIN_IMAGE_SIZE",
    "ImageInput",
    "NetworkOutput",
    "as_hwc_batch",
    "check_network_output",
    "same_device",
]

# The network halves the input five times before pyramid pooling; below 32 pixels a side the
# 1/32 feature map would be empty.
MIN_IMAGE_SIZE = 32

ImageInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


@dataclass(frozen=True)
class NetworkOutput:
    """The network's output for one image or a batch, from :meth:`Predictor.run_network`,
    to be post-processed by :meth:`Predictor.predict` (of that predictor or of one made from it
    with :meth:`Predictor.with_settings`), as often as wanted: a search over post-processing
    settings runs the network once per image.

    Attributes:
        logits: (N, C, H/4, W/4) float32 semantic logits on the predictor's device.
        embedding: (N, D, H/4, W/4) float32 instance embedding, contiguous, on that device.
        size: (H, W), the image's size (the maps' size).
        batched: whether the input was a batch (the maps then keep the N axis).
        image: (N, H, W, 3) uint8, the input on that device (what ``guided_upsampling``
            follows); None: a predictor with ``guided_upsampling`` refuses this output.
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    size: tuple[int, int]
    batched: bool
    image: torch.Tensor | None = None


def check_network_output(output: NetworkOutput, device: torch.device, num_classes: int) -> None:
    """Refuses a :class:`NetworkOutput` that a predictor on ``device`` with ``num_classes``
    classes cannot post-process (another device, another number of classes, maps of different
    sizes), with ValueError."""
    fn = "Predictor.predict"
    logits, embedding = output.logits, output.embedding
    if logits.device != embedding.device or not same_device(logits.device, device):
        raise ValueError(
            f"{fn}: expected a network output on {device}, got logits on "
            f"{logits.device} and the embedding on {embedding.device}"
        )
    if logits.dim() != 4 or logits.shape[1] != num_classes:
        raise ValueError(
            f"{fn}: expected logits of shape (N, {num_classes}, h, w), got {tuple(logits.shape)}"
        )
    if embedding.dim() != 4 or embedding.shape[:1] + embedding.shape[2:] != (
        logits.shape[:1] + logits.shape[2:]
    ):
        raise ValueError(
            f"{fn}: expected an embedding of shape ({logits.shape[0]}, D, "
            f"{logits.shape[2]}, {logits.shape[3]}) like the logits, got "
            f"{tuple(embedding.shape)}"
        )
    image = output.image
    if image is not None and (
        image.device != logits.device
        or image.dtype != torch.uint8
        or tuple(image.shape) != (logits.shape[0], *output.size, 3)
    ):
        raise ValueError(
            f"{fn}: expected the output's image as uint8 of shape ({logits.shape[0]}, "
            f"{output.size[0]}, {output.size[1]}, 3) on {logits.device}, got {image.dtype} of "
            f"shape {tuple(image.shape)} on {image.device}"
        )


def same_device(tensor_device: torch.device, device: torch.device) -> bool:
    """Whether a tensor on ``tensor_device`` is on ``device`` ("cuda" means the current one)."""
    if tensor_device.type != device.type:
        return False
    if device.type != "cuda":
        return True
    return tensor_device.index == (
        torch.cuda.current_device() if device.index is None else device.index
    )


def as_hwc_batch(image: ImageInput) -> tuple[torch.Tensor, bool]:
    """(N, H, W, 3) uint8 tensor and whether the input was a batch."""
    if isinstance(image, (list, tuple)):
        if not image:
            raise ValueError("Predictor.predict: got an empty list of images")
        parts = [as_hwc_batch(im) for im in image]
        if any(batched for _, batched in parts):
            raise ValueError("Predictor.predict: a list must hold single images, not batches")
        sizes = {tuple(p.shape[1:3]) for p, _ in parts}
        if len(sizes) > 1:
            raise ValueError(
                f"Predictor.predict: the images of a list must share one size, got {sorted(sizes)}"
            )
        return torch.cat([p for p, _ in parts]), True
    if isinstance(image, (str, Path)):
        raise TypeError(
            "Predictor.predict: expected an image array or tensor, got a path; read it first "
            "(e.g. numpy.asarray(PIL.Image.open(path).convert('RGB')))"
        )
    if isinstance(image, np.ndarray):
        # NumPy images are HWC, as PIL / OpenCV (after BGR->RGB) give them.
        # Read-only arrays (np.asarray of a PIL image) are copied: torch cannot wrap them.
        array = np.ascontiguousarray(image)
        if not array.flags.writeable:
            array = array.copy()
        x, layout = torch.from_numpy(array), "(H, W, 3) or (N, H, W, 3)"
        channel_dim = -1
    elif isinstance(image, torch.Tensor):
        # Tensors are CHW, as torchvision gives them.
        x, layout = image, "(3, H, W) or (N, 3, H, W)"
        channel_dim = -3
    else:
        raise TypeError(
            "Predictor.predict: expected a NumPy array, a tensor or a list of them, got "
            f"{type(image).__name__}"
        )
    if x.dtype != torch.uint8:
        raise ValueError(
            f"Predictor.predict: expected a uint8 RGB image (values 0-255), got {x.dtype}; "
            "convert float images in [0, 1] with (x * 255).round() and a uint8 cast"
        )
    if x.dim() not in (3, 4) or x.shape[channel_dim] != 3:
        raise ValueError(
            f"Predictor.predict: expected an RGB image of shape {layout}, got {tuple(x.shape)}"
        )
    batched = x.dim() == 4
    if not batched:
        x = x[None]
    if channel_dim == -3:
        x = x.permute(0, 2, 3, 1)
    H, W = x.shape[1:3]
    if H < MIN_IMAGE_SIZE or W < MIN_IMAGE_SIZE:
        raise ValueError(
            f"Predictor.predict: expected an image of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} "
            f"pixels, got {H}x{W}"
        )
    if x.shape[0] == 0:
        raise ValueError("Predictor.predict: got an empty batch")
    return x, batched
