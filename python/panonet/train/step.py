"""One optimisation step of the Trainer, and the BatchNorm statistics an interrupted step must
not leave behind."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from panonet.train.batches import batch_to_device
from panonet.train.device_augment import DeferredItems, augment_on_device
from panonet.train.forward import forward_and_loss
from panonet.train.graphed_step import GraphedTrainStep
from panonet.train.loss import check_class_ids
from panonet.train.optim import current_lr
from panonet.train.run_state import get_rng_state, hold_sigint

__all__ = ["TrainingStep"]


class TrainingStep:
    """Forward, the 3-scale loss, backward and update of one step, with one read from the
    device. A mixin of :class:`panonet.train.trainer.Trainer`, whose model, optimizer, schedule,
    loss, configuration and process group it uses.
    """

    def _train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One optimisation step on a collated batch; returns the logged loss terms."""
        keys, stacked, lr = self._queue_step(batch)
        # The step's one read from the device, after all of its work is queued.
        values = dict(zip(keys, stacked.tolist(), strict=True))
        if not self.scaler.is_enabled() and not math.isfinite(values["total"]):
            # Raised after the update (reading the loss before backward would stall a GPU
            # mid-step); nothing is saved, so the damaged weights go nowhere.
            raise FloatingPointError(
                f"non-finite loss at step {self.step} (stage {self.stage}): {values}"
            )
        return {"lr": lr, **values}

    def _queue_step(self, batch: Mapping[str, Any]) -> tuple[list[str], torch.Tensor, float]:
        """Forward, loss, backward and update of one step, without reading any value back from
        the device (on a GPU: without a synchronization; a test runs it on the meta device,
        where any such read raises). The labels and crop offsets are checked on the host before
        the upload and the loss op checks nothing on the device. One exception: with float16
        AMP on a GPU, an optimizer without a fused kernel (Adadelta) makes the GradScaler read
        its inf flag; fused AdamW takes that flag on the device.

        With ``cuda_graph`` the stage's first step captures all of it (:class:`GraphedTrainStep`)
        and every step replays it. With ``augment_on = "device"`` the batch is the loader's
        :class:`DeferredItems` (class ids checked in the worker), augmented here first.

        Returns:
            The loss terms' names, their values as one (T,) float32 tensor on the device (the
            mean over processes when distributed), and the step's learning rate.
        """
        if isinstance(batch, DeferredItems):
            batch = augment_on_device(batch, self._items, self.device)
        elif not self.cfg.cuda_graph:  # GraphedTrainStep checks its batches itself
            check_class_ids(batch["semantic"], self.cfg.num_classes, self.cfg.loss.ignore_index)
        if self.cfg.cuda_graph:
            return self._queue_graphed_step(batch)
        images, semantic, instance, offset, full_size = batch_to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        total, names, stacked = forward_and_loss(
            self.net,
            self.loss_fn,
            images,
            semantic,
            instance,
            offset,
            full_size,
            amp_dtype=self._autocast_dtype(),
        )
        if self.dist.distributed:
            # Log the mean over ranks (the loss whose gradient DDP applies), not rank 0's own.
            stacked = stacked.clone()
            dist.all_reduce(stacked)
            stacked /= self.dist.world_size
        self.scaler.scale(total).backward()
        lr = current_lr(self.scheduler)
        with hold_sigint():
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._step_done()
        return names, stacked, lr

    def _queue_graphed_step(
        self, batch: Mapping[str, Any]
    ) -> tuple[list[str], torch.Tensor, float]:
        lr = current_lr(self.scheduler)
        # The capture (its warm-up steps are undone at its end) and the replay (the update) are
        # shielded from Ctrl-C like the eager update: a saved state is always a whole step's.
        with hold_sigint():
            if self._graphed is None:
                self._graphed = GraphedTrainStep(
                    self.model,
                    self.loss_fn,
                    self.optimizer,
                    batch,
                    amp_dtype=self._autocast_dtype(),
                )
            stacked = self._graphed.run(batch)
            self._step_done()
        return list(self._graphed.names), stacked, lr

    def _autocast_dtype(self) -> torch.dtype | None:
        return self.amp_dtype if self.amp else None

    def _step_done(self) -> None:
        """What completes a step once its update is applied (inside ``hold_sigint``): the
        schedule, the count, and the RNG and BatchNorm states a checkpoint of it saves."""
        self.scheduler.step()
        self.step += 1
        self._rng = get_rng_state(self.device)
        self._snapshot_buffers()

    def _snapshot_buffers(self) -> None:
        # A training-mode forward updates the BN running statistics before the step is
        # complete; an interrupted step must not leave them in the saved state. One fused copy
        # into tensors allocated once per model (a clone each would be several hundred
        # allocations and kernel launches per step).
        buffers = [b.detach() for b in self.model.buffers()]
        if self._buffers_of != (self.model, self.device):
            self._buffers = [b.clone() for b in buffers]
            self._buffers_of = (self.model, self.device)
        else:
            torch._foreach_copy_(self._buffers, buffers)

    def _restore_buffers(self) -> None:
        with torch.no_grad():
            for buf, saved in zip(self.model.buffers(), self._buffers, strict=True):
                buf.copy_(saved)
