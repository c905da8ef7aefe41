"""'panonet predict' and 'panonet search-bandwidth' end to end on tiny inputs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from panonet.cli import main
from panonet.data.synthetic import generate
from panonet.inference import bandwidth_table
from panonet.models import PanoNet
from panonet.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", PanoNet())


def test_predict_images_with_a_corrupt_one(tmp_path, checkpoint, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        image = np.random.default_rng(k).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        Image.fromarray(image).save(src / f"frame{k}.png")
    (src / "zz_broken.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    args = ["predict", str(src), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 1, "an input failed: non-zero exit"
    report = capsys.readouterr().out
    assert "2 frame(s) predicted" in report and "zz_broken.png" in report
    assert "median ms per frame" in report
    assert sorted(p.name for p in out.iterdir()) == [
        "frame0_overlay.png",
        "frame0_panoptic.png",
        "frame1_overlay.png",
        "frame1_panoptic.png",
    ]
    (src / "zz_broken.png").unlink()
    assert main([*args, "--no-progress"]) == 1, "existing outputs are not overwritten"
    assert "use --overwrite" in capsys.readouterr().out
    assert main([*args, "--no-progress", "--overwrite"]) == 0


def test_predict_bad_checkpoint(tmp_path, capsys):
    code = main(["predict", str(tmp_path), "--checkpoint", str(tmp_path / "no.pt"), "--out", "x"])
    assert code == 2
    assert "panonet predict: error: no such file" in capsys.readouterr().err


def test_search_bandwidth(tmp_path, checkpoint, capsys):
    data = tmp_path / "data"
    generate(data, train=2, val=0, size=(64, 128), seed=0, progress=False)
    out = tmp_path / "bw.json"
    code = main(
        [
            "search-bandwidth",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(data),
            "--images",
            "2",
            "--candidates",
            "0.5",
            "1.0",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["candidates"] == [0.5, 1.0] and record["images"] == 2
    table = bandwidth_table(out)
    assert all(float(table[c]) in (0.5, 1.0) for c in range(11, 19))
    assert "wrote" in capsys.readouterr().out
    assert record["semantic_source"] == "pred"
    gt_out = tmp_path / "bw_gt.json"
    argv = ["search-bandwidth", "--checkpoint", str(checkpoint), "--data", str(data)]
    argv += ["--images", "2", "--candidates", "0.5", "--semantic", "gt", "--out", str(gt_out)]
    assert main([*argv, "--no-progress"]) == 0
    assert json.loads(gt_out.read_text())["semantic_source"] == "gt"
    assert "(semantic from gt)" in capsys.readouterr().out
    assert (
        main(
            [
                "search-bandwidth",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(data),
                "--images",
                "0",
                "--out",
                str(out),
            ]
        )
        == 2
    )
