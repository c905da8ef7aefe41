"""PanoNet's networks: ICNet, the two-branch PanoNet, coordinate maps, checkpoints."""

from panonet.models.checkpoint import load_model, save_checkpoint
from panonet.models.coords import coordinate_channels
from panonet.models.icnet import ICNet, icnet_output_sizes
from panonet.models.panonet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PanoNet,
    PanoNetOutput,
    preprocess,
)
from panonet.models.pretrained import PretrainedReport, load_imagenet_resnet50

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ICNet",
    "PanoNet",
    "PanoNetOutput",
    "PretrainedReport",
    "coordinate_channels",
    "icnet_output_sizes",
    "load_imagenet_resnet50",
    "load_model",
    "preprocess",
    "save_checkpoint",
]
