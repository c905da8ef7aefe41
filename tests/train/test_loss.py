"""PanoNetLoss against a slow float64 transcription of the paper's eqs. (1)-(6).

Outputs here are random tensors of PanoNet's three output shapes (no network): the loss is a
function of the outputs and labels only. The reference resizes labels with its own float formula
for nearest-exact, computes the CE with torch's cross_entropy and the discriminative terms with
tests.ops.reference_discriminative_loss (a loop over images and clusters written from eqs. 2-4).
float64 outputs keep the loss in float64 (the op accumulates in float64 on the CPU), so values and
gradients agree to ~1e-12 relative.
"""

import itertools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from panonet.data.transforms import resize_labels as downsample_labels
from panonet.models import PanoNetOutput, icnet_output_sizes
from panonet.train import SCALE_NAMES, LossConfig, PanoNetLoss
from panonet.train.loss import check_class_ids, check_host_class_ids
from tests.ops.reference_discriminative_loss import losses_torch

C, D = 19, 12
H, W = 64, 96


def make_labels(seed: int, B: int = 3, h: int = H, w: int = W) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, h, w) int64 trainIds (some 255) and instance ids; image 1 has no instance.

    Instances are rectangles with Cityscapes-style ids (26001, 26002, 24001) large enough to
    survive at 1/16, plus one 3x3 instance that only the finer scales see, and a few pixels with
    another negative marker (-7), which must count as "no instance" like -1.
    """
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, C, (B, h, w), generator=g)
    semantic[torch.rand(B, h, w, generator=g) < 0.15] = 255
    instance = torch.full((B, h, w), -1, dtype=torch.int64)
    for b in range(B):
        if b == 1:
            continue
        for k, ident in enumerate((26001, 26002, 24001)):
            y0 = int(torch.randint(0, h - 24, (1,), generator=g))
            x0 = int(torch.randint(0, w - 32, (1,), generator=g))
            instance[b, y0 : y0 + 20 + 2 * k, x0 : x0 + 28 - 3 * k] = ident
        instance[b, 1:4, 1:4] = 33001
        instance[b, -2:, :5] = -7
    return semantic, instance


def make_output(seed: int, B: int = 3, dtype=torch.float64, scale: float = 1.0) -> PanoNetOutput:
    g = torch.Generator().manual_seed(seed)
    sizes = icnet_output_sizes(H, W)
    sem = tuple(
        (3 * torch.randn(B, C, *s, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
        for s in sizes
    )
    emb = tuple(
        (scale * torch.randn(B, D, *s, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
        for s in sizes
    )
    return PanoNetOutput(sem, emb)


def reference_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-exact by its definition: row y reads floor((y + 0.5) * H / h), in floats."""
    h, w = size
    Hin, Win = labels.shape[-2:]
    rows = [math.floor((y + 0.5) * Hin / h) for y in range(h)]
    cols = [math.floor((x + 0.5) * Win / w) for x in range(w)]
    return labels[..., rows, :][..., cols]


def reference_loss(
    output: PanoNetOutput, semantic: torch.Tensor, instance: torch.Tensor, cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. (1) + eq. (6) in float64, slowly: per scale, per image, per cluster."""
    weight = (
        None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float64)
    )
    total = torch.zeros((), dtype=torch.float64)
    terms = {}  # detached floats
    for name, tau, logits, emb in zip(
        SCALE_NAMES, cfg.tau, output.semantic, output.embedding, strict=True
    ):
        size = tuple(logits.shape[-2:])
        sem = reference_nearest(semantic, size)
        ins = reference_nearest(instance, size)
        ins = torch.where(ins < 0, -1, ins)
        if (sem != cfg.ignore_index).any():
            ce = F.cross_entropy(logits.double(), sem, weight=weight, ignore_index=cfg.ignore_index)
        else:
            ce = logits.double().sum() * 0
        per_image = losses_torch(emb, ins, cfg.delta_v, cfg.delta_d, cfg.delta_r, -1)
        has = [bool((ins[b] >= 0).any()) for b in range(ins.shape[0])]
        if any(has):
            var, dist, reg = per_image[torch.tensor(has)].mean(dim=0)
        else:
            var = dist = reg = emb.double().sum() * 0
        inst = cfg.alpha * var + cfg.beta * dist + cfg.gamma * reg
        total = total + tau * (ce + inst)
        terms.update(
            {
                f"ce_{name}": ce.item(),
                f"var_{name}": var.item(),
                f"dist_{name}": dist.item(),
                f"reg_{name}": reg.item(),
                f"inst_{name}": inst.item(),
            }
        )
    terms["total"] = total.item()
    return total, terms


def _grads(total: torch.Tensor, output: PanoNetOutput) -> list[torch.Tensor]:
    return list(torch.autograd.grad(total, [*output.semantic, *output.embedding]))


# ---------------------------------------------------------------- (a) against the reference


@pytest.mark.parametrize(
    "cfg",
    [
        LossConfig(),
        # Margins that make every term active at these embedding scales (delta_r below the mean
        # norms, delta_d large enough that all pairs of means are pushed), and class weights.
        LossConfig(
            delta_v=0.1,
            delta_d=3.0,
            delta_r=0.05,
            alpha=0.7,
            beta=1.3,
            gamma=2.0,
            class_weights=[0.5 + 0.1 * k for k in range(C)],
        ),
    ],
    ids=["paper", "all-terms-active"],
)
def test_loss_matches_paper_reference(cfg):
    semantic, instance = make_labels(0)
    output = make_output(1)
    total, terms = PanoNetLoss(cfg)(output, semantic, instance)
    ref_total, ref_terms = reference_loss(output, semantic, instance, cfg)

    assert total.dtype == torch.float64 and total.dim() == 0
    for key, ref in ref_terms.items():
        assert float(terms[key]) == pytest.approx(ref, rel=1e-10, abs=1e-12), key
    # The instance id that only exists at fine scales and the -7 pixels are really exercised:
    # the terms are not all zero, and image 1 (no instances) is out of the mean.
    assert all(ref_terms[f"var_{s}"] > 0 for s in SCALE_NAMES)
    if cfg.delta_r < 1:
        assert all(ref_terms[f"reg_{s}"] > 0 and ref_terms[f"dist_{s}"] > 0 for s in SCALE_NAMES)

    for got, ref in zip(_grads(total, output), _grads(ref_total, output), strict=True):
        scale = float(ref.abs().max())
        assert scale > 0
        assert float((got - ref).abs().max()) <= 1e-10 * scale


def test_terms_are_detached_and_consistent():
    semantic, instance = make_labels(2)
    output = make_output(3, dtype=torch.float32)
    cfg = LossConfig()
    total, terms = PanoNetLoss(cfg)(output, semantic, instance)
    expected_keys = {"sem", "inst", "total"} | {
        f"{k}_{s}" for k in ("ce", "var", "dist", "reg", "inst") for s in SCALE_NAMES
    }
    assert set(terms) == expected_keys
    assert all(not v.requires_grad and v.dim() == 0 for v in terms.values())
    assert total.requires_grad and terms["total"].item() == total.item()
    sem = sum(t * terms[f"ce_{s}"] for t, s in zip(cfg.tau, SCALE_NAMES, strict=True))
    inst = sum(t * terms[f"inst_{s}"] for t, s in zip(cfg.tau, SCALE_NAMES, strict=True))
    torch.testing.assert_close(terms["sem"], sem)
    torch.testing.assert_close(terms["inst"], inst)
    torch.testing.assert_close(terms["total"], sem + inst)


def reference_active_dist(emb: torch.Tensor, ins: torch.Tensor, delta_d: float) -> torch.Tensor:
    """L_dist with dist_norm="active", by its definition: per image the squared hinges of all
    ordered pairs of instance means over the number of pairs closer than 2 delta_d, averaged
    over the images with instances."""
    values = []
    for b in range(ins.shape[0]):
        ids = [int(k) for k in torch.unique(ins[b]) if k >= 0]
        if not ids:
            continue
        means = [emb[b].double()[:, ins[b] == k].mean(dim=1) for k in ids]
        hinge, active = emb.double().sum() * 0, 0
        for i, j in itertools.permutations(range(len(ids)), 2):
            d = torch.linalg.vector_norm(means[i] - means[j])
            hinge = hinge + torch.clamp(2 * delta_d - d, min=0) ** 2
            active += int(d < 2 * delta_d)
        values.append(hinge / max(active, 1))
    return torch.stack(values).mean() if values else emb.double().sum() * 0


def test_active_pair_normaliser_matches_its_definition():
    semantic, instance = make_labels(4)
    output = make_output(5, scale=0.3)
    # A ramp along x in channel 0 spreads the instance means 0 to ~3 apart, so that with
    # 2 delta_d = 1.2 some pairs are pushed and others are not.
    for emb in output.embedding:
        with torch.no_grad():
            emb[:, 0] += torch.linspace(0, 3, emb.shape[-1], dtype=emb.dtype)
    cfg = LossConfig(delta_d=0.6, dist_norm="active")
    total, terms = PanoNetLoss(cfg)(output, semantic, instance)
    # The paper's total with each scale's L_dist swapped for the definition above.
    ref_total, plain = reference_loss(output, semantic, instance, LossConfig(delta_d=0.6))
    partial = 0
    for name, tau, emb in zip(SCALE_NAMES, cfg.tau, output.embedding, strict=True):
        ins = reference_nearest(instance, tuple(emb.shape[-2:]))
        ins = torch.where(ins < 0, -1, ins)
        ref = reference_active_dist(emb, ins, cfg.delta_d)
        per_image = losses_torch(emb, ins, cfg.delta_v, cfg.delta_d, cfg.delta_r, -1)
        has = torch.tensor([bool((ins[b] >= 0).any()) for b in range(ins.shape[0])])
        ref_total = ref_total + tau * cfg.beta * (ref - per_image[has, 1].mean())
        assert float(terms[f"dist_{name}"]) == pytest.approx(ref.item(), rel=1e-10)
        assert float(terms[f"var_{name}"]) == pytest.approx(plain[f"var_{name}"], rel=1e-10)
        partial += ref.item() > plain[f"dist_{name}"] * (1 + 1e-6)
    # The case exercises the normaliser: at some scale fewer pairs are active than exist.
    assert partial >= 1
    for got, ref in zip(_grads(total, output), _grads(ref_total, output), strict=True):
        assert float((got - ref).abs().max()) <= 1e-10 * max(float(ref.abs().max()), 1e-300)


# ---------------------------------------------------------------- (b) nearest downsampling


def test_downsample_hand_example_quarter_scale():
    # 8 x 12 -> 2 x 3 (1/4): output (y, x) reads input (4y + 2, 4x + 2), the centre-most pixel
    # of each 4 x 4 block (half-pixel centres), never a blend.
    labels = torch.arange(8 * 12).reshape(8, 12) * 1000 + 26001
    expected = torch.tensor(
        [
            [2 * 12 + 2, 2 * 12 + 6, 2 * 12 + 10],
            [6 * 12 + 2, 6 * 12 + 6, 6 * 12 + 10],
        ]
    )
    assert torch.equal(downsample_labels(labels, (2, 3)), expected * 1000 + 26001)
    # The same geometry as torch's own nearest-exact mode (exact here: small float values).
    torch_ne = F.interpolate(labels[None, None].double(), size=(2, 3), mode="nearest-exact")
    assert torch.equal(downsample_labels(labels, (2, 3)), torch_ne[0, 0].long())


def test_downsample_only_existing_values_at_every_scale():
    semantic, instance = make_labels(4, B=2, h=67, w=101)
    for size in icnet_output_sizes(67, 101):
        for labels in (semantic, instance):
            out = downsample_labels(labels, size)
            assert out.shape == (2, *size) and out.dtype == labels.dtype
            assert set(out.unique().tolist()) <= set(labels.unique().tolist())
            assert torch.equal(out, reference_nearest(labels, size))
    # Same size: an equal copy.
    assert torch.equal(downsample_labels(instance, (67, 101)), instance)


def test_merge_resizes_labels_with_the_same_function():
    # One convention for labels in the whole package: the loss, the augmentation and the
    # post-processing all use data.transforms.resize_labels.
    from panonet.inference.merge import resize_labels as merge_resize

    assert merge_resize is downsample_labels


def test_loss_uses_nearest_labels_not_blends():
    # A 1-pixel-wide column of instance 1 next to instance 2 (ids far apart): a bilinear blend
    # or an off-by-one sampling would create or move cluster pixels. The loss's 1/16 term must
    # equal the op's result on the hand-sampled 1/16 labels.
    from panonet.ops import discriminative_loss

    semantic = torch.zeros(1, H, W, dtype=torch.int64)
    instance = torch.full((1, H, W), 11001)
    instance[..., 40:] = 33001
    output = make_output(6, B=1)
    _, terms = PanoNetLoss()(output, semantic, instance)
    # 1/16 (4 x 6): column x reads input column 16x + 8: 8, 24, 40, 56, 72, 88.
    lab = torch.tensor([[11001, 11001, 33001, 33001, 33001, 33001]]).expand(4, 6)[None]
    per_image = discriminative_loss(output.embedding[2].detach(), lab, reduction="none")[0]
    assert float(terms["var_1/16"]) == pytest.approx(float(per_image[0]), rel=1e-12)
    assert float(terms["dist_1/16"]) == pytest.approx(float(per_image[1]), rel=1e-12)


# ---------------------------------------------------------------- (c) degenerate batches


def test_image_without_instances_is_left_out_of_the_mean():
    semantic, instance = make_labels(7, B=3)  # image 1 has no instance
    output = make_output(8)
    _, terms = PanoNetLoss()(output, semantic, instance)
    # The same images without image 1: identical instance terms (mean over images with
    # instances), so an empty image neither adds 0s to the mean nor changes the gradient scale.
    keep = [0, 2]
    sub = PanoNetOutput(
        tuple(x[keep] for x in output.semantic), tuple(x[keep] for x in output.embedding)
    )
    _, sub_terms = PanoNetLoss()(sub, semantic[keep], instance[keep])
    for s in SCALE_NAMES:
        assert float(terms[f"inst_{s}"]) == pytest.approx(float(sub_terms[f"inst_{s}"]), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_no_instance_and_all_ignore_batches_are_finite_and_differentiable(dtype):
    semantic, instance = make_labels(9, B=2)
    output = make_output(10, B=2, dtype=dtype)
    loss = PanoNetLoss()

    # No instance anywhere: instance terms exactly 0, zero (not NaN) embedding gradients, the CE
    # still trains the semantic branch.
    total, terms = loss(output, semantic, torch.full_like(instance, -1))
    assert torch.isfinite(total)
    assert all(float(terms[f"{k}_{s}"]) == 0 for k in ("var", "dist", "reg") for s in SCALE_NAMES)
    grads = _grads(total, output)
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(float(g.abs().sum()) == 0 for g in grads[3:])
    assert all(float(g.abs().sum()) > 0 for g in grads[:3])

    # Every pixel void: CE exactly 0 (torch's mean would be 0/0 = NaN), zero logit gradients,
    # the instance term still trains the embedding.
    total, terms = loss(output, torch.full_like(semantic, 255), instance)
    assert torch.isfinite(total)
    assert all(float(terms[f"ce_{s}"]) == 0 for s in SCALE_NAMES)
    grads = _grads(total, output)
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(float(g.abs().sum()) == 0 for g in grads[:3])
    assert all(float(g.abs().sum()) > 0 for g in grads[3:])

    # Both at once: total 0, still a graph to call backward on.
    total, _ = loss(output, torch.full_like(semantic, 255), torch.full_like(instance, -1))
    assert total.item() == 0 and total.requires_grad
    assert all(torch.isfinite(g).all() for g in _grads(total, output))


def test_half_precision_outputs_are_reduced_in_float32():
    semantic, instance = make_labels(11, B=2)
    out16 = make_output(12, B=2, dtype=torch.float16)
    out32 = PanoNetOutput(
        tuple(x.detach().float() for x in out16.semantic),
        tuple(x.detach().float() for x in out16.embedding),
    )
    loss = PanoNetLoss()
    total16, terms16 = loss(out16, semantic, instance)
    total32, _ = loss(out32, semantic, instance)
    assert total16.dtype == torch.float32 and all(
        v.dtype == torch.float32 for v in terms16.values()
    )
    # The upcast is exact, so the float16 outputs give exactly the float32 loss of their values.
    assert total16.item() == total32.item()
    # Under autocast (as in a mixed-precision training step) too.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total_ac, _ = loss(out32, semantic, instance)
    assert total_ac.dtype == torch.float32 and total_ac.item() == total32.item()
    grads = _grads(total16, out16)
    assert all(g.dtype == torch.float16 and torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------- (g) class weights


def test_class_weights_weight_the_cross_entropy():
    semantic, instance = make_labels(13, B=2)
    output = make_output(14, B=2)
    plain = PanoNetLoss()(output, semantic, instance)[1]

    # Equal weights: the weighted mean is the plain mean.
    same = PanoNetLoss(LossConfig(class_weights=[2.5] * C))(output, semantic, instance)[1]
    # Weight 0 on class 0: the CE is the plain CE over the pixels of the other classes.
    weights = [0.0] + [1.0] * (C - 1)
    no0 = PanoNetLoss(LossConfig(class_weights=weights))(output, semantic, instance)[1]
    # Arbitrary weights: sum_i w[y_i] nll_i / sum_i w[y_i], written out.
    w = torch.linspace(0.2, 3.0, C, dtype=torch.float64)
    weighted = PanoNetLoss(LossConfig(class_weights=w.tolist()))(output, semantic, instance)[1]

    for t, s in enumerate(SCALE_NAMES):
        logits = output.semantic[t].detach()
        sem = downsample_labels(semantic, tuple(logits.shape[-2:]))
        valid = sem != 255
        nll = -torch.log_softmax(logits, dim=1).gather(1, sem.clamp(max=C - 1)[:, None])[:, 0]
        assert float(same[f"ce_{s}"]) == pytest.approx(float(plain[f"ce_{s}"]), rel=1e-12)
        keep = valid & (sem != 0)
        assert float(no0[f"ce_{s}"]) == pytest.approx(float(nll[keep].mean()), rel=1e-12)
        wy = w[sem.clamp(max=C - 1)] * valid
        expected = float((wy * nll).sum() / wy.sum())
        assert float(weighted[f"ce_{s}"]) == pytest.approx(expected, rel=1e-12)
        assert float(weighted[f"ce_{s}"]) != pytest.approx(float(plain[f"ce_{s}"]), rel=1e-6)
        # The instance terms do not depend on the class weights.
        assert float(weighted[f"inst_{s}"]) == float(plain[f"inst_{s}"])


def test_hard_pixel_mining_keeps_the_hardest_pixels():
    """ohem_keep = q: the CE of a scale is sum w[y] nll / sum w[y] over the ceil(q n) valid
    pixels of highest w[y] nll, written out here; q just under 1 keeps every pixel."""
    semantic, instance = make_labels(13, B=2)
    output = make_output(14, B=2)
    w = torch.linspace(0.2, 3.0, C, dtype=torch.float64)
    weighted = LossConfig(class_weights=w.tolist())
    plain = PanoNetLoss(weighted)(output, semantic, instance)[1]
    all_kept = PanoNetLoss(LossConfig(class_weights=w.tolist(), ohem_keep=1 - 1e-9))(
        output, semantic, instance
    )[1]
    mined = PanoNetLoss(LossConfig(class_weights=w.tolist(), ohem_keep=0.25))(
        output, semantic, instance
    )[1]
    for t, s in enumerate(SCALE_NAMES):
        logits = output.semantic[t].detach()
        sem = downsample_labels(semantic, tuple(logits.shape[-2:]))
        valid = sem != 255
        nll = -torch.log_softmax(logits, dim=1).gather(1, sem.clamp(max=C - 1)[:, None])[:, 0]
        wy, loss = w[sem.clamp(max=C - 1)][valid], nll[valid]
        k = math.ceil(0.25 * int(valid.sum()))
        top = torch.argsort(wy * loss, descending=True)[:k]
        expected = float((wy[top] * loss[top]).sum() / wy[top].sum())
        assert float(mined[f"ce_{s}"]) == pytest.approx(expected, rel=1e-12)
        assert float(mined[f"ce_{s}"]) > float(plain[f"ce_{s}"])  # the hard pixels cost more
        assert float(all_kept[f"ce_{s}"]) == pytest.approx(float(plain[f"ce_{s}"]), rel=1e-12)
        assert float(mined[f"inst_{s}"]) == float(plain[f"inst_{s}"])
    # Gradients reach only the kept pixels' logits.
    out = make_output(14, B=2)
    PanoNetLoss(LossConfig(ohem_keep=0.25))(out, semantic, instance)[0].backward()
    grad = out.semantic[0].grad.abs().sum(dim=1)
    sem = downsample_labels(semantic, tuple(grad.shape[-2:]))
    touched = int((grad > 0).sum())
    assert 0 < touched <= math.ceil(0.25 * int((sem != 255).sum()))


# ---------------------------------------------------------------- (h) bad inputs


def test_bad_inputs_raise_clear_errors():
    semantic, instance = make_labels(15, B=2)
    output = make_output(16, B=2)
    loss = PanoNetLoss()
    cases = [
        # float labels
        ((output, semantic.float(), instance), r"integer dtype.*got torch\.float32"),
        ((output, semantic, instance.double()), r"instance labels of an integer.*torch\.float64"),
        # shapes
        ((output, semantic, instance[:, :-1]), r"same shape.*got \[2, 64, 96\] and \[2, 63, 96\]"),
        ((output, semantic[0], instance[0]), r"shape \(B, H, W\), got shape \[64, 96\]"),
        # labels at another resolution than the network input
        (
            (output, semantic[:, ::2, ::2], instance[:, ::2, ::2]),
            r"input's resolution: labels of size 32x48 go with outputs of sizes "
            r"\[\[8, 12\], \[4, 6\], \[2, 3\]\], got outputs of sizes \[\[16, 24\]",
        ),
        ((output, semantic[:1], instance[:1]), r"batch size 1.*got shape \[2, 19, 16, 24\]"),
        # class ids out of range
        ((output, torch.where(semantic == 3, 19, semantic), instance), r"\[0, 19\).*\[19\]"),
        (((output.semantic[:2], output.embedding), semantic, instance), r"PanoNetOutput"),
        (
            (PanoNetOutput(output.semantic[:2], output.embedding[:2]), semantic, instance),
            r"expected 3 semantic and 3 embedding outputs.*got 2 and 2",
        ),
    ]
    for args, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            loss(*args)

    weighted = PanoNetLoss(LossConfig(class_weights=[1.0] * 18))
    with pytest.raises(ValueError, match=r"expected 19 class weights.*got 18"):
        weighted(output, semantic, instance)


def test_class_id_check_can_move_to_the_host():
    """check_class_ids names the bad ids wherever the labels are; check_labels=False (what the
    Trainer passes after checking its host batch) leaves the loss without a value read, so a bad
    id then fails inside cross-entropy, and good labels give the same loss either way."""
    semantic, instance = make_labels(17, B=2)
    output = make_output(18, B=2)
    check_class_ids(semantic, C, 255)  # valid: no error
    bad = semantic.clone()  # blocks, so that every output scale samples each bad id
    bad[0, :16, :16], bad[0, :16, 16:32], bad[0, 16:32, :16] = -2, 19, 40
    with pytest.raises(
        ValueError, match=r"\[0, 19\) or the ignore index 255, got values \[-2, 19, 40\]"
    ):
        check_class_ids(bad, C, 255)
    with pytest.raises(ValueError, match=r"got values \[-2, 19, 40\]"):
        PanoNetLoss()(output, bad, instance)
    with pytest.raises((IndexError, RuntimeError)):
        PanoNetLoss()(output, bad, instance, check_labels=False)
    checked, _ = PanoNetLoss()(output, semantic, instance)
    unchecked, _ = PanoNetLoss()(output, semantic, instance, check_labels=False)
    assert torch.equal(checked, unchecked)


@settings(max_examples=200)
@given(
    values=st.lists(st.integers(-3, 300), min_size=1, max_size=40),
    num_classes=st.integers(1, 40),
    ignore_index=st.sampled_from([255, 0, 19, 300, -1]),
    dtype=st.sampled_from([torch.uint8, torch.int32, torch.int64]),
)
def test_class_id_check_is_the_definition(values, num_classes, ignore_index, dtype):
    """The fast paths (minimum and maximum; the mod-256 minimum with the ignore index 255) pass
    exactly the maps whose ids all lie in [0, C) or equal the ignore index."""
    if dtype == torch.uint8:
        values = [v % 256 for v in values]
    semantic = torch.tensor(values, dtype=dtype)
    bad = sorted({v for v in values if v != ignore_index and not 0 <= v < num_classes})
    if bad:
        with pytest.raises(ValueError, match=re.escape(f"got values {bad[:10]}")):
            check_class_ids(semantic, num_classes, ignore_index)
    else:
        check_class_ids(semantic, num_classes, ignore_index)


def test_host_class_id_check_reads_only_host_labels():
    """Host labels are checked; labels on another device (meta here, where any read raises)
    pass without a read."""
    bad = torch.tensor([[0, 19]])
    with pytest.raises(ValueError, match=r"got values \[19\]"):
        check_host_class_ids(bad, C, 255)
    check_host_class_ids(bad.to("meta"), C, 255)


def test_unchecked_loss_reads_no_value_from_its_device():
    """On the meta device any read of a tensor's value raises (on a GPU it would be a
    synchronization): the loss with check_labels=False computes its total, terms and gradients
    there; with the check it reads the labels and fails, so the test can tell the two apart."""
    semantic, instance = make_labels(19, B=2)
    output = make_output(20, B=2, dtype=torch.float32)
    meta = PanoNetOutput(
        tuple(x.detach().to("meta").requires_grad_() for x in output.semantic),
        tuple(x.detach().to("meta").requires_grad_() for x in output.embedding),
    )
    loss = PanoNetLoss()
    total, terms = loss(meta, semantic.to("meta"), instance.to("meta"), check_labels=False)
    total.backward()
    assert total.device.type == "meta" and all(x.grad is not None for x in meta.embedding)
    with pytest.raises(RuntimeError, match="meta"):
        loss(meta, semantic.to("meta"), instance.to("meta"))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"tau": (1.0, 0.4)}, r"3 finite weights.*got \(1\.0, 0\.4\)"),
        ({"delta_d": 0.2}, r"delta_d > delta_v = 0\.25.*got delta_d = 0\.2"),
        ({"gamma": -1}, r"gamma finite and >= 0, got -1"),
        ({"class_weights": [0.0] * C}, r"not all 0"),
        ({"class_weights": "abc"}, r"sequence of numbers"),
        ({"dist_norm": "hard"}, r"dist_norm in \('pairs', 'active'\), got 'hard'"),
        ({"ohem_keep": 0.0}, r"0 < ohem_keep <= 1, got 0\.0"),
        ({"ohem_keep": 1.5}, r"0 < ohem_keep <= 1, got 1\.5"),
    ],
)
def test_bad_loss_config_raises(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        LossConfig(**kwargs)


def test_loss_module_moves_class_weights_and_keeps_state_dict_empty():
    loss = PanoNetLoss(LossConfig(class_weights=np.linspace(1, 2, C).tolist()))
    assert loss.class_weights.dtype == torch.float64 and loss.class_weights.shape == (C,)
    assert loss.state_dict() == {}
