"""panonet.ops.discriminative_loss against a float64 reference of the paper's eqs. (2)-(5).

Tolerances. The CPU kernel accumulates in float64; for float32/float16/bfloat16 input the only
rounding besides the summation order is that of the cluster means, stored in float32 (relative
6e-8). Each loss term is a squared hinge of distances between values of size S, so its absolute
error is a small multiple of 6e-8 * S^2: we allow rtol 1e-5 plus atol 1e-5 * max(1, S)^2. The
squared hinges make the loss continuously differentiable (C^1), so gradient errors stay of the
same relative order; we allow rtol 1e-4 plus atol 1e-5 * max|reference gradient|. CUDA
accumulates in float32 with per-block partial sums (relative error ~ sqrt(n) * 6e-8 for n
pixels per cluster), covered by the same bounds for the sizes drawn here. float64 input is held
to 1e-10.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.ops import discriminative_loss
from tests.conftest import DEVICES, requires_cuda
from tests.ops.reference_discriminative_loss import losses_numpy, losses_torch

OP = torch.ops.panonet.discriminative_loss.default
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def make_inputs(
    seed: int,
    B: int,
    D: int,
    H: int,
    W: int,
    n_clusters: int,
    ignore_frac: float = 0.2,
    id_base: int = 26000,
    id_step: int = 7,
    ignore_index: int = -1,
    center_scale: float = 1.0,
    spread: float = 0.3,
    dtype: torch.dtype = torch.float32,
    ids_dtype: torch.dtype = torch.int64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings scattered around one random center per instance id."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, max(n_clusters, 1), size=(B, H, W))
    ids = id_base + id_step * k
    ids[rng.random((B, H, W)) < ignore_frac] = ignore_index
    if n_clusters == 0:
        ids[...] = ignore_index
    centers = rng.normal(scale=center_scale, size=(max(n_clusters, 1), D))
    emb = centers[k].transpose(0, 3, 1, 2) + spread * rng.normal(size=(B, D, H, W))
    return torch.tensor(emb, dtype=dtype), torch.tensor(ids, dtype=ids_dtype)


def value_tolerance(embedding: torch.Tensor) -> dict:
    if embedding.dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-10}
    scale = max(1.0, float(embedding.abs().max())) if embedding.numel() else 1.0
    return {"rtol": 1e-5, "atol": 1e-5 * scale**2}


def grad_tolerance(reference: torch.Tensor, dtype: torch.dtype) -> dict:
    peak = float(reference.abs().max()) if reference.numel() else 0.0
    if dtype == torch.float64:
        return {"rtol": 1e-9, "atol": 1e-9 * peak + 1e-12}
    if dtype in (torch.float16, torch.bfloat16):  # the gradient itself is stored in 8-11 bits
        return {"rtol": 2e-2, "atol": 2e-2 * peak + 1e-6}
    return {"rtol": 1e-4, "atol": 1e-5 * peak + 1e-9}


@st.composite
def loss_cases(draw, max_side: int = 16):
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    ids_dtype = draw(st.sampled_from([torch.int32, torch.int64]))
    id_base = draw(
        st.sampled_from([0, 1, 26000, -5000] + ([2**40] if ids_dtype == torch.int64 else []))
    )
    delta_v = draw(st.floats(0.0, 1.0))
    margins = {
        "delta_v": delta_v,
        "delta_d": draw(st.floats(delta_v + 0.01, 3.0)),
        "delta_r": draw(st.floats(0.0, 4.0)),
        "ignore_index": draw(st.sampled_from([-1, 255, 0])),
    }
    embedding, ids = make_inputs(
        seed=draw(st.integers(0, 2**31 - 1)),
        B=draw(st.integers(1, 3)),
        D=draw(st.integers(1, 12)),
        H=draw(st.integers(1, max_side)),
        W=draw(st.integers(1, max_side)),
        n_clusters=draw(st.integers(0, 64)),
        ignore_frac=draw(st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0])),
        id_base=id_base,
        id_step=draw(st.sampled_from([1, 7, 1000])),
        ignore_index=margins["ignore_index"],
        center_scale=draw(st.floats(0.05, 4.0)),
        spread=draw(st.floats(0.01, 2.0)),
        dtype=dtype,
        ids_dtype=ids_dtype,
    )
    return embedding, ids, margins


def reference_values(embedding, ids, m) -> np.ndarray:
    return losses_numpy(
        embedding.double().cpu().numpy(),
        ids.cpu().numpy(),
        m["delta_v"],
        m["delta_d"],
        m["delta_r"],
        m["ignore_index"],
    )


def check_against_reference(embedding, ids, m, device):
    emb = embedding.clone().to(device).requires_grad_(True)
    losses = discriminative_loss(emb, ids.to(device), **m, reduction="none")
    assert losses.shape == (embedding.shape[0], 3)
    assert losses.dtype == (torch.float64 if embedding.dtype == torch.float64 else torch.float32)
    expected = torch.from_numpy(reference_values(embedding, ids, m))
    torch.testing.assert_close(
        losses.detach().cpu().double(), expected, **value_tolerance(embedding)
    )

    # Gradient of a random weighting of the (B, 3) terms, against autograd of the transcription.
    weights = torch.rand(embedding.shape[0], 3, dtype=torch.float64, generator=torch.Generator())
    (losses * weights.to(device, losses.dtype)).sum().backward()
    ref_emb = embedding.double().requires_grad_(True)
    ref = losses_torch(ref_emb, ids, m["delta_v"], m["delta_d"], m["delta_r"], m["ignore_index"])
    torch.testing.assert_close(ref.detach(), expected, rtol=1e-12, atol=1e-12)
    (ref * weights).sum().backward()
    assert emb.grad.dtype == embedding.dtype
    torch.testing.assert_close(
        emb.grad.cpu().double(), ref_emb.grad, **grad_tolerance(ref_emb.grad, embedding.dtype)
    )


@pytest.mark.parametrize("device", DEVICES)
@hsettings(max_examples=120)
@given(case=loss_cases())
def test_matches_reference(device, case):
    check_against_reference(*case, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_many_clusters_larger_image(device, dtype):
    # 64 clusters over a 96 x 80 image: many runs of equal labels per tile and block.
    embedding, ids = make_inputs(3, B=2, D=12, H=96, W=80, n_clusters=64, dtype=dtype)
    check_against_reference(
        embedding,
        ids,
        {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 1.5, "ignore_index": -1},
        device,
    )


def block_ids(seed: int, grid: tuple[int, int, int], block: int, n_ids: int, base: int):
    """(B, rows * block, cols * block) int64 instance ids, constant over block x block squares
    (grid = (B, rows, cols)): ``base + 1000 * k`` for k < n_ids drawn per square."""
    k = np.random.default_rng(seed).integers(0, n_ids, size=grid)
    return torch.tensor(np.repeat(np.repeat(k, block, axis=1), block, axis=2) * 1000 + base)


@pytest.mark.parametrize("device", DEVICES)
def test_blocky_instance_map(device):
    # Long runs of one id, as in real instance maps (the warp / run fast paths).
    ids = block_ids(0, (3, 6, 8), 16, 5, 24001)
    ids[:, :20] = -1
    embedding = torch.randn(3, 8, 96, 128, generator=torch.Generator().manual_seed(1))
    check_against_reference(
        embedding, ids, {"delta_v": 0.5, "delta_d": 1.5, "delta_r": 0.5, "ignore_index": -1}, device
    )


@pytest.mark.parametrize("device", DEVICES)
def test_pixel_order_does_not_change_losses_or_gradients(device):
    # The same pixels, coherent (blocks: run loops) and shuffled (no two neighbours share an
    # id: the per-pixel loops of fragmented tiles), in float64: every cluster keeps its members,
    # so the losses agree to the rounding of sums taken in another order, and each pixel's
    # gradient moves with it.
    ids = block_ids(2, (2, 4, 8), 24, 7, 26001)
    ids[:, :10] = -1
    embedding = torch.randn(2, 12, 96, 192, dtype=torch.float64)
    perm = torch.randperm(96 * 192, generator=torch.Generator().manual_seed(3))
    shuffled_emb = embedding.flatten(2)[:, :, perm].reshape(embedding.shape)
    shuffled_ids = ids.flatten(1)[:, perm].reshape(ids.shape)
    m = {"delta_v": 0.5, "delta_d": 1.5, "delta_r": 0.5, "ignore_index": -1}
    grads, losses = [], []
    for emb, i in ((embedding, ids), (shuffled_emb, shuffled_ids)):
        e = emb.clone().to(device).requires_grad_(True)
        loss = discriminative_loss(e, i.to(device), **m, reduction="none")
        loss.sum().backward()
        losses.append(loss.detach().cpu())
        grads.append(e.grad.cpu())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        grads[1], grads[0].flatten(2)[:, :, perm].reshape(embedding.shape), rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B", [1, 9])
def test_mean_reduction_skips_images_without_clusters(device, B):
    embedding, ids = make_inputs(5, B=B, D=4, H=10, W=12, n_clusters=6)
    ids[::2] = -1  # every other image has no cluster
    m = {"delta_v": 0.2, "delta_d": 1.0, "delta_r": 0.5, "ignore_index": -1}
    w = {"alpha": 1.0, "beta": 0.7, "gamma": 0.1}
    emb = embedding.clone().to(device).requires_grad_(True)
    loss = discriminative_loss(emb, ids.to(device), **m, **w)
    per_image = reference_values(embedding, ids, m) @ np.array([w["alpha"], w["beta"], w["gamma"]])
    has_cluster = (ids != -1).flatten(1).any(1).numpy()
    expected = per_image[has_cluster].mean() if has_cluster.any() else 0.0
    assert loss.shape == ()
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-5, abs_tol=1e-6)
    loss.backward()
    assert torch.all(emb.grad[torch.from_numpy(~has_cluster)] == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_no_cluster_anywhere_gives_zero_loss_and_gradient(device):
    embedding = torch.randn(2, 3, 5, 6, device=device, requires_grad=True)
    ids = torch.full((2, 5, 6), -1, device=device)
    loss = discriminative_loss(embedding, ids)
    assert float(loss) == 0.0
    loss.backward()
    assert torch.count_nonzero(embedding.grad) == 0
    none = discriminative_loss(embedding, ids, reduction="none")
    assert torch.count_nonzero(none) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_all_pixels_one_cluster(device):
    embedding, ids = make_inputs(9, B=2, D=5, H=7, W=9, n_clusters=1, ignore_frac=0.0)
    m = {"delta_v": 0.1, "delta_d": 1.0, "delta_r": 0.2, "ignore_index": -1}
    out = discriminative_loss(embedding.to(device), ids.to(device), **m, reduction="none")
    assert torch.all(out[:, 1] == 0)  # L_dist vanishes for C = 1
    check_against_reference(embedding, ids, m, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 4, 5, 6), (2, 4, 0, 6), (2, 4, 5, 0), (1, 1, 1, 1)], ids=str)
def test_empty_and_tiny_inputs(device, shape):
    B, D, H, W = shape
    embedding = torch.randn(shape, device=device, requires_grad=True)
    ids = torch.zeros((B, H, W), dtype=torch.int64, device=device)
    out = discriminative_loss(embedding, ids, reduction="none")
    assert out.shape == (B, 3)
    assert torch.count_nonzero(out) == 0  # empty, or one single-pixel cluster (all terms 0)
    loss = discriminative_loss(embedding, ids)
    assert float(loss) == 0.0
    loss.backward()
    assert embedding.grad.shape == shape


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    embedding, ids = make_inputs(11, B=3, D=6, H=14, W=10, n_clusters=9)
    m = {"delta_v": 0.3, "delta_d": 1.2, "delta_r": 1.0, "ignore_index": -1}
    emb, lab = embedding.to(device), ids.to(device)
    expected = discriminative_loss(emb, lab, **m, reduction="none")
    # channels_last embedding, transposed-then-transposed-back ids, and strided batch slices.
    emb_cl = emb.contiguous(memory_format=torch.channels_last)
    lab_t = lab.transpose(1, 2).contiguous().transpose(1, 2)
    assert not emb_cl.is_contiguous() and not lab_t.is_contiguous()
    torch.testing.assert_close(
        discriminative_loss(emb_cl, lab_t, **m, reduction="none"), expected, rtol=1e-6, atol=1e-7
    )
    strided_emb = torch.cat([emb, emb])[::2]  # images 0, 2, 1 with a doubled batch stride
    strided_lab = torch.cat([lab, lab])[::2]
    assert not strided_emb.is_contiguous() and not strided_lab.is_contiguous()
    torch.testing.assert_close(
        discriminative_loss(strided_emb, strided_lab, **m, reduction="none"),
        expected[[0, 2, 1]],
        rtol=1e-6,
        atol=1e-7,
    )
    g = emb_cl.detach().requires_grad_(True)
    discriminative_loss(g, lab_t, **m).backward()
    g_ref = emb.detach().requires_grad_(True)
    discriminative_loss(g_ref, lab, **m).backward()
    torch.testing.assert_close(g.grad, g_ref.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_relabelling_is_invariant_to_id_values(device):
    # The loss depends only on which pixels share an id, not on the id values.
    embedding, ids = make_inputs(13, B=2, D=3, H=9, W=11, n_clusters=7, id_base=0, id_step=1)
    m = {"delta_v": 0.2, "delta_d": 1.0, "delta_r": 0.5, "ignore_index": -1}
    base = discriminative_loss(embedding.to(device), ids.to(device), **m, reduction="none")
    perm = torch.tensor([26001, 5, 2**33, -7, 33000, 0, 123456789])
    remapped = torch.where(ids >= 0, perm[ids.clamp(min=0)], -1)
    other = discriminative_loss(embedding.to(device), remapped.to(device), **m, reduction="none")
    torch.testing.assert_close(other, base, rtol=1e-6, atol=1e-7)


@hsettings(max_examples=15)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_clusters=st.integers(0, 6),
    delta_v=st.floats(0.0, 0.5),
    delta_r=st.floats(0.0, 1.0),
)
def test_gradcheck_float64(seed, n_clusters, delta_v, delta_r):
    embedding, ids = make_inputs(
        seed, B=2, D=3, H=4, W=5, n_clusters=n_clusters, dtype=torch.float64, spread=0.5
    )
    for device in DEVICES:
        emb = embedding.clone().to(device).requires_grad_(True)
        lab = ids.to(device)
        assert torch.autograd.gradcheck(
            lambda e, lab=lab: discriminative_loss(
                e, lab, delta_v=delta_v, delta_d=1.0, delta_r=delta_r, reduction="none"
            ),
            (emb,),
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_clusters", [0, 1, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(device, n_clusters, dtype):
    embedding, ids = make_inputs(17, B=2, D=4, H=6, W=7, n_clusters=n_clusters, dtype=dtype)
    emb = embedding.clone().to(device).requires_grad_(True)
    # On CUDA the per-cluster outputs (means, mu_grads, counts) have a row per pixel, of which
    # only the first offsets[B] are written (the count stays on the GPU): the rest is whatever
    # the allocator held, so opcheck's comparison of two runs' outputs cannot apply there.
    # test_torch_compile_matches_eager compares what is defined: the losses and the gradient.
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    if device == "cpu":
        utils += ("test_aot_dispatch_dynamic",)
    torch.library.opcheck(OP, (emb, ids.to(device), 0.25, 1.0, 6.0, -1), test_utils=utils)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_matches_eager(device):
    embedding, ids = make_inputs(19, B=2, D=5, H=12, W=10, n_clusters=8)
    emb, lab = embedding.to(device), ids.to(device)

    def loss_fn(e, i):
        return discriminative_loss(e, i, delta_r=1.0) * 2.0

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    e1 = emb.clone().requires_grad_(True)
    e2 = emb.clone().requires_grad_(True)
    out_c, out_e = compiled(e1, lab), loss_fn(e2, lab)
    torch.testing.assert_close(out_c, out_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(e1.grad, e2.grad)


# ---------------------------------------------------------------------------------------------
# Bad input: an exception whose message states what was expected and what arrived.


def _inputs():
    return torch.randn(2, 3, 4, 5), torch.zeros(2, 4, 5, dtype=torch.int64)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (
            lambda e, i: (e[0], i),
            ValueError,
            r"expected embedding of shape \(B, D, H, W\), got a 3-D",
        ),
        (
            lambda e, i: (e, i[0]),
            ValueError,
            r"expected instance_ids of shape \(B, H, W\), got a 2-D",
        ),
        (
            lambda e, i: (e, i[:, :3]),
            ValueError,
            r"to match embedding of shape \[2, 3, 4, 5\], got \[2, 3, 5\]",
        ),
        (lambda e, i: (e[:1], i), ValueError, r"to match embedding .* got \[2, 4, 5\]"),
        (
            lambda e, i: (e, i.float()),
            TypeError,
            r"integer dtype \(int32 or int64\), got (Float|torch.float32)",
        ),
        (
            lambda e, i: (e, i.to(torch.uint8)),
            TypeError,
            r"int32 or int64\), got (Byte|torch.uint8)",
        ),
        (
            lambda e, i: (e.long(), i),
            TypeError,
            r"float16, bfloat16, float32 or float64, got (Long|torch.int64)",
        ),
        (lambda e, i: (e[:, :0], i), ValueError, r"embedding dimension D >= 1"),
        (lambda e, i: (e, i.to("meta")), ValueError, r"same device, got cpu and meta"),
    ],
)
def test_bad_tensors(make, error, pattern):
    embedding, ids = make(*_inputs())
    with pytest.raises(error, match=pattern):
        discriminative_loss(embedding, ids)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("where", ["cluster", "ignored"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embedding(device, where, value):
    embedding, ids = _inputs()
    ids[0, 0, 0] = -1
    pixel = (0, 0, 0) if where == "ignored" else (1, 2, 3)
    embedding[pixel[0], 1, pixel[1], pixel[2]] = value
    with pytest.raises(ValueError, match=r"expected a finite embedding, got NaN or Inf"):
        discriminative_loss(embedding.to(device), ids.to(device))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"delta_v": -0.1}, r"expected delta_v to be a finite number >= 0, got -0.1"),
        ({"delta_d": -1.0}, r"expected delta_d to be a finite number >= 0, got -1"),
        ({"delta_r": -6.0}, r"expected delta_r to be a finite number >= 0, got -6"),
        ({"delta_v": float("nan")}, r"expected delta_v to be a finite number >= 0, got nan"),
        (
            {"delta_v": 1.0, "delta_d": 1.0},
            r"expected delta_d > delta_v .* got delta_d=1 and delta_v=1",
        ),
        ({"delta_v": 0.5, "delta_d": 0.25}, r"expected delta_d > delta_v"),
        ({"reduction": "sum"}, r"expected reduction in \('mean', 'none'\), got 'sum'"),
        ({"alpha": -1.0}, r"expected alpha to be a finite number >= 0, got -1.0"),
        ({"gamma": float("inf")}, r"expected gamma to be a finite number >= 0, got inf"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        discriminative_loss(*_inputs(), **kwargs)


@requires_cuda
def test_inputs_on_different_devices_cuda():
    embedding, ids = _inputs()
    with pytest.raises(ValueError, match=r"same device, got cuda:0 and cpu"):
        discriminative_loss(embedding.cuda(), ids)
    with pytest.raises(ValueError, match=r"same device, got cpu and cuda:0"):
        discriminative_loss(embedding, ids.cuda())


@requires_cuda
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda_matches_cpu(dtype):
    embedding, ids = make_inputs(23, B=3, D=12, H=64, W=96, n_clusters=40, dtype=dtype)
    m = {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 1.0, "ignore_index": -1}
    cpu = discriminative_loss(embedding, ids, **m, reduction="none")
    gpu = discriminative_loss(embedding.cuda(), ids.cuda(), **m, reduction="none")
    torch.testing.assert_close(gpu.cpu(), cpu, **value_tolerance(embedding))


@requires_cuda
def test_cuda_wide_id_range_uses_sort_path():
    # Ids spanning ~2^62 cannot use the dense table; results must not change.
    embedding, ids = make_inputs(29, B=2, D=4, H=20, W=30, n_clusters=5, id_base=0, id_step=1)
    wide = torch.where(ids >= 0, ids * (2**60), -1)
    m = {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 1.0, "ignore_index": -1}
    expected = discriminative_loss(embedding, ids, **m, reduction="none")
    got = discriminative_loss(embedding.cuda(), wide.cuda(), **m, reduction="none")
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-6)


@requires_cuda
def test_cuda_many_clusters_use_global_accumulators():
    # 3000 clusters in one image exceed the shared-memory budget: the global-atomics path.
    embedding, ids = make_inputs(31, B=1, D=12, H=128, W=128, n_clusters=3000, ignore_frac=0.0)
    m = {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 1.0, "ignore_index": -1}
    cpu = discriminative_loss(embedding, ids, **m, reduction="none")
    gpu = discriminative_loss(embedding.cuda(), ids.cuda(), **m, reduction="none")
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_unchecked_non_finite_embedding_gives_non_finite_losses(device):
    embedding, ids = _inputs()
    embedding[1, 1, 2, 3] = float("nan")
    losses = discriminative_loss(
        embedding.to(device), ids.to(device), reduction="none", check_inputs=False
    )
    assert torch.isfinite(losses[0]).all() and not torch.isfinite(losses[1]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_unchecked_non_finite_ignored_pixels_change_nothing(device):
    # Ignored pixels belong to no cluster: whatever they hold, the losses and every other
    # pixel's gradient are those of the clean input, and their own gradient is 0. Shuffled ids
    # take the per-pixel loops (fragmented tiles).
    embedding, ids = make_inputs(8, B=2, D=6, H=32, W=48, n_clusters=9, ignore_frac=0.3)
    dirty = embedding.clone()
    dirty.permute(0, 2, 3, 1)[ids == -1] = float("nan")
    out = []
    for emb in (embedding, dirty):
        e = emb.to(device).requires_grad_(True)
        loss = discriminative_loss(e, ids.to(device), reduction="none", check_inputs=False)
        loss.sum().backward()
        out.append((loss.detach().cpu(), e.grad.cpu()))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=0, atol=0)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=0, atol=0)
    assert torch.count_nonzero(out[1][1].permute(0, 2, 3, 1)[ids == -1]) == 0


@requires_cuda
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_cuda_forward_and_backward_never_synchronize(ids_dtype):
    embedding, ids = make_inputs(37, B=2, D=12, H=64, W=96, n_clusters=30, ids_dtype=ids_dtype)
    embedding = embedding.cuda().requires_grad_(True)
    ids = ids.cuda()
    m = {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 1.0, "ignore_index": -1}
    discriminative_loss(embedding, ids, **m, check_inputs=False).backward()  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = discriminative_loss(embedding, ids, **m, reduction="none", check_inputs=False)
        losses.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = discriminative_loss(embedding.detach().cpu(), ids.cpu(), **m, reduction="none")
    torch.testing.assert_close(losses.detach().cpu(), expected, rtol=1e-4, atol=1e-5)


@requires_cuda
def test_cuda_refuses_deterministic_mode():
    embedding, ids = make_inputs(41, B=1, D=4, H=16, W=16, n_clusters=3)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match="panonet::discriminative_loss"):
            discriminative_loss(embedding.cuda(), ids.cuda())
    finally:
        torch.use_deterministic_algorithms(before)
