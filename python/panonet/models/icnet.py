"""ICNet (Zhao et al., ECCV 2018), the backbone of both PanoNet branches.

Layout of the released Cityscapes model (``icnet_cityscapes.prototxt``), layer names in brackets:

* sub1 [conv1_sub1 .. conv3_sub1]: three stride-2 3x3 conv-BN-ReLU (32, 32, 64) on the
  full-resolution input -> 1/8.
* sub2: a half-width dilated PSPNet50 on the input downsampled x2 (bilinear): a deep stem
  [conv1_1_3x3_s2, conv1_2_3x3, conv1_3_3x3] (32, 32, 64) plus a 3x3 stride-2 max-pool, then
  bottleneck stages conv2 (3 blocks, out 128) and conv3_1 (out 256, stride 2) -> 1/16.
* sub4: conv3_1's output downsampled x2 (bilinear), conv3_2 .. conv3_4, conv4 (6 blocks, out 512,
  dilation 2), conv5 (3 blocks, out 1024, dilation 4) at 1/32, pyramid pooling (bins 1, 2, 3, 6)
  combined by summation, and [conv5_4_k1] 1x1 conv-BN-ReLU -> 256. sub2 and sub4 are one
  backbone run: sub4 continues from sub2's conv3_1.
* Two cascade feature fusion (CFF) units, sub4 -> sub2 (1/16) and -> sub1 (1/8), each with a 1x1
  classifier on its upsampled low-resolution input (cascade label guidance), and the final
  x2 upsample + 1x1 classifier [conv6_cls] -> 1/4.

So the finest features ICNet classifies are at 1/8: a thing 5 pixels wide (a pedestrian of the
synthetic scenes at 256x512) is under one feature pixel. ``detail=True`` (not in ICNet or
PanoNet) adds a third fusion at 1/4: sub1's second conv (1/4, 32 channels, computed anyway)
through a 3x3 conv-BN, added to the upsampled 1/8 fusion before the final classifier.

As in the original PSPNet/ICNet (and unlike torchvision's ResNet "v1.5") a strided bottleneck
strides in its first 1x1 conv. Downsampling by 2 always produces ``ceil(n / 2)`` pixels, like
Caffe's stride-2 layers and ``Interp shrink_factor: 2``, so for an input of H x W the three
outputs are ``ceil(H / 4) x ceil(W / 4)``, ``ceil(H / 8) x ceil(W / 8)`` and
``ceil(H / 16) x ceil(W / 16)`` (:func:`icnet_output_sizes`); every resampling is bilinear
(``align_corners=False``) to an exact target size, so no size needs to be divisible by anything.

The model is split into :class:`ICNetTrunk` (everything up to the fusion) and
:class:`ICNetHead` (the two CFF units and the classifiers) so that PanoNet's shared-weight variant
can put two heads on one trunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MIN_INPUT_SIZE",
    "Bottleneck",
    "CascadeFeatureFusion",
    "ConvBNReLU",
    "ICNet",
    "ICNetHead",
    "ICNetTrunk",
    "PyramidPoolingSum",
    "check_input",
    "icnet_output_sizes",
]

# 32 = 2^5: the smallest size at which the 1/32 branch still has a pixel to pool.
MIN_INPUT_SIZE = 32

PSP_BINS = (1, 2, 3, 6)


def _half(n: int) -> int:
    """Size after one stride-2 step (3x3 pad 1, 1x1 pad 0, max-pool 3 pad 1): ceil(n / 2)."""
    return (n + 1) // 2


def icnet_output_sizes(height: int, width: int) -> tuple[tuple[int, int], ...]:
    """The (h, w) of ICNet's three outputs for an input of ``height`` x ``width``.

    Returns:
        ``((ceil(H/4), ceil(W/4)), (ceil(H/8), ceil(W/8)), (ceil(H/16), ceil(W/16)))``, in the
        order :meth:`ICNet.forward` returns the outputs.
    """
    sizes = []
    h, w = _half(_half(height)), _half(_half(width))
    for _ in range(3):
        sizes.append((h, w))
        h, w = _half(h), _half(w)
    return tuple(sizes)


def check_input(x: torch.Tensor, in_channels: int, who: str) -> None:
    """Raises ValueError unless ``x`` is a floating (B, in_channels, H, W) tensor with H and W
    at least MIN_INPUT_SIZE."""
    # Shape checks only (Python ints), never values: they stay out of traced/exported graphs.
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{who}: expected input of shape (B, {in_channels}, H, W), got {tuple(x.shape)}"
        )
    if x.shape[-2] < MIN_INPUT_SIZE or x.shape[-1] < MIN_INPUT_SIZE:
        raise ValueError(
            f"{who}: expected H and W >= {MIN_INPUT_SIZE} (the 1/32 branch needs a pixel), "
            f"got H={x.shape[-2]}, W={x.shape[-1]}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{who}: expected a floating-point input, got {x.dtype}")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Module):
    """Conv2d (no bias) + BatchNorm2d (+ ReLU): (B, in_ch, H, W) -> (B, out_ch, H', W')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        # In place: x is this block's own fresh output (neither BatchNorm's nor the convolution's
        # backward reads it), and no second full-size buffer is allocated and written.
        return F.relu(x, inplace=True) if self.relu else x


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 reduce, 3x3, 1x1 expand, identity or projection shortcut).

    Attribute names follow torchvision's ``Bottleneck`` (conv1/bn1 .. conv3/bn3, downsample.0/1)
    so ImageNet weights map by name; the stride sits in ``conv1`` as in Caffe PSPNet/ICNet.
    """

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, stride: int, dilation: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(
            mid_channels, mid_channels, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        # In place, as in ConvBNReLU: the outputs of BatchNorm and of the convolutions are not
        # read by their backward passes.
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        y += shortcut
        return F.relu(y, inplace=True)


def scaled_channels(channels: int, width: float) -> int:
    """``channels`` of the released layout scaled by ``width``, rounded, at least 8."""
    return max(8, round(channels * width))


def _stage(
    in_channels: int, out_channels: int, blocks: int, stride: int, dilation: int
) -> nn.Sequential:
    mid = out_channels // 4
    layers = [Bottleneck(in_channels, mid, out_channels, stride, dilation)]
    layers += [Bottleneck(out_channels, mid, out_channels, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _pool_window(n: int, bins: int) -> tuple[int, int]:
    """(kernel, stride) of an average pool giving ``min(bins, n)`` windows that tile ``n``.

    stride = n // bins, kernel = n - stride * (bins - 1): equal windows, the last one ending
    exactly at the border. For the released model's 33 x 65 map this reproduces its windows for
    bins 1, 2 and 6 (kernel 33x65, 17x33 stride 16x32, 8x15 stride 5x10); for bin 3 the release
    hand-picked 13x25 at stride 10x20 where this rule gives 11x23 at stride 11x21. When ``bins``
    divides ``n`` this is exactly ``adaptive_avg_pool2d``. A map smaller than the bin count
    (n < bins) pools to n windows of one pixel, i.e. the map itself.
    """
    bins = min(bins, n)
    stride = n // bins
    return n - stride * (bins - 1), stride


class PyramidPoolingSum(nn.Module):
    """ICNet's parameter-free pyramid pooling: x + sum_b upsample(avgpool_b(x)).

    (B, C, h, w) -> (B, C, h, w). Fixed-kernel ``avg_pool2d`` with kernel/stride computed from the
    feature size (:func:`_pool_window`) instead of ``adaptive_avg_pool2d``: it is the released
    model's pooling, and it exports to ONNX as a plain AveragePool for any size, whereas adaptive
    pooling with a non-dividing size has no ONNX equivalent. The kernel sizes are Python ints, so a
    traced/exported graph is specialised to its input height and width (batch stays free).
    """

    def __init__(self, bins: tuple[int, ...] = PSP_BINS) -> None:
        super().__init__()
        self.bins = tuple(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        out = x
        for b in self.bins:
            kh, sh = _pool_window(h, b)
            kw, sw = _pool_window(w, b)
            pooled = F.avg_pool2d(x, kernel_size=(kh, kw), stride=(sh, sw))
            out = out + _resize(pooled, (h, w))
        return out


class CascadeFeatureFusion(nn.Module):
    """CFF unit: fuse a low-resolution feature into a 2x higher-resolution one.

    low (B, low_ch, h, w) is resized bilinearly to high's exact size (H', W'), then
    ``relu(BN(conv3x3_dil2(low_up)) + BN(conv1x1(high)))`` -> (B, out_ch, H', W'); the auxiliary
    classifier gives (B, num_classes, H', W') logits from ``low_up`` (cascade label guidance).
    """

    def __init__(
        self, low_channels: int, high_channels: int, out_channels: int, num_classes: int
    ) -> None:
        super().__init__()
        self.conv_low = ConvBNReLU(low_channels, out_channels, 3, dilation=2, relu=False)
        self.conv_high = ConvBNReLU(high_channels, out_channels, 1, relu=False)
        self.classifier = nn.Conv2d(low_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = _resize(low, (int(high.shape[-2]), int(high.shape[-1])))
        fused = F.relu(self.conv_low(low) + self.conv_high(high), inplace=True)
        return fused, self.classifier(low)


class ICNetTrunk(nn.Module):
    """ICNet up to the fusion: sub1, the shared sub2/sub4 backbone, pyramid pooling.

    forward: (B, in_channels, H, W) float -> (f1, f2, f4, fq) with f1 (B, 64, ceil(H/8),
    ceil(W/8)), f2 (B, 256, ceil(H/16), ceil(W/16)), f4 (B, 256, ceil(H/32), ceil(W/32)) and fq
    (B, 32, ceil(H/4), ceil(W/4)), sub1's second conv (the heads' ``detail`` input); every
    channel count scaled by ``width`` (:func:`scaled_channels`; 1 is the released layout).
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        c = {n: scaled_channels(n, width) for n in (32, 64, 128, 256, 512, 1024)}
        self.sub1 = nn.Sequential(
            ConvBNReLU(in_channels, c[32], 3, stride=2),
            ConvBNReLU(c[32], c[32], 3, stride=2),
            ConvBNReLU(c[32], c[64], 3, stride=2),
        )
        self.stem = nn.Sequential(
            ConvBNReLU(in_channels, c[32], 3, stride=2),
            ConvBNReLU(c[32], c[32], 3),
            ConvBNReLU(c[32], c[64], 3),
        )
        self.conv2 = _stage(c[64], c[128], 3, stride=1, dilation=1)
        # conv3[0] (= conv3_1) runs at 1/16 in sub2; conv3[1:] at 1/32 in sub4.
        self.conv3 = _stage(c[128], c[256], 4, stride=2, dilation=1)
        self.conv4 = _stage(c[256], c[512], 6, stride=1, dilation=2)
        self.conv5 = _stage(c[512], c[1024], 3, stride=1, dilation=4)
        self.psp = PyramidPoolingSum(PSP_BINS)
        self.conv5_4 = ConvBNReLU(c[1024], c[256], 1)

    def input_convs(self) -> list[str]:
        """Names (relative to this module) of the conv weights that see the raw input."""
        return ["sub1.0.conv.weight", "stem.0.conv.weight"]

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        fq = self.sub1[1](self.sub1[0](x))
        f1 = self.sub1[2](fq)

        y = _resize(x, (_half(h), _half(w)))
        y = F.max_pool2d(self.stem(y), kernel_size=3, stride=2, padding=1)
        y = self.conv2(y)
        f2 = self.conv3[0](y)

        y = _resize(f2, (_half(int(f2.shape[-2])), _half(int(f2.shape[-1]))))
        for block in self.conv3[1:]:
            y = block(y)
        y = self.conv5(self.conv4(y))
        f4 = self.conv5_4(self.psp(y))
        return f1, f2, f4, fq


class ICNetHead(nn.Module):
    """ICNet's two CFF units and three classifiers.

    forward(f1, f2, f4, fq) with the trunk's features -> (out_1/4, out_1/8, out_1/16), each
    (B, out_channels, h, w) at the sizes of :func:`icnet_output_sizes` (the 1/4 output has fq's
    size). With ``detail``, the 1/4 output is classified from
    ``relu(upsampled 1/8 fusion + BN(conv3x3(fq)))`` instead of the upsampled 1/8 fusion alone.
    """

    def __init__(self, out_channels: int = 19, width: float = 1.0, detail: bool = False) -> None:
        super().__init__()
        self.out_channels = out_channels
        c32, c64, c128, c256 = (scaled_channels(n, width) for n in (32, 64, 128, 256))
        self.cff_sub24 = CascadeFeatureFusion(c256, c256, c128, out_channels)
        self.cff_sub12 = CascadeFeatureFusion(c128, c64, c128, out_channels)
        self.detail = ConvBNReLU(c32, c128, 3, relu=False) if detail else None
        self.classifier = nn.Conv2d(c128, out_channels, 1)

    def forward(
        self, f1: torch.Tensor, f2: torch.Tensor, f4: torch.Tensor, fq: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f24, out_16 = self.cff_sub24(f4, f2)
        f12, out_8 = self.cff_sub12(f24, f1)
        x = _resize(f12, (int(fq.shape[-2]), int(fq.shape[-1])))
        if self.detail is not None:
            x = F.relu(x + self.detail(fq), inplace=True)
        out_4 = self.classifier(x)
        return out_4, out_8, out_16


class ICNet(nn.Module):
    """ICNet for dense prediction with cascade label guidance.

    Args:
        in_channels: channels of the input (3 for RGB, 5 for RGB + XY coordinates).
        out_channels: channels of each output (classes for logits, D for an embedding).
        width: multiplier of every inner channel count (1: the released ICNet; 0.5 has about a
            quarter of its parameters and multiply-adds, for short runs on a CPU).
        detail: the third fusion at 1/4 (see the module docstring; False: the released ICNet).

    forward(x): x (B, in_channels, H, W) floating point, H, W >= 32 (any values: no size needs to
    be divisible by anything). Returns ``(out_1/4, out_1/8, out_1/16)``, each
    (B, out_channels, h, w) in x's dtype with (h, w) = (ceil(H/4), ceil(W/4)),
    (ceil(H/8), ceil(W/8)) and (ceil(H/16), ceil(W/16)) (:func:`icnet_output_sizes`; e.g.
    1024 x 2048 -> 256 x 512, 128 x 256, 64 x 128 and 1025 x 2049 -> 257 x 513, 129 x 257,
    65 x 129). All three are always returned: training uses all of them, inference the first.

    Raises:
        ValueError: the input is not (B, in_channels, H, W), is smaller than 32 x 32, or is not
            floating point.
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 19, width: float = 1.0, detail: bool = False
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.trunk = ICNetTrunk(in_channels, width)
        self.head = ICNetHead(out_channels, width, detail)
        init_weights(self)

    output_sizes = staticmethod(icnet_output_sizes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_input(x, self.in_channels, "ICNet")
        return self.head(*self.trunk(x))


def init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convs, BN to identity, classifier biases to zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
