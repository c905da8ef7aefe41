"""A training step captured once as a CUDA graph and replayed for every later batch.

A PanoNet training step is well over a thousand kernel launches (two ICNets forward and
backward, the loss at three scales, the optimizer), each costing the host microseconds. At the
demo's setting (batch 4 of 128x256 crops) the GPU runs them faster than the host issues them
(H200, 2026-11-30: 45.9 ms per step, about as long as a step on 64 times the pixels). A graph
issues them all with one launch. What it needs, and how this module provides it:

* fixed shapes: one graph per batch shape (the Trainer's crops have one size);
* nothing inside that reads a value on the host: the step is sync-free (the Trainer's step runs
  on the meta device in the tests); labels and crop offsets are checked on the host here,
  before each batch is copied into the graph's input buffers;
* an optimizer built with ``capturable=True`` (:func:`panonet.train.build_optimizer`): step
  counts on the device, learning rates as device tensors that the schedule fills in place;
* no GradScaler, which reads its inf flag on the host: float32, or bfloat16 autocast;
* autocast without its cast cache (:func:`panonet.train.forward.forward_and_loss`).

The warm-up steps before the capture (cuDNN autotuning, the optimizer's state created on first
use) run on the first batch and are then undone: weights, buffers and optimizer state are put
back as they were, so the first replay is the run's first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from panonet.cuda_graph import capture
from panonet.models.coords import check_crops
from panonet.train.batches import network_images
from panonet.train.forward import forward_and_loss
from panonet.train.loss import PanoNetLoss, check_host_class_ids

__all__ = ["GraphedTrainStep"]

# The collated batch's tensors the step reads (panonet.data.transforms.collate).
BATCH_KEYS = ("image", "semantic", "instance", "offset", "full_size")


class GraphedTrainStep:
    """Forward, :class:`PanoNetLoss`, backward and the optimizer update of one batch shape,
    captured as a CUDA graph.

    Args:
        model: the PanoNet on a CUDA device, in training mode (channels_last recommended); one
            process (a DistributedDataParallel step communicates outside any graph).
        loss_fn: the loss, on the same device.
        optimizer: over ``model``'s parameters, built with ``capturable=True``.
        batch: the first collated batch (:func:`panonet.data.transforms.collate`; host memory,
            pinned for an asynchronous upload): its shapes are the graph's, the warm-up runs on
            it. It is not trained on: pass it to :meth:`run` as well.
        amp_dtype: None (float32) or ``torch.bfloat16`` (autocast).
        warmup: eager steps before the capture, undone afterwards.

    Raises:
        ValueError: a device other than CUDA, an optimizer that is not capturable, float16
            autocast, a batch without the collated keys.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: PanoNetLoss,
        optimizer: torch.optim.Optimizer,
        batch: Mapping[str, Any],
        *,
        amp_dtype: torch.dtype | None = None,
        warmup: int = 3,
    ) -> None:
        device = _check_arguments(model, optimizer, batch, amp_dtype)
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.device, self.amp_dtype = device, amp_dtype
        self.shapes = {k: tuple(batch[k].shape) for k in BATCH_KEYS}
        self._inputs = {
            k: torch.empty(batch[k].shape, dtype=batch[k].dtype, device=device) for k in BATCH_KEYS
        }
        self.names: list[str] = []
        self._load(batch)
        saved = _training_state(model, optimizer)
        self._graph, self._terms = capture(self._step, device, warmup=warmup)
        _restore_training_state(model, optimizer, saved)

    def _load(self, batch: Mapping[str, Any]) -> None:
        """Checks ``batch`` on the host, then copies it into the graph's inputs (stream-ordered:
        an earlier replay has read the previous batch by the time the copy runs); labels
        already on the GPU were checked before their upload (:func:`check_host_class_ids`)."""
        for key in BATCH_KEYS:
            if tuple(batch[key].shape) != self.shapes[key]:
                raise ValueError(
                    f"GraphedTrainStep: expected '{key}' of shape {list(self.shapes[key])} (the "
                    f"captured batch's), got {list(batch[key].shape)}"
                )
        check_host_class_ids(
            batch["semantic"], self.model.num_classes, self.loss_fn.cfg.ignore_index
        )
        B, _, H, W = self.shapes["image"]
        check_crops(B, H, W, offset=batch["offset"], full_size=batch["full_size"])
        for key in BATCH_KEYS:
            self._inputs[key].copy_(batch[key], non_blocking=True)

    def _step(self) -> torch.Tensor:
        """The captured work; returns the loss terms as one (T,) float32 tensor."""
        x = self._inputs
        images = network_images(x["image"])
        # zero_grad(set_to_none): the captured backward then writes the gradients instead of
        # adding to them, into memory the graph owns.
        self.optimizer.zero_grad(set_to_none=True)
        total, self.names, terms = forward_and_loss(
            self.model,
            self.loss_fn,
            images,
            x["semantic"],
            x["instance"],
            x["offset"],
            x["full_size"],
            amp_dtype=self.amp_dtype,
        )
        total.backward()
        self.optimizer.step()
        return terms

    def run(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """One training step on ``batch`` (a collated batch of the captured shapes): the
        optimizer's update is applied; step its schedule afterwards as usual.

        Returns:
            The step's loss terms, a (T,) float32 tensor on the device in the order of
            :attr:`names`, rewritten by the next call. Reading it waits for the step.
        """
        self._load(batch)
        self._graph.replay()
        return self._terms


def _check_arguments(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Mapping[str, Any],
    amp_dtype: torch.dtype | None,
) -> torch.device:
    """GraphedTrainStep's argument checks; returns the model's device."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError(f"GraphedTrainStep: expected a model on a CUDA device, got {device}")
    if not all(g["capturable"] and torch.is_tensor(g["lr"]) for g in optimizer.param_groups):
        raise ValueError(
            "GraphedTrainStep: expected an optimizer built with capturable=True (device "
            "step counts and tensor learning rates: build_optimizer(..., capturable=True))"
        )
    if amp_dtype not in (None, torch.bfloat16):
        raise ValueError(
            "GraphedTrainStep: expected amp_dtype None (float32) or torch.bfloat16 (float16 "
            f"needs a GradScaler, which reads values on the host), got {amp_dtype}"
        )
    missing = [k for k in BATCH_KEYS if not isinstance(batch.get(k), torch.Tensor)]
    if missing:
        raise ValueError(f"GraphedTrainStep: expected a collated batch, missing {missing}")
    return device


def _training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Copies of the weights, buffers and optimizer state that a warm-up step changes."""
    return {
        "tensors": [(t, t.detach().clone()) for t in [*model.parameters(), *model.buffers()]],
        "optimizer": {
            (id(param), key): value.detach().clone()
            for param, state in optimizer.state.items()
            for key, value in state.items()
            if torch.is_tensor(value)
        },
    }


@torch.no_grad()
def _restore_training_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]
) -> None:
    """Puts back what :func:`_training_state` copied, in place (the graph holds the tensors'
    addresses); optimizer state first created by the warm-up goes back to zero, its initial
    value in Adadelta and AdamW."""
    for tensor, copy in saved["tensors"]:
        tensor.copy_(copy)
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if not torch.is_tensor(value):
                continue
            before = saved["optimizer"].get((id(param), key))
            if before is None:
                value.zero_()
            else:
                value.copy_(before)
