"""Optimizer construction, the poly learning-rate schedule and the config objects."""

import ast
import dataclasses
import inspect
import io
import textwrap

import pytest
import torch
from torch import nn

from panonet.train import LossConfig, OptimConfig, build_optimizer, build_scheduler, config
from panonet.train.optim import current_lr, group_lr, lrs_as_numbers, place_lrs


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, bias=True))


def test_paper_defaults():
    loss = LossConfig()
    assert loss.tau == (1.0, 0.4, 0.16)
    assert (loss.delta_v, loss.delta_d, loss.delta_r) == (0.25, 1.0, 6.0)
    assert (loss.alpha, loss.beta, loss.gamma) == (1.0, 1.0, 0.1)
    assert loss.ignore_index == 255 and loss.class_weights is None
    optim = OptimConfig()
    assert optim.name == "adadelta" and optim.base_lr == 0.003 and optim.power == 0.9
    assert OptimConfig(name="adamw").base_lr == 0.001
    assert OptimConfig(name="adamw", lr=0.02).base_lr == 0.02
    # Lists from a config file become tuples.
    assert LossConfig(tau=[1, 0.5, 0.25], class_weights=[1] * 19).class_weights == (1.0,) * 19


@pytest.mark.parametrize("cls", [LossConfig, OptimConfig])
def test_every_config_field_has_a_comment(cls):
    # The config is the documentation of every key: each field is preceded by a comment line.
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    tree = ast.parse(source).body[0]
    annotated = [n for n in tree.body if isinstance(n, ast.AnnAssign)]
    assert {n.target.id for n in annotated} == {f.name for f in dataclasses.fields(cls)}
    for node in annotated:
        above = lines[node.lineno - 2].strip()
        assert above.startswith("#"), f"{cls.__name__}.{node.target.id} has no comment"


@pytest.mark.parametrize("name", ["adadelta", "adamw"])
def test_build_optimizer(name):
    model = tiny_model()
    cfg = OptimConfig(name=name, weight_decay=0.01, eps=1e-7, rho=0.8)
    opt = build_optimizer(model, cfg)
    assert type(opt) is {"adadelta": torch.optim.Adadelta, "adamw": torch.optim.AdamW}[name]
    decayed, plain = opt.param_groups
    # Conv weights decayed; BN affine parameters and biases not.
    assert [p.shape for p in decayed["params"]] == [(4, 3, 3, 3), (2, 4, 1, 1)]
    assert [p.shape for p in plain["params"]] == [(4,), (4,), (4,), (2,)]
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(g["lr"] == cfg.base_lr and g["eps"] == 1e-7 for g in opt.param_groups)
    if name == "adadelta":
        assert opt.param_groups[0]["rho"] == 0.8
    # Frozen parameters are left out.
    model[0].weight.requires_grad_(False)
    assert sum(len(g["params"]) for g in build_optimizer(model, cfg).param_groups) == 5


def test_poly_schedule_values():
    cfg = OptimConfig(lr=0.003, power=0.9, max_steps=10)
    opt = build_optimizer(tiny_model(), cfg)
    sched = build_scheduler(opt, cfg)
    lrs = {}
    for step in range(13):
        lrs[step] = sched.get_last_lr()
        opt.step()
        sched.step()
    # lr_t = 0.003 * (1 - t / 10) ** 0.9, for both parameter groups, 0 from max_steps on.
    for step, expected in {
        0: 0.003,
        1: 0.003 * 0.9**0.9,
        5: 0.003 * 0.5**0.9,
        9: 0.003 * 0.1**0.9,
        10: 0.0,
        12: 0.0,
    }.items():
        assert lrs[step] == pytest.approx([expected, expected], rel=1e-12, abs=1e-15), step
    assert lrs[5][0] == pytest.approx(0.00160766, rel=1e-5)  # 0.003 * 0.53589 by hand


def test_scheduler_state_round_trips_through_weights_only_load():
    # A trainer's checkpoint is read with weights_only=True: the schedule must survive it.
    cfg = OptimConfig(max_steps=20, power=2.0)
    opt = build_optimizer(tiny_model(), cfg)
    sched = build_scheduler(opt, cfg)
    for _ in range(7):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = build_optimizer(tiny_model(), cfg)
    opt2.load_state_dict(state["optimizer"])
    sched2 = build_scheduler(opt2, cfg)
    sched2.load_state_dict(state["scheduler"])
    assert sched2.get_last_lr() == sched.get_last_lr()
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert sched2.get_last_lr() == pytest.approx([0.003 * (1 - 8 / 20) ** 2] * 2)


def test_current_lr_is_the_schedules_rate_computed_on_the_host():
    cfg = OptimConfig(lr=0.003, power=0.9, max_steps=10)
    opt = build_optimizer(tiny_model(), cfg)
    sched = build_scheduler(opt, cfg)
    for _ in range(12):
        assert current_lr(sched) == sched.get_last_lr()[0]  # the same float, not approximately
        opt.step()
        sched.step()


def test_learning_rates_as_numbers_and_back():
    """Checkpoints hold plain numbers whichever optimizer wrote them (a capturable one keeps
    device tensors); place_lrs makes them what this run's optimizer wants."""
    cfg = OptimConfig(name="adamw", lr=0.01, max_steps=10)
    opt = build_optimizer(tiny_model(), cfg)
    sched = build_scheduler(opt, cfg)
    opt.step(), sched.step()
    state = opt.state_dict()
    for group in state["param_groups"]:  # what a capturable optimizer's state looks like
        group["lr"], group["initial_lr"] = torch.tensor(group["lr"]), torch.tensor(0.01)
    plain = lrs_as_numbers(state)
    assert all(
        type(g["lr"]) is float and type(g["initial_lr"]) is float for g in plain["param_groups"]
    )
    assert plain["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.9**0.9, rel=1e-6)
    assert torch.is_tensor(state["param_groups"][0]["lr"]), "the argument is left as it was"
    sched_state = {**sched.state_dict(), "base_lrs": [torch.tensor(0.01)] * 2}
    assert lrs_as_numbers(sched_state)["base_lrs"] == [pytest.approx(0.01)] * 2
    opt2 = build_optimizer(tiny_model(), cfg)
    opt2.load_state_dict(state)
    place_lrs(opt2, capturable=False)
    assert all(type(g["lr"]) is float and g["capturable"] is False for g in opt2.param_groups)
    assert all(type(g["initial_lr"]) is float for g in opt2.param_groups)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "sgd"}, r"name in \('adadelta', 'adamw'\), got 'sgd'"),
        ({"lr": 0}, r"lr > 0 or None, got 0"),
        ({"max_steps": 0}, r"max_steps an integer >= 1, got 0"),
        ({"power": -1}, r"power finite and >= 0, got -1"),
        ({"rho": 1.0}, r"0 <= rho < 1, got 1.0"),
        ({"betas": (0.9,)}, r"betas = \(b1, b2\)"),
    ],
)
def test_bad_optim_config_raises(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        OptimConfig(**kwargs)


def test_optimizer_names_are_the_configs():
    assert config.OPTIMIZERS == ("adadelta", "adamw")


def test_group_lr_is_a_device_tensor_only_when_capturable():
    """A captured step reads its learning rate from a 0-dim float32 tensor (the schedule writes
    it between replays); otherwise the optimizer keeps Python floats."""
    lr = group_lr(3e-3, torch.device("cpu"), capturable=True)
    assert isinstance(lr, torch.Tensor) and lr.dim() == 0 and lr.dtype == torch.float32
    assert lr.item() == pytest.approx(3e-3, rel=1e-7)
    assert group_lr(3e-3, torch.device("cpu"), capturable=False) == 3e-3
    assert type(group_lr(3e-3, torch.device("cpu"), capturable=False)) is float
