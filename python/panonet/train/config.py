"""Training configuration: the loss constants (paper Sec. III-E), the optimizer settings and the
whole training run (:class:`TrainConfig`).

:class:`LossConfig` is the one place that holds the loss's numbers (scale weights, margins, term
weights, ignore label); everything else (the loss module, the trainer, the bandwidth search's
base value δ_v) reads them from here. Every field carries a comment; a config file may set any
of them.

Config files (``panonet train --config FILE``) are TOML (``.toml``, comments allowed; the
commented example is ``configs/panonet_synthetic.toml``) or JSON (``.json``): top-level keys are
:class:`TrainConfig`'s fields, the tables ``[optim]``, ``[stage2_optim]`` and ``[loss]`` hold
:class:`OptimConfig` / :class:`LossConfig` fields. :func:`load_train_config` reads a file and
applies ``key=value`` overrides (dotted keys for the tables, values in TOML syntax); it lives in
:mod:`panonet.train.config_file`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from panonet.data.labels import IGNORE_INDEX, NUM_CLASSES
from panonet.models.panonet import MAX_WIDTH

__all__ = [
    "AMP_DTYPES",
    "AUGMENT_ON",
    "DIST_NORMS",
    "NUM_SCALES",
    "OPTIMIZERS",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
]

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

    def __post_init__(self) -> None:
        self.tau = _float_tuple(self.tau, "tau")
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
        if self.dist_norm not in DIST_NORMS:
            raise ValueError(
                f"LossConfig: expected dist_norm in {DIST_NORMS}, got {self.dist_norm!r}"
            )
        if self.class_weights is not None:
            self.class_weights = _float_tuple(self.class_weights, "class_weights")
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
        self.betas = _float_tuple(self.betas, "betas")
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


def _float_tuple(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"LossConfig/OptimConfig: expected {name} to be a sequence of numbers, got {values!r}"
        ) from None


DEVICES = ("auto", "cpu", "cuda")
"""Accepted values of :attr:`TrainConfig.device` (``"cuda:N"`` too)."""

AMP_DTYPES = ("float16", "bfloat16")
"""Accepted values of :attr:`TrainConfig.amp_dtype`."""

AUGMENT_ON = ("loader", "device")
"""Accepted values of :attr:`TrainConfig.augment_on`."""


@dataclass
class TrainConfig:
    """One training run: data, the two stages (paper Sec. III-C), validation, checkpoints, logs.

    Step counts are optimisation steps of the global batch. Stage 1 trains both branches without
    coordinate input (``use_coords=False``); stage 2 starts from the stage-1 weights with two
    zero-initialised coordinate input channels (:meth:`panonet.models.PanoNet.load_stage1`),
    a new optimizer and a new poly schedule. Paths that are None are placed under the run's
    output directory (``panonet train --out DIR``).

    Raises:
        ValueError: (in ``__post_init__``) a value outside its documented range.
    """

    # Dataset root in the Cityscapes layout (leftImg8bit/, gtFine/), e.g. written by
    # `panonet synth`. A relative path is relative to the working directory.
    data_root: str = "data/synthetic"
    # Split the training crops come from.
    train_split: str = "train"
    # Split validated on (its first val_images images, whole images, no augmentation).
    val_split: str = "val"
    # Network input (h, w) of a training crop; every crop of a batch has this size. >= 32 each.
    crop_size: tuple[int, int] = (512, 1024)
    # Range (lo, hi) of the random scale factor applied to the whole image before cropping
    # (panonet.data.transforms.RandomScale); (1, 1) disables scaling.
    scale: tuple[float, float] = (0.5, 2.0)
    # Horizontal flip probability.
    flip: float = 0.5
    # Colour jitter strength (brightness, contrast and saturation), 0 disables it.
    jitter: float = 0.3
    # GLOBAL batch size: images per optimisation step over all processes. With W processes
    # (torchrun) each loads batch_size / W images, so it must be divisible by W.
    batch_size: int = 8
    # DataLoader worker processes per training process (0: load in the main process).
    workers: int = 4
    # Keep the train images decoded in memory after their first read (every worker process
    # its own copy; ~1 MB per 256x512 image): for small datasets such as the demo's.
    cache_images: bool = False
    # Where the augmentation (scale, crop, flip, jitter) runs: "loader" (the DataLoader workers)
    # or "device" (the training device; the workers only decode: train.device_augment), with
    # the same draws. "device" is for a GPU at large images, where the workers fall behind.
    augment_on: str = "loader"
    # Steps of stage 1 (no coordinate input). 0 skips it: stage 2 then starts from the initial
    # (or pretrained) weights. The paper gives no numbers for either stage.
    stage1_steps: int = 60_000
    # Steps of stage 2 (coordinate channels added). 0 ends the run after stage 1.
    stage2_steps: int = 30_000
    # false: the ablation without position-sensitive embedding (paper Table III): stage 2 keeps
    # the same steps, optimizer and schedule but adds no coordinate input, so the two runs
    # differ only in the coordinates.
    stage2_coords: bool = True
    # Semantic classes (19 Cityscapes trainIds).
    num_classes: int = NUM_CLASSES
    # D, channels of the instance embedding (12 in the paper).
    embedding_dim: int = 12
    # The paper's compressed variant (Sec. IV-e): one shared ICNet trunk, separate heads.
    share_weights: bool = False
    # Multiplier of the ICNets' inner channel counts (1: the paper's network; 0.5, the CPU
    # demo's, has 1/4 of the parameters and takes ~0.6x the time per step on 2 cores).
    width: float = 1.0
    # Factor on the coordinate input of stage 2 (PanoNet's coord_scale; 1: the paper's
    # normalised coordinates).
    coord_scale: float = 1.0
    # Optional torchvision-format ImageNet ResNet-50 state dict (a local file) for the
    # backbones at the start of stage 1 (panonet.models.load_imagenet_resnet50); None: random
    # init (seeded by `seed`).
    pretrained: str | None = None
    # Optional PanoNet checkpoint (a file that panonet.models.load_model reads, with the stage-1
    # layout: use_coords = false) whose weights, BN statistics included, start stage 1: e.g.
    # pretrained semantic-segmentation weights (paper Sec. III-C) or an earlier run. Applied
    # after `pretrained`. None: start from `pretrained` / random init.
    init_weights: str | None = None
    # Optimizer and poly schedule of stage 1; its max_steps is replaced by stage1_steps (the lr
    # decays to 0 at the end of the stage).
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Optimizer of stage 2; None: the same settings as `optim`. In a config file the
    # [stage2_optim] table only lists what differs from [optim]. Its max_steps is replaced by
    # stage2_steps.
    stage2_optim: OptimConfig | None = None
    # Loss constants (eq. 1 + eq. 6), the paper's by default.
    loss: LossConfig = field(default_factory=LossConfig)
    # Validate every this many steps (and at the end of each stage); 0: only at stage ends.
    val_every: int = 2000
    # Number of validation images (the first ones of val_split); 0 disables validation.
    val_images: int = 50
    # Write <checkpoint_dir>/last.pt every this many steps; 0: only at stage ends, on Ctrl-C
    # and at the end. stage1.pt (end of stage 1) and final.pt (end of the run) are always kept.
    checkpoint_every: int = 1000
    # Directory of the checkpoints; None: <out>/checkpoints.
    checkpoint_dir: str | None = None
    # JSON-lines metrics log (one record per step, validation and event); None:
    # <out>/metrics.jsonl. Appended to on resume (records after the resumed step are dropped).
    log_file: str | None = None
    # TensorBoard event directory, used only when the tensorboard package is installed; None:
    # <out>/tensorboard.
    tensorboard_dir: str | None = None
    # Seed of the initial weights, the data order and every augmentation. The augmentation of
    # an image is seeded by (seed, epoch, image index), so it does not depend on the number of
    # workers or processes, and a resumed run sees exactly the same batches.
    seed: int = 0
    # Mixed precision (autocast, in amp_dtype) on CUDA; ignored on the CPU.
    amp: bool = True
    # "float16" (with gradient scaling: a GradScaler) or "bfloat16" (float32's range, no
    # scaling).
    amp_dtype: str = "float16"
    # Capture each stage's training step as a CUDA graph at its first step and replay it
    # (panonet.train.graphed_step): the host issues one launch per step instead of over a
    # thousand. CUDA and one process only; with amp it needs amp_dtype = "bfloat16".
    cuda_graph: bool = False
    # BatchNorm layers in eval mode (frozen running statistics; their affine weights still
    # train). Needed for small per-device batches and for exact multi-process equivalence on
    # the CPU, where SyncBatchNorm does not exist. Without it, multi-GPU runs use SyncBatchNorm.
    freeze_bn: bool = False
    # BatchNorm frozen in stage 2 only, at the statistics stage 1 ends with (re-estimated when
    # bn_recalibration_images > 0). Small-batch training leans on per-batch statistics that
    # eval mode does not have (synthetic run, batch 4 of 128x256 crops: val loss in eval mode
    # 2-4x the train-mode loss even after re-estimation); training stage 2 on the fixed
    # statistics removes that gap for the model that is evaluated.
    freeze_bn_stage2: bool = False
    # At the end of each stage, re-estimate the BatchNorm running statistics over this many
    # whole training images (no augmentation, no gradients) before validating and saving; 0
    # disables. The running averages lag behind the weights after short or small-batch
    # training: on the synthetic run of docs/RESULTS.md eval-mode validation loss was ~100x the
    # train-mode loss, and re-estimating on 64 images raised mIoU from 23.2 to 26.2. Skipped
    # with freeze_bn (frozen statistics stay as they are).
    bn_recalibration_images: int = 0
    # "auto" (cuda if available, else cpu), "cpu", "cuda" or "cuda:N". Under torchrun each
    # process uses cuda:LOCAL_RANK.
    device: str = "auto"
    # Deterministic cuDNN algorithms (slower) instead of cudnn.benchmark; CPU runs are
    # deterministic anyway.
    deterministic: bool = False
    # tqdm progress bar (rank 0 only).
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.optim, Mapping):
            self.optim = OptimConfig(**self.optim)
        if isinstance(self.stage2_optim, Mapping):
            self.stage2_optim = OptimConfig(**self.stage2_optim)
        if isinstance(self.loss, Mapping):
            self.loss = LossConfig(**self.loss)
        self.crop_size = tuple(_int(v, "crop_size") for v in _pair(self.crop_size, "crop_size"))
        if min(self.crop_size) < 32:
            raise ValueError(f"TrainConfig: expected crop_size >= 32 each, got {self.crop_size}")
        self.scale = _float_tuple(_pair(self.scale, "scale"), "scale")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(
                f"TrainConfig: expected scale (lo, hi), 0 < lo <= hi, got {self.scale}"
            )
        for name in ("flip", "jitter"):
            value = float(getattr(self, name))
            if not 0 <= value <= 1:
                raise ValueError(f"TrainConfig: expected {name} in [0, 1], got {value}")
            setattr(self, name, value)
        self.width = float(self.width)
        self.coord_scale = float(self.coord_scale)
        if not (0 < self.coord_scale < float("inf")):
            raise ValueError(
                f"TrainConfig: expected a finite coord_scale > 0, got {self.coord_scale}"
            )
        if not 0 < self.width <= MAX_WIDTH:
            raise ValueError(f"TrainConfig: expected width in (0, {MAX_WIDTH:g}], got {self.width}")
        if self.pretrained and self.width != 1:
            raise ValueError(
                "TrainConfig: ImageNet weights (pretrained) fit width 1 only, got width "
                f"{self.width}"
            )
        minimum = {
            "batch_size": 1,
            "workers": 0,
            "stage1_steps": 0,
            "stage2_steps": 0,
            "num_classes": 1,
            "embedding_dim": 1,
            "val_every": 0,
            "val_images": 0,
            "checkpoint_every": 0,
            "bn_recalibration_images": 0,
            "seed": 0,
        }
        for name, lo in minimum.items():
            value = _int(getattr(self, name), name)
            if value < lo:
                raise ValueError(f"TrainConfig: expected {name} >= {lo}, got {value}")
            setattr(self, name, value)
        if self.stage1_steps + self.stage2_steps < 1:
            raise ValueError("TrainConfig: nothing to train: stage1_steps + stage2_steps is 0")
        weights = self.loss.class_weights
        if weights is not None and len(weights) != self.num_classes:
            raise ValueError(
                f"TrainConfig: loss.class_weights has {len(self.loss.class_weights)} entries "
                f"for {self.num_classes} classes"
            )
        device = str(self.device)
        if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ValueError(
                f"TrainConfig: expected device in {DEVICES} or 'cuda:N', got {device!r}"
            )
        for name, allowed in (("augment_on", AUGMENT_ON), ("amp_dtype", AMP_DTYPES)):
            if (value := getattr(self, name)) not in allowed:
                raise ValueError(f"TrainConfig: expected {name} in {allowed}, got {value!r}")
        if self.cuda_graph is True and self.device == "cpu":
            raise ValueError("TrainConfig: cuda_graph = true needs a CUDA device, got 'cpu'")
        if self.cuda_graph is True and self.amp is True and self.amp_dtype == "float16":
            raise ValueError(
                "TrainConfig: cuda_graph = true with amp needs amp_dtype = 'bfloat16' (float16 "
                "needs a GradScaler, which reads values on the host), or amp = false"
            )
        for name in (
            "share_weights",
            "amp",
            "cuda_graph",
            "freeze_bn",
            "cache_images",
            "freeze_bn_stage2",
            "stage2_coords",
            "deterministic",
            "progress",
        ):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"TrainConfig: expected {name} true or false, got {value!r}")

    def stage_optim(self, stage: int) -> OptimConfig:
        """The optimizer settings of ``stage`` (1 or 2), ``max_steps`` set to the stage's length.

        Raises:
            ValueError: a stage other than 1 or 2, or a stage with 0 steps.
        """
        if stage not in (1, 2):
            raise ValueError(f"TrainConfig.stage_optim: expected stage 1 or 2, got {stage}")
        steps = self.stage1_steps if stage == 1 else self.stage2_steps
        if steps < 1:
            raise ValueError(f"TrainConfig.stage_optim: stage {stage} has no steps")
        base = self.optim if stage == 1 or self.stage2_optim is None else self.stage2_optim
        return dataclasses.replace(base, max_steps=steps)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples, numbers, strings, None): for JSON, and for checkpoints that must
        load with ``torch.load(weights_only=True)``. ``TrainConfig(**d)`` rebuilds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a (config-file) dict, rejecting unknown keys at every level.

        ``stage2_optim`` given as a dict is merged over ``optim``: it only needs the keys
        that differ.

        Raises:
            ValueError: unknown keys (named, with the known ones) or invalid values.
        """
        data = dict(data)
        _check_keys(data, cls, "")
        for key, sub in (
            ("optim", OptimConfig),
            ("stage2_optim", OptimConfig),
            ("loss", LossConfig),
        ):
            if isinstance(data.get(key), Mapping):
                _check_keys(data[key], sub, f"{key}.")
        if isinstance(data.get("stage2_optim"), Mapping):
            base = data.get("optim")
            if isinstance(base, OptimConfig):
                base = dataclasses.asdict(base)
            data["stage2_optim"] = {**(base or {}), **data["stage2_optim"]}
        return cls(**data)


def _check_keys(data: Mapping[str, Any], cls: type, prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; known: "
            f"{', '.join(prefix + k for k in known)}"
        )


def _pair(value: Any, name: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"TrainConfig: expected {name} as a pair [a, b], got {value!r}")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"TrainConfig: expected {name} to be an integer, got {value!r}")
    return int(value)
