"""Initialise ICNet's half-width backbone from a local torchvision-format ImageNet ResNet-50.

ICNet's PSPNet50 is ResNet-50 with a deep 3x3 stem and half the channels (Caffe ICNet obtained it
by pruning). Without the released Caffe weights the closest start is ImageNet ResNet-50: its
``layer1 .. layer4`` map onto our ``conv2 .. conv5`` block by block, and each tensor is cut to
our shape by keeping the leading slice along every dimension (the first half of the output and
input channels; the whole input of ``layer1.0``, which already has our 64). The 7x7 stem has no
counterpart in our three 3x3 convs and is skipped, as are sub1, pyramid pooling, conv5_4 and the
fusion head. Nothing is downloaded: the caller provides the file.

torchvision's ResNet (v1.5) strides in the 3x3 conv, ours in the first 1x1 (Caffe); the weights
have the same shapes, the pretrained features just start slightly off for the strided blocks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from panonet.models.icnet import ICNet, ICNetTrunk

__all__ = ["PretrainedReport", "load_imagenet_resnet50"]

_LAYER = re.compile(r"^layer([1-4])\.(.+)$")


@dataclass
class PretrainedReport:
    """What :func:`load_imagenet_resnet50` did.

    loaded: our state-dict keys (relative to the ICNet) filled from the file, each paired with
        its source key. skipped: our keys left as they were, each with the reason.
        unused: keys of the file that were not used (stem, fc, ...).
    """

    loaded: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for logs: counts plus the groups of skipped and unused keys."""
        skipped_groups = sorted({k.split(".")[1] if "." in k else k for k, _ in self.skipped})
        unused_groups = sorted({k.split(".")[0] for k in self.unused})
        return (
            f"ImageNet ResNet-50 -> ICNet: loaded {len(self.loaded)} tensors; "
            f"skipped {len(self.skipped)} of ours (groups: {', '.join(skipped_groups)}); "
            f"unused {len(self.unused)} of the file's (groups: {', '.join(unused_groups)})"
        )


def load_imagenet_resnet50(
    icnet: ICNet | ICNetTrunk,
    path_or_state: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    verbose: bool = False,
) -> PretrainedReport:
    """Copy ImageNet ResNet-50 ``layer1..layer4`` weights into ``icnet``'s conv2..conv5, in place.

    Args:
        icnet: an :class:`ICNet` (keys ``trunk.conv2...``) or an :class:`ICNetTrunk` (keys
            ``conv2...``; e.g. the shared trunk of ``PanoNet(share_weights=True)``).
        path_or_state: a local file holding a torchvision-format ``resnet50`` state dict (read
            with ``torch.load(weights_only=True)``), or the state dict itself.
        verbose: print :meth:`PretrainedReport.summary`.

    Returns:
        A :class:`PretrainedReport` of the loaded, skipped and unused keys.

    Raises:
        TypeError: ``icnet`` is neither an ICNet nor an ICNetTrunk.
        ValueError: the source is not a ResNet-50-shaped state dict (a tensor smaller than ours,
            or no ``layer1..4`` keys at all).
    """
    if isinstance(path_or_state, (str, os.PathLike)):
        source = torch.load(path_or_state, map_location="cpu", weights_only=True)
    else:
        source = path_or_state
    if not isinstance(source, Mapping):
        raise ValueError(f"load_imagenet_resnet50: expected a state dict, got {type(source)}")
    if not isinstance(icnet, (ICNet, ICNetTrunk)):
        raise TypeError(
            "load_imagenet_resnet50: expected an ICNet or ICNetTrunk (for PanoNet: model.semantic, "
            f"model.instance or model.trunk), got {type(icnet).__name__}"
        )
    trunk = icnet.trunk if isinstance(icnet, ICNet) else icnet
    prefix = "trunk." if isinstance(icnet, ICNet) else ""

    # our key (in the trunk) -> source key
    wanted: dict[str, str] = {}
    for key in source:
        m = _LAYER.match(key)
        if m is not None:
            wanted[f"conv{int(m.group(1)) + 1}.{m.group(2)}"] = key
    if not wanted:
        raise ValueError(
            "load_imagenet_resnet50: the state dict has no layer1..layer4 keys; expected a "
            "torchvision-format ResNet-50"
        )

    report = PretrainedReport()
    used: set[str] = set()
    target = trunk.state_dict()
    with torch.no_grad():
        for key, dst in target.items():
            src_key = wanted.get(key)
            if src_key is None:
                report.skipped.append((prefix + key, "no counterpart in ResNet-50"))
                continue
            src = source[src_key]
            if src.dim() != dst.dim() or any(
                s < d for s, d in zip(src.shape, dst.shape, strict=True)
            ):
                raise ValueError(
                    f"load_imagenet_resnet50: {src_key} has shape {tuple(src.shape)}, cannot "
                    f"cover {prefix + key} of shape {tuple(dst.shape)}; not a ResNet-50?"
                )
            dst.copy_(src[tuple(slice(0, d) for d in dst.shape)])
            report.loaded.append((prefix + key, src_key))
            used.add(src_key)
    # state_dict() tensors share storage with the module, so the copies above are the load.
    report.unused = sorted(k for k in source if k not in used)
    if verbose:
        print(report.summary())
    return report
