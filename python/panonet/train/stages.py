"""The two training stages (paper Sec. III-C): stage 1 without coordinate input, stage 2 with
the coordinate channels, and the passage from one to the other."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from panonet.models.checkpoint import load_model
from panonet.models.panonet import PanoNet
from panonet.models.pretrained import load_imagenet_resnet50
from panonet.train.optim import build_optimizer, build_scheduler
from panonet.train.run_state import get_rng_state, hold_sigint

__all__ = ["TrainingStages", "stage2_model"]


def stage2_model(stage1: PanoNet) -> PanoNet:
    """A ``use_coords=True`` PanoNet with ``stage1``'s weights (coordinate channels zero).

    The stage-2 model computes the stage-1 function (up to float summation order), on the
    CPU; the caller moves it.
    """
    config = {**stage1.config, "use_coords": True}
    model = PanoNet(**config)
    state = {k: v.detach().cpu() for k, v in stage1.state_dict().items()}
    model.load_stage1(state)
    return model


def _bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class TrainingStages:
    """The model of each training stage: built (stage 1, with pretrained or initial weights),
    installed (device, BatchNorm, DDP, the stage's optimizer and schedule) and carried over to
    stage 2. A mixin of :class:`panonet.train.trainer.Trainer`, whose configuration, device,
    process group and log it uses.
    """

    def _model_kwargs(self, *, use_coords: bool) -> dict[str, Any]:
        return {
            "num_classes": self.cfg.num_classes,
            "embedding_dim": self.cfg.embedding_dim,
            "use_coords": use_coords,
            "share_weights": self.cfg.share_weights,
            "width": self.cfg.width,
            "coord_scale": self.cfg.coord_scale,
            "coord_output": self.cfg.coord_output,
            "detail": self.cfg.detail,
        }

    def _load_pretrained(self, model: PanoNet) -> None:
        """ImageNet backbones (``pretrained``), then a stage-1 PanoNet (``init_weights``)."""
        cfg = self.cfg
        if cfg.pretrained:
            state = torch.load(cfg.pretrained, map_location="cpu", weights_only=True)
            icnets = (model.trunk,) if model.share_weights else (model.semantic, model.instance)
            for icnet in icnets:
                report = load_imagenet_resnet50(icnet, state)
            self.log.say(f"pretrained {cfg.pretrained}: {report.summary()}")
        if cfg.init_weights:
            # load_model checks the file against the stage-1 configuration and names any
            # missing / unexpected / mis-shaped key.
            source = load_model(cfg.init_weights, **self._model_kwargs(use_coords=False))
            model.load_state_dict(source.state_dict())
            self.log.say(f"stage 1 starts from the weights of {cfg.init_weights}")

    def _install(self, model: PanoNet, stage: int) -> None:
        """Make ``model`` the trained model of ``stage``: device, BN, DDP, new optimizer and
        schedule (the stage's own poly decay over its steps)."""
        # NHWC convolutions: 7.5 % faster training steps on the CPU (measured, batch 4 of
        # 128x256 crops, 2 threads) and the layout tensor cores prefer on CUDA.
        model = model.to(self.device).to(memory_format=torch.channels_last)
        self.stage = stage
        if self.dist.distributed and self.device.type == "cuda" and not self._bn_frozen():
            # Per-GPU batches are small; BN statistics over the global batch, as in one process.
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif self.dist.distributed and not self._bn_frozen():
            self.log.say_once(
                "bn",
                "note: SyncBatchNorm needs GPUs; on the CPU each process normalises over its own "
                "batch (set freeze_bn = true for results equal to one process)",
            )
        self.model = model
        self._train_mode()
        if self.dist.distributed:
            # No device_ids: DDP then leaves the inputs where batch_to_device put them (with
            # them it would upload the host-side crop offsets too, and the network's check of
            # their values would synchronize with the GPU twice a step).
            self.net = DistributedDataParallel(model)
        else:
            self.net = model
        optim_cfg = self.cfg.stage_optim(stage)
        self.optimizer = build_optimizer(model, optim_cfg, capturable=self.cfg.cuda_graph)
        self.scheduler = build_scheduler(self.optimizer, optim_cfg)
        self._graphed = None  # captured at the stage's first step (train.step)
        self._snapshot_buffers()

    def _bn_frozen(self) -> bool:
        """Whether BatchNorm runs on its running statistics in the current stage."""
        return self.cfg.freeze_bn or (self.stage == 2 and self.cfg.freeze_bn_stage2)

    def _train_mode(self) -> None:
        self.model.train()
        if self._bn_frozen():
            _bn_eval(self.model)

    def _enter_stage2(self) -> None:
        """Stage 1 -> 2: surgery into a use_coords model (the same model when ``stage2_coords``
        is false), new optimizer and schedule."""
        with hold_sigint():
            if self.cfg.stage2_coords:
                model = stage2_model(self.model)
            else:
                model = PanoNet(**self._model_kwargs(use_coords=False))
                model.load_state_dict(
                    {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
                )
            self._install(model, stage=2)
            self._rng = get_rng_state(self.device)
        self._event("stage2")
