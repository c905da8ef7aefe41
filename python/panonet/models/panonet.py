"""PanoNet (Chen et al.): a semantic ICNet and a position-sensitive instance-embedding ICNet.

Fig. 2 of the paper: the semantic branch sees RGB and predicts class logits; the instance branch
sees RGB plus two normalised coordinate maps (:func:`panonet.models.coordinate_channels`) and
predicts a D = 12 channel embedding. Both predict at 1/4, 1/8 and 1/16 of the input (cascade
label guidance, used by the 3-scale losses of eqs. 1 and 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from panonet.models.coords import coordinate_channels
from panonet.models.icnet import ICNet, ICNetHead, ICNetTrunk, check_input, init_weights
from panonet.models.icnet import icnet_output_sizes as _icnet_output_sizes
from panonet.models.surgery import widen_stage1_state_dict

__all__ = [
    "DETAIL_CHOICES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_WIDTH",
    "PanoNet",
    "PanoNetOutput",
    "preprocess",
]

# Largest channel multiplier PanoNet (and TrainConfig) accept.
MAX_WIDTH = 4.0

# PanoNet's (and TrainConfig's) detail: which branches fuse 1/4 features into their 1/4 output.
DETAIL_CHOICES = ("none", "semantic", "both")

# RGB statistics of ImageNet in [0, 1] (torchvision's): the backbone is initialised from
# torchvision-format ImageNet weights (models.pretrained), which expect this normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Scales = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class PanoNetOutput(NamedTuple):
    """PanoNet's predictions, each a 3-tuple at 1/4, 1/8 and 1/16 of the input.

    semantic: (B, num_classes, h, w) class logits per scale.
    embedding: (B, embedding_dim, h, w) instance embeddings per scale.
    (h, w) = (ceil(H/4), ceil(W/4)), (ceil(H/8), ceil(W/8)), (ceil(H/16), ceil(W/16)).
    """

    semantic: Scales
    embedding: Scales


def preprocess(
    image: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 RGB image(s), (H, W, 3) or (B, H, W, 3), -> (B, 3, H, W) normalised network input.

    ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD`` per channel, in ``dtype`` on ``device``.

    Raises:
        ValueError: not uint8, or not (H, W, 3) / (B, H, W, 3).
    """
    x = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    if x.dtype != torch.uint8 or x.dim() not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(
            "preprocess: expected a uint8 RGB image of shape (H, W, 3) or (B, H, W, 3), "
            f"got {x.dtype} of shape {tuple(x.shape)}"
        )
    if x.dim() == 3:
        x = x[None]
    x = x.to(device=device).permute(0, 3, 1, 2).to(dtype) / 255.0
    mean, std = _normalisation(x.device, dtype)
    return ((x - mean) / std).contiguous()


@lru_cache(maxsize=16)
def _normalisation(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 1, 1) mean and std on ``device``: made once per device, as each upload of host data
    to a GPU waits for it. Made outside inference mode, so that training may use them too."""
    with torch.inference_mode(False):
        mean = torch.tensor(IMAGENET_MEAN, dtype=dtype)[:, None, None].to(device)
        std = torch.tensor(IMAGENET_STD, dtype=dtype)[:, None, None].to(device)
    return mean, std


class PanoNet(nn.Module):
    """Two ICNet branches: semantic logits and a position-sensitive instance embedding.

    Args:
        num_classes: semantic classes (19 Cityscapes trainIds).
        embedding_dim: D, channels of the instance embedding (12 in the paper).
        use_coords: append the normalised (x, y) coordinate maps to the instance branch's input
            (stage 2 of the training; stage 1 has ``use_coords=False``).
        share_weights: the paper's compressed variant (sec. IV-e): one ICNet trunk shared by both
            tasks, separate heads. Shared: sub1, the stem, conv2 .. conv5, pyramid pooling and
            conv5_4 (:class:`~panonet.models.icnet.ICNetTrunk`). Separate per task: the three
            last stages that lead to the three predictions
            (:class:`~panonet.models.icnet.ICNetHead`): CFF sub4->sub2 with its 1/16 classifier,
            CFF ->sub1 with its 1/8 classifier, and the final 1/4 classifier. With
            ``use_coords`` the shared trunk takes RGB + coordinates, so the semantic predictions
            see the coordinates too.
        width: multiplier of the ICNets' inner channel counts (1, the default, is the paper's
            network; 0.5 is the demo's cheaper setting for a CPU, ~1/4 of the multiply-adds).
        coord_scale: factor on the coordinate maps (1, the default, gives the paper's normalised
            coordinates in [-1, 1]). Under Adam a factor s on an input acts as an s times larger
            step (and s times weaker weight decay) for the weights that read it: a lever for a
            network that leaves its zero-initialised coordinate weights small.
        coord_output: with ``use_coords``, add ``coord_output`` times the normalised (x, y) of
            each output pixel (the input's coordinate maps resized bilinearly to the output) to
            the embedding's first two channels, so that the network predicts offsets from where
            a pixel is instead of where it is. 0 (the default, the paper's): nothing is added.
            Not in the paper: a lever of issue 14 (``docs/RESULTS.md``) for a network that
            does not learn to use the coordinate input.
        detail: which branches' 1/4 outputs also fuse the 1/4 features of ICNet's first branch
            (:class:`~panonet.models.icnet.ICNetHead`'s ``detail``), where ICNet classifies
            1/8 features upsampled: ``"none"`` (the default, the paper's ICNet),
            ``"semantic"`` or ``"both"``. Not in the paper: a lever of issue 14 for things
            thinner than the 1/8 grid.

    Parameters (measured with :meth:`count_parameters`; BN running statistics not counted),
    19 classes, D = 12:

    * two branches, ``use_coords=True``: 13,412,189 (semantic 6,707,321 + instance 6,704,868);
      ``use_coords=False``: 13,411,037.
    * ``share_weights=True``: 7,199,005 (``use_coords=False``: 7,197,853).

    The paper's Table IV gives "12M" for PanoNet, about 1.4 M (10 %) less than our 13.4 M. Each
    of our branches is the released ICNet layout: 6.21 M in the trunk (the half-width conv5 stage
    alone is 3.75 M, conv4 1.78 M, conv5_4 0.26 M) and 0.49 M in the fusion head; BN affine
    parameters are only 57 k of the total, so they do not explain it either. The paper does not
    itemise its count, so the gap is either rounding/loose reporting or a slimmer ICNet than the
    released one (e.g. further pruned conv5); we keep the ICNet paper's layout rather than guess
    which layers were thinned.

    forward(images, offset=None, full_size=None):
        images: (B, 3, H, W) float, already normalised (:func:`preprocess`), H, W >= 32.
        offset: None or (B, 2) integer (y0, x0) of each crop in its full image (training crops;
            ignored when ``use_coords`` is False).
        full_size: None (the input is the full image), (H_full, W_full) for the whole batch,
            or a (B, 2) integer tensor with each image's own full size (training batches after
            per-image random scaling). See :func:`~panonet.models.coordinate_channels`.
        Returns :class:`PanoNetOutput` (semantic, embedding), each (out_1/4, out_1/8, out_1/16).

    Raises:
        ValueError: images not (B, 3, H, W) floating point or smaller than 32 x 32; a crop that
            does not fit inside ``full_size``.
    """

    def __init__(
        self,
        num_classes: int = 19,
        embedding_dim: int = 12,
        *,
        use_coords: bool = True,
        share_weights: bool = False,
        width: float = 1.0,
        coord_scale: float = 1.0,
        coord_output: float = 0.0,
        detail: str = "none",
    ) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError(
                "PanoNet: expected num_classes >= 1 and embedding_dim >= 1, "
                f"got {num_classes} and {embedding_dim}"
            )
        if not 0 < width <= MAX_WIDTH:
            raise ValueError(f"PanoNet: expected 0 < width <= {MAX_WIDTH:g}, got {width}")
        if not (0 < coord_scale < float("inf")):
            raise ValueError(f"PanoNet: expected a finite coord_scale > 0, got {coord_scale}")
        if not (0 <= coord_output < float("inf")):
            raise ValueError(f"PanoNet: expected a finite coord_output >= 0, got {coord_output}")
        if coord_output and embedding_dim < 2:
            raise ValueError(f"PanoNet: coord_output needs embedding_dim >= 2, got {embedding_dim}")
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.use_coords = bool(use_coords)
        self.share_weights = bool(share_weights)
        self.width = float(width)
        self.coord_scale = float(coord_scale)
        self.coord_output = float(coord_output)
        if detail not in DETAIL_CHOICES:
            raise ValueError(f"PanoNet: expected detail in {DETAIL_CHOICES}, got {detail!r}")
        self.detail = str(detail)
        semantic_detail, instance_detail = detail != "none", detail == "both"
        instance_in = 5 if use_coords else 3
        if share_weights:
            self.trunk = ICNetTrunk(instance_in, self.width)
            self.semantic_head = ICNetHead(num_classes, self.width, semantic_detail)
            self.instance_head = ICNetHead(embedding_dim, self.width, instance_detail)
            init_weights(self)
        else:
            self.semantic = ICNet(3, num_classes, self.width, semantic_detail)
            self.instance = ICNet(instance_in, embedding_dim, self.width, instance_detail)

    @property
    def config(self) -> dict[str, int | bool | float]:
        """The constructor's keyword arguments: ``PanoNet(**model.config)`` rebuilds the model."""
        return {
            "num_classes": self.num_classes,
            "embedding_dim": self.embedding_dim,
            "use_coords": self.use_coords,
            "share_weights": self.share_weights,
            "width": self.width,
            "coord_scale": self.coord_scale,
            "coord_output": self.coord_output,
            "detail": self.detail,
        }

    output_sizes = staticmethod(_icnet_output_sizes)

    def count_parameters(self) -> int:
        """Number of learnable parameters (BN running statistics excluded)."""
        return sum(p.numel() for p in self.parameters())

    def input_conv_keys(self) -> list[str]:
        """State-dict keys of the conv weights that receive the coordinate channels."""
        if self.share_weights:
            return [f"trunk.{k}" for k in self.trunk.input_convs()]
        return [f"instance.trunk.{k}" for k in self.instance.trunk.input_convs()]

    def _coordinates(
        self,
        images: torch.Tensor,
        offset: torch.Tensor | None,
        full_size: tuple[int, int] | torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, 2, H, W) normalised coordinate maps of ``images`` ((1, 2, H, W) when one map
        serves the whole batch)."""
        b, _, h, w = images.shape
        per_image = isinstance(full_size, torch.Tensor) and full_size.dim() == 2
        if offset is None and not per_image:
            # One map broadcast over the batch: the traced/exported graph then does not bake in
            # the batch size.
            coords = coordinate_channels(
                1, h, w, full_size=full_size, dtype=images.dtype, device=images.device
            )
        else:
            coords = coordinate_channels(
                b,
                h,
                w,
                offset=offset,
                full_size=full_size,
                dtype=images.dtype,
                device=images.device,
            )
        return coords

    def _with_output_coordinates(self, embedding: Scales, coords: torch.Tensor) -> Scales:
        """Each scale's embedding with ``coord_output`` x (x, y) added to channels 0 and 1."""
        out = []
        for e in embedding:
            xy = F.interpolate(coords, size=e.shape[-2:], mode="bilinear", align_corners=False)
            xy = (self.coord_output * xy).to(e.dtype).expand(e.shape[0], -1, -1, -1)
            out.append(torch.cat((e[:, :2] + xy, e[:, 2:]), dim=1))
        return (out[0], out[1], out[2])

    def forward(
        self,
        images: torch.Tensor,
        offset: torch.Tensor | None = None,
        full_size: tuple[int, int] | torch.Tensor | None = None,
    ) -> PanoNetOutput:
        check_input(images, 3, "PanoNet")
        coords = self._coordinates(images, offset, full_size) if self.use_coords else None
        inst_in = images
        if coords is not None:
            scaled = coords * self.coord_scale if self.coord_scale != 1.0 else coords
            inst_in = torch.cat((images, scaled.expand(images.shape[0], -1, -1, -1)), dim=1)
        if not self.share_weights:
            semantic, embedding = self.semantic(images), self.instance(inst_in)
        else:
            features = self.trunk(inst_in)
            semantic = self.semantic_head(*features)
            embedding = self.instance_head(*features)
        if coords is not None and self.coord_output:
            embedding = self._with_output_coordinates(embedding, coords)
        return PanoNetOutput(semantic, embedding)

    def load_stage1(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a stage-1 (``use_coords=False``) state dict into this (stage-2) model.

        The input convs that receive the coordinates (:meth:`input_conv_keys`: the instance
        branch's sub1 conv and stem conv, or the shared trunk's) get two zero input channels for
        (x, y), so right after loading the model computes exactly the stage-1 outputs; every
        other tensor is copied as is. A state dict that already matches loads as is.

        Raises:
            ValueError: any other mismatch, naming the missing / unexpected / mis-shaped keys.
        """
        widened = widen_stage1_state_dict(self, state_dict, self.input_conv_keys())
        self.load_state_dict(widened, strict=True)
