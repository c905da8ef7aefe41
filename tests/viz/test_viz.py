"""Visualisation: colours per class and instance, borders, overlay blending, PNG output."""

import numpy as np
import pytest
import torch
from PIL import Image

from panonet.data.labels import PALETTE
from panonet.viz import (
    PAPER_POINTS,
    overlay,
    panoptic_colors,
    pq_fps_plot,
    save_visualization,
    segment_borders,
    side_by_side,
)

ROAD, CAR = 7, 26  # labelIds; trainIds 0 and 13


def panoptic() -> np.ndarray:
    """Road on the left, two cars on the right, a void strip at the bottom."""
    pan = np.full((6, 8), ROAD, dtype=np.int64)
    pan[:3, 4:] = CAR * 1000 + 0
    pan[3:5, 4:] = CAR * 1000 + 1
    pan[5, :] = 0
    return pan


def test_colors_follow_classes_and_separate_instances():
    colors = panoptic_colors(panoptic())
    assert colors.shape == (6, 8, 3) and colors.dtype == np.uint8
    assert (colors[0, 0] == PALETTE[0]).all(), "stuff: the palette colour of its trainId"
    assert (colors[0, 4] == PALETTE[13]).all(), "first instance: the class colour itself"
    assert not (colors[3, 4] == colors[0, 4]).all(), "second car differs from the first"
    assert np.abs(colors[3, 4].astype(int) - PALETTE[13].astype(int)).max() <= 70
    assert (colors[5] == 0).all(), "void is black"


def test_borders_mark_segment_changes_only():
    border = segment_borders(panoptic())
    assert border[0, 3] and not border[0, 2], "road | car boundary, not inside the road"
    assert border[2, 5] and not border[1, 5], "car 0 | car 1 boundary"
    assert not border[5, 0] and border[4, 0], "void strip: only its top edge"


def test_overlay_blends_and_draws_borders():
    pan = panoptic()
    image = np.full((6, 8, 3), 100, dtype=np.uint8)
    out = overlay(image, torch.from_numpy(pan), alpha=0.5)
    expected = np.rint(0.5 * 100 + 0.5 * PALETTE[0].astype(np.float32)).astype(np.uint8)
    assert (out[0, 0] == expected).all()
    assert (out[0, 3] == 255).all(), "border pixels are white"
    assert (overlay(image, pan, alpha=0.0)[~segment_borders(pan)] == 100).all()
    assert side_by_side(image, pan).shape == (6, 16, 3)


def test_save_visualization_writes_a_png(tmp_path):
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    path = save_visualization(tmp_path / "vis" / "frame.png", image, panoptic())
    loaded = np.asarray(Image.open(path))
    assert loaded.shape == (6, 16, 3)
    assert (loaded == side_by_side(image, panoptic())).all()
    assert [p.name for p in path.parent.iterdir()] == ["frame.png"], "no temp file left"


@pytest.mark.parametrize(
    "image, pan, match",
    [
        (np.zeros((6, 8, 3), np.float32), panoptic(), "uint8 RGB image"),
        (np.zeros((6, 9, 3), np.uint8), panoptic(), "expected equal"),
        (np.zeros((6, 8, 3), np.uint8), panoptic().astype(np.float64), "integer"),
    ],
)
def test_bad_inputs(image, pan, match):
    with pytest.raises(ValueError, match=match):
        overlay(image, pan)


def test_paper_points_hold_panonet():
    assert {"name": "PanoNet (paper, Titan X)", "pq": 55.1, "fps": 20.0} in PAPER_POINTS
    assert any(p["name"] == "UPSNet" and (p["pq"], p["fps"]) == (59.3, 4.2) for p in PAPER_POINTS)
    assert len(PAPER_POINTS) == 9  # Table IV's 9 rows (Li et al.'s FPS from Table I's runtime)


def test_pq_fps_plot_writes_a_png(tmp_path):
    ours = {"name": "panonet", "pq": 12.3, "fps": 3.4, "device": "NVIDIA H100"}
    path = pq_fps_plot(tmp_path / "plots" / "fig1.png", PAPER_POINTS, ours=ours)
    assert path == tmp_path / "plots" / "fig1.png"
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1125, 750)  # 7.5 x 5 inches at 150 dpi
        pixels = np.asarray(image.convert("RGB"))
    # The highlighted point is drawn: some pure-ish red (tab:red) pixels exist.
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 50
    assert list(tmp_path.joinpath("plots").iterdir()) == [path], "no temporary file left"
    with pytest.raises(ValueError, match="device"):
        pq_fps_plot(tmp_path / "x.png", ours={"name": "a", "pq": 1.0, "fps": 1.0})
    with pytest.raises(ValueError, match="FPS"):
        pq_fps_plot(tmp_path / "x.png", ours={**ours, "fps": 0.0})


def test_training_curves_from_a_log(tmp_path):
    import json

    from panonet.viz import training_curves

    log = tmp_path / "metrics.jsonl"
    rows = [{"kind": "event", "step": 0, "event": "start"}]
    for step in range(1, 61):
        stage = 1 if step <= 40 else 2
        rows.append(
            {
                "kind": "train",
                "step": step,
                "stage": stage,
                "sem": 3.0 / step,
                "inst": 5.0 / step,
                "total": 8.0 / step,
            }
        )
    rows.append({"kind": "val", "step": 40, "stage": 1, "miou": 0.2})
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path = training_curves(log, tmp_path / "curves.png")
    with Image.open(path) as im:
        assert im.size == (1200, 675)
    assert path.stat().st_size > 10_000
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"kind": "event", "step": 0}) + "\n")
    with pytest.raises(ValueError, match="no training records"):
        training_curves(empty, tmp_path / "x.png")
