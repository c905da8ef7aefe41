"""Saving a training run's state and restoring it exactly (see :mod:`panonet.train.trainer` for
what a resumed run relies on)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from panonet.models.checkpoint import save_checkpoint
from panonet.models.panonet import PanoNet
from panonet.models.surgery import check_state_dict
from panonet.train.checkpoint_files import CHECKPOINT_KIND, config_changes
from panonet.train.optim import lrs_as_numbers, place_lrs
from panonet.train.run_state import get_rng_state, set_rng_state

__all__ = ["TrainingCheckpoints"]


class TrainingCheckpoints:
    """A training checkpoint written from, and loaded into, the trainer's state (model,
    optimizer, schedule, scaler, step, stage, RNG states, data position). A mixin of
    :class:`panonet.train.trainer.Trainer`.
    """

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, Mapping) or ckpt.get("kind") != CHECKPOINT_KIND:
            raise ValueError(
                f"{path}: not a training checkpoint of this trainer (kind "
                f"{ckpt.get('kind') if isinstance(ckpt, Mapping) else None!r}, expected "
                f"{CHECKPOINT_KIND!r}); to start stage 1 from a model's weights set init_weights"
            )
        stage, step = int(ckpt["stage"]), int(ckpt["step"])
        if stage == 2 and step < self.cfg.stage1_steps:
            raise ValueError(
                f"{path}: a stage-2 checkpoint at step {step}, but stage1_steps = "
                f"{self.cfg.stage1_steps} puts that step in stage 1"
            )
        if stage == 2 and self.cfg.stage2_steps == 0:
            raise ValueError(f"{path}: a stage-2 checkpoint, but stage2_steps = 0")
        if stage == 1 and step > self.cfg.stage1_steps:
            raise ValueError(
                f"{path}: a stage-1 checkpoint at step {step}, beyond stage1_steps = "
                f"{self.cfg.stage1_steps}"
            )
        changed = config_changes(ckpt.get("train_config") or {}, self.cfg.to_dict())
        if changed:
            self.log.say(f"resuming with a changed config: {', '.join(changed)}")
        model = PanoNet(**self._model_kwargs(use_coords=stage == 2 and self.cfg.stage2_coords))
        check_state_dict(model, ckpt["model"], what=f"checkpoint {path}")
        model.load_state_dict(ckpt["model"])
        self._install(model, stage)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        # The checkpoint's rates are numbers whoever wrote it; this run's optimizer may want
        # them on the device (cuda_graph).
        place_lrs(self.optimizer, capturable=self.cfg.cuda_graph)
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = step
        set_rng_state(ckpt["rng"], self.device)
        self._rng = get_rng_state(self.device)
        if self.stage == 1 and self.step >= self.cfg.stage1_steps and self.cfg.stage2_steps:
            # A checkpoint written at the end of stage 1 (stage1.pt): switch now, as the
            # uninterrupted run did right after writing it.
            self._enter_stage2()

    def checkpoint_state(self) -> dict[str, Any]:
        """The extra entries of a training checkpoint (besides "model" and "config")."""
        return {
            "kind": CHECKPOINT_KIND,
            "step": self.step,
            "stage": self.stage,
            "optimizer": lrs_as_numbers(self.optimizer.state_dict()),
            "scheduler": lrs_as_numbers(self.scheduler.state_dict()),
            "scaler": self.scaler.state_dict(),
            "rng": self._rng,
            "data": {
                "seed": self.cfg.seed,
                "epoch": self.step // self.steps_per_epoch,
                "batch_in_epoch": self.step % self.steps_per_epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "global_batch": self.cfg.batch_size,
                "world_size": self.dist.world_size,
                "batch_per_process": self.rank_batch,
            },
            "train_config": self.cfg.to_dict(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a training checkpoint atomically (rank 0 only; other ranks return the path).

        Contents: ``model`` (state dict), ``config`` (PanoNet kwargs; so
        :func:`panonet.models.load_model` and the Predictor read it), plus
        :meth:`checkpoint_state`. Everything loads with ``torch.load(weights_only=True)``.
        """
        path = Path(path)
        if self.dist.is_main:
            save_checkpoint(path, self.model, **self.checkpoint_state())
        return path
