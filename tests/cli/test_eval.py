"""'panonet eval' end to end on a tiny synthetic split with an untrained PanoNet."""

import dataclasses
import json

import pytest
import torch

from panonet.cli import main
from panonet.data.synthetic import generate
from panonet.inference.merge import INSTANCE_REACH
from panonet.models import PanoNet
from panonet.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", PanoNet())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(root, train=0, val=2, size=(64, 128), seed=0, progress=False)
    return root


def test_eval_prints_tables_and_writes_json(tmp_path, checkpoint, data, capsys):
    out = tmp_path / "sub" / "results.json"
    vis = tmp_path / "vis"
    code = main(
        [
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(data),
            "--out",
            str(out),
            "--save-vis",
            str(vis),
            "--predictions",
            str(tmp_path / "pred"),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| PQ | SQ | RQ |" in text and "| mIoU |" in text and "person" in text
    assert f"wrote {out}" in text
    record = json.loads(out.read_text())  # strict JSON: NaN written as null
    assert record["images"] == 2 and record["split"] == "val"
    assert record["semantic_source"] == "pred" and record["device"] == "cpu"
    assert record["instance_reach"] == INSTANCE_REACH  # the Predictor's default
    assert {"panoptic", "semantic", "instance", "runtime_ms"} <= set(record)
    assert len(list(vis.glob("*.png"))) == 2
    assert (tmp_path / "pred" / "panoptic.json").is_file()
    assert not list(out.parent.glob(".results.json.*")), "no temp file left behind"


def test_eval_gt_semantic(checkpoint, data, capsys):
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data)]
    assert main([*args, "--semantic", "gt", "--images", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "AP_GT" in text and "| 100.0 |" in text  # mIoU on the ground-truth semantic map


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--checkpoint", "{tmp}/no.pt", "--data", "{data}"], "no such checkpoint"),
        (["--checkpoint", "{tmp}/garbage.pt", "--data", "{data}"], "cannot read checkpoint"),
        (["--checkpoint", "{ckpt}", "--data", "{tmp}/nothing"], "no directory"),
        (
            ["--checkpoint", "{ckpt}", "--data", "{data}", "--bandwidths", "{tmp}/no.json"],
            "cannot read bandwidth file",
        ),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--split", "train"], "no directory"),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--images", "0"], "--images"),
    ],
)
def test_eval_errors(tmp_path, checkpoint, data, capsys, extra, message):
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    argv = [
        a.format(tmp=tmp_path, data=data, ckpt=checkpoint)
        for a in ["eval", *extra, "--no-progress"]
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("panonet eval: error: ") and message in err
    assert err.count("\n") == 1, "one-line error"


def test_eval_vote_groups_and_min_instance_size(checkpoint, data, capsys):
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--images", "1"]
    assert main([*args, "--vote-groups", "--min-instance-size", "8", "--no-progress"]) == 0
    assert "| PQ | SQ | RQ |" in capsys.readouterr().out
    assert main([*args, "--min-instance-size", "-1", "--no-progress"]) == 2
    assert "--min-instance-size must be >= 0, got -1" in capsys.readouterr().err


def test_search_min_size_then_eval_with_its_json(tmp_path, checkpoint, data, capsys):
    """search-min-size writes the things PQ of each candidate and the best size; eval reads
    the size from that JSON; bad values for --min-instance-size are one-line errors."""
    train = tmp_path / "train"
    generate(train, train=2, val=0, size=(64, 128), seed=1, progress=False)
    found = tmp_path / "min_size.json"
    argv = ["search-min-size", "--checkpoint", str(checkpoint), "--data", str(train)]
    argv += ["--images", "2", "--candidates", "64", "0", "--out", str(found), "--no-progress"]
    assert main(argv) == 0
    record = json.loads(found.read_text())
    assert record["candidates"] == [0, 64] and record["images"] == 2
    assert record["best"] in (0, 64) and len(record["things_pq"]) == 2
    assert record["instance_reach"] == INSTANCE_REACH and record["split"] == "train"
    assert record["guided_upsampling"] is None
    assert f"best {record['best']}" in capsys.readouterr().out
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--images", "1"]
    out = tmp_path / "eval.json"
    assert main([*args, "--min-instance-size", str(found), "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["min_instance_size"] == record["best"]
    capsys.readouterr()
    (tmp_path / "other.json").write_text('{"bandwidths": {}}')
    for value, message in [
        (str(tmp_path / "none.json"), "expected a number of pixels or a search-min-size JSON"),
        (str(tmp_path / "other.json"), "an integer 'best'), got"),
    ]:
        assert main([*args, "--min-instance-size", value, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("panonet eval: error: --min-instance-size") and message in err
    assert main([*argv[:-4], "--images", "0", "--out", str(found), "--no-progress"]) == 2
    assert "--images must be >= 1, got 0" in capsys.readouterr().err


def test_eval_instance_reach(tmp_path, checkpoint, data, capsys):
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--images", "1"]
    out = tmp_path / "r0.json"
    assert main([*args, "--instance-reach", "0", "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["instance_reach"] == 0
    capsys.readouterr()
    assert main([*args, "--instance-reach", "-1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "panonet eval: error: --instance-reach must be >= 0, got -1\n"


def test_eval_guided_upsampling(tmp_path, checkpoint, data, capsys):
    """--guided-upsampling alone takes GuidedUpsampling's defaults, or its settings; the
    JSON records them (null without the flag); malformed values are one-line errors."""
    from panonet.inference import GuidedUpsampling

    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--images", "1"]
    for flag, want in [
        ([], None),
        (["--guided-upsampling"], dataclasses.asdict(GuidedUpsampling())),
        (
            ["--guided-upsampling", "1,0.1,4"],
            {"sigma_spatial": 1.0, "sigma_range": 0.1, "window": 4, "cluster": True},
        ),
        (
            ["--guided-upsampling", "1,0.1,4,0"],
            {"sigma_spatial": 1.0, "sigma_range": 0.1, "window": 4, "cluster": False},
        ),
    ]:
        out = tmp_path / "g.json"
        assert main([*args, *flag, "--out", str(out), "--no-progress"]) == 0
        assert json.loads(out.read_text())["guided_upsampling"] == want
    capsys.readouterr()
    for value, message in [
        ("1,0.1", "expected SIGMA_S,SIGMA_R,WINDOW[,CLUSTER] (e.g. 1.5,0.05,6 or"),
        ("1,0.1,4,2", "CLUSTER 0 or 1, got '2'"),
        ("1,0.1,5", "even window in [2, 8], got 5"),
        ("a,b,c", "got 'a,b,c'"),
    ]:
        assert main([*args, "--guided-upsampling", value, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("panonet eval: error: ") and message in err, err
