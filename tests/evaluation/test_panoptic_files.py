"""The panoptic file API against cityscapesscripts on the same files.

Ground truth: fabricated ``gtFine_instanceIds.png`` files converted by the official
``createPanopticImgs.convert2panoptic``. Predictions: written by
:func:`write_panoptic_predictions` (or by hand, for COCO ids that do not follow the Cityscapes
convention). Reference: the official ``pq_compute_single_core`` + ``average_pq`` (what
``evaluatePanoptic`` runs per worker and then averages) and ``evaluatePanoptic`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs_pq
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
from PIL import Image

from panonet.data.labels import CLASSES, LABEL_TO_TRAIN
from panonet.evaluation import (
    PanopticStats,
    evaluate_panoptic,
    panoptic_stats,
    write_panoptic_predictions,
)
from panonet.evaluation.panoptic_files import id_to_rgb, rgb_to_id
from tests.evaluation.test_panoptic import random_gt, random_pred

ROAD, SIDEWALK, CAR, PERSON = 7, 8, 26, 24


def make_gt(tmp_path: Path, gts: list[np.ndarray], *, train_id: bool = False) -> tuple[Path, Path]:
    """Official panoptic ground truth (JSON, PNG folder) of instanceIds maps."""
    city = tmp_path / "gtFine" / "val" / "town"
    city.mkdir(parents=True)
    for i, gt in enumerate(gts):
        Image.fromarray(gt.astype(np.uint16)).save(city / f"{stem(i)}_gtFine_instanceIds.png")
    out = tmp_path / "panoptic"
    out.mkdir()
    convert2panoptic(str(tmp_path / "gtFine"), str(out), useTrainId=train_id, setNames=["val"])
    base = "cityscapes_panoptic_val" + ("_trainId" if train_id else "")
    return out / f"{base}.json", out / base


def stem(i: int) -> str:
    return f"town_000000_{i:06d}"


def official(gt_json: Path, gt_folder: Path, pred_json: Path, pred_folder: Path):
    gt_data = json.loads(gt_json.read_text())
    categories = {c["id"]: c for c in gt_data["categories"]}
    by_image = {a["image_id"]: a for a in json.loads(pred_json.read_text())["annotations"]}
    pairs = [(a, by_image[a["image_id"]]) for a in gt_data["annotations"]]
    stat = cs_pq.pq_compute_single_core(0, pairs, str(gt_folder), str(pred_folder), categories)
    return cs_pq.average_pq(stat, categories), stat


def assert_same(ours: dict, theirs: dict, stat=None) -> None:
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == theirs[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(theirs[group][key], abs=1e-6), group
    assert list(ours["per_class"]) == list(theirs["per_class"])  # same categories, same order
    for cat, mine in ours["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert mine[key] == pytest.approx(theirs["per_class"][cat][key], abs=1e-6), cat
        if stat is not None:
            c = stat.pq_per_cat[cat]
            assert (mine["tp"], mine["fp"], mine["fn"]) == (c.tp, c.fp, c.fn), cat


@pytest.mark.parametrize("seed", range(3))
def test_written_predictions_match_official(tmp_path, seed):
    rng = np.random.default_rng(seed)
    gts = [random_gt(rng, 24, 32) for _ in range(3)]
    preds = [random_pred(rng, gt) for gt in gts]
    gt_json, gt_folder = make_gt(tmp_path, gts)
    pred_json, pred_folder = tmp_path / "pred" / "pred.json", tmp_path / "pred" / "png"
    items = ((stem(i), torch.from_numpy(p)) for i, p in enumerate(preds))  # a generator
    assert write_panoptic_predictions(pred_json, pred_folder, items) == pred_json

    ours = evaluate_panoptic(gt_json, gt_folder, pred_json, pred_folder)
    theirs, stat = official(gt_json, gt_folder, pred_json, pred_folder)
    assert_same(ours, theirs, stat)
    # ... and the array API on the same maps gives the same numbers.
    arrays = sum(
        (panoptic_stats(p, g) for p, g in zip(preds, gts, strict=True)), PanopticStats()
    ).summary()
    for c in CLASSES:
        assert ours["per_class"][c.label_id]["pq"] == pytest.approx(
            arrays["per_class"][c.name]["pq"], abs=1e-12
        )


def test_official_entry_point(tmp_path, monkeypatch, capsys):
    """evaluatePanoptic itself (worker processes, results file) on the same files."""
    monkeypatch.setattr(cs_pq.multiprocessing, "cpu_count", lambda: 2)
    rng = np.random.default_rng(42)
    gts = [random_gt(rng, 32, 48) for _ in range(3)]
    preds = [random_pred(rng, gt) for gt in gts]
    gt_json, gt_folder = make_gt(tmp_path, gts)
    pred_json, pred_folder = tmp_path / "pred.json", tmp_path / "pred"
    write_panoptic_predictions(pred_json, pred_folder, [(stem(i), p) for i, p in enumerate(preds)])
    capsys.readouterr()
    ours = evaluate_panoptic(gt_json, gt_folder, pred_json, pred_folder)
    assert capsys.readouterr().out == "", "evaluate_panoptic prints nothing"
    theirs = cs_pq.evaluatePanoptic(
        str(gt_json), str(gt_folder), str(pred_json), str(pred_folder), str(tmp_path / "r.json")
    )
    assert_same(ours, theirs)


def test_coco_ids_and_train_id_categories(tmp_path):
    """Predictions with arbitrary COCO segment ids (two segments of one stuff class, thing ids
    without the labelId * 1000 structure) and ground truth with trainId categories."""
    gt = np.full((20, 30), ROAD, dtype=np.int64)
    gt[:, 20:] = SIDEWALK
    gt[2:8, 2:10] = CAR * 1000 + 1
    gt[10:16, 2:10] = CAR * 1000 + 2
    gt[12:18, 12:18] = PERSON  # a crowd of persons
    gt[0:2, :] = 0  # void
    gt_json, gt_folder = make_gt(tmp_path, [gt], train_id=True)

    car, person, road, sidewalk = (int(LABEL_TO_TRAIN[v]) for v in (CAR, PERSON, ROAD, SIDEWALK))
    seg = np.zeros(gt.shape, dtype=np.int64)
    seg[:, :10] = 5  # road, left part
    seg[:, 10:20] = 77  # road again, another segment: matches nothing alone
    seg[:, 20:] = 123456  # sidewalk
    seg[2:8, 2:10] = 9  # car 1: exact
    seg[10:15, 2:10] = 300  # car 2: IoU 40 / 48
    seg[12:18, 12:17] = 4242  # a person on the crowd: forgiven
    seg[0:2, 0:3] = 0
    info = {5: road, 77: road, 123456: sidewalk, 9: car, 300: car, 4242: person}
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    Image.fromarray(id_to_rgb(seg)).save(pred_dir / "p.png")
    segments = [{"id": k, "category_id": v} for k, v in info.items()]
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(
        json.dumps(
            {
                "annotations": [
                    {"image_id": stem(0), "file_name": "p.png", "segments_info": segments}
                ]
            }
        )
    )
    ours = evaluate_panoptic(gt_json, gt_folder, pred_json, pred_dir)
    theirs, stat = official(gt_json, gt_folder, pred_json, pred_dir)
    assert_same(ours, theirs, stat)
    assert (ours["per_class"][car]["tp"], ours["per_class"][person]["fp"]) == (2, 0)
    assert ours["per_class"][road]["fp"] == 1  # the second road segment


def test_write_format_and_errors(tmp_path):
    pan = np.full((4, 6), ROAD, dtype=np.int64)
    pan[0:2, 0:2] = CAR * 1000 + 3
    pan[3, :] = 0
    path = write_panoptic_predictions(tmp_path / "p.json", tmp_path / "png", [("a_1_2", pan)])
    data = json.loads(path.read_text())
    (ann,) = data["annotations"]
    assert ann["image_id"] == "a_1_2" and ann["file_name"] == "a_1_2.png"
    assert {(s["id"], s["category_id"], s["area"]) for s in ann["segments_info"]} == {
        (ROAD, ROAD, 14),
        (CAR * 1000 + 3, CAR, 4),
    }
    assert [c["id"] for c in data["categories"]] == [c.label_id for c in CLASSES]
    png = np.asarray(Image.open(tmp_path / "png" / "a_1_2.png"))
    assert png.dtype == np.uint8 and png.shape == (4, 6, 3)
    assert np.array_equal(rgb_to_id(png), pan)

    with pytest.raises(ValueError, match="not evaluated"):
        write_panoptic_predictions(tmp_path / "q.json", tmp_path, [("x", np.full((2, 2), 4))])
    with pytest.raises(ValueError, match="twice"):
        write_panoptic_predictions(tmp_path / "q.json", tmp_path, [("x", pan), ("x", pan)])
    with pytest.raises(ValueError, match="file name"):
        write_panoptic_predictions(tmp_path / "q.json", tmp_path, [("../x", pan)])
    assert not (tmp_path / "q.json").exists()

    # Evaluation errors: a missing image, a PNG id missing from the JSON.
    gt_json, gt_folder = make_gt(tmp_path / "gt", [pan])
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_panoptic(gt_json, gt_folder, path, tmp_path / "png")
    write_panoptic_predictions(tmp_path / "r.json", tmp_path / "r", [(stem(0), pan)])
    data = json.loads((tmp_path / "r.json").read_text())
    data["annotations"][0]["segments_info"].pop()
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not in the JSON"):
        evaluate_panoptic(gt_json, gt_folder, tmp_path / "r.json", tmp_path / "r")
