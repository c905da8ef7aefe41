"""The training loop on the real PanoNet: Ctrl-C checkpoint, exact resumption across the stage
switch, the stage-2 surgery during training, and the JSONL log.

Tiny synthetic scenes (64 x 128, crops 64 x 96 after random scaling), 2 + 2 steps of batch 2.
"""

import copy
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from panonet.data.synthetic import generate
from panonet.models import load_model
from panonet.train import OptimConfig, TrainConfig
from panonet.train import step as step_module
from panonet.train.batches import batch_to_device
from panonet.train.forward import forward_and_loss
from panonet.train.trainer import CHECKPOINT_KIND, Trainer
from tests.conftest import requires_cuda


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate(root, train=6, val=1, size=(64, 128), seed=0, progress=False)
    return root


def small_config(root, **changes) -> TrainConfig:
    base = {
        "data_root": str(root),
        "crop_size": (64, 96),
        # Random scaling: every image of a batch has its own full size (per-image coordinates).
        "scale": (0.75, 1.25),
        "batch_size": 2,
        "workers": 0,
        "stage1_steps": 2,
        "stage2_steps": 2,
        "val_every": 2,
        "val_images": 1,
        "checkpoint_every": 0,
        "device": "cpu",
        "progress": False,
    }
    return TrainConfig(**{**base, **changes})


class InterruptOnCall(nn.Module):
    """The loss, except that its n-th training call raises KeyboardInterrupt (a Ctrl-C in the
    middle of a step: after the forward pass, before backward and the update)."""

    def __init__(self, loss: nn.Module, n: int) -> None:
        super().__init__()
        self.loss, self.n, self.calls = loss, n, 0

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.n:
                raise KeyboardInterrupt
        return self.loss(*args, **kwargs)


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def metrics(records):
    """Train and val records without the wall-clock fields."""
    drop = ("time", "elapsed")
    return [
        {k: v for k, v in r.items() if k not in drop}
        for r in records
        if r["kind"] in ("train", "val")
    ]


def assert_same(a, b, where=""):
    """Exact equality of nested checkpoint contents (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_interrupt_resume_and_stage_switch_reproduce_the_uninterrupted_run(tmp_path, scenes):
    cfg = small_config(scenes)
    straight = Trainer(cfg, tmp_path / "a").train()
    assert straight == tmp_path / "a" / "checkpoints" / "final.pt"

    # --- Ctrl-C during step 2: the state after step 1 is saved, then the interrupt propagates.
    out = tmp_path / "b"
    ckpts = out / "checkpoints"
    trainer = Trainer(cfg, out)
    trainer.loss_fn = InterruptOnCall(trainer.loss_fn, 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    ckpt = torch.load(ckpts / "last.pt", map_location="cpu", weights_only=True)
    assert (ckpt["kind"], ckpt["step"], ckpt["stage"]) == (CHECKPOINT_KIND, 1, 1)
    assert {"model", "config", "optimizer", "scheduler", "scaler", "rng", "train_config"} <= set(
        ckpt
    )
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python"}
    # 6 images / batch 2 = 3 steps per epoch; step 1 done -> batch 1 of epoch 0 comes next.
    assert ckpt["data"] == {
        "seed": 0,
        "epoch": 0,
        "batch_in_epoch": 1,
        "steps_per_epoch": 3,
        "global_batch": 2,
        "world_size": 1,
        "batch_per_process": 2,
    }
    assert TrainConfig(**ckpt["train_config"]) == cfg

    # --- A new trainer (what a new process builds) resumes and stops at the end of stage 1.
    trainer = Trainer(cfg, out, resume="auto")
    assert (trainer.step, trainer.stage) == (1, 1)
    trainer.train(stop_after=2)
    assert (trainer.step, trainer.stage) == (2, 2)

    # Stage-2 surgery during training: the fresh stage-2 model holds the stage-1 weights with
    # zero coordinate channels, so its first forward is the stage-1 model's output.
    # Both in the trainer's channels_last layout, so that only the surgery can differ.
    stage1 = load_model(ckpts / "stage1.pt").to(memory_format=torch.channels_last)
    stage2 = copy.deepcopy(trainer.model).eval()
    assert not stage1.use_coords and stage2.use_coords
    stage1_state, stage2_state = stage1.state_dict(), stage2.state_dict()
    for key in stage2.input_conv_keys():
        w = stage2_state[key]
        assert w.shape[1] == 5 and torch.equal(w[:, 3:], torch.zeros_like(w[:, 3:])), key
        assert torch.equal(w[:, :3], stage1_state[key]), key
    assert all(torch.equal(stage2_state[k], v) for k, v in stage1_state.items() if v.dim() != 4)
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    offset = torch.tensor([[0, 0], [10, 30]])
    full_size = torch.tensor([[64, 96], [80, 160]])
    with torch.no_grad():
        out1, out2 = stage1(images), stage2(images, offset, full_size)
    for a, b in zip(out1.semantic + out1.embedding, out2.semantic + out2.embedding, strict=True):
        # Zero weights add exact zeros; only the summation order over 5 instead of 3 input
        # channels may differ (float32 rounding).
        scale = float(a.abs().max())
        assert float((a - b).abs().max()) <= 1e-6 * scale

    # --- Resume inside stage 2 (from the checkpoint written at the switch), stop at step 3,
    # resume again and finish.
    trainer = Trainer(cfg, out, resume=ckpts / "last.pt")
    assert (trainer.step, trainer.stage, trainer.model.use_coords) == (2, 2, True)
    trainer.train(stop_after=3)
    trainer = Trainer(cfg, out, resume="auto")
    assert trainer.train() == ckpts / "final.pt"
    # The coordinate channels were trained in stage 2.
    w = trainer.model.state_dict()[trainer.model.input_conv_keys()[0]]
    assert float(w[:, 3:].abs().sum()) > 0

    # --- Identical to the uninterrupted run: every logged loss term, lr and validation
    # metric, and the final weights and optimizer state, bit for bit.
    log_a, log_b = read_log(tmp_path / "a" / "metrics.jsonl"), read_log(out / "metrics.jsonl")
    assert metrics(log_b) == metrics(log_a)
    final_a = torch.load(straight, map_location="cpu", weights_only=True)
    final_b = torch.load(ckpts / "final.pt", map_location="cpu", weights_only=True)
    for key in ("model", "config", "optimizer", "scheduler", "step", "stage"):
        assert_same(final_a[key], final_b[key], key)

    # --- The JSONL log.
    train = [r for r in log_a if r["kind"] == "train"]
    assert [(r["step"], r["stage"], r["epoch"]) for r in train] == [
        (1, 1, 0),
        (2, 1, 0),
        (3, 2, 0),
        (4, 2, 1),
    ]
    # Each stage has its own poly schedule over its 2 steps: 0.003, 0.003 * 0.5^0.9.
    expected_lr = [0.003, 0.003 * 0.5**0.9] * 2
    assert [r["lr"] for r in train] == pytest.approx(expected_lr, rel=1e-12)
    for r in train:
        for key in ("total", "sem", "inst", "ce_1/4", "var_1/8", "dist_1/16", "reg_1/4", "time"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), key
        assert r["total"] == pytest.approx(r["sem"] + r["inst"], rel=1e-5)
    val = [r for r in log_a if r["kind"] == "val"]
    assert [(r["step"], r["stage"], r["images"]) for r in val] == [(2, 1, 1), (4, 2, 1)]
    assert all(0 <= r["miou"] <= 1 and len(r["iou"]) == 19 for r in val)
    events = [r["event"] for r in log_b if r["kind"] == "event"]
    assert events == [
        "start",
        "interrupt",
        "resume",
        "stage1_done",
        "stage2",
        "stop",
        "resume",
        "stop",
        "resume",
        "done",
    ]


def test_batchnorm_recalibration_averages_the_training_images(scenes, tmp_path):
    """recalibrate_batchnorm leaves every BN's running mean equal to the average over the
    recalibration batches of that layer's batch mean (first BN checked against a hook)."""
    trainer = Trainer(small_config(scenes, bn_recalibration_images=4), tmp_path / "run")
    bn = next(m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d))
    means = []
    handle = bn.register_forward_hook(
        lambda module, inputs, output: means.append(inputs[0].mean(dim=(0, 2, 3)))
    )
    trainer.recalibrate_batchnorm()
    handle.remove()
    assert len(means) == 2, "4 images in batches of 2"
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-6)
    assert bn.momentum == 0.1, "momentum restored"
    assert trainer.model.training, "back in train mode"
    # Off by default, and with frozen BN: the statistics do not move.
    for changes, where in (({}, "r2"), ({"bn_recalibration_images": 4, "freeze_bn": True}, "r3")):
        other = Trainer(small_config(scenes, **changes), tmp_path / where)
        other_bn = next(m for m in other.model.modules() if isinstance(m, nn.BatchNorm2d))
        before = other_bn.running_mean.clone()
        other.recalibrate_batchnorm()
        assert torch.equal(other_bn.running_mean, before), changes


def test_resume_is_exact_with_batchnorm_recalibration(scenes, tmp_path):
    """The recalibration at the stage switch and at the end is reproduced by a resumed run."""
    cfg = small_config(scenes, bn_recalibration_images=2, val_every=0)
    straight = Trainer(cfg, tmp_path / "straight")
    straight.train()
    first = Trainer(cfg, tmp_path / "chain")
    first.train(stop_after=2)
    resumed = Trainer(cfg, tmp_path / "chain", resume="auto")
    resumed.train()
    a = torch.load(tmp_path / "straight" / "checkpoints" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "chain" / "checkpoints" / "final.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    events = [r.get("event") for r in read_log(tmp_path / "straight" / "metrics.jsonl")]
    assert events.count("bn_recalibrated") == 2, "at the end of each stage"


def test_stage2_without_coordinates_is_the_table_iii_ablation(scenes, tmp_path):
    """stage2_coords=False: stage 2 starts from the stage-1 weights unchanged (no surgery), runs
    the same number of steps with a new optimizer, and the final model has no coordinate input;
    a resumed run gets the same kind of model back."""
    cfg = small_config(scenes, stage2_coords=False, val_every=0)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.train(stop_after=2)
    stage1 = torch.load(tmp_path / "run" / "checkpoints" / "stage1.pt", weights_only=True)
    resumed = Trainer(cfg, tmp_path / "run", resume="auto")
    assert resumed.stage == 2 and not resumed.model.use_coords
    for key, value in stage1["model"].items():
        assert torch.equal(resumed.model.state_dict()[key].cpu(), value), key
    resumed.train()
    final = load_model(tmp_path / "run" / "checkpoints" / "final.pt")
    assert not final.use_coords
    assert final.instance.in_channels == 3
    events = [r.get("event") for r in read_log(tmp_path / "run" / "metrics.jsonl")]
    assert "stage2" in events and events[-1] == "done"


def test_coord_output_and_detail_reach_the_stage2_model_and_its_checkpoint(scenes, tmp_path):
    """coord_output: stage 1 (no coordinates) adds nothing; the stage-2 model and the final
    checkpoint carry the factor; detail is in both stages."""
    cfg = small_config(scenes, coord_output=4.0, detail="both", val_every=0)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.train()
    assert trainer.model.use_coords and trainer.model.coord_output == 4.0
    final = load_model(tmp_path / "run" / "checkpoints" / "final.pt")
    assert final.use_coords and final.coord_output == 4.0
    # detail: both stages' models have the third fusion (stage 2 starts from stage 1's).
    assert final.detail == "both"
    assert load_model(tmp_path / "run" / "checkpoints" / "stage1.pt").detail == "both"


def test_freeze_bn_stage2_trains_stage2_on_the_stage1_statistics(scenes, tmp_path):
    """freeze_bn_stage2: BatchNorm normalises with batch statistics in stage 1 and with the
    (re-estimated) stage-1 running statistics through stage 2, which leaves them unchanged
    while the weights train."""
    cfg = small_config(scenes, freeze_bn_stage2=True, bn_recalibration_images=2, val_every=0)
    trainer = Trainer(cfg, tmp_path / "run")
    bns = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training for m in bns), "stage 1: batch statistics"
    trainer.train()
    stage1 = torch.load(tmp_path / "run" / "checkpoints" / "stage1.pt", weights_only=True)
    final = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    stats = [k for k in stage1["model"] if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:
        assert torch.equal(final["model"][key], stage1["model"][key]), key
    weights = [k for k in stage1["model"] if k.endswith("conv.weight") and k in final["model"]]
    assert any(not torch.equal(final["model"][k], stage1["model"][k]) for k in weights)
    assert trainer.stage == 2
    assert not any(m.training for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d))
    events = [r.get("event") for r in read_log(tmp_path / "run" / "metrics.jsonl")]
    assert events.count("bn_recalibrated") == 1, "only at the end of stage 1"


def test_stage1_steps_zero_starts_stage2_from_the_initial_weights(scenes, tmp_path):
    """stage1_steps=0 with init_weights: no stage-1 optimizer, stage 2 begins from exactly the
    stage-1 checkpoint's function (the surgery adds zero coordinate channels)."""
    first = Trainer(small_config(scenes, stage2_steps=0, val_every=0), tmp_path / "s1")
    first.train()
    init = tmp_path / "s1" / "checkpoints" / "final.pt"
    cfg = small_config(scenes, stage1_steps=0, init_weights=str(init), val_every=0)
    trainer = Trainer(cfg, tmp_path / "s2")
    assert trainer.stage == 2 and trainer.model.use_coords
    source = load_model(init)
    for key, value in source.state_dict().items():
        got = trainer.model.state_dict()[key]
        if got.shape == value.shape:
            assert torch.equal(got, value), key
    trainer.train()
    assert load_model(tmp_path / "s2" / "checkpoints" / "final.pt").use_coords


@pytest.mark.parametrize("optimizer", ["adadelta", "adamw"])
@pytest.mark.parametrize("stage", [1, 2])
def test_a_training_step_reads_nothing_back_from_the_device(scenes, tmp_path, stage, optimizer):
    """On a GPU every read of a device value (.item(), .tolist(), bool(), nonzero) is a host
    synchronization; on the meta device every such read raises. The step's device work
    (forward, the 3-scale loss, backward, AdamW, the BatchNorm snapshot) runs there to the end,
    in stage 1 and in stage 2 (coordinate channels from per-image crop offsets and sizes): the
    labels and offsets are checked on the host. The Trainer then reads the loss terms once."""
    cfg = small_config(
        scenes,
        stage1_steps=2 if stage == 1 else 0,
        val_images=0,
        optim=OptimConfig(name=optimizer),
    )
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.stage == stage
    batch = next(iter(trainer._loader()))
    trainer.device = torch.device("meta")
    trainer.model.to("meta")
    trainer.loss_fn.to("meta")
    names, values, lr = trainer._queue_step(batch)
    assert values.device.type == "meta" and values.shape == (len(names),)
    assert names[-1] == "total" and lr == cfg.stage_optim(stage).base_lr and trainer.step == 1
    assert all(p.device.type == "meta" for p in trainer.model.parameters())


def test_bad_class_ids_are_named_before_the_step(scenes, tmp_path):
    """The host-side check of each batch: a config with fewer classes than the data's ids."""
    trainer = Trainer(small_config(scenes, num_classes=5, val_images=0), tmp_path / "run")
    with pytest.raises(ValueError, match=r"expected semantic labels in \[0, 5\)"):
        trainer.train()
    assert trainer.step == 0


class NanOnCall(nn.Module):
    """The loss, except that the total of its n-th training call is NaN."""

    def __init__(self, loss: nn.Module, n: int) -> None:
        super().__init__()
        self.loss, self.n, self.calls = loss, n, 0

    def forward(self, *args, **kwargs):
        total, terms = self.loss(*args, **kwargs)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.n:
                total = total * float("nan")
                terms = {**terms, "total": total.detach()}
        return total, terms


def test_non_finite_loss_stops_the_run_naming_the_step(scenes, tmp_path):
    """The loss is read after the step's update (one read per step); a NaN still stops the run,
    naming its step, and the weights it damaged are not saved."""
    cfg = small_config(scenes, val_images=0, checkpoint_every=1)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.loss_fn = NanOnCall(trainer.loss_fn, 2)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 2 \(stage 1\)"):
        trainer.train()
    saved = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in saved.state_dict().values())


def test_cuda_graph_needs_one_process_on_a_gpu(scenes, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine device 'auto' is CUDA")
    cfg = small_config(scenes, device="auto", cuda_graph=True, amp_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"needs one process on a CUDA device, got 1 .* on cpu"):
        Trainer(cfg, tmp_path / "run")


@requires_cuda
def test_cuda_graph_training_follows_the_eager_run_and_resumes(scenes, tmp_path):
    """cuda_graph: both stages captured and replayed; the logged rates equal the eager run's,
    the first step's loss too (same weights, same batch; up to float atomics); checkpoints
    hold plain-number rates; a stopped run resumes (a new capture) to the end."""
    base = dict(device="cuda", amp_dtype="bfloat16", optim=OptimConfig(name="adamw"))
    graphed = small_config(scenes, cuda_graph=True, **base)
    Trainer(graphed, tmp_path / "g").train()
    Trainer(small_config(scenes, **base), tmp_path / "e").train()
    got, want = (
        [r for r in read_log(tmp_path / d / "metrics.jsonl") if r["kind"] == "train"]
        for d in ("g", "e")
    )
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert [r["lr"] for r in got] == [r["lr"] for r in want]
    assert got[0]["total"] == pytest.approx(want[0]["total"], rel=1e-3)
    assert all(math.isfinite(r["total"]) for r in got)
    ckpt = torch.load(tmp_path / "g" / "checkpoints" / "final.pt", weights_only=True)
    assert all(type(g["lr"]) is float for g in ckpt["optimizer"]["param_groups"])

    Trainer(graphed, tmp_path / "r").train(stop_after=3)
    Trainer(graphed, tmp_path / "r", resume="auto").train()
    resumed = [r for r in read_log(tmp_path / "r" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert all(math.isfinite(r["total"]) for r in resumed)


class EagerStandIn:
    """GraphedTrainStep's interface computed eagerly (what a replay computes: forward, loss,
    backward, update), so that the Trainer's graphed path runs on the CPU."""

    made = 0

    def __init__(self, model, loss_fn, optimizer, batch, *, amp_dtype=None) -> None:
        EagerStandIn.made += 1
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.names: list[str] = []

    def run(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        total, self.names, terms = forward_and_loss(
            self.model, self.loss_fn, *batch_to_device(batch, torch.device("cpu"))
        )
        total.backward()
        self.optimizer.step()
        return terms


@pytest.mark.parametrize("augment_on", ["loader", "device"])
@pytest.mark.parametrize("stage", [1, 2])
def test_the_trainers_graphed_path_logs_what_the_eager_path_logs(
    scenes, tmp_path, monkeypatch, stage, augment_on
):
    """The Trainer's cuda_graph branch (capture once per stage, replay, schedule, step count,
    host-side learning rate) with the graph replaced by an eager stand-in, on the CPU: the same
    log, record for record, as the eager step; one capture for the stage. Also with the batches
    augmented in the step (augment_on = "device"), which hands the graph device batches."""
    monkeypatch.setattr(step_module, "GraphedTrainStep", EagerStandIn)
    steps = (3, 0) if stage == 1 else (0, 3)
    cfg = small_config(
        scenes,
        val_every=0,
        val_images=0,
        stage1_steps=steps[0],
        stage2_steps=steps[1],
        augment_on=augment_on,
    )
    Trainer(cfg, tmp_path / "eager").train()
    trainer = Trainer(cfg, tmp_path / "graphed")
    # Set after construction: TrainConfig itself refuses cuda_graph on the CPU.
    trainer.cfg = dataclasses.replace(cfg)
    trainer.cfg.cuda_graph = True
    EagerStandIn.made = 0
    trainer.train()
    assert EagerStandIn.made == 1
    got, want = (metrics(read_log(tmp_path / d / "metrics.jsonl")) for d in ("graphed", "eager"))
    assert len(got) == 3 and got == want
