"""Training configuration: the whole training run (:class:`TrainConfig`), with the loss's and
the optimizer's settings (:class:`LossConfig`, :class:`OptimConfig`, defined in
:mod:`panonet.train.component_config` and re-exported here). Every field carries a comment; a
config file may set any of them.

Config files (``panonet train --config FILE``) are TOML (``.toml``, comments allowed; the
commented example is ``configs/panonet_synthetic.toml``) or JSON (``.json``): top-level keys are
:class:`TrainConfig`'s fields, the tables ``[optim]``, ``[stage2_optim]`` and ``[loss]`` hold
:class:`OptimConfig` / :class:`LossConfig` fields. :func:`load_train_config` reads a file and
applies ``key=value`` overrides (dotted keys for the tables, values in TOML syntax); it lives in
:mod:`panonet.train.config_file`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from panonet.data.labels import NUM_CLASSES
from panonet.models.panonet import DETAIL_CHOICES, MAX_WIDTH
from panonet.train.component_config import (
    DIST_NORMS,
    NUM_SCALES,
    OPTIMIZERS,
    LossConfig,
    OptimConfig,
    float_tuple,
)

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
    # A folder where each training image's decoded arrays are saved at its first read and
    # memory-mapped afterwards, shared by all workers, processes and later runs
    # (panonet.data.decoded_store; 16 MB per 1024x2048 image). None: decode every read (or
    # cache_images). For GPUs, whose speed PNG decoding (~0.1 s per image and core) limits.
    decoded_dir: str | None = None
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
    # Factor on the (x, y) coordinates added to the embedding's first two channels in stage 2
    # (PanoNet's coord_output; 0: the paper's, nothing added).
    coord_output: float = 0.0
    # Which branches' 1/4 outputs also fuse the 1/4 features of ICNet's first branch, where
    # ICNet classifies 1/8 features upsampled: "none" (the paper's ICNet), "semantic" or "both"
    # (PanoNet's detail).
    detail: str = "none"
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
        self.scale = float_tuple(_pair(self.scale, "scale"), "scale", "TrainConfig")
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
        if self.detail not in DETAIL_CHOICES:
            raise ValueError(
                f"TrainConfig: expected detail in {DETAIL_CHOICES}, got {self.detail!r}"
            )
        self.coord_scale = float(self.coord_scale)
        if not (0 < self.coord_scale < float("inf")):
            raise ValueError(
                f"TrainConfig: expected a finite coord_scale > 0, got {self.coord_scale}"
            )
        self.coord_output = float(self.coord_output)
        if not (0 <= self.coord_output < float("inf")):
            raise ValueError(
                f"TrainConfig: expected a finite coord_output >= 0, got {self.coord_output}"
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
