"""Panoptic quality against cityscapesscripts' evalPanopticSemanticLabeling on the same images.

The ground truth goes through the official pipeline end to end: Cityscapes-style
``gtFine_instanceIds.png`` files are converted by ``createPanopticImgs.convert2panoptic`` into
the COCO-panoptic JSON + PNGs, predictions are written in the same format, and the official
``pq_compute_single_core`` + ``average_pq`` (what ``evaluatePanoptic`` runs on each worker and
then averages) compute the reference. panonet sees the same instanceIds maps as arrays.
"""

import json
import math

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs_pq
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
from PIL import Image

from panonet.data.labels import CLASSES, LABEL_TO_TRAIN, TRAIN_TO_LABEL
from panonet.evaluation import PanopticStats, gt_panoptic_from_semantic_instance, panoptic_stats

THING_LABELS = sorted(lb.id for lb in cs_labels if lb.hasInstances and lb.id >= 0)  # + caravan..
EVAL_LABELS = TRAIN_TO_LABEL.tolist()
EVAL_THINGS = [c.label_id for c in CLASSES if c.is_thing]


# --- the official format ---------------------------------------------------------------------


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def official_pq(tmp_path, gts: list[np.ndarray], preds: list[np.ndarray], *, full: bool = False):
    """cityscapesscripts' result on instanceIds-style ground truths and panoptic predictions.

    Returns the ``average_pq`` dict and the ``PQStat`` with the raw per-class counts (the latter
    None when ``full``, which runs the multiprocessing ``evaluatePanoptic`` entry point).
    """
    city = tmp_path / "gtFine" / "val" / "town"
    city.mkdir(parents=True)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    annotations = []
    for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        stem = f"town_000000_{i:06d}"
        Image.fromarray(gt.astype(np.uint16)).save(city / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(id_to_rgb(pred)).save(pred_dir / f"{stem}.png")
        ids = [int(v) for v in np.unique(pred) if v != 0]
        segments = [{"id": v, "category_id": v // 1000 if v >= 1000 else v} for v in ids]
        annotations.append(
            {"image_id": stem, "file_name": f"{stem}.png", "segments_info": segments}
        )
    out = tmp_path / "panoptic"
    out.mkdir()
    convert2panoptic(
        cityscapesPath=str(tmp_path / "gtFine"), outputFolder=str(out), setNames=["val"]
    )
    gt_json, gt_folder = out / "cityscapes_panoptic_val.json", out / "cityscapes_panoptic_val"
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({"annotations": annotations}))
    if full:
        result = cs_pq.evaluatePanoptic(
            str(gt_json), str(gt_folder), str(pred_json), str(pred_dir), str(tmp_path / "r.json")
        )
        return result, None
    gt_data = json.loads(gt_json.read_text())
    categories = {c["id"]: c for c in gt_data["categories"]}
    by_image = {a["image_id"]: a for a in annotations}
    pairs = [(a, by_image[a["image_id"]]) for a in gt_data["annotations"]]
    stat = cs_pq.pq_compute_single_core(0, pairs, str(gt_folder), str(pred_dir), categories)
    return cs_pq.average_pq(stat, categories), stat


def loader_format(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(semantic trainIds, instance) as panonet.data.CityscapesPanoptic yields them."""
    label = np.where(gt >= 1000, gt // 1000, gt)
    return LABEL_TO_TRAIN[label], np.where(gt >= 1000, gt, -1)


def assert_same(ours: PanopticStats, official: dict, stat=None) -> None:
    summary = ours.summary()
    for group in ("All", "Things", "Stuff"):
        assert summary[group]["n"] == official[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert summary[group][key] == pytest.approx(official[group][key], abs=1e-9), group
    for c in CLASSES:
        mine, theirs = summary["per_class"][c.name], official["per_class"][c.label_id]
        for key in ("pq", "sq", "rq"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-9), (c.name, key)
        if stat is not None:
            cat = stat.pq_per_cat[c.label_id]
            assert (mine["tp"], mine["fp"], mine["fn"]) == (cat.tp, cat.fp, cat.fn), c.name
            assert ours.iou[c.train_id] == pytest.approx(cat.iou, abs=1e-9), c.name


# --- random scenes -----------------------------------------------------------------------------


def random_gt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An instanceIds-like map: any labelId 0..33 (void and non-evaluated ones included),
    thing instances labelId * 1000 + k, thing group (crowd) regions as the plain labelId."""
    gt = np.full((h, w), rng.choice([7, 23, 0, 11]), dtype=np.int64)
    next_k: dict[int, int] = {}
    for _ in range(rng.integers(4, 14)):
        y, x = rng.integers(0, h), rng.integers(0, w)
        dy, dx = rng.integers(2, h // 2 + 2), rng.integers(2, w // 2 + 2)
        if rng.random() < 0.5:
            label = int(rng.choice(THING_LABELS))
        else:
            label = int(rng.integers(0, 34))
        value = label
        if label in THING_LABELS and rng.random() < 0.8:
            k = next_k.get(label, int(rng.integers(0, 2)))  # Cityscapes' k starts at 0 or 1
            next_k[label] = k + 1
            value = label * 1000 + k
        gt[y : y + dy, x : x + dx] = value
    return gt


def random_pred(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A prediction near the ground truth: shifted, repainted, relabelled in places."""
    h, w = gt.shape
    label = np.where(gt >= 1000, gt // 1000, gt)
    # Non-evaluated ground truth: void or a random evaluated class in the prediction.
    pred = np.where(LABEL_TO_TRAIN[label] == 255, rng.choice([0, 7, 21]), gt)
    pred = np.roll(pred, (rng.integers(-2, 3), rng.integers(-2, 3)), axis=(0, 1))
    for _ in range(rng.integers(0, 8)):
        y, x = rng.integers(0, h), rng.integers(0, w)
        dy, dx = rng.integers(1, h // 2), rng.integers(1, w // 2)
        r = rng.random()
        if r < 0.2:
            value = 0
        elif r < 0.5:
            value = int(rng.choice(EVAL_LABELS))  # stuff, or a thing class without an instance
        else:
            value = int(rng.choice(EVAL_THINGS)) * 1000 + int(rng.integers(0, 4))
        pred[y : y + dy, x : x + dx] = value
    if rng.random() < 0.5:  # renumber the instances of one class
        things = [v for v in np.unique(pred) if v >= 1000]
        if len(things) >= 2:
            a, b = rng.choice(things, 2, replace=False)
            pred = np.where(pred == a, b, np.where(pred == b, a, pred))
    return pred


@pytest.mark.parametrize("seed", range(8))
def test_random_scenes_match_official(tmp_path, seed):
    rng = np.random.default_rng(seed)
    gts = [random_gt(rng, 24, 32) for _ in range(4)]
    preds = [random_pred(rng, gt) for gt in gts]
    official, stat = official_pq(tmp_path, gts, preds)

    ours = PanopticStats()
    for gt, pred in zip(gts, preds, strict=True):
        ours.update(torch.from_numpy(pred), gt)  # raw instanceIds as gt_panoptic
    assert_same(ours, official, stat)

    # The dataset's (semantic, instance) format and a batch give the same counts.
    sem, inst = zip(*(loader_format(gt) for gt in gts), strict=True)
    batch = panoptic_stats(np.stack(preds), gt_semantic=np.stack(sem), gt_instance=np.stack(inst))
    for key in ("tp", "fp", "fn"):
        assert np.array_equal(getattr(batch, key), getattr(ours, key))
    assert np.allclose(batch.iou, ours.iou, rtol=0, atol=1e-12)


def test_official_entry_point(tmp_path, capsys, monkeypatch):
    """evaluatePanoptic itself (multiprocessing, file output) agrees on a larger case."""
    # It starts one worker per core; two suffice for three images on any machine.
    monkeypatch.setattr(cs_pq.multiprocessing, "cpu_count", lambda: 2)
    rng = np.random.default_rng(123)
    gts = [random_gt(rng, 48, 64) for _ in range(3)]
    preds = [random_pred(rng, gt) for gt in gts]
    official, _ = official_pq(tmp_path, gts, preds, full=True)
    ours = sum((panoptic_stats(p, g) for p, g in zip(preds, gts, strict=True)), PanopticStats())
    assert_same(ours, official)


# --- hand-made cases ---------------------------------------------------------------------------

ROAD, CAR, PERSON = 7, 26, 24


def counts(stats: PanopticStats, train_id: int) -> tuple[int, int, int]:
    return int(stats.tp[train_id]), int(stats.fp[train_id]), int(stats.fn[train_id])


def test_perfect_prediction_and_swapped_ids(tmp_path):
    rng = np.random.default_rng(7)
    gt = random_gt(rng, 24, 32)
    pred = np.where(LABEL_TO_TRAIN[np.where(gt >= 1000, gt // 1000, gt)] == 255, 0, gt)
    perfect = panoptic_stats(pred, gt).summary()
    for group in ("All", "Things", "Stuff"):
        if perfect[group]["n"]:
            assert (perfect[group]["pq"], perfect[group]["sq"], perfect[group]["rq"]) == (1, 1, 1)
    # Renumbering the instances of a class (any ids, same segments) changes nothing.
    # Within each class, a permutation of its ids plus an unused id (k = 900 + ...).
    perm = {}
    for label in np.unique(pred[pred >= 1000] // 1000):
        ids = np.unique(pred[pred // 1000 == label])
        new = rng.permutation(np.append(ids, label * 1000 + 900))[: len(ids)]
        perm.update(zip(ids.tolist(), new.tolist(), strict=True))
    assert any(k != v for k, v in perm.items())
    swapped = np.vectorize(lambda v: perm.get(v, v))(pred)
    assert panoptic_stats(swapped, gt).summary() == perfect
    official, stat = official_pq(tmp_path, [gt], [swapped])
    assert_same(panoptic_stats(swapped, gt), official, stat)


def test_hand_made_rules(tmp_path):
    car_t, person_t, road_t = (int(LABEL_TO_TRAIN[v]) for v in (CAR, PERSON, ROAD))
    # 1. IoU exactly 0.5 is no match: one FP and one FN.
    gt1 = np.full((4, 8), ROAD)
    gt1[0, :4] = CAR * 1000
    pred1 = np.full((4, 8), ROAD)
    pred1[0, :8] = CAR * 1000 + 5  # 4 on the car, 4 on road: IoU = 4 / 8
    s1 = panoptic_stats(pred1, gt1)
    assert counts(s1, car_t) == (0, 1, 1)
    assert counts(s1, road_t) == (1, 0, 0)
    # 2. Predicted pixels on gt void leave the union: a car spilling onto void still has IoU 1.
    gt2 = np.full((4, 8), ROAD)
    gt2[0, :4] = CAR * 1000 + 1
    gt2[1, :4] = 0
    pred2 = np.full((4, 8), ROAD)
    pred2[:2, :4] = CAR * 1000 + 1
    s2 = panoptic_stats(pred2, gt2)
    assert counts(s2, car_t) == (1, 0, 0) and s2.iou[car_t] == 1.0
    # 3. Unmatched predictions: ignored with > 50% on void, a FP with exactly 50%.
    gt3 = np.full((4, 8), ROAD)
    gt3[0, :3] = 0
    gt3[1, :2] = 3  # "out of roi": not evaluated, void too
    pred3 = np.full((4, 8), ROAD)
    pred3[0, :5] = CAR * 1000  # 3 of 5 on void: ignored
    pred3[1, :4] = CAR * 1000 + 1  # 2 of 4 on void: a false positive
    assert counts(panoptic_stats(pred3, gt3), car_t) == (0, 1, 0)
    # 4. Crowd regions: never FN; a prediction of the crowd's class mostly on it is ignored, one
    # of another class is not.
    gt4 = np.full((4, 8), ROAD)
    gt4[:2, :4] = PERSON  # a group of persons
    pred4 = np.full((4, 8), ROAD)
    pred4[0, :4] = PERSON * 1000  # 4 of 4 on the crowd: ignored
    pred4[1, :4] = CAR * 1000  # on the person crowd: a car FP
    s4 = panoptic_stats(pred4, gt4)
    assert counts(s4, person_t) == (0, 0, 0) and counts(s4, car_t) == (0, 1, 0)
    summary4 = s4.summary()
    assert summary4["per_class"]["person"]["pq"] == 0.0  # absent: 0.0 as in the official script
    assert summary4["Things"]["n"] == 1 and summary4["Things"]["pq"] == 0.0

    gts, preds = [gt1, gt2, gt3, gt4], [pred1, pred2, pred3, pred4]
    official, stat = official_pq(tmp_path, gts, preds)
    total = PanopticStats()
    for s in (s1, s2, panoptic_stats(pred3, gt3), s4):
        total.merge(s)
    assert_same(total, official, stat)


def test_gt_from_loader_format_matches_instance_ids():
    rng = np.random.default_rng(3)
    gt = random_gt(rng, 24, 32)
    sem, inst = loader_format(gt)
    label = np.where(gt >= 1000, gt // 1000, gt)
    expected = np.where(LABEL_TO_TRAIN[label] == 255, 0, gt)  # what createPanopticImgs keeps
    out = gt_panoptic_from_semantic_instance(torch.from_numpy(sem), torch.from_numpy(inst))
    assert out.dtype == torch.int64 and np.array_equal(out.numpy(), expected)
    # A batch, numpy in, tensor out.
    batch = gt_panoptic_from_semantic_instance(np.stack([sem, sem]), np.stack([inst, inst]))
    assert np.array_equal(batch.numpy(), np.stack([expected, expected]))
    # Instance ids of another class than the semantic label: the targets are out of sync.
    bad = inst.copy()
    bad[inst >= 1000] = 24_000 if (inst // 1000 != 24).any() else 26_000
    with pytest.raises(ValueError, match="another class"):
        gt_panoptic_from_semantic_instance(sem, bad)


def test_accumulator_edges():
    gt = np.full((4, 4), ROAD)
    stats = panoptic_stats(gt, gt)
    summary = stats.summary()
    assert summary["Stuff"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    assert summary["Things"]["n"] == 0 and math.isnan(summary["Things"]["pq"])  # official: 1/0
    assert list(summary["per_class"]) == [c.name for c in CLASSES]
    doubled = stats + stats
    assert doubled.tp[0] == 2 and stats.tp[0] == 1  # + copies, merge adds in place
    # Huge ground-truth ids (not a Cityscapes class: void) take the sorting path; same result.
    huge = gt.copy()
    huge[0, :2] = [1 << 24, -1]
    via_sort = panoptic_stats(gt, huge)
    dense = panoptic_stats(gt, np.where(huge == ROAD, ROAD, 0))
    assert via_sort.iou[0] == dense.iou[0] == 14 / 14  # the 2 void pixels leave the union
    for key in ("tp", "fp", "fn", "iou"):
        assert np.array_equal(getattr(via_sort, key), getattr(dense, key))
    with pytest.raises(ValueError, match="not evaluated"):
        panoptic_stats(np.full((4, 4), 4), gt)  # labelId 4 ("static") is no predicted class
    with pytest.raises(ValueError, match="shape"):
        panoptic_stats(gt[:2], gt)
    with pytest.raises(ValueError, match="either"):
        panoptic_stats(gt)


def test_device_tensors_give_the_cpu_counts(device):
    rng = np.random.default_rng(11)
    gt = random_gt(rng, 24, 32)
    pred = random_pred(rng, gt)
    on_device = panoptic_stats(torch.from_numpy(pred).to(device), torch.from_numpy(gt).to(device))
    on_cpu = panoptic_stats(pred, gt)
    for key in ("tp", "fp", "fn", "iou"):
        assert np.array_equal(getattr(on_device, key), getattr(on_cpu, key))
    sem, inst = loader_format(gt)
    out = gt_panoptic_from_semantic_instance(
        torch.from_numpy(sem).to(device), torch.from_numpy(inst).to(device)
    )
    assert out.device.type == torch.device(device).type
