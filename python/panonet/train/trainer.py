"""PanoNet's training loop: two stages in one run, checkpoints that resume exactly, DDP.

Stages (paper Sec. III-C): stage 1 trains a ``use_coords=False`` PanoNet (semantic branch and
instance branch, no coordinate input); stage 2 is a fresh ``use_coords=True`` PanoNet that
receives the stage-1 weights through :meth:`~panonet.models.PanoNet.load_stage1` (the two
coordinate input channels start at zero, so stage 2 starts from exactly the stage-1 function),
with a new optimizer and a new poly schedule. The global step counts across both stages.

Exact resumption. Everything a step depends on is either in the checkpoint or a function of
the global step:

* model, optimizer, lr schedule, gradient scaler, step and stage are saved;
* the data order is :class:`~torch.utils.data.DistributedSampler`'s permutation of epoch
  ``e`` (seeded by ``seed + e``); step ``s`` reads batch ``s mod steps_per_epoch`` of epoch
  ``s // steps_per_epoch``, so a resumed loader starts at the right batch without replaying;
* the augmentation of an image is seeded by ``(seed, epoch, image index)``
  (:class:`SeededItems`), independent of DataLoader workers, process count and history;
* the global RNG states (torch CPU and CUDA, numpy, python) are saved as tensors / plain
  values, so checkpoints load with ``torch.load(weights_only=True)``;
* state changes happen in blocks that a Ctrl-C cannot split (the signal is held until the
  block ends), and the BatchNorm running statistics that a cut-off step's forward pass already
  updated are put back, so an interrupted run saves the state after its last completed step.

Distributed: under ``torchrun`` (:func:`panonet.train.distributed.init_distributed`) each of W
processes loads ``batch_size / W`` images of every global batch (the union over ranks of their
i-th batches is exactly the single-process i-th batch), the model is wrapped in
DistributedDataParallel (gradients averaged over ranks), BatchNorm becomes SyncBatchNorm on GPUs
unless ``freeze_bn``, and only rank 0 logs, validates and writes checkpoints. DDP averages the
per-rank losses' gradients; the loss's normalisations (mean over valid pixels, over images with
instances) are per rank, so a DDP step equals the single-process step of the same global batch
exactly when every rank has the same number of valid pixels and of images with instances (and
BatchNorm is synchronised or frozen) and approximately otherwise, as for any DDP training of a
per-pixel mean loss.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from panonet.data.augment import train_transforms
from panonet.data.cityscapes import CityscapesPanoptic
from panonet.data.transforms import collate
from panonet.models.panonet import PanoNet
from panonet.train.batches import batch_to_device
from panonet.train.checkpoint_files import (
    CHECKPOINT_KIND,
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    STAGE1_CHECKPOINT,
    find_checkpoint,
)
from panonet.train.checkpointing import TrainingCheckpoints
from panonet.train.config import TrainConfig
from panonet.train.device_augment import DeferItems
from panonet.train.distributed import DistInfo, destroy_distributed, dist_info, init_distributed
from panonet.train.loss import PanoNetLoss
from panonet.train.passes import recalibrate_batchnorm, validation_metrics
from panonet.train.run_log import RunLog
from panonet.train.run_state import get_rng_state, set_rng_state
from panonet.train.sampling import SeededItems, StepBatchSampler, item_seed
from panonet.train.stages import TrainingStages, stage2_model
from panonet.train.step import TrainingStep

__all__ = [
    "CHECKPOINT_KIND",
    "FINAL_CHECKPOINT",
    "LAST_CHECKPOINT",
    "STAGE1_CHECKPOINT",
    "SeededItems",
    "StepBatchSampler",
    "Trainer",
    "batch_to_device",
    "find_checkpoint",
    "get_rng_state",
    "item_seed",
    "run_training",
    "set_rng_state",
    "stage2_model",
]

# --------------------------------------------------------------------------------------------


class Trainer(TrainingStages, TrainingCheckpoints, TrainingStep):
    """Two-stage PanoNet training on a Cityscapes-layout dataset.

    Args:
        cfg: the run's configuration.
        out_dir: output directory (checkpoints, JSONL log and TensorBoard events go under it
            unless the config names other places).
        resume: None (fresh start), a training checkpoint written by this class, or "auto"
            (the newest of ``last.pt`` / ``final.pt`` in the checkpoint directory; a fresh
            start when there is none).

    Use :meth:`train`; :attr:`model` is the current (unwrapped) PanoNet, :attr:`step` the
    number of completed optimisation steps, :attr:`stage` 1 or 2.

    Raises:
        ValueError: a batch size not divisible by the number of processes, a dataset smaller
            than one batch, a checkpoint that is not a training checkpoint or does not fit.
        FileNotFoundError: missing dataset split or checkpoint.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        resume: str | os.PathLike | None = None,
    ) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.dist: DistInfo = dist_info()
        self.device = self._resolve_device(cfg.device)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
        if cfg.cuda_graph and (self.device.type != "cuda" or self.dist.distributed):
            raise ValueError(
                "cuda_graph = true needs one process on a CUDA device, got "
                f"{self.dist.world_size} process(es) on {self.device}"
            )
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} (global) is not divisible by the "
                f"{self.dist.world_size} processes"
            )
        self.rank_batch = cfg.batch_size // self.dist.world_size
        self.ckpt_dir = (
            Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else self.out_dir / "checkpoints"
        )
        self.log_path = Path(cfg.log_file) if cfg.log_file else self.out_dir / "metrics.jsonl"
        self.tb_dir = (
            Path(cfg.tensorboard_dir) if cfg.tensorboard_dir else self.out_dir / "tensorboard"
        )
        self.total_steps = cfg.stage1_steps + cfg.stage2_steps
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cudnn.deterministic = cfg.deterministic

        # Datasets first: a wrong path fails before any model is built.
        self.train_set = CityscapesPanoptic(
            cfg.data_root,
            cfg.train_split,
            cache=cfg.cache_images,
            compact=cfg.augment_on == "device",
            decoded_dir=cfg.decoded_dir,
        )
        # The training items with their seeded augmentation (the loader's dataset); with
        # augment_on = "device" the step applies it (see _queue_step).
        self._items = SeededItems(
            self.train_set,
            train_transforms(cfg.crop_size, scale=cfg.scale, flip=cfg.flip, jitter=cfg.jitter),
            cfg.seed,
            deferred=cfg.augment_on == "device",
        )
        self.val_set = CityscapesPanoptic(cfg.data_root, cfg.val_split) if cfg.val_images else None
        self._sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=True,
        )
        self.steps_per_epoch = StepBatchSampler(self._sampler, self.rank_batch).steps_per_epoch
        self.loss_fn = PanoNetLoss(cfg.loss).to(self.device)
        # float16 needs its gradients scaled; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp and self.amp_dtype == torch.float16
        )

        # Same initial weights on every rank (DDP broadcasts rank 0's anyway).
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.step = 0
        self.stage = 1
        self._buffers: list[torch.Tensor] = []
        # The model and device self._buffers were made for.
        self._buffers_of: tuple[nn.Module, torch.device] | None = None
        self.model: PanoNet
        self.net: nn.Module
        self.optimizer: torch.optim.Optimizer
        self.scheduler: torch.optim.lr_scheduler.LRScheduler
        self.log = RunLog(self.log_path, self.tb_dir, is_main=self.dist.is_main)

        resume_path = self._resolve_resume(resume)
        if resume_path is None:
            existing = find_checkpoint(self.ckpt_dir)
            if existing is not None:
                raise ValueError(
                    f"{self.ckpt_dir} already holds a run's checkpoint ({existing.name}): "
                    "continue it with resume 'auto' (--resume auto), or choose another output "
                    "directory"
                )
            model = PanoNet(**self._model_kwargs(use_coords=False))
            self._load_pretrained(model)
            if cfg.stage1_steps == 0:
                # Straight to stage 2 from the initial weights: no stage-1 optimizer (it would
                # have no steps to schedule).
                self.model, self.stage = model, 1
                self._enter_stage2()
            else:
                self._install(model, stage=1)
            self._rng = get_rng_state(self.device)
        else:
            self._load(resume_path)
        self.resumed_from = resume_path

    # ---------------------------------------------------------------- setup

    def _resolve_device(self, name: str) -> torch.device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cuda" and self.dist.distributed:
            name = f"cuda:{self.dist.local_rank}"
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        return device

    def _resolve_resume(self, resume: str | os.PathLike | None) -> Path | None:
        if resume is None:
            return None
        if str(resume) == "auto":
            return find_checkpoint(self.ckpt_dir)
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint")
        return path

    # ---------------------------------------------------------------- logs

    def _event(self, name: str, **info: Any) -> None:
        self.log.record(
            {"kind": "event", "event": name, "step": self.step, "stage": self.stage, **info}
        )

    # ---------------------------------------------------------------- training

    def _loader(self) -> DataLoader:
        cfg = self.cfg
        batches = StepBatchSampler(self._sampler, self.rank_batch, start_step=self.step)
        if self._items.deferred:
            # Whole items, their class ids checked in the worker: augmented in _queue_step.
            collate_fn: Any = DeferItems(cfg.num_classes, cfg.loss.ignore_index)
        else:
            collate_fn = collate
        return DataLoader(
            self._items,
            batch_sampler=batches,
            num_workers=cfg.workers,
            collate_fn=collate_fn,
            pin_memory=self.device.type == "cuda",
            # Its own generator: creating the loader's iterator draws the workers' base seed
            # from it instead of from the global RNG (which the checkpoint restores).
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def train(self, *, stop_after: int | None = None) -> Path:
        """Train until the end of stage 2 (or until global step ``stop_after``).

        Writes ``stage1.pt`` at the end of stage 1, ``last.pt`` every ``checkpoint_every``
        steps, ``final.pt`` at the end; on KeyboardInterrupt ``last.pt`` with the state after
        the last completed step, then re-raises.

        Returns:
            The checkpoint written last: ``final.pt``, or ``last.pt`` when stopped early.
        """
        cfg = self.cfg
        target = self.total_steps if stop_after is None else min(stop_after, self.total_steps)
        final = self.ckpt_dir / FINAL_CHECKPOINT
        if self.step >= self.total_steps and final.exists():
            self.log.say(f"nothing to do: step {self.step} of {self.total_steps} already done")
            return final
        self.log.open(resumed=self.resumed_from is not None, step=self.step)
        resumed = self.resumed_from
        self._event("resume" if resumed else "start", checkpoint=str(resumed) if resumed else None)
        from tqdm import tqdm

        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (cfg.progress and self.dist.is_main),
            dynamic_ncols=True,
            desc=f"stage {self.stage}",
        )
        batches = None
        start = time.perf_counter()
        try:
            if self.step < target:
                batches = iter(self._loader())
            while self.step < target:
                t0 = time.perf_counter()
                epoch = self.step // self.steps_per_epoch
                values = self._train_step(next(batches))
                now = time.perf_counter()
                record = {
                    "kind": "train",
                    "step": self.step,
                    "stage": self.stage,
                    "epoch": epoch,
                    **values,
                    "time": now - t0,
                    "elapsed": now - start,
                }
                self.log.record(record)
                bar.set_postfix(
                    loss=f"{values['total']:.3f}",
                    sem=f"{values['sem']:.3f}",
                    inst=f"{values['inst']:.3f}",
                    lr=f"{values['lr']:.2e}",
                    refresh=False,
                )
                bar.update(1)
                self._after_step(bar)
            if self.step < self.total_steps:
                path = self.save(self.ckpt_dir / LAST_CHECKPOINT)
                self._event("stop", checkpoint=str(path))
            else:
                path = final
                if not final.exists():  # resumed from a checkpoint of the last step
                    self.save(final)
        except KeyboardInterrupt:
            # Back to the state after the last completed step (see _snapshot_buffers).
            self._restore_buffers()
            path = self.save(self.ckpt_dir / LAST_CHECKPOINT)
            self._event("interrupt", checkpoint=str(path))
            self.log.say(
                f"interrupted: state after step {self.step} saved to {path}; continue with "
                "--resume auto (or --resume PATH)"
            )
            raise
        finally:
            bar.close()
            del batches  # shuts the DataLoader workers down
            self.log.close()
        return path

    def _after_step(self, bar) -> None:
        cfg, s = self.cfg, self.step
        end_of_stage1 = self.stage == 1 and s == cfg.stage1_steps
        end = s == self.total_steps
        if end_of_stage1 or end:
            self.recalibrate_batchnorm()
        periodic_val = cfg.val_every and s % cfg.val_every == 0
        if self.val_set is not None and (periodic_val or end_of_stage1 or end):
            if self.dist.is_main:
                metrics = self.validate()
                self.log.record({"kind": "val", "step": s, "stage": self.stage, **metrics})
                miou = metrics["miou"]
                self.log.say(
                    f"step {s} (stage {self.stage}) validation on {metrics['images']} images: "
                    f"loss {metrics['loss']:.4f}, mIoU "
                    + ("n/a" if miou is None else f"{miou:.4f}")
                )
        if end:
            path = self.save(self.ckpt_dir / FINAL_CHECKPOINT)
            self._event("done", checkpoint=str(path))
            return
        if end_of_stage1:
            path = self.save(self.ckpt_dir / STAGE1_CHECKPOINT)
            self._event("stage1_done", checkpoint=str(path))
            self._enter_stage2()
            bar.set_description("stage 2")
        if cfg.checkpoint_every and s % cfg.checkpoint_every == 0:
            self.save(self.ckpt_dir / LAST_CHECKPOINT)

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Re-estimates every BatchNorm's running mean and variance as the plain average over
        the first ``bn_recalibration_images`` training images (whole, unaugmented, one batch
        of ``rank_batch`` images at a time, train-mode forward without gradients;
        :func:`panonet.train.passes.recalibrate_batchnorm`).

        Every process computes the same statistics from the same images, so ranks stay equal.
        Deterministic (no random numbers), so resumed runs reproduce it. No-op when
        ``bn_recalibration_images`` is 0 or while BatchNorm is frozen (``freeze_bn``, or
        ``freeze_bn_stage2`` in stage 2).
        """
        n = min(self.cfg.bn_recalibration_images, len(self.train_set))
        if n == 0 or self._bn_frozen():
            return
        try:
            recalibrate_batchnorm(
                self.model, self.train_set, n, self.rank_batch, self.device, self.amp
            )
        finally:
            self._train_mode()
        self._snapshot_buffers()
        self._event("bn_recalibrated", images=n)

    # ---------------------------------------------------------------- validation

    def validate(self) -> dict[str, Any]:
        """Loss and mIoU on the first ``val_images`` images of the validation split
        (:func:`panonet.train.passes.validation_metrics`: whole images, no augmentation, model
        in eval mode, global RNG states left as they were).

        Returns:
            dict with ``images``, ``loss`` / ``sem`` / ``inst`` (means over images), ``miou``
            (None when undefined) and ``iou`` (per-class list, None for absent classes).
        """
        if self.val_set is None:
            raise ValueError("validate: val_images is 0")
        cfg = self.cfg
        try:
            return validation_metrics(
                self.model,
                self.loss_fn,
                self.val_set,
                min(cfg.val_images, len(self.val_set)),
                cfg.num_classes,
                cfg.loss.ignore_index,
                self.device,
                self.amp,
            )
        finally:
            self._train_mode()


def run_training(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: str | os.PathLike | None = None,
    stop_after: int | None = None,
) -> Path:
    """Train in this process, joining the torchrun process group when there is one.

    Writes the effective config to ``<out>/config.json`` (rank 0), then runs
    :meth:`Trainer.train`. Returns the last checkpoint written (``final.pt`` normally).
    """
    created = init_distributed(cfg.device)
    ok = False
    try:
        info = dist_info()
        if info.is_main:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(
                json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8"
            )
        trainer = Trainer(cfg, out_dir, resume=resume)
        path = trainer.train(stop_after=stop_after)
        ok = True
        return path
    finally:
        if created:
            destroy_distributed(barrier=ok)
