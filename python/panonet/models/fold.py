"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm2d after a convolution is a per-channel affine map,
``y = (z - mean) * gamma / sqrt(var + eps) + beta``, so it can be applied to the convolution's
weights and bias instead of to its output: the network then skips one pass over every feature
map it writes (126 BatchNorms in the paper-width PanoNet; timings in ``docs/RESULTS.md``). The
folded model computes the same function up to
float32 rounding; its state dict has other keys (no ``bn`` entries, a bias per folded conv), so it
is for running, not for saving or training.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from panonet.models.icnet import Bottleneck, ConvBNReLU

__all__ = ["fold_batchnorm"]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d folded into its convolution.

    Knows the conv-BN pairs of :class:`~panonet.models.icnet.ConvBNReLU` and
    :class:`~panonet.models.icnet.Bottleneck` (its three convs and its projection shortcut),
    which hold every BatchNorm of ICNet and PanoNet. ``model`` itself is left unchanged. A model
    that is already folded comes back as an unchanged copy.

    Raises:
        ValueError: a BatchNorm2d outside those pairs (another architecture), named in the
            message: it would otherwise be left running silently.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNReLU):
            _fold_pair(module, "conv", "bn")
        elif isinstance(module, Bottleneck):
            for i in (1, 2, 3):
                _fold_pair(module, f"conv{i}", f"bn{i}")
            if module.downsample is not None:
                _fold_pair(module.downsample, "0", "1")
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ValueError(
            "fold_batchnorm: expected every BatchNorm2d to follow a convolution of a ConvBNReLU or "
            f"a Bottleneck, got {len(left)} elsewhere: {', '.join(left[:8])}"
        )
    return folded


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if not isinstance(bn, nn.BatchNorm2d):
        return  # folded already
    if not isinstance(conv, nn.Conv2d) or not bn.track_running_stats:
        raise ValueError(
            f"fold_batchnorm: expected a Conv2d before a BatchNorm2d with running statistics, got "
            f"{type(conv).__name__} and track_running_stats={bn.track_running_stats}"
        )
    # The fold in float64, rounded once to the weights' dtype: float32 arithmetic here would add
    # its own rounding to every weight on top of the network's.
    weight = conv.weight.detach().double()
    scale = bn.running_var.detach().double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.detach().double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.detach().double()
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bias)
    setattr(parent, conv_name, fused)
    setattr(parent, bn_name, nn.Identity())
