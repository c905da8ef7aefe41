"""'panonet demo --quick' end to end: every stage of the pipeline on tiny images, the outputs it
promises, and continuing a finished demo without training again."""

import json

from panonet.cli import main
from panonet.inference.min_size_search import DEFAULT_MIN_SIZES
from panonet.models.checkpoint import load_model


def test_demo_quick_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    text = capsys.readouterr().out
    for header in ("1/5 synthesize", "2/5 train", "3/5 search", "4/5 evaluate", "5/5 mirrored"):
        assert header in text, header
    assert "| PQ | SQ | RQ |" in text and "| model | twin pairs |" in text
    metrics = json.loads((out / "metrics.json").read_text())
    evaluation = metrics["evaluation"]
    assert evaluation["images"] == 3 and 0.0 <= evaluation["panoptic"]["All"]["pq"] <= 1.0
    assert set(metrics["mirror_test"]) == {"final (with coordinates)", "stage 1 (no coordinates)"}
    assert metrics["mirror_test"]["final (with coordinates)"]["use_coords"] is True
    assert metrics["mirror_test"]["stage 1 (no coordinates)"]["use_coords"] is False
    assert set(metrics["seconds"]) >= {"synth", "train", "search", "eval", "mirror", "total"}
    # The minimum instance size searched on the search images is the one evaluated with.
    size_search = metrics["min_size_search"]
    assert size_search["candidates"] == list(DEFAULT_MIN_SIZES)
    assert metrics["min_instance_size"] == size_search["best"] in DEFAULT_MIN_SIZES
    # Stage 2 adds the coordinates to the embedding; stage 1's twins are clustered with the
    # bandwidths searched for stage 1.
    assert load_model(out / "run" / "checkpoints" / "final.pt").coord_output == 8.0
    things = {"person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
    stage1_bandwidths = metrics["bandwidths_stage1"]
    assert stage1_bandwidths and set(stage1_bandwidths) <= things
    assert all(b > 0 for b in stage1_bandwidths.values())
    for path in (
        "bandwidths.json",
        "training_curves.png",
        "run/checkpoints/final.pt",
        "run/checkpoints/stage1.pt",
        "data/leftImg8bit/val",
    ):
        assert (out / path).exists(), path
    assert len(list((out / "overlays").glob("*.png"))) == 2
    assert len(list((out / "mirror").glob("mirror_*.png"))) == 2

    # Running it again continues: the data and the trained model are reused.
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert "already trained" in capsys.readouterr().out

    # The full demo into the quick demo's folder: refused up front (the data would mix).
    assert main(["demo", "--out", str(out), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("panonet demo: error: ") and "generated differently" in err


def test_demo_sizes_follow_the_device():
    # A GPU trains the paper's network on more images, with twice the batch; the CPU a
    # half-width one; --quick wins everywhere.
    from panonet.demo import FULL, GPU, QUICK, settings_for

    assert settings_for(False, "cpu") is FULL
    assert settings_for(False, "cuda") is GPU and settings_for(False, "cuda:1") is GPU
    assert settings_for(True, "cuda") is QUICK and settings_for(True, "cpu") is QUICK
    assert GPU.batch_size == 2 * FULL.batch_size
    images = [s.batch_size * (s.stage1_steps + s.stage2_steps) for s in (GPU, FULL)]
    assert images[0] > images[1]
    assert (GPU.width, FULL.width) == (1.0, 0.5)
