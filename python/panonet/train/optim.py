"""Optimizer and polynomial learning-rate decay from an :class:`~panonet.train.OptimConfig`."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from panonet.train.config import OptimConfig

__all__ = [
    "PolyDecay",
    "build_optimizer",
    "build_scheduler",
    "current_lr",
    "group_lr",
    "lrs_as_numbers",
    "parameter_groups",
    "place_lrs",
]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: conv/linear weights (decayed) and the rest (not decayed).

    Biases and BatchNorm affine parameters (every parameter with fewer than 2 dimensions) are
    not decayed: pulling them to 0 only fights the normalisation. Frozen parameters
    (``requires_grad=False``) are left out. Empty groups are dropped.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """``torch.optim.Adadelta`` or ``torch.optim.AdamW`` over ``model``'s trainable parameters.

    Multi-tensor updates (AdamW fused, Adadelta foreach) on every device: PyTorch's CPU default
    loops over the parameters; fused AdamW took a demo training step from 156 to 144 ms on 2
    cores (interleaved medians).

    The learning rate is ``cfg.base_lr`` (0.003 for Adadelta by default, the paper's); weight
    decay applies to conv/linear weights only (:func:`parameter_groups`).

    With ``capturable`` (for a step captured in a CUDA graph,
    :class:`panonet.train.graphed_step.GraphedTrainStep`) the optimizer keeps its step counts
    on the device and each group's learning rate is a 0-dim tensor there, which the schedule
    fills in place, so that a replayed update uses the current rate (a float would be frozen
    into the graph at capture).

    Raises:
        ValueError: the model has no trainable parameters; ``capturable`` with parameters not
            on a CUDA device.
    """
    groups = parameter_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("build_optimizer: expected a model with trainable parameters, got none")
    lr: float | torch.Tensor = cfg.base_lr
    if capturable:
        device = groups[0]["params"][0].device
        if device.type != "cuda":
            raise ValueError(
                f"build_optimizer: capturable=True needs the parameters on a CUDA device, got "
                f"{device}"
            )
        for group in groups:
            group["lr"] = group_lr(cfg.base_lr, device, capturable=True)
        lr = groups[0]["lr"]
    if cfg.name == "adadelta":
        return torch.optim.Adadelta(
            groups, lr=lr, rho=cfg.rho, eps=cfg.eps, foreach=True, capturable=capturable
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            groups, lr=lr, betas=cfg.betas, eps=cfg.eps, fused=True, capturable=capturable
        )
    # OptimConfig.__post_init__ already rejects other names; this guards a mutated config.
    raise ValueError(f"build_optimizer: expected cfg.name 'adadelta' or 'adamw', got {cfg.name!r}")


class PolyDecay:
    """The "poly" factor ``(1 - min(step, max_steps) / max_steps) ** power`` for LambdaLR.

    A class rather than a closure: ``LambdaLR.state_dict`` saves a callable object's attributes
    (plain numbers here), so a scheduler checkpoint loads with ``torch.load(weights_only=True)``
    and a resumed run gets the same schedule.
    """

    def __init__(self, max_steps: int, power: float) -> None:
        self.max_steps = int(max_steps)
        self.power = float(power)

    def __call__(self, step: int) -> float:
        # Clamped: past max_steps the lr stays 0 instead of going complex / negative.
        remaining = 1.0 - min(step, self.max_steps) / self.max_steps
        return remaining**self.power


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> LambdaLR:
    """Polynomial decay: at step t the lr of every group is ``base_lr * (1 - t/max_steps)^power``.

    Call ``scheduler.step()`` once per optimisation step, after ``optimizer.step()``; the lr
    reaches 0 at ``cfg.max_steps`` and stays 0 after it.

    The rate each group decays from (``initial_lr``) is kept as a float, also for a capturable
    optimizer's tensor rates (read once, here), so that :func:`current_lr` never reads the
    device.
    """
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", float(group["lr"]))
    return LambdaLR(optimizer, PolyDecay(cfg.max_steps, cfg.power))


def current_lr(scheduler: LambdaLR) -> float:
    """The first group's learning rate after the scheduler's last step, computed on the host as
    LambdaLR does (``initial_lr * lambda(last_epoch)``; the same float), also when the rates
    live on the device (a capturable optimizer: reading them would synchronize)."""
    initial = scheduler.optimizer.param_groups[0]["initial_lr"]
    return float(initial) * scheduler.lr_lambdas[0](scheduler.last_epoch)


def lrs_as_numbers(state: dict) -> dict:
    """A copy of an optimizer's or a LambdaLR's ``state_dict()`` whose learning rates are floats
    (a capturable optimizer's are device tensors), so that a checkpoint is the same whichever
    kind of optimizer wrote it. Reads the tensors back (a synchronization): for checkpoints."""
    state = dict(state)
    if "param_groups" in state:
        state["param_groups"] = [
            {k: float(v) if k in ("lr", "initial_lr") else v for k, v in g.items()}
            for g in state["param_groups"]
        ]
    for key in ("base_lrs", "_last_lr"):
        if key in state:
            state[key] = [float(v) for v in state[key]]
    return state


def group_lr(lr: float, device: torch.device, *, capturable: bool) -> float | torch.Tensor:
    """A parameter group's learning rate as the optimizer takes it: for ``capturable``, a 0-dim
    float32 tensor on the parameters' ``device`` (a captured step reads it there, so the schedule
    can change it between replays), else the float ``lr``."""
    if capturable:
        return torch.tensor(lr, dtype=torch.float32, device=device)
    return lr


def place_lrs(optimizer: torch.optim.Optimizer, *, capturable: bool) -> None:
    """Each group's learning rate as :func:`build_optimizer` makes it for ``capturable`` (a
    0-dim device tensor, or a float) and its ``capturable`` flag, e.g. after loading a
    checkpoint's state (:func:`lrs_as_numbers`); ``initial_lr`` as a float, for
    :func:`current_lr`. Reads tensors back (a synchronization): for setting up, not per step."""
    for group in optimizer.param_groups:
        group["lr"] = group_lr(float(group["lr"]), group["params"][0].device, capturable=capturable)
        group["capturable"] = capturable
        if "initial_lr" in group:
            group["initial_lr"] = float(group["initial_lr"])
