"""'panonet bench', 'panonet mirror-test', and the top-level behaviour of 'panonet' (--help
lists every subcommand, --debug, one-line errors with a non-zero status)."""

import argparse
import json

import pytest
import torch

from panonet import cli
from panonet.cli import main
from panonet.data.synthetic import generate
from panonet.inference.merge import INSTANCE_REACH
from panonet.models import PanoNet
from panonet.models.checkpoint import save_checkpoint

SUBCOMMANDS = (
    "synth",
    "train",
    "search-bandwidth",
    "eval",
    "predict",
    "export",
    "bench",
    "demo",
    "mirror-test",
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    with_coords = save_checkpoint(root / "coords.pt", PanoNet())
    without = save_checkpoint(root / "plain.pt", PanoNet(use_coords=False))
    return with_coords, without


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(root, train=0, val=2, size=(64, 128), seed=0, progress=False)
    return root


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text, name
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: panonet " + name in capsys.readouterr().out


@pytest.mark.parametrize("command", ["predict", "eval", "bench"])
def test_compile_flag_reaches_the_predictor(monkeypatch, tmp_path, checkpoints, data, command):
    # --compile asks the Predictor for compile_network=True (the compiled path itself is tested
    # in tests/inference/test_predictor.py); stopped at construction, nothing is compiled.
    import panonet.inference.predictor as predictor_module

    seen = {}

    class Stop(Exception):
        pass

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(predictor_module, "Predictor", fake)
    args = {
        "predict": ["predict", str(tmp_path / "x.png"), "--out", str(tmp_path / "o")],
        "eval": ["eval", "--data", str(data)],
        "bench": ["bench", "--size", "64x96"],
    }[command]
    with pytest.raises(Stop):
        main(["--debug", *args, "--checkpoint", str(checkpoints[0]), "--compile"])
    assert seen["compile_network"] is True


def test_bench_prints_stage_table_writes_json_and_plot(tmp_path, checkpoints, capsys):
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"panoptic": {"All": {"pq": 0.25}}}))
    out, plot = tmp_path / "bench.json", tmp_path / "fig1.png"
    argv = ["bench", "--checkpoint", str(checkpoints[0]), "--size", "64x128", "--runs", "2"]
    argv += ["--warmup", "1", "--out", str(out), "--pq-from", str(evaluation)]
    assert main([*argv, "--plot", str(plot), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| network |" in text and "| clustering |" in text and "frames per second" in text
    record = json.loads(out.read_text())
    assert record["image_size"] == [64, 128] and record["runs"] == 2
    assert record["fps"] == pytest.approx(1000 / record["median_ms"]["total"])
    assert record["device"]
    # The real-time figure beside the stage sum: no stage waits, maps on the device.
    assert "real time (no stage timings" in text
    assert record["fps_real_time"] == pytest.approx(1000 / record["end_to_end_ms"])
    stages = [ms for stage, ms in record["median_ms"].items() if stage != "total"]
    assert record["stage_sum_ms"] == pytest.approx(sum(stages))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--plot", "x.png"], "--plot and --pq-from go together"),
        (["--pq-from", "{tmp}/none.json", "--plot", "x.png"], "no such file"),
        (["--pq-from", "{tmp}/bad.json", "--plot", "x.png"], "expected a 'panonet eval --out'"),
        (["--size", "16x16"], "at least 32x32"),
        (["--runs", "0"], "--runs >= 1"),
        (["--checkpoint", "{tmp}/none.pt"], "no such checkpoint"),
    ],
)
def test_bench_errors(tmp_path, capsys, extra, message):
    (tmp_path / "bad.json").write_text("{}")
    argv = ["bench", *[a.format(tmp=tmp_path) for a in extra], "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("panonet bench: error: ") and message in err
    assert err.count("\n") == 1


def test_mirror_test_compares_checkpoints(tmp_path, checkpoints, data, capsys):
    out = tmp_path / "mirror.json"
    argv = ["mirror-test", "--checkpoint", *map(str, checkpoints), "--data", str(data)]
    assert main([*argv, "--out", str(out), "--save-vis", str(tmp_path / "vis")]) == 0
    text = capsys.readouterr().out
    assert "| model | twin pairs | merged | separated | missed | merged / found |" in text
    record = json.loads(out.read_text())
    assert [r["use_coords"] for r in record.values()] == [True, False]
    assert {r["instance_reach"] for r in record.values()} == {INSTANCE_REACH}
    assert len(list((tmp_path / "vis").rglob("mirror_*.png"))) == 4  # 2 images x 2 models
    pairs = {r["pairs"] for r in record.values()}
    assert len(pairs) == 1, "the same twins for both models"
    assert main([*argv, "--bandwidths", "a.json", "b.json", "c.json"]) == 2
    assert "one per checkpoint" in capsys.readouterr().err
    assert main([*argv, "--images", "1", "--instance-reach", "0", "--out", str(out)]) == 0
    assert {r["instance_reach"] for r in json.loads(out.read_text()).values()} == {0}


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    parser_argv = ["synth", "--out", "x", "--train", "1"]
    # The parser binds func at build time: patch what it calls.
    monkeypatch.setattr(
        cli,
        "build_parser",
        lambda real=cli.build_parser: _with_func(real(), "synth", boom),
    )
    assert main(parser_argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "panonet synth: error: RuntimeError: something broke (run 'panonet --debug ...' for "
        "the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="something broke"):
        main(["--debug", *parser_argv])


def _with_func(parser, name, func):
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices[name].set_defaults(func=func)
    return parser


def test_mirror_test_offers_the_variants_the_evaluation_has():
    """The CLI writes the variants out (importing them would load torch for --help)."""
    from panonet.evaluation.mirror import VARIANTS

    subparsers = next(
        a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    variant = next(a for a in subparsers.choices["mirror-test"]._actions if a.dest == "variant")
    assert tuple(variant.choices) == VARIANTS
