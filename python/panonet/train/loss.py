"""PanoNet's training loss: eq. (1) + eq. (6), ``sum_t tau_t (L_sce,t + L_inst,t)``.

At each of the three output scales t (1/4, 1/8, 1/16 of the input) the full-resolution labels
are downsampled by nearest neighbour to the output's size (never bilinearly: that would invent
class and instance ids), then

* ``L_sce,t``: softmax cross-entropy of the semantic logits, void pixels (trainId 255) ignored,
  optionally class-weighted (ICNet's weighted softmax);
* ``L_inst,t = alpha L_var + beta L_dist + gamma L_reg`` (eq. 5): the discriminative loss
  (:func:`panonet.ops.discriminative_loss`) of the instance embedding, computed per image over
  the thing instances present in that image at that scale, averaged over the images that have
  at least one instance.

All constants come from :class:`~panonet.train.config.LossConfig`.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from panonet.data.transforms import resize_labels
from panonet.models.icnet import icnet_output_sizes
from panonet.ops import discriminative_loss
from panonet.train.config import NUM_SCALES, LossConfig

__all__ = ["SCALE_NAMES", "PanoNetLoss", "check_class_ids", "check_host_class_ids"]

SCALE_NAMES = ("1/4", "1/8", "1/16")
"""Names of the output scales, in PanoNetOutput's order; suffixes of the reported term names."""

# The instance id the discriminative-loss op is told to ignore. The dataset writes -1 on every
# pixel that is not an individually labelled thing (stuff, void, group regions); every negative
# id is mapped to it, so "no instance" has a single value whatever a caller used.
_NO_INSTANCE = -1


class _Output(Protocol):
    semantic: tuple[torch.Tensor, ...]
    embedding: tuple[torch.Tensor, ...]


class PanoNetLoss(nn.Module):
    """PanoNet's loss, eq. (1) + eq. (6): ``sum_t tau_t (L_sce,t + L_inst,t)`` over 3 scales.

    Args:
        cfg: the loss constants (:class:`LossConfig`; the paper's when None).

    forward(output, semantic, instance, *, check_labels=True) -> (total, terms):
        output: :class:`~panonet.models.PanoNetOutput` (or anything with ``.semantic`` and
            ``.embedding``), each a 3-tuple at 1/4, 1/8, 1/16 of the input: semantic logits
            (B, C, h_t, w_t) and embeddings (B, D, h_t, w_t), any floating dtype.
        semantic: (B, H, W) integer trainIds at the network input's resolution, values in
            [0, C) or ``cfg.ignore_index`` (255).
        instance: (B, H, W) integer instance ids at the same resolution: one id per individually
            labelled thing (Cityscapes ids such as 26001; any non-negative value works), negative
            (the dataset's -1) on every other pixel.
        check_labels: check that every semantic id is in [0, C) or the ignore index
            (:func:`check_class_ids`). On a GPU that reads a value back from the device, a
            synchronization per call; the Trainer checks its batches on the host before the
            upload and passes False. Unchecked, an id out of range fails inside cross-entropy
            (an index error on the CPU, a device-side assert on CUDA).

        total: scalar tensor (float32; float64 when the outputs are float64), differentiable
            with respect to both branches' outputs.
        terms: detached 0-dim tensors of the same dtype, unweighted by tau:
            ``ce_<s>`` (L_sce,t), ``var_<s>``, ``dist_<s>``, ``reg_<s>`` (eqs. 2-4, means over
            the images with instances) and ``inst_<s>`` (eq. 5) for s in 1/4, 1/8, 1/16;
            ``sem`` (eq. 1), ``inst`` (eq. 6) and ``total``.

    The loss is computed in float32 whatever the outputs' dtype (float16/bfloat16 outputs of
    mixed precision are upcast; autocast is switched off inside), because softmax cross-entropy
    and squared distances lose too much in half precision.

    Degenerate batches stay finite and differentiable: a scale where no pixel has a valid class
    has CE 0, an image without instances contributes 0 to the instance term (and is left out of
    the mean over images), a batch without any instance has instance terms 0; the gradients are
    then zeros, not NaN.

    Raises:
        ValueError: labels that are not integer tensors of shape (B, H, W), semantic and instance
            maps of different shapes, outputs whose batch, count or sizes do not match the labels
            (labels must be at the input resolution: ``icnet_output_sizes(H, W)`` must equal the
            outputs' sizes), class weights of the wrong length, class ids outside [0, C) other
            than the ignore index. Messages state what was expected and what arrived.
    """

    class_weights: torch.Tensor | None

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else LossConfig()
        weights = self.cfg.class_weights
        # A buffer so that .to(device) moves it with the module; not persistent: it is part of
        # the config, not learned state, and must not appear in model checkpoints. float64 keeps
        # the configured values exact; each forward casts it to the loss's dtype.
        self.register_buffer(
            "class_weights",
            None if weights is None else torch.tensor(weights, dtype=torch.float64),
            persistent=False,
        )

    def forward(
        self,
        output: _Output,
        semantic: torch.Tensor,
        instance: torch.Tensor,
        *,
        check_labels: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        semantic, instance = self._check_labels(semantic, instance)
        logits_list, embedding_list = self._check_output(output, semantic)
        if check_labels:
            check_class_ids(semantic, logits_list[0].shape[1], self.cfg.ignore_index)
        device = logits_list[0].device
        # The caller may run the forward pass under autocast; the loss itself must not be
        # downcast again (cross_entropy is autocast to float32 anyway, but the additions and
        # weightings here would not be).
        no_autocast = (
            torch.autocast(device.type, enabled=False)
            if torch.amp.is_autocast_available(device.type)
            and torch.is_autocast_enabled(device.type)
            else contextlib.nullcontext()
        )
        with no_autocast:
            return self._loss(logits_list, embedding_list, semantic, instance)

    def _loss(
        self,
        logits_list: tuple[torch.Tensor, ...],
        embedding_list: tuple[torch.Tensor, ...],
        semantic: torch.Tensor,
        instance: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        dtype = torch.float64 if logits_list[0].dtype == torch.float64 else torch.float32
        # Negative ids (the dataset's -1, or any other negative marker) -> the op's single
        # "no instance" id; non-negative ids are clusters, whatever their values.
        instance = torch.where(instance < 0, _NO_INSTANCE, instance)
        terms: dict[str, torch.Tensor] = {}
        sem_total = inst_total = None
        for name, tau, logits, embedding in zip(
            SCALE_NAMES, cfg.tau, logits_list, embedding_list, strict=True
        ):
            size = tuple(logits.shape[-2:])
            sem_t = resize_labels(semantic, size)
            inst_t = resize_labels(instance, size)

            ce = self._cross_entropy(logits.to(dtype), sem_t)

            # Per image (B, 3) unweighted [L_var, L_dist, L_reg] over that image's instances at
            # this scale; zeros (with zero gradient) for an image without instances. Averaged
            # over the images that do have instances, as the op's reduction="mean" does: the
            # paper's loss is per image, and empty images must not dilute it.
            per_image = discriminative_loss(
                embedding.to(dtype),
                inst_t,
                delta_v=cfg.delta_v,
                delta_d=cfg.delta_d,
                delta_r=cfg.delta_r,
                ignore_index=_NO_INSTANCE,
                reduction="none",
                # On CUDA the op's NaN/Inf check is a host synchronization per scale; the
                # trainer checks the total loss instead.
                check_inputs=not embedding.is_cuda,
            ).to(dtype)
            if cfg.dist_norm == "active":
                scale = _active_pair_scale(embedding.detach(), inst_t, 2 * cfg.delta_d)
                per_image = per_image * torch.stack(
                    [torch.ones_like(scale), scale, torch.ones_like(scale)], dim=1
                ).to(dtype)
            has_instances = (inst_t != _NO_INSTANCE).flatten(1).any(dim=1)
            var, dist, reg = per_image.sum(dim=0) / has_instances.sum().clamp(min=1)
            inst = cfg.alpha * var + cfg.beta * dist + cfg.gamma * reg

            sem_total = tau * ce if sem_total is None else sem_total + tau * ce
            inst_total = tau * inst if inst_total is None else inst_total + tau * inst
            for key, value in (("ce", ce), ("var", var), ("dist", dist), ("reg", reg)):
                terms[f"{key}_{name}"] = value.detach()
            terms[f"inst_{name}"] = inst.detach()

        total = sem_total + inst_total
        terms["sem"] = sem_total.detach()
        terms["inst"] = inst_total.detach()
        terms["total"] = total.detach()
        return total, terms

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean (class-weighted) softmax CE over the non-ignored pixels; 0 when there are none.

        torch's own ``reduction="mean"`` divides by the (weighted) count of valid pixels and
        returns NaN when it is 0; the sum and the count are formed here instead, and an empty
        count is replaced by 1 (the sum is then exactly 0, and so is its gradient).
        """
        ignore = self.cfg.ignore_index
        weight = None if self.class_weights is None else self.class_weights.to(logits)
        valid = target != ignore
        # w[y_i] per pixel, 0 where ignored (indexed as class 0, then zeroed by the mask).
        pixel_weight = None if weight is None else weight[torch.where(valid, target, 0)] * valid
        if self.cfg.ohem_keep < 1.0:
            total, count = self._hardest_pixels(logits, target, weight, valid, pixel_weight)
        else:
            total = F.cross_entropy(
                logits, target, weight=weight, ignore_index=ignore, reduction="sum"
            )
            count = valid.sum().to(logits.dtype) if pixel_weight is None else pixel_weight.sum()
        return total / torch.where(count > 0, count, torch.ones_like(count))

    def _hardest_pixels(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        valid: torch.Tensor,
        pixel_weight: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted loss summed over the ``ohem_keep`` fraction (rounded up) of the
        non-ignored pixels with the highest weighted loss, and the sum of their weights. The
        count kept stays a tensor: no value is read back from the device."""
        loss = F.cross_entropy(
            logits, target, weight=weight, ignore_index=self.cfg.ignore_index, reduction="none"
        )
        # Ignored pixels rank below every valid one (losses are >= 0).
        ranked, order = torch.where(valid, loss, -1.0).flatten().sort(descending=True)
        keep = torch.ceil(self.cfg.ohem_keep * valid.sum().double())
        kept = torch.arange(ranked.numel(), device=ranked.device) < keep
        total = (ranked.clamp_min(0) * kept).sum()
        if pixel_weight is None:
            # ceil(q n) <= n: every kept pixel is valid, so their count is ``keep``.
            return total, keep.to(logits.dtype)
        return total, (pixel_weight.flatten()[order] * kept).sum()

    def _check_labels(
        self, semantic: torch.Tensor, instance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for name, labels in (("semantic", semantic), ("instance", instance)):
            if not isinstance(labels, torch.Tensor):
                raise ValueError(
                    f"PanoNetLoss: expected {name} labels as a torch.Tensor, got "
                    f"{type(labels).__name__}"
                )
            if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
                raise ValueError(
                    f"PanoNetLoss: expected {name} labels of an integer dtype (e.g. int64), got "
                    f"{labels.dtype}"
                )
            if labels.dim() != 3:
                raise ValueError(
                    f"PanoNetLoss: expected {name} labels of shape (B, H, W), got shape "
                    f"{list(labels.shape)}"
                )
        if semantic.shape != instance.shape:
            raise ValueError(
                "PanoNetLoss: expected semantic and instance labels of the same shape (B, H, W), "
                f"got {list(semantic.shape)} and {list(instance.shape)}"
            )
        # cross_entropy and the op want int64 (the op also takes int32, but a single dtype keeps
        # torch.where / indexing simple); uint8 or int16 maps from a loader are widened here.
        return semantic.long(), instance.long()

    def _check_output(
        self, output: _Output, semantic: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        try:
            logits_list, embedding_list = tuple(output.semantic), tuple(output.embedding)
        except (AttributeError, TypeError):
            raise ValueError(
                "PanoNetLoss: expected a PanoNetOutput (.semantic and .embedding tuples), got "
                f"{type(output).__name__}"
            ) from None
        if len(logits_list) != NUM_SCALES or len(embedding_list) != NUM_SCALES:
            raise ValueError(
                f"PanoNetLoss: expected {NUM_SCALES} semantic and {NUM_SCALES} embedding outputs "
                f"(1/4, 1/8, 1/16), got {len(logits_list)} and {len(embedding_list)}"
            )
        B, H, W = semantic.shape
        expected_sizes = icnet_output_sizes(H, W)
        got_sizes = tuple(tuple(x.shape[-2:]) for x in logits_list)
        for name, tensors in (("semantic", logits_list), ("embedding", embedding_list)):
            for scale, x in zip(SCALE_NAMES, tensors, strict=True):
                if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
                    what = (
                        f"{x.dtype} of shape {list(x.shape)}"
                        if isinstance(x, torch.Tensor)
                        else type(x).__name__
                    )
                    raise ValueError(
                        f"PanoNetLoss: expected {name} output at {scale} to be a floating "
                        f"(B, C, h, w) tensor, got {what}"
                    )
                if x.shape[0] != B:
                    raise ValueError(
                        f"PanoNetLoss: expected {name} output at {scale} with batch size {B} (the "
                        f"labels'), got shape {list(x.shape)}"
                    )
        for scale, logits, emb in zip(SCALE_NAMES, logits_list, embedding_list, strict=True):
            if logits.shape[-2:] != emb.shape[-2:]:
                raise ValueError(
                    f"PanoNetLoss: expected semantic and embedding outputs at {scale} of the same "
                    f"size, got {list(logits.shape)} and {list(emb.shape)}"
                )
            if logits.device != semantic.device or emb.device != semantic.device:
                raise ValueError(
                    f"PanoNetLoss: expected outputs and labels on the same device, got outputs "
                    f"on {logits.device} / {emb.device} and labels on {semantic.device}"
                )
        if got_sizes != expected_sizes:
            raise ValueError(
                "PanoNetLoss: expected labels at the network input's resolution: labels of size "
                f"{H}x{W} go with outputs of sizes {[list(s) for s in expected_sizes]}, got "
                f"outputs of sizes {[list(s) for s in got_sizes]}"
            )
        num_classes = logits_list[0].shape[1]
        if any(x.shape[1] != num_classes for x in logits_list):
            raise ValueError(
                "PanoNetLoss: expected the same number of classes at every scale, got "
                f"{[x.shape[1] for x in logits_list]}"
            )
        if self.class_weights is not None and self.class_weights.numel() != num_classes:
            raise ValueError(
                f"PanoNetLoss: expected {num_classes} class weights (one per logit channel), got "
                f"{self.class_weights.numel()}"
            )
        return logits_list, embedding_list


def check_class_ids(semantic: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise unless every id of ``semantic`` is in [0, num_classes) or ``ignore_index``.

    A class id outside [0, C) would fail deep inside cross-entropy (an index error on the CPU,
    a device-side assert on CUDA); a reduction over the labels names it instead. Reads up to
    two values from the tensor's device: free on the host, a synchronization on a GPU.

    Fast, as it runs on every training image (a whole 1024x2048 map per image with augmentation
    on the device): the minimum and maximum settle maps without the ignore index; with the
    ignore index 255 and ids in 0..255, ``(id - C) mod 256`` puts the ids in [0, C) at 256 - C
    and above, 255 at 255 - C and every bad id below it, so one more minimum settles the rest.
    Only a map with bad ids takes the exact, several times slower, comparison.

    Args:
        semantic: integer trainIds of any shape, on any device.

    Raises:
        ValueError: naming up to 10 of the offending values.
    """
    if semantic.numel() == 0:
        return
    lo, hi = torch.stack(torch.aminmax(semantic)).tolist()
    if lo >= 0 and hi < num_classes:
        return
    if ignore_index == 255 and 0 <= lo and hi <= 255 and num_classes <= 255:
        wrapped = semantic.to(torch.uint8) - num_classes  # uint8 arithmetic wraps mod 256
        if int(wrapped.min()) >= 255 - num_classes:
            return
    # In int64: a uint8 map compared with an ignore index beyond 255 would wrap it.
    semantic = semantic.long()
    bad = (semantic != ignore_index) & ((semantic < 0) | (semantic >= num_classes))
    if bool(bad.any()):
        values = torch.unique(semantic[bad])[:10].tolist()
        raise ValueError(
            f"PanoNetLoss: expected semantic labels in [0, {num_classes}) or the ignore index "
            f"{ignore_index}, got values {values}"
        )


def check_host_class_ids(semantic: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """:func:`check_class_ids` where it costs the device nothing: labels on the host are
    checked, labels already on another device pass unchecked (a check there would synchronize;
    whoever uploaded them checked them on the host first, e.g.
    :class:`panonet.train.device_augment.DeferItems`)."""
    if semantic.device.type == "cpu":
        check_class_ids(semantic, num_classes, ignore_index)


@torch.no_grad()
def _active_pair_scale(
    embedding: torch.Tensor, instance: torch.Tensor, margin: float
) -> torch.Tensor:
    """Per image, C (C - 1) / max(1, A): the factor that turns the op's L_dist (a mean over the
    C (C - 1) ordered pairs of instances) into a mean over the A ordered pairs whose means are
    closer than ``margin`` (the only ones with a non-zero hinge). A count, so the factor is
    constant almost everywhere and the gradient is the op's times it.

    Args:
        embedding: (B, D, h, w) embeddings (detached).
        instance: (B, h, w) int64 ids at the same size, ``_NO_INSTANCE`` on no instance.

    Returns:
        (B,) float64 factors (1 for images with fewer than two instances). Synchronizes with
        the device (the number of instances sizes the means).
    """
    B = instance.shape[0]
    valid = instance != _NO_INSTANCE
    image = torch.arange(B, device=instance.device)[:, None, None].expand_as(instance)[valid]
    keys = torch.stack([image, instance[valid]], dim=1)
    _, cluster = torch.unique(keys, dim=0, return_inverse=True)
    K = int(cluster.max()) + 1 if cluster.numel() else 0
    pixels = embedding.permute(0, 2, 3, 1)[valid].double()
    sums = pixels.new_zeros(K, pixels.shape[1]).index_add_(0, cluster, pixels)
    means = sums / torch.bincount(cluster, minlength=K).double()[:, None]
    owner = torch.zeros(K, dtype=torch.long, device=instance.device).scatter_(0, cluster, image)
    close = (torch.cdist(means, means) < margin) & (owner[:, None] == owner[None, :])
    close.fill_diagonal_(False)
    active = torch.zeros(B, dtype=torch.float64, device=instance.device)
    active.index_add_(0, owner, close.sum(dim=1).double())
    C = torch.bincount(owner, minlength=B).double()
    return torch.where(C >= 2, C * (C - 1) / active.clamp(min=1), torch.ones_like(C))
