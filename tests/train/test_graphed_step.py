"""GraphedTrainStep: a training step captured as a CUDA graph trains as the eager step does,
undoes its warm-up, follows the learning-rate schedule and never waits for the host; and
build_optimizer(capturable=True). Most tests need a GPU."""

import copy

import pytest
import torch

from panonet.models import PanoNet
from panonet.sync_points import cuda_syncs
from panonet.train import OptimConfig, PanoNetLoss, build_optimizer, build_scheduler, graphed_step
from panonet.train.batches import batch_to_device
from panonet.train.forward import forward_and_loss
from panonet.train.graphed_step import (
    GraphedTrainStep,
    _restore_training_state,
    _training_state,
)
from tests.conftest import requires_cuda

B, H, W = 2, 64, 128


def make_batch(seed: int, *, pinned: bool = False) -> dict:
    """A collated training batch: crops of H x W inside 96 x 160 full images, three instances
    of class 13 (car) per image, some void pixels."""
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, 11, (B, H, W), generator=g)
    semantic[:, :4] = 255
    instance = torch.full((B, H, W), -1, dtype=torch.int64)
    for k, x0 in enumerate((8, 48, 88)):
        semantic[:, 20:40, x0 : x0 + 24] = 13
        instance[:, 20:40, x0 : x0 + 24] = 26000 + k
    batch = {
        "image": torch.randint(0, 256, (B, 3, H, W), dtype=torch.uint8, generator=g),
        "semantic": semantic,
        "instance": instance,
        "offset": torch.tensor([[0, 0], [32, 32]]),
        "full_size": torch.tensor([[96, 160], [96, 160]]),
    }
    return {k: v.pin_memory() for k, v in batch.items()} if pinned else batch


def setup(optimizer: str = "adamw"):
    torch.manual_seed(0)
    model = PanoNet(width=0.25, use_coords=True).cuda().train()
    model = model.to(memory_format=torch.channels_last)
    cfg = OptimConfig(name=optimizer, max_steps=100)
    opt = build_optimizer(model, cfg, capturable=True)
    return model, PanoNetLoss().cuda(), opt, build_scheduler(opt, cfg)


def eager_step(model, loss_fn, optimizer, batch) -> torch.Tensor:
    """The same step without a graph (the Trainer's order of work)."""
    device = next(model.parameters()).device
    images, semantic, instance, offset, full_size = batch_to_device(batch, device)
    optimizer.zero_grad(set_to_none=True)
    total, terms = loss_fn(model(images, offset, full_size), semantic, instance)
    total.backward()
    optimizer.step()
    return torch.stack(list(terms.values())).float()


def test_needs_a_cuda_model_and_a_capturable_optimizer():
    model = PanoNet(width=0.25)
    with pytest.raises(ValueError, match="expected a model on a CUDA device, got cpu"):
        GraphedTrainStep(model, PanoNetLoss(), build_optimizer(model, OptimConfig()), {})
    with pytest.raises(ValueError, match="capturable=True needs the parameters on a CUDA device"):
        build_optimizer(model, OptimConfig(), capturable=True)


@pytest.mark.parametrize("optimizer", ["adamw", "adadelta"])
@pytest.mark.parametrize("state_before", [False, True])
def test_warmup_state_is_put_back_in_place(optimizer, state_before):
    """What undoes the warm-up, on the CPU: weights, BatchNorm buffers and optimizer state
    return to their values in the same tensors (the graph holds their addresses); state the
    warm-up created (a fresh run) is zeroed, state a resumed run had is restored."""
    torch.manual_seed(0)
    model = PanoNet(width=0.25, use_coords=True).train()
    opt = build_optimizer(model, OptimConfig(name=optimizer))
    loss_fn = PanoNetLoss()
    batch = batch_to_device(make_batch(0), torch.device("cpu"))

    def train_step():
        opt.zero_grad(set_to_none=True)
        forward_and_loss(model, loss_fn, *batch)[0].backward()
        opt.step()

    if state_before:
        train_step()
    values = {k: v.clone() for k, v in model.state_dict().items()}
    opt_values = {
        (id(p), k): v.clone()
        for p, st in opt.state.items()
        for k, v in st.items()
        if torch.is_tensor(v)
    }
    tensors = [t.data_ptr() for t in [*model.parameters(), *model.buffers()]]
    saved = _training_state(model, opt)
    train_step()
    train_step()
    _restore_training_state(model, opt, saved)
    assert [t.data_ptr() for t in [*model.parameters(), *model.buffers()]] == tensors
    for key, value in model.state_dict().items():
        assert torch.equal(value, values[key]), key
    for p, state in opt.state.items():
        for key, value in state.items():
            if torch.is_tensor(value):
                want = opt_values.get((id(p), key), torch.zeros_like(value))
                assert torch.equal(value, want), key


class EagerGraph:
    """A stand-in CUDA graph: replay() runs the captured function again, eagerly, and writes
    its result into the captured output, as a replay rewrites the graph's buffers."""

    def __init__(self, fn, out) -> None:
        self.fn, self.out = fn, out

    def replay(self) -> None:
        self.out.copy_(self.fn())


def eager_capture(fn, device, *, warmup=2):
    """capture() without CUDA: the warm-up calls, then the "captured" call, which here runs
    (a real capture only records it) and so is one more step for the undo to take back."""
    for _ in range(max(1, warmup)):
        fn()
    out = fn()
    return EagerGraph(fn, out), out


@pytest.mark.parametrize("optimizer", ["adamw", "adadelta"])
def test_graphed_step_logic_on_the_cpu(monkeypatch, optimizer):
    """GraphedTrainStep with the CUDA parts replaced (an eager capture, no device checks): four
    runs give the eager steps' loss terms and weights exactly (the CPU is deterministic), so
    the inputs' copies, the captured work and the undone warm-up (here four steps) are right."""
    monkeypatch.setattr(graphed_step, "capture", eager_capture)
    monkeypatch.setattr(graphed_step, "_check_arguments", lambda *a: torch.device("cpu"))
    cfg = OptimConfig(name=optimizer, lr=0.01, max_steps=100)
    torch.manual_seed(0)
    model = PanoNet(width=0.25, use_coords=True).train()
    twin = copy.deepcopy(model)
    opt, twin_opt = build_optimizer(model, cfg), build_optimizer(twin, cfg)
    loss_fn = PanoNetLoss()
    step = GraphedTrainStep(model, loss_fn, opt, make_batch(0))
    for i in range(4):
        batch = make_batch(i)
        got = step.run(batch)
        want = eager_step(twin, loss_fn, twin_opt, batch)
        assert torch.equal(got, want), i
    assert step.names[-1] == "total" and len(step.names) == got.numel()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


@requires_cuda
def test_bad_arguments_raise_clear_errors():
    model, loss_fn, opt, _ = setup()
    plain = build_optimizer(model, OptimConfig(name="adamw"))
    with pytest.raises(ValueError, match="optimizer built with capturable=True"):
        GraphedTrainStep(model, loss_fn, plain, make_batch(0))
    with pytest.raises(ValueError, match="float16 needs a GradScaler"):
        GraphedTrainStep(model, loss_fn, opt, make_batch(0), amp_dtype=torch.float16)
    with pytest.raises(ValueError, match=r"missing \['offset', 'full_size'\]"):
        batch = make_batch(0)
        del batch["offset"], batch["full_size"]
        GraphedTrainStep(model, loss_fn, opt, batch)
    step = GraphedTrainStep(model, loss_fn, opt, make_batch(0))
    small = {k: v[:1] for k, v in make_batch(1).items()}
    with pytest.raises(ValueError, match=r"'image' of shape \[2, 3, 64, 128\].*got \[1, 3"):
        step.run(small)
    bad = make_batch(1)
    bad["semantic"][0, 0, 0] = 40
    with pytest.raises(ValueError, match=r"got values \[40\]"):
        step.run(bad)
    bad = make_batch(1)
    bad["offset"][1] = torch.tensor([40, 0])
    with pytest.raises(ValueError, match="crop 1 at"):
        step.run(bad)


@requires_cuda
@pytest.mark.parametrize("optimizer", ["adamw", "adadelta"])
def test_warmup_is_undone(optimizer):
    model, loss_fn, opt, _ = setup(optimizer)
    before = copy.deepcopy(model.state_dict())
    GraphedTrainStep(model, loss_fn, opt, make_batch(0))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for state in opt.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                assert not value.any(), "optimizer state back at its initial zeros"


@requires_cuda
@pytest.mark.parametrize("optimizer", ["adamw", "adadelta"])
def test_graphed_steps_train_as_the_eager_steps(optimizer):
    """Four steps on one batch: the graphed step's loss terms equal the eager step's at every
    step, up to the float atomics of the loss op and cuDNN (relative 1e-4, far below how much
    the updates move the loss; both are asserted). Weights are not compared one by one: a
    parameter without gradient (noise-level) gets an AdamW step of either sign."""
    cfg = OptimConfig(name=optimizer, lr=0.01, max_steps=100)
    torch.manual_seed(0)
    model = PanoNet(width=0.25, use_coords=True).cuda().train()
    model = model.to(memory_format=torch.channels_last)
    twin = copy.deepcopy(model)
    opt, twin_opt = (build_optimizer(m, cfg, capturable=True) for m in (model, twin))
    sched, twin_sched = build_scheduler(opt, cfg), build_scheduler(twin_opt, cfg)
    loss_fn = PanoNetLoss().cuda()
    batch = make_batch(1)
    step = GraphedTrainStep(model, loss_fn, opt, batch)
    totals = []
    for _ in range(4):
        got = step.run(batch).clone()
        want = eager_step(twin, loss_fn, twin_opt, batch)
        sched.step()
        twin_sched.step()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
        totals.append(float(want[-1]))
    assert abs(totals[-1] - totals[0]) > 1e-3 * abs(totals[0]), totals


@requires_cuda
def test_the_schedule_reaches_the_replayed_update():
    """At learning rate 0 (the poly schedule's end) a replayed AdamW step leaves the weights
    exactly as they were: the rate is read from the device tensor the schedule fills."""
    model, loss_fn, opt, sched = setup()
    step = GraphedTrainStep(model, loss_fn, opt, make_batch(0))
    step.run(make_batch(1))
    for _ in range(100):
        sched.step()
    assert all(float(g["lr"]) == 0.0 for g in opt.param_groups)
    weights = [p.detach().clone() for p in model.parameters()]
    step.run(make_batch(2))
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))


@requires_cuda
@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_a_replayed_step_does_not_wait_for_the_device(amp_dtype):
    model, loss_fn, opt, _ = setup()
    step = GraphedTrainStep(model, loss_fn, opt, make_batch(0, pinned=True), amp_dtype=amp_dtype)
    batch = make_batch(1, pinned=True)
    assert cuda_syncs(lambda: step.run(batch)) == []
    assert torch.isfinite(step.run(batch)).all()
    assert step.names[-1] == "total" and len(step.names) == step.run(batch).numel()
