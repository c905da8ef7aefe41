"""``panonet train`` end to end, and a 2-process gloo (torchrun) run against one process.

One tiny run of each (1 + 1 steps, global batch 2, 64 x 128 synthetic scenes) feeds both tests.

Why the two runs can agree: DDP averages the gradients of the per-rank losses, and PanoNet's
loss normalises per batch (CE: mean over the valid pixels; instance term: mean over the images
with instances). The mean of two per-rank means is the mean over the global batch exactly when
both ranks have the same number of valid pixels and of images with instances at every scale, so
the scenes are chosen without void pixels and with instances visible at 1/16, and the crops are
the whole (unscaled, unflipped) images. BatchNorm must not see the per-rank batches either: on
the CPU there is no SyncBatchNorm, so the runs use ``freeze_bn = true`` (BN in eval mode).
"""

import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch

from panonet import cli
from panonet.data import CityscapesPanoptic
from panonet.data.synthetic import generate
from panonet.data.transforms import resize_labels
from panonet.models import PanoNet, icnet_output_sizes, load_model
from panonet.train import load_train_config
from panonet.train.trainer import Trainer, stage2_model

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "panonet_synthetic.toml"
SIZE = (64, 128)

# Makes the torchrun worker processes use the same native CPU convolutions as this process
# (see tests.models.helpers.native_cpu_convolutions), then runs the normal command line.
SHIM = """\
import sys
import torch
torch.backends.mkldnn.enabled = False
from panonet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def even_scenes(root: Path) -> int:
    """Generate scenes and delete those with void pixels or without an instance at 1/16."""
    generate(root, train=8, val=1, size=SIZE, seed=0, progress=False)
    dataset = CityscapesPanoptic(root, "train")
    for i in range(len(dataset)):
        item = dataset[i]
        visible = all(
            bool((resize_labels(item["instance"], s) >= 0).any()) for s in icnet_output_sizes(*SIZE)
        )
        if bool((item["semantic"] == 255).any()) or not visible:
            image = Path(item["file"])
            stem = image.name.removesuffix("_leftImg8bit.png")
            labels = Path(str(image.parent).replace("leftImg8bit", "gtFine"))
            for path in [image, *labels.glob(f"{stem}_gtFine_*.png")]:
                path.unlink()
    return len(CityscapesPanoptic(root, "train"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The command line's arguments, the single-process run (output dir, stdout) and the
    torchrun run (output dir, completed process)."""
    tmp = tmp_path_factory.mktemp("train_cli")
    root = tmp / "scenes"
    assert even_scenes(root) >= 4, "need 4 even scenes for 2 steps of batch 2"
    overrides = [
        f"data_root={root}",
        "crop_size=[64, 128]",
        "scale=[1.0, 1.0]",
        "flip=0.0",
        "batch_size=2",
        "workers=0",
        "stage1_steps=1",
        "stage2_steps=1",
        "val_images=1",
        "checkpoint_every=0",
        "freeze_bn=true",
        # The paper's optimizer (the example config uses AdamW): see the tolerance below.
        # Per-process class weights normalise the CE per process (see the example config).
        "loss.class_weights=none",
        # The paper's width: the initial weights are rebuilt below with PanoNet's defaults.
        "width=1.0",
        "optim.name='adadelta'",
        "optim.lr=0.003",
        "stage2_optim.name='adadelta'",
        "stage2_optim.lr=0.003",
        "progress=false",
        "device='cpu'",
    ]
    args = ["train", "--config", str(EXAMPLE)] + [a for o in overrides for a in ("--set", o)]

    single = tmp / "single"
    stdout = StringIO()
    with redirect_stdout(stdout):
        assert cli.main([*args, "--out", str(single)]) == 0

    shim = tmp / "shim.py"
    shim.write_text(SHIM)
    ddp = tmp / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(shim), *args, "--out", str(ddp)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    yield {
        "overrides": overrides,
        "args": args,
        "single": single,
        "stdout": stdout.getvalue(),
        "ddp": ddp,
        "result": result,
    }
    # Four 160 MB checkpoints: gone once the module's tests have read them.
    shutil.rmtree(tmp, ignore_errors=True)


def train_records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_cli_train_end_to_end(runs, capsys):
    single, stdout = runs["single"], runs["stdout"]
    final = single / "checkpoints" / "final.pt"
    assert stdout.strip() == f"wrote {final}"
    assert (single / "checkpoints" / "stage1.pt").is_file()
    assert json.loads((single / "config.json").read_text())["stage2_steps"] == 1
    assert [(r["step"], r["stage"]) for r in train_records(single)] == [(1, 1), (2, 2)]

    # The final checkpoint is a stage-2 model that the model loader and the Predictor read.
    model = load_model(final)
    assert model.use_coords and not model.training
    from panonet.inference import Predictor

    image = CityscapesPanoptic(single.parent / "scenes", "val")[0]["image"].permute(1, 2, 0)
    result = Predictor(final).predict(image.numpy())
    assert result["semantic"].shape == SIZE and result["panoptic"].shape == SIZE

    # --resume auto on a finished run has nothing left to do.
    assert cli.main([*runs["args"], "--out", str(single), "--resume", "auto"]) == 0
    assert "nothing to do: step 2 of 2 already done" in capsys.readouterr().err

    # init_weights: stage 1 starts from a stage-1 checkpoint (BN statistics included); a
    # stage-2 checkpoint does not fit the stage-1 model and is refused, naming the input convs.
    stage1 = single / "checkpoints" / "stage1.pt"
    cfg = load_train_config(EXAMPLE, [*runs["overrides"], f"init_weights={stage1}"])
    expected = load_model(stage1).state_dict()
    for k, v in Trainer(cfg, single.parent / "init").model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    cfg = load_train_config(EXAMPLE, [*runs["overrides"], f"init_weights={final}"])
    with pytest.raises(ValueError, match=r"shape mismatches \(2\): instance\.trunk\."):
        Trainer(cfg, single.parent / "init")

    # A fresh start does not overwrite a run's checkpoints.
    assert cli.main([*runs["args"], "--out", str(single)]) == 2
    assert "already holds a run's checkpoint (final.pt)" in capsys.readouterr().err

    # Errors in the config are reported without a traceback.
    bad = ["train", "--config", str(EXAMPLE), "--set", "stage_1_steps=3"]
    assert cli.main(bad) == 2
    assert "unknown config key(s) ['stage_1_steps']" in capsys.readouterr().err


def test_two_process_gloo_run_matches_one_process(runs):
    single, ddp, result = runs["single"], runs["ddp"], runs["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a = torch.load(single / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)
    b = torch.load(ddp / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)
    assert (b["step"], b["stage"], b["data"]["world_size"]) == (2, 2, 2)

    # The logged losses are the means over the ranks' losses: equal to the single-process
    # loss of the same global batch, up to float32 summation order.
    for ra, rb in zip(train_records(single), train_records(ddp), strict=True):
        for key in ("total", "sem", "inst", "ce_1/4", "inst_1/16"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5), (ra["step"], key)

    # The weights moved by the same update. Compared on the update w_final - w_init, not on
    # the weights: a first Adadelta step moves a weight by at most lr * sqrt(eps / (1 - rho))
    # ~ 1e-5, so a tolerance relative to the weights (~0.1) would hide any error in it. The
    # runs differ by float32 rounding only (gradients averaged over ranks after the backward
    # vs summed over the batch inside it; 1 vs 2 threads): gradient errors ~1e-7 of the
    # largest gradients, which Adadelta's first step passes on with gain up to lr to the
    # weights whose gradients nearly cancel. Measured: 6e-6 of the update's norm. A run whose
    # ranks did not average their gradients, or split the global batch differently, is off
    # by O(0.1-1).
    torch.manual_seed(0)  # the trainer's initial weights: seed 0, stage-1 model, surgery
    init = stage2_model(PanoNet(use_coords=False)).state_dict()
    keys = [k for k, v in init.items() if v.is_floating_point()]
    delta_a = torch.cat([(a["model"][k] - init[k]).flatten() for k in keys])
    delta_b = torch.cat([(b["model"][k] - init[k]).flatten() for k in keys])
    assert float(delta_a.norm()) > 1e-3  # the runs did train
    assert float((delta_b - delta_a).norm() / delta_a.norm()) < 1e-3
    # Buffers (frozen BN statistics) are untouched in both.
    for k, v in init.items():
        if not v.is_floating_point() or "running" in k:
            assert torch.equal(a["model"][k], b["model"][k]), k
