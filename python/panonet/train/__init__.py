"""Training: the loss of eqs. (1) + (6), its configuration, the optimizer and lr schedule, and the
two-stage training loop with exact resumption and DistributedDataParallel."""

from panonet.train.config import NUM_SCALES, OPTIMIZERS, LossConfig, OptimConfig, TrainConfig
from panonet.train.config_file import load_train_config, parse_override
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
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "load_train_config",
    "parameter_groups",
    "parse_override",
    "run_training",
]


def __getattr__(name: str):
    # The trainer imports the dataset, evaluation and DataLoader machinery; the loss and
    # config users (bandwidth search, tests) do not need to pay for that import.
    if name in ("Trainer", "run_training"):
        from panonet.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'panonet.train' has no attribute {name!r}")
