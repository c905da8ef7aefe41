"""The settings of a training run's components: the loss's constants (paper Sec. III-E,
:class:`LossConfig`) and the optimizer's (:class:`OptimConfig`). :class:`LossConfig` is the one
place that holds the loss's numbers (scale weights, margins, term weights, ignore label);
everything else (the loss module, the trainer, the bandwidth search's base value δ_v) reads
them from here. Both are fields of :class:`panonet.train.config.TrainConfig`, which re-exports
them; every field carries a comment, and a config file may set any of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from panonet.data.labels import IGNORE_INDEX

__all__ = ["DIST_NORMS", "NUM_SCALES", "OPTIMIZERS", "LossConfig", "OptimConfig", "float_tuple"]

NUM_SCALES = 3
"""Number of supervised output scales (1/4, 1/8, 1/16): the paper's T = 3 cascade guidance."""

DIST_NORMS = ("pairs", "active")
"""Normalisers of L_dist that :attr:`LossConfig.dist_norm` accepts."""

OPTIMIZERS = ("adadelta", "adamw")
"""Names accepted by :attr:`OptimConfig.name`."""


@dataclass
class LossConfig:
    """Constants of PanoNet's loss, eq. (1) + eq. (6): ``sum_t tau_t (L_sce,t + L_inst,t)``.

    Defaults are the paper's (Sec. III-E). Sequences given as lists are stored as tuples.

    Raises:
        ValueError: (in ``__post_init__``) a value outside its documented range.
    """

    # Weight tau_t of scale t in eqs. (1) and (6), for the outputs at 1/4, 1/8 and 1/16 of the
    # input (the order PanoNetOutput holds them). Paper: tau_1 = 1, tau_2 = 0.4, tau_3 = 0.16.
    tau: tuple[float, ...] = (1.0, 0.4, 0.16)
    # Pull margin δ_v of L_var, eq. (2): pixels closer than this to their instance mean cost
    # nothing. Also the base value of the per-class mean-shift bandwidth (Sec. III-D).
    delta_v: float = 0.25
    # Push margin δ_d of L_dist, eq. (3): instance means further apart than 2 δ_d cost nothing.
    # Must exceed δ_v so that every pixel ends nearer its own mean than any other (Sec. III-D).
    delta_d: float = 1.0
    # Margin δ_r of the regularizer L_reg, eq. (4): instance means within this norm of the
    # origin cost nothing. Paper: δ_r = 6.
    delta_r: float = 6.0
    # Weight alpha of L_var in eq. (5). Paper: 1.
    alpha: float = 1.0
    # Weight beta of L_dist in eq. (5). Paper: 1.
    beta: float = 1.0
    # Weight gamma of L_reg in eq. (5). Paper: 0.1.
    gamma: float = 0.1
    # trainId that the cross-entropy ignores (void and unevaluated classes), as the dataset
    # writes it (panonet.data.labels.IGNORE_INDEX).
    ignore_index: int = IGNORE_INDEX
    # Per-class weights of the softmax cross-entropy (ICNet's "weighted softmax", eq. 1): None
    # for unweighted, else one non-negative float per trainId (19 for Cityscapes; the loss checks
    # the length against the logits' channels). The CE of a scale is then
    # sum_i w[y_i] nll_i / sum_i w[y_i] over the non-ignored pixels (torch's weighted mean).
    class_weights: tuple[float, ...] | None = None
    # Normaliser of L_dist, eq. (3), per image: "pairs", the paper's 1 / (C (C - 1)) over all
    # ordered pairs of instances; "active", 1 / (number of ordered pairs closer than 2 δ_d), so
    # that the few hard pairs of an image (e.g. identical twins) are not averaged away among the
    # many pairs already apart (a lever of issue 14, not the paper's; see docs/RESULTS.md).
    dist_norm: str = "pairs"
    # Online hard-pixel mining of the cross-entropy (a lever of issue 14 for small things, not
    # the paper's): the fraction of each scale's non-ignored pixels kept, those with the highest
    # (weighted) loss; the CE is then sum w[y_i] nll_i / sum w[y_i] over the kept pixels. 1 keeps
    # every pixel (the plain weighted mean above).
    ohem_keep: float = 1.0

    def __post_init__(self) -> None:
        self.tau = float_tuple(self.tau, "tau", "LossConfig")
        if len(self.tau) != NUM_SCALES or any(not (math.isfinite(t) and t >= 0) for t in self.tau):
            raise ValueError(
                f"LossConfig: expected tau to be {NUM_SCALES} finite weights >= 0 (1/4, 1/8, "
                f"1/16), got {self.tau}"
            )
        for name in ("delta_v", "delta_r", "alpha", "beta", "gamma"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"LossConfig: expected {name} finite and >= 0, got {value}")
            setattr(self, name, value)
        self.delta_d = float(self.delta_d)
        if not (math.isfinite(self.delta_d) and self.delta_d > self.delta_v):
            raise ValueError(
                f"LossConfig: expected delta_d > delta_v = {self.delta_v} (Sec. III-D), "
                f"got delta_d = {self.delta_d}"
            )
        self.ignore_index = int(self.ignore_index)
        self.ohem_keep = float(self.ohem_keep)
        if not (0.0 < self.ohem_keep <= 1.0):
            raise ValueError(f"LossConfig: expected 0 < ohem_keep <= 1, got {self.ohem_keep}")
        if self.dist_norm not in DIST_NORMS:
            raise ValueError(
                f"LossConfig: expected dist_norm in {DIST_NORMS}, got {self.dist_norm!r}"
            )
        if self.class_weights is not None:
            self.class_weights = float_tuple(self.class_weights, "class_weights", "LossConfig")
            weights = self.class_weights
            if any(not (math.isfinite(w) and w >= 0) for w in weights) or not any(weights):
                raise ValueError(
                    "LossConfig: expected class_weights to be finite, >= 0 and not all 0, "
                    f"got {weights}"
                )


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (paper Sec. III-E: Adadelta, lr 0.003, poly decay).

    Raises:
        ValueError: (in ``__post_init__``) an unknown optimizer or a value out of range.
    """

    # Optimizer: "adadelta" (the paper's) or "adamw" (an option, often faster to tune).
    name: str = "adadelta"
    # Base learning rate, before the poly decay. None: 0.003 for adadelta (the paper's value),
    # 0.001 for adamw (no paper value; a common AdamW setting). See :attr:`base_lr`.
    lr: float | None = None
    # Weight decay on conv/linear weights only (biases and BatchNorm affine parameters are not
    # decayed: shrinking them only fights the normalisation). The paper gives none; 1e-4 is the
    # ICNet/PSPNet setting. For adamw it is AdamW's decoupled decay (multiplied by the lr).
    weight_decay: float = 1e-4
    # Exponent p of the polynomial ("poly") decay: lr_t = lr * (1 - t / max_steps)^p. 0.9 is
    # ICNet's; the paper names the policy without the exponent.
    power: float = 0.9
    # Optimisation steps of the whole schedule; the lr reaches 0 at max_steps and stays there.
    # The paper does not give the number.
    max_steps: int = 60_000
    # Adadelta's running-average coefficient rho (PyTorch's default; the paper gives none).
    rho: float = 0.9
    # Adadelta's / AdamW's epsilon (PyTorch's Adadelta default 1e-6, used for both). For
    # Adadelta the first steps scale with lr * sqrt(eps), so it matters together with lr.
    eps: float = 1e-6
    # AdamW's (beta1, beta2) (PyTorch's defaults).
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"OptimConfig: expected name in {OPTIMIZERS}, got {self.name!r}")
        if self.lr is not None:
            self.lr = float(self.lr)
            if not (math.isfinite(self.lr) and self.lr > 0):
                raise ValueError(f"OptimConfig: expected lr > 0 or None, got {self.lr}")
        for name in ("weight_decay", "power"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"OptimConfig: expected {name} finite and >= 0, got {value}")
            setattr(self, name, value)
        if int(self.max_steps) != self.max_steps or self.max_steps < 1:
            raise ValueError(
                f"OptimConfig: expected max_steps an integer >= 1, got {self.max_steps}"
            )
        self.max_steps = int(self.max_steps)
        if not 0 <= self.rho < 1:
            raise ValueError(f"OptimConfig: expected 0 <= rho < 1, got {self.rho}")
        if not self.eps > 0:
            raise ValueError(f"OptimConfig: expected eps > 0, got {self.eps}")
        self.betas = float_tuple(self.betas, "betas", "OptimConfig")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"OptimConfig: expected betas = (b1, b2) in [0, 1), got {self.betas}")

    @property
    def base_lr(self) -> float:
        """The learning rate before decay: :attr:`lr`, or the optimizer's default when None."""
        if self.lr is not None:
            return self.lr
        return _DEFAULT_LR[self.name]


# Default base learning rates per optimizer (see OptimConfig.lr).
_DEFAULT_LR = {"adadelta": 0.003, "adamw": 0.001}


def float_tuple(values: Sequence[float], name: str, owner: str) -> tuple[float, ...]:
    """``values`` as a tuple of floats, or ValueError naming ``owner``'s field ``name``."""
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: expected {name} to be a sequence of numbers, got {values!r}"
        ) from None
