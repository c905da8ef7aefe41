"""``panonet synth`` through cli.main."""

import json

import pytest

from panonet import cli
from panonet.data import CityscapesPanoptic


def test_synth_writes_a_dataset_the_loader_reads(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--train", "2", "--val", "1", "--size", "64x128"]
    assert cli.main([*args, "--seed", "3", "--no-progress"]) == 0
    assert "wrote 3 image(s)" in capsys.readouterr().out
    assert len(CityscapesPanoptic(out, "train")) == 2
    val = CityscapesPanoptic(out, "val")
    assert len(val) == 1 and val[0]["image"].shape == (3, 64, 128)

    # Re-running resumes: everything is there already.
    assert cli.main([*args, "--seed", "3", "--no-progress"]) == 0
    assert "wrote 0 image(s), skipped 3" in capsys.readouterr().out
    # Another seed into the same directory would mix two datasets.
    assert cli.main([*args, "--seed", "4", "--no-progress"]) == 2
    assert "generated differently" in capsys.readouterr().err


def test_synth_cities(tmp_path):
    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--train", "3", "--size", "32x64", "--no-progress"]
    assert cli.main([*args, "--cities", "alpha", "beta"]) == 0
    cities = sorted(p.name for p in (out / "leftImg8bit/train").iterdir())
    assert cities == ["alpha", "beta"]


@pytest.mark.parametrize("size", ["64", "64x", "axb", "64x128x3", "8x128", "64x-1"])
def test_synth_bad_size_exits_2(tmp_path, capsys, size):
    args = ["synth", "--out", str(tmp_path / "o"), "--train", "1", "--size", size]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("panonet synth: error:") and "size" in err
    assert not (tmp_path / "o").exists()


def test_synth_needs_images(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to generate" in capsys.readouterr().err


def test_synth_max_thing_depth(tmp_path):
    out = tmp_path / "near"
    args = ["synth", "--out", str(out), "--train", "1", "--size", "32x64", "--no-progress"]
    assert cli.main([*args, "--max-thing-depth", "25"]) == 0
    assert json.loads((out / "panonet_synth.json").read_text())["max_thing_depth"] == 25.0
    assert cli.main([*args, "--max-thing-depth", "-2"]) == 2


def test_synth_twin_rows(tmp_path):
    out = tmp_path / "rows"
    args = ["synth", "--out", str(out), "--train", "1", "--size", "32x64", "--no-progress"]
    assert cli.main([*args, "--twin-row", "4", "--twin-groups", "3"]) == 0
    manifest = json.loads((out / "panonet_synth.json").read_text())
    assert (manifest["twin_row"], manifest["twin_groups"]) == (4, 3)
    assert cli.main([*args, "--twin-row", "1"]) == 2
