"""TrainConfig, config files and overrides; the trainer's data order, RNG states and Ctrl-C hold.

No network runs here: these are the pieces that make resumption exact, tested on their own.
"""

import ast
import dataclasses
import inspect
import io
import json
import os
import random
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from panonet.train import OptimConfig, TrainConfig, load_train_config
from panonet.train.run_state import get_rng_state, hold_sigint, set_rng_state
from panonet.train.sampling import SeededItems, StepBatchSampler, item_seed

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "panonet_synthetic.toml"


def test_every_train_config_field_has_a_comment():
    source = textwrap.dedent(inspect.getsource(TrainConfig))
    lines = source.splitlines()
    tree = ast.parse(source).body[0]
    annotated = [n for n in tree.body if isinstance(n, ast.AnnAssign)]
    assert {n.target.id for n in annotated} == {f.name for f in dataclasses.fields(TrainConfig)}
    for node in annotated:
        assert lines[node.lineno - 2].strip().startswith("#"), node.target.id


def test_example_config_is_the_cpu_demos_recipe():
    """configs/panonet_synthetic.toml and panonet.demo (FULL, train_config) state one recipe:
    every field but the paths and the run's device and progress bar is equal."""
    from panonet import demo

    example = load_train_config(EXAMPLE, [])
    ours = demo.train_config(demo.FULL, Path(example.data_root), example.device, example.progress)
    assert example.to_dict() == ours.to_dict()


def test_example_config_overrides_and_stage_optimizers(tmp_path):
    cfg = load_train_config(
        EXAMPLE,
        [
            "crop_size=[64, 128]",
            "stage1_steps=7",
            "optim.name='adadelta'",
            "optim.lr=0.01",
            "optim.weight_decay=0.0",
            "stage2_optim.name='adamw'",
            "data_root=/some/where",  # not TOML: taken as a string
            "pretrained=none",
            "loss.gamma=0.2",
        ],
    )
    assert cfg.crop_size == (64, 128) and cfg.data_root == "/some/where"
    assert cfg.pretrained is None and cfg.loss.gamma == 0.2
    # Each stage's poly schedule spans that stage; [stage2_optim] only lists what differs.
    s1, s2 = cfg.stage_optim(1), cfg.stage_optim(2)
    assert (s1.name, s1.lr, s1.max_steps) == ("adadelta", 0.01, 7)
    # The example's [stage2_optim] sets lr = 3e-3; the weight decay is inherited from [optim].
    assert (s2.name, s2.lr, s2.weight_decay, s2.max_steps) == ("adamw", 3e-3, 0.0, 1300)
    # The config goes into checkpoints read with weights_only=True, and rebuilds.
    buf = io.BytesIO()
    torch.save(cfg.to_dict(), buf)
    buf.seek(0)
    assert TrainConfig(**torch.load(buf, weights_only=True)) == cfg
    # JSON configs work too.
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"stage1_steps": 3, "optim": {"name": "adamw"}}))
    assert load_train_config(path).stage_optim(1) == OptimConfig(name="adamw", max_steps=3)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["stage_steps=3"], r"unknown config key\(s\) \['stage_steps'\]; known: data_root"),
        (["optim.learning_rate=1"], r"\['optim.learning_rate'\]; known: optim.name"),
        (["stage1_steps=0", "stage2_steps=0"], r"nothing to train"),
        (["crop_size=[16, 64]"], r"crop_size >= 32"),
        (["batch_size=1.5"], r"batch_size to be an integer"),
        (["device='tpu'"], r"device in"),
        (["amp=1"], r"amp true or false"),
        (["novalue"], r"KEY=VALUE"),
        (["width=0"], r"expected width in \(0, 4\], got 0.0"),
        (["width=0.5", "pretrained='r50.pth'"], r"fit width 1 only, got width 0.5"),
        (["amp_dtype='float8'"], r"amp_dtype in \('float16', 'bfloat16'\), got 'float8'"),
        (["cuda_graph=true", "device='cpu'"], r"cuda_graph = true needs a CUDA device"),
        (["cuda_graph=true"], r"cuda_graph = true with amp needs amp_dtype = 'bfloat16'"),
        (["cuda_graph=1"], r"cuda_graph true or false"),
        (["coord_output=-1.0"], r"expected a finite coord_output >= 0, got -1.0"),
        (["detail=1"], r"expected detail in \('none', 'semantic', 'both'\), got 1"),
    ],
)
def test_bad_configs_raise(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_train_config(None, overrides)


def test_batches_of_ranks_make_up_the_single_process_batch_and_resume_mid_epoch():
    """World size 2 x 2 images = the same global batches as 1 x 4; a sampler started at step s
    yields what the uninterrupted one yields from step s (across epoch boundaries)."""
    data = list(range(11))  # 11 images, global batch 4: 2 steps per epoch, 3 images dropped

    def batches(world, rank, start, n):
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=5, drop_last=True)
        it = iter(StepBatchSampler(sampler, 4 // world, start_step=start))
        return [next(it) for _ in range(n)]

    single = batches(1, 0, 0, 6)
    assert StepBatchSampler(DistributedSampler(data, 1, 0), 4).steps_per_epoch == 2
    assert [b[0][1] for b in single] == [0, 0, 1, 1, 2, 2]  # the epoch travels with the index
    r0, r1 = batches(2, 0, 0, 6), batches(2, 1, 0, 6)
    for s, b0, b1 in zip(single, r0, r1, strict=True):
        assert sorted(s) == sorted(b0 + b1)
    assert len({i for b in single[:2] for i, _ in b}) == 8  # no repeats within an epoch
    assert single[2:] != single[:4][:4] and single[2:4] != single[0:2]  # reshuffled per epoch
    assert batches(1, 0, 3, 3) == single[3:6]
    assert batches(2, 1, 3, 3) == r1[3:6]
    with pytest.raises(ValueError, match=r"3 images, fewer than one global batch \(4 = 2"):
        StepBatchSampler(DistributedSampler(data[:3], 2, 0, drop_last=True), 2)


def test_augmentation_is_seeded_per_image_and_epoch_and_leaves_the_global_rng_alone():
    def draw(item):
        return {"x": torch.rand(3)}

    items = SeededItems([{}] * 4, draw, seed=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = items[(2, 0)]["x"]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(items[(2, 0)]["x"], a)  # same image, same epoch: same augmentation
    assert not torch.equal(items[(2, 1)]["x"], a)
    assert not torch.equal(items[(3, 0)]["x"], a)
    assert item_seed(1, 0, 2) != item_seed(2, 0, 2)


def test_rng_state_round_trips_through_weights_only_load():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    random.gauss(0, 1)  # a cached gaussian in python's state
    state = get_rng_state()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(loaded)
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_ctrl_c_is_held_until_the_state_update_is_complete():
    # The handler in place before: Python's default in a terminal, SIG_IGN when the test run was
    # started in the background by a non-interactive shell. Either way it must come back.
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with hold_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the block still runs")
    assert done
    assert signal.getsignal(signal.SIGINT) is before
