"""The discriminative loss of PanoNet (eqs. 2-5), as one fused operator.

``torch.ops.panonet.discriminative_loss`` computes the per-image terms in three passes over the
pixels (no one-hot, no loop over clusters); its backward is one more pass. This module registers
its fake kernel (shapes for ``torch.compile``) and its autograd formula, and exposes the public
wrapper :func:`discriminative_loss`.
"""

import math

import torch

from panonet.ops import _extension  # noqa: F401  (registers torch.ops.panonet)

__all__ = ["discriminative_loss"]

_REDUCTIONS = ("mean", "none")


def discriminative_loss(
    embedding: torch.Tensor,
    instance_ids: torch.Tensor,
    *,
    delta_v: float = 0.25,
    delta_d: float = 1.0,
    delta_r: float = 6.0,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.1,
    ignore_index: int = -1,
    reduction: str = "mean",
    check_inputs: bool = True,
) -> torch.Tensor:
    r"""Discriminative loss of PanoNet (Chen et al., eqs. 2-5), per image.

    Every distinct value of ``instance_ids`` in an image other than ``ignore_index`` is one
    cluster (ids need not be contiguous: Cityscapes ids such as 26001 work). With C clusters,
    cluster c having N_c pixels x_i of mean mu_c:

    * ``L_var  = 1/C sum_c 1/N_c sum_i [||mu_c - x_i|| - delta_v]_+^2``
    * ``L_dist = 1/(C(C-1)) sum_{a != b} [2 delta_d - ||mu_a - mu_b||]_+^2`` (0 when C < 2)
    * ``L_reg  = 1/C sum_c 1/N_c [||mu_c|| - delta_r]_+^2``

    Args:
        embedding: (B, D, H, W) float16, bfloat16, float32 or float64 per-pixel embeddings.
            Accumulation is in float32 (float64 for float64 input; always float64 on the CPU).
        instance_ids: (B, H, W) int32 or int64 instance ids, on the same device.
        delta_v: pull margin of eq. (2), >= 0.
        delta_d: push margin of eq. (3), > delta_v.
        delta_r: margin of the regularizer, eq. (4), >= 0.
        alpha, beta, gamma: weights of L_var, L_dist, L_reg in eq. (5) (``reduction="mean"``).
        ignore_index: id of pixels that belong to no cluster.
        check_inputs: raise on NaN or Inf in the embedding. On the CPU the check is part of
            a pass the op makes anyway; on CUDA it costs one host synchronization (the kernel
            sets a flag on the device, which must be read back). With ``False`` the CUDA op
            never synchronizes with the host (it can be captured in a CUDA graph), and a NaN
            or Inf at a pixel of a cluster makes that image's losses non-finite instead of
            raising (ignored pixels do not count).
        reduction: ``"mean"``: the mean over images with at least one cluster of
            ``alpha L_var + beta L_dist + gamma L_reg``, a scalar (0 with zero gradient when no
            image has a cluster). ``"none"``: the unweighted (B, 3) ``[L_var, L_dist, L_reg]``
            per image (zeros for images without clusters).

    Returns:
        A float32 tensor (float64 for float64 input): a scalar, or (B, 3) for ``"none"``.

    Raises:
        ValueError / TypeError: bad shapes, dtypes, devices, margins or reduction, and NaN or
            Inf in the embedding (with ``check_inputs``); the message states what was expected
            and what arrived.
        RuntimeError: on CUDA under ``torch.use_deterministic_algorithms(True)``: the CUDA
            kernels accumulate cluster sums with float atomics, whose order varies between
            runs (results agree to rounding, not bit for bit).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"panonet.ops.discriminative_loss: expected reduction in {_REDUCTIONS}, "
            f"got {reduction!r}"
        )
    for name, weight in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"panonet.ops.discriminative_loss: expected {name} to be a finite number >= 0, "
                f"got {weight}"
            )
    losses, _, offsets, _, _, _ = torch.ops.panonet.discriminative_loss(
        embedding,
        instance_ids,
        float(delta_v),
        float(delta_d),
        float(delta_r),
        int(ignore_index),
        bool(check_inputs),
    )
    if reduction == "none":
        return losses
    per_image = alpha * losses[:, 0] + beta * losses[:, 1] + gamma * losses[:, 2]
    # Images without clusters contribute exact zeros; they only must not count in the mean.
    images_with_clusters = (offsets[1:] > offsets[:-1]).sum().clamp(min=1)
    return per_image.sum() / images_with_clusters


def _check_shapes(embedding: torch.Tensor, instance_ids: torch.Tensor) -> None:
    """The structural checks of the C++ kernels, for fake tensors (same messages)."""
    prefix = "panonet.ops.discriminative_loss: "
    if embedding.dim() != 4:
        raise ValueError(
            f"{prefix}expected embedding of shape (B, D, H, W), got a {embedding.dim()}-D tensor "
            f"of shape {list(embedding.shape)}"
        )
    if instance_ids.dim() != 3:
        raise ValueError(
            f"{prefix}expected instance_ids of shape (B, H, W), got a {instance_ids.dim()}-D "
            f"tensor of shape {list(instance_ids.shape)}"
        )
    if embedding.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(
            f"{prefix}expected embedding of dtype float16, bfloat16, float32 or float64, "
            f"got {embedding.dtype}"
        )
    if instance_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(
            f"{prefix}expected instance_ids of an integer dtype (int32 or int64), "
            f"got {instance_ids.dtype}"
        )
    B, D, H, W = embedding.shape
    if tuple(instance_ids.shape) != (B, H, W):
        raise ValueError(
            f"{prefix}expected instance_ids of shape (B, H, W) = {[B, H, W]} to match embedding "
            f"of shape {list(embedding.shape)}, got {list(instance_ids.shape)}"
        )
    if embedding.device != instance_ids.device:
        raise ValueError(
            f"{prefix}expected embedding and instance_ids on the same device, got "
            f"{embedding.device} and {instance_ids.device}"
        )


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("panonet::discriminative_loss")
def _discriminative_loss_fake(
    embedding, instance_ids, delta_v, delta_d, delta_r, ignore_index, check_inputs=True
):
    _check_shapes(embedding, instance_ids)
    B, D, H, W = embedding.shape
    acc = _accumulate_dtype(embedding.dtype)
    # The CPU op sizes its per-cluster outputs by the number of clusters (data-dependent); the
    # CUDA op gives them a row per pixel so that it never reads the count back. Other devices
    # (meta: the sync-free tests) follow CUDA.
    if embedding.device.type == "cpu":
        num_clusters = torch.library.get_ctx().new_dynamic_size()
    else:
        num_clusters = B * H * W
    return (
        embedding.new_empty((B, 3), dtype=acc),
        embedding.new_empty((B, H, W), dtype=torch.int32),
        embedding.new_empty((B + 1,), dtype=torch.int64),
        embedding.new_empty((num_clusters, D), dtype=acc),
        embedding.new_empty((num_clusters, 3, D), dtype=acc),
        embedding.new_empty((num_clusters,), dtype=torch.int64),
    )


@torch.library.register_fake("panonet::discriminative_loss_backward")
def _discriminative_loss_backward_fake(
    grad_losses, embedding, labels, offsets, means, mu_grads, counts, delta_v
):
    return torch.empty_like(embedding, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    embedding, _, delta_v = inputs[:3]
    _, labels, offsets, means, mu_grads, counts = output
    ctx.save_for_backward(embedding, labels, offsets, means, mu_grads, counts)
    ctx.delta_v = delta_v
    ctx.mark_non_differentiable(labels, offsets, means, mu_grads, counts)
    # Otherwise autograd hands _backward a zero gradient for every non-differentiable output:
    # on CUDA means and mu_grads have a row per pixel (B*H*W x 4*D floats), so the zeros cost
    # more memory traffic than the whole loss.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_losses, *_):
    embedding, labels, offsets, means, mu_grads, counts = ctx.saved_tensors
    grad_embedding = None
    if ctx.needs_input_grad[0] and grad_losses is not None:
        grad_embedding = torch.ops.panonet.discriminative_loss_backward(
            grad_losses, embedding, labels, offsets, means, mu_grads, counts, ctx.delta_v
        )
    return grad_embedding, None, None, None, None, None, None


torch.library.register_autograd(
    "panonet::discriminative_loss", _backward, setup_context=_setup_context
)
