"""``panonet export`` through cli.main (and once through ``python -m panonet``)."""

import runpy
import sys

import pytest
import torch

from panonet import cli
from panonet.models.checkpoint import load_model, save_checkpoint
from panonet.models.panonet import PanoNet
from tests.models.helpers import assert_close_to_scale, randomize_batchnorm


def _args(*extra: str, fmt: str = "torchscript", out: str = "out") -> list[str]:
    return ["export", "--format", fmt, "--height", "64", "--width", "96", "--output", out, *extra]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_export_torchscript_from_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    net = randomize_batchnorm(PanoNet(num_classes=5, embedding_dim=4))
    ckpt = save_checkpoint(tmp_path / "model.pt", net)
    out = tmp_path / "model.ts"
    assert cli.main(_args("--checkpoint", str(ckpt), out=str(out))) == 0
    assert "wrote torchscript model" in capsys.readouterr().out

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        sem, emb = torch.jit.load(str(out))(x)
        ref = load_model(ckpt)(x)
    assert sem.shape == (2, 5, 16, 24) and emb.shape == (2, 4, 16, 24)
    assert_close_to_scale(sem, ref.semantic[0], 1e-5, "semantic")
    assert_close_to_scale(emb, ref.embedding[0], 1e-5, "embedding")


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_export_onnx_random_init_legacy_exporter(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "sub" / "model.onnx"
    argv = _args(
        "--random-init", "--no-coords", "--onnx-exporter", "torchscript", fmt="onnx", out=str(out)
    )
    assert cli.main(argv) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    sem, emb = session.run(None, {"images": torch.randn(1, 3, 64, 96).numpy()})
    assert sem.shape == (1, 19, 16, 24) and emb.shape == (1, 12, 16, 24)


def test_mismatching_checkpoint_is_reported(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "s1.pt", PanoNet(use_coords=False))
    # The checkpoint's config says use_coords=False; forcing 19 classes is fine, but the raw
    # state dict without config is loaded as the default (use_coords=True) model.
    torch.save(torch.load(ckpt, weights_only=True)["model"], tmp_path / "raw.pt")
    code = cli.main(_args("--checkpoint", str(tmp_path / "raw.pt"), out=str(tmp_path / "x")))
    err = capsys.readouterr().err
    assert code == 2
    assert "panonet export: error:" in err and "instance.trunk.sub1.0.conv.weight" in err
    assert "stage-1 checkpoint" in err
    assert not (tmp_path / "x").exists()


def test_input_errors(tmp_path, capsys):
    assert cli.main(_args("--checkpoint", str(tmp_path / "nope.pt"))) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    argv = [
        "export",
        "--random-init",
        "--format",
        "onnx",
        "--height",
        "16",
        "--width",
        "64",
        "--output",
        str(tmp_path / "x"),
    ]
    assert cli.main(argv) == 2
    assert "--height and --width must be >= 32, got 16x64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: --checkpoint or --random-init is required
        cli.main(["export", "--format", "onnx", "--height", "64", "--width", "64", "--output", "x"])
    assert e.value.code == 2


def test_python_dash_m(monkeypatch, capsys):
    # What `python -m panonet export --help` runs, in-process (a subprocess costs seconds).
    monkeypatch.setattr(sys, "argv", ["panonet", "export", "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("panonet", run_name="__main__")
    assert e.value.code == 0 and "--random-init" in capsys.readouterr().out
