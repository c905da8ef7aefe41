"""Training: the loss of eqs. (1) + (6), its configuration, the optimizer and lr schedule."""

from panonet.train.config import NUM_SCALES, OPTIMIZERS, LossConfig, OptimConfig
from panonet.train.loss import SCALE_NAMES, PanoNetLoss
from panonet.train.optim import PolyDecay, build_optimizer, build_scheduler, parameter_groups

__all__ = [
    "NUM_SCALES",
    "OPTIMIZERS",
    "SCALE_NAMES",
    "LossConfig",
    "OptimConfig",
    "PanoNetLoss",
    "PolyDecay",
    "build_optimizer",
    "build_scheduler",
    "parameter_groups",
]
