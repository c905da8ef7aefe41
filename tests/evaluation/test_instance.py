"""Instance AP against cityscapesscripts' evalInstanceLevelSemanticLabeling on the same images.

The reference is the official script itself, driven through its ``evaluateImgLists`` entry
point on files in its formats: ground truth as ``*_gtFine_instanceIds.png``, predictions as one
``.txt`` per image listing ``relative/mask.png labelId confidence`` with a binary PNG per mask.
Its module-level ``args`` object is pointed at the temporary files (ground-truth cache, no JSON
output, quiet); it writes ``matches.json`` into the working directory, hence the chdir. NumPy >= 2.4
lacks ``np.in1d`` and returns NumPy scalars its JSON writer cannot serialise; the test supplies
the equivalent ``np.isin`` and a writer that can (neither touches the computation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as cs_inst
from cityscapesscripts.helpers.labels import labels as cs_labels
from PIL import Image

from panonet.data.labels import CLASSES, LABEL_TO_TRAIN, THING_TRAIN_IDS, TRAIN_TO_LABEL
from panonet.evaluation.instance import (
    OVERLAPS,
    InstanceAPStats,
    InstanceMap,
    ScoredInstance,
    instance_ids_from_targets,
    instances_from_maps,
    scored_instance_map,
)

PERSON, RIDER, CAR, TRUCK, BUS, CARAVAN, BICYCLE = 24, 25, 26, 27, 28, 29, 33
ROAD = 7
THING_NAMES = [CLASSES[t].name for t in THING_TRAIN_IDS]

Prediction = tuple[np.ndarray, int, float]  # (mask (H, W) bool, labelId, score)


def official_ap(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gts: list[np.ndarray],
    preds: list[list[Prediction]],
    min_region_size: int,
) -> dict:
    """The official ``averages`` dict for instanceIds ground truths and mask predictions."""
    gt_dir = tmp_path / "gtFine" / "val" / "town"
    pred_dir = tmp_path / "results"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir()
    gt_files, pred_files = [], []
    for i, (gt, image_preds) in enumerate(zip(gts, preds, strict=True)):
        stem = f"town_000000_{i:06d}"
        gt_file = gt_dir / f"{stem}_gtFine_instanceIds.png"
        Image.fromarray(gt.astype(np.uint16)).save(gt_file)
        lines = []
        for j, (mask, label_id, score) in enumerate(image_preds):
            name = f"masks/{stem}_{j}.png"
            (pred_dir / "masks").mkdir(exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(pred_dir / name)
            lines.append(f"{name} {label_id} {score!r}\n")  # repr: the score round-trips
        txt = pred_dir / f"{stem}_pred.txt"
        txt.write_text("".join(lines))
        gt_files.append(str(gt_file))
        pred_files.append(str(txt))

    args = cs_inst.args
    monkeypatch.setattr(args, "gtInstancesFile", str(tmp_path / "gtInstances.json"))
    monkeypatch.setattr(args, "exportFile", str(tmp_path / "result.json"))
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "colorized", False)
    monkeypatch.setattr(args, "distanceAvailable", False)
    monkeypatch.setattr(args, "predictionPath", str(pred_dir.resolve()))
    monkeypatch.setattr(args, "predictionWalk", None)
    monkeypatch.setattr(args, "minRegionSizes", np.array([min_region_size, 1000, 1000]))
    monkeypatch.chdir(tmp_path)  # it writes matches.json into the working directory
    if not hasattr(np, "in1d"):
        # NumPy 2.4 removed np.in1d, which the script uses for its void mask; this is its exact
        # documented equivalent (a flat np.isin), present only during the call.
        monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    # Its JSON dump of the matches (a debug file, never read back) chokes on the NumPy 2 integer
    # scalars that np.count_nonzero now returns; write those as plain numbers instead.
    monkeypatch.setattr(cs_inst, "writeDict2JSON", _write_json)
    return cs_inst.evaluateImgLists(pred_files, gt_files, args)["averages"]


def _write_json(data: dict, file_name: str) -> None:
    def default(o: object) -> object:
        return o.item() if isinstance(o, np.generic) else o.__dict__

    Path(file_name).write_text(json.dumps(data, default=default, sort_keys=True, indent=4))


def ours_ap(
    gts: list[np.ndarray], preds: list[list[Prediction]], min_region_size: int, *, loader: bool
) -> dict:
    stats = InstanceAPStats(min_region_size=min_region_size)
    for gt, image_preds in zip(gts, preds, strict=True):
        instances = [
            ScoredInstance(torch.from_numpy(m), int(LABEL_TO_TRAIN[lb]), s)
            for m, lb, s in image_preds
        ]
        if loader:  # the dataset's targets
            label = np.where(gt >= 1000, gt // 1000, gt)
            stats.update(instances, LABEL_TO_TRAIN[label], np.where(gt >= 1000, gt, -1))
        else:
            stats.update(instances, gt_instance_ids=gt)
    return stats.summary()


def assert_same(ours: dict, official: dict) -> None:
    def same(a: float, b: float) -> bool:
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6

    assert same(ours["AP"], official["allAp"]), (ours["AP"], official["allAp"])
    assert same(ours["AP50"], official["allAp50%"]), (ours["AP50"], official["allAp50%"])
    for name in THING_NAMES:
        mine, theirs = ours["per_class"][name], official["classes"][name]
        assert same(mine["AP"], theirs["ap"]), (name, mine["AP"], theirs["ap"])
        assert same(mine["AP50"], theirs["ap50%"]), (name, mine["AP50"], theirs["ap50%"])


# --- a hand-made case: every rule at least once ----------------------------------------------


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def hand_made() -> tuple[list[np.ndarray], list[list[Prediction]]]:
    shape = (40, 60)
    # Image 0: two cars, a person group (crowd), a tiny person, void, a caravan instance.
    g0 = np.full(shape, ROAD, dtype=np.int64)
    g0[0:10, 0:10] = CAR * 1000 + 0  # 100 px
    g0[0:10, 12:22] = CAR * 1000 + 1  # 100 px
    g0[20:30, 0:12] = PERSON  # group region, 120 px
    g0[20:23, 20:23] = PERSON * 1000 + 3  # 9 px: below min_region_size
    g0[32:40, 0:20] = 0  # unlabeled (void)
    g0[20:30, 40:50] = CARAVAN * 1000 + 1  # not evaluated, yet not void in the official rules
    g0[0:12, 40:55] = PERSON * 1000 + 1  # 180 px
    p0: list[Prediction] = [
        (rect(shape, 0, 10, 0, 10), CAR, 0.9),  # car 0, IoU 1
        (rect(shape, 0, 10, 0, 9), CAR, 0.8),  # car 0 again, IoU 0.9: duplicate
        (rect(shape, 0, 10, 14, 22), CAR, 0.7),  # car 1, IoU 0.8
        (rect(shape, 20, 30, 0, 11), PERSON, 0.95),  # on the group: ignored
        (rect(shape, 20, 24, 20, 23), PERSON, 0.5),  # on the tiny person: IoU 0.75, ignored
        (rect(shape, 31, 40, 0, 20), CAR, 0.6),  # mostly void: ignored until t >= 0.9
        (rect(shape, 20, 30, 40, 50), CAR, 0.85),  # on the caravan: a false positive
        (rect(shape, 0, 12, 40, 50), PERSON, 0.4),  # person 1, IoU 120/180
        (rect(shape, 15, 18, 30, 40), BUS, 0.3),  # bus without any bus ground truth: NaN AP
        (rect(shape, 0, 5, 0, 5), ROAD, 0.99),  # stuff prediction: skipped
    ]
    # Image 1: a truck never predicted, a car predicted with IoU in the middle of the range.
    g1 = np.full(shape, ROAD, dtype=np.int64)
    g1[5:25, 5:25] = TRUCK * 1000 + 0
    g1[5:15, 30:50] = CAR * 1000 + 5  # 200 px
    g1[30:40, 30:50] = RIDER * 1000 + 0
    p1: list[Prediction] = [
        (rect(shape, 5, 15, 33, 50), CAR, 0.65),  # IoU 170/200 = 0.85
        (rect(shape, 5, 15, 30, 42), CAR, 0.7),  # IoU 120/200 = 0.6: FP above t = 0.6
        (rect(shape, 30, 40, 30, 50), RIDER, 0.7),  # rider, IoU 1
        (rect(shape, 0, 3, 0, 3), RIDER, 0.7),  # a rider FP with a tied score
        (np.zeros(shape, dtype=bool), CAR, 0.99),  # empty mask: skipped
    ]
    # Image 2: a bicycle group with a bicycle mostly on it; a person partly on it.
    g2 = np.full(shape, ROAD, dtype=np.int64)
    g2[0:20, 0:20] = BICYCLE  # group
    g2[25:35, 25:45] = BICYCLE * 1000 + 2
    g2[0:10, 30:40] = PERSON * 1000 + 7
    p2: list[Prediction] = [
        (rect(shape, 0, 20, 10, 25), BICYCLE, 0.6),  # 200 of 300 px on the group
        (rect(shape, 25, 35, 25, 42), BICYCLE, 0.55),  # IoU 0.85
        (rect(shape, 0, 10, 15, 35), PERSON, 0.45),  # 50 px on the person (IoU 0.25): FP
    ]
    return [g0, g1, g2], [p0, p1, p2]


def test_hand_made_case_matches_official(tmp_path, monkeypatch):
    gts, preds = hand_made()
    official = official_ap(tmp_path, monkeypatch, gts, preds, min_region_size=20)
    for loader in (False, True):
        ours = ours_ap(gts, preds, 20, loader=loader)
        assert_same(ours, official)
    # Sanity of the case itself: absent classes NaN, an unpredicted class 0, others in (0, 1].
    assert math.isnan(ours["per_class"]["bus"]["AP"])
    assert math.isnan(ours["per_class"]["motorcycle"]["AP"])
    assert ours["per_class"]["truck"]["AP"] == 0.0
    assert 0.0 < ours["per_class"]["car"]["AP"] < ours["per_class"]["car"]["AP50"] <= 1.0
    assert ours["n"] == 5  # person, rider, car, truck, bicycle


# --- random scenes -----------------------------------------------------------------------------

THING_LABELS = [int(TRAIN_TO_LABEL[t]) for t in THING_TRAIN_IDS]
ALL_INSTANCE_LABELS = sorted(lb.id for lb in cs_labels if lb.hasInstances and lb.id >= 0)


def random_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[Prediction]]:
    gt = np.full((h, w), int(rng.choice([ROAD, 0, 11])), dtype=np.int64)
    k = 0
    for _ in range(rng.integers(3, 10)):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        dy, dx = rng.integers(2, h // 2), rng.integers(2, w // 2)
        r = rng.random()
        label = int(rng.choice(ALL_INSTANCE_LABELS if r < 0.8 else [0, 4, 9, 21]))
        value = label * 1000 + k if r < 0.65 and label in ALL_INSTANCE_LABELS else label
        k += 1
        gt[y : y + dy, x : x + dx] = value
    preds: list[Prediction] = []
    for v in np.unique(gt):
        label = v // 1000 if v >= 1000 else v
        if label not in THING_LABELS or rng.random() < 0.2:
            continue
        for _ in range(int(rng.integers(1, 3))):  # sometimes a duplicate
            shift = (0, 0) if rng.random() < 0.4 else tuple(rng.integers(-1, 2, size=2))
            mask = np.roll(gt == v, shift, axis=(0, 1))
            if rng.random() < 0.5:
                y, x = rng.integers(0, h), rng.integers(0, w)
                mask[y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] ^= True
            cls = label if rng.random() < 0.85 else int(rng.choice(THING_LABELS))
            score = float(rng.choice([0.25, 0.5, 0.75])) if rng.random() < 0.3 else rng.random()
            preds.append((mask, cls, score))
    for _ in range(rng.integers(0, 4)):  # false positives anywhere
        y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
        mask = rect((h, w), y, y + int(rng.integers(1, 10)), x, x + int(rng.integers(1, 10)))
        preds.append((mask, int(rng.choice(THING_LABELS)), float(rng.random())))
    return gt, preds


@pytest.mark.parametrize("seed", range(6))
def test_random_scenes_match_official(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, 32, 48) for _ in range(3)]
    gts, preds = [s[0] for s in scenes], [s[1] for s in scenes]
    official = official_ap(tmp_path, monkeypatch, gts, preds, min_region_size=12)
    assert_same(ours_ap(gts, preds, 12, loader=False), official)


def test_instance_map_input_matches_official(tmp_path, monkeypatch):
    """The fast path: disjoint instances as one id map (what the predictor produces)."""
    rng = np.random.default_rng(100)
    gts, preds, maps = [], [], []
    for _ in range(3):
        gt, image_preds = random_scene(rng, 32, 48)
        ids = np.zeros(gt.shape, dtype=np.int64)
        for k, (mask, _, _) in enumerate(image_preds):
            ids[mask] = k + 1  # later masks cover earlier ones: disjoint instances
        disjoint = [(ids == k + 1, lb, s) for k, (_, lb, s) in enumerate(image_preds)]
        train_ids = np.array([LABEL_TO_TRAIN[lb] for _, lb, _ in image_preds], dtype=np.int64)
        scores = np.array([s for _, _, s in image_preds])
        gts.append(gt)
        preds.append(disjoint)
        maps.append(InstanceMap(torch.from_numpy(ids), train_ids, scores))
    official = official_ap(tmp_path, monkeypatch, gts, preds, min_region_size=12)
    stats = InstanceAPStats(min_region_size=12)
    for gt, m in zip(gts, maps, strict=True):
        stats.update(m, gt_instance_ids=gt)
    assert_same(stats.summary(), official)
    assert_same(ours_ap(gts, preds, 12, loader=False), official)


# --- properties and the helper -----------------------------------------------------------------


def test_perfect_prediction_scores_one_and_misses_zero():
    gt = np.full((20, 30), ROAD, dtype=np.int64)
    gt[0:10, 0:10] = CAR * 1000
    gt[10:20, 10:30] = PERSON * 1000 + 1
    perfect = [
        (torch.from_numpy(gt == CAR * 1000), 13, 0.5),
        (torch.from_numpy(gt == PERSON * 1000 + 1), 11, 0.5),
    ]
    s = InstanceAPStats(min_region_size=10).update(perfect, gt_instance_ids=gt).summary()
    assert (s["AP"], s["AP50"], s["n"]) == (1.0, 1.0, 2)
    empty = InstanceAPStats(min_region_size=10).update([], gt_instance_ids=gt).summary()
    assert (empty["AP"], empty["AP50"]) == (0.0, 0.0)
    assert empty["per_class"]["car"]["num_gt"] == 1
    nothing = InstanceAPStats().summary()
    assert math.isnan(nothing["AP"]) and nothing["n"] == 0
    # merge == one accumulator over both images
    a = InstanceAPStats(min_region_size=10).update(perfect, gt_instance_ids=gt)
    b = InstanceAPStats(min_region_size=10).update([], gt_instance_ids=gt)
    both = InstanceAPStats(min_region_size=10).update(perfect, gt_instance_ids=gt)
    both.update([], gt_instance_ids=gt)
    assert np.array_equal(a.merge(b).ap_matrix(), both.ap_matrix(), equal_nan=True)
    assert OVERLAPS.shape == (10,) and OVERLAPS[0] == 0.5


def test_instance_ids_from_targets_rebuilds_what_matters():
    gt = np.array([[CAR * 1000 + 2, PERSON, CARAVAN * 1000 + 1, CARAVAN, 9, ROAD]])
    label = np.where(gt >= 1000, gt // 1000, gt)
    ids = instance_ids_from_targets(LABEL_TO_TRAIN[label], np.where(gt >= 1000, gt, -1))
    # caravan group and parking: both void (0 here, ids 29 / 9 officially: also void)
    assert ids.tolist() == [[CAR * 1000 + 2, PERSON, CARAVAN * 1000 + 1, 0, 0, ROAD]]


def test_instances_from_maps_scores_and_classes():
    inst = torch.zeros(6, 8, dtype=torch.int64)
    sem = torch.zeros(6, 8, dtype=torch.int64)  # road
    inst[0:2, 0:4], sem[0:2, 0:4] = 1, 13  # a car of 8 px
    inst[3:6, 0:4], sem[3:6, 0:4] = 3, 11  # a person of 12 px (id 2 unused)
    sem[3, 0] = 12  # one rider pixel inside: the majority class wins
    inst[0:2, 6:8], sem[0:2, 6:8] = 4, 0  # an "instance" on road: dropped
    out = instances_from_maps(inst, sem)
    assert [(o.train_id, o.score) for o in out] == [(13, 8 / 48), (11, 12 / 48)]
    assert out[0].mask.dtype == torch.bool and int(out[0].mask.sum()) == 8
    given = instances_from_maps(inst.numpy(), sem.numpy(), scores=[0.3, 0.0, 0.9, 0.1])
    assert [o.score for o in given] == [0.3, 0.9]
    logits = torch.zeros(19, 6, 8)
    logits[13, 0:2, 0:4] = 2.0  # car: confident
    got = instances_from_maps(inst, sem, logits=logits)
    p_car = math.exp(2.0) / (math.exp(2.0) + 18)
    assert got[0].score == pytest.approx(p_car) and got[1].score == pytest.approx(1 / 19)
    low = instances_from_maps(inst, sem, logits=torch.zeros(19, 3, 4))  # resized
    assert low[0].score == pytest.approx(1 / 19)
    assert instances_from_maps(torch.zeros(4, 4, dtype=torch.int64), sem[:4, :4]) == []
    scored = scored_instance_map(inst, sem)
    assert scored.train_ids.tolist() == [13, 255, 11, 0]  # id 2 absent; id 4 on road
    assert scored.scores.tolist() == [8 / 48, 0.0, 12 / 48, 4 / 48]
    # Round trip: these instances evaluate as a perfect prediction of their own ground truth.
    gt = torch.where(inst == 1, CAR * 1000, torch.where(inst == 3, PERSON * 1000, ROAD))
    gt[3, 0] = PERSON * 1000  # the rider pixel is part of the person instance
    slow = InstanceAPStats(min_region_size=1).update(out, gt_instance_ids=gt)
    assert slow.summary()["AP"] == 1.0
    fast = InstanceAPStats(min_region_size=1).update(scored, gt_instance_ids=gt)
    assert np.array_equal(fast.ap_matrix(), slow.ap_matrix(), equal_nan=True)


def test_update_rejects_bad_input():
    gt = np.full((4, 4), ROAD)
    stats = InstanceAPStats()
    with pytest.raises(ValueError, match="either"):
        stats.update([])
    with pytest.raises(ValueError, match="trainId"):
        stats.update([(np.ones((4, 4), bool), 19, 1.0)], gt_instance_ids=gt)
    with pytest.raises(ValueError, match="shape"):
        stats.update([(np.ones((3, 4), bool), 13, 1.0)], gt_instance_ids=gt)
    with pytest.raises(ValueError, match="non-finite"):
        stats.update([(np.ones((4, 4), bool), 13, float("nan"))], gt_instance_ids=gt)


def test_official_crash_case_is_ap_zero(tmp_path, monkeypatch):
    """The one intentional difference: ground truth and predictions of a class, but no scored
    detection at all (the only prediction lies on void, the car is missed). The official script
    fails on the empty score list; its precision-recall curve would be empty, so AP is 0."""
    gt = np.full((20, 30), ROAD, dtype=np.int64)
    gt[0:10, 0:10] = CAR * 1000
    gt[10:20, 10:30] = 0
    preds: list[Prediction] = [(rect(gt.shape, 10, 20, 10, 30), CAR, 0.9)]
    with pytest.raises(IndexError):
        official_ap(tmp_path, monkeypatch, [gt], [preds], min_region_size=10)
    ours = ours_ap([gt], [preds], 10, loader=False)
    assert (ours["AP"], ours["AP50"], ours["per_class"]["car"]["num_pred"]) == (0.0, 0.0, 1)


def test_device_inputs_give_the_cpu_result(device):
    rng = np.random.default_rng(5)
    gt, preds = random_scene(rng, 32, 48)
    on_cpu = InstanceAPStats(min_region_size=12).update(
        [(m, int(LABEL_TO_TRAIN[lb]), s) for m, lb, s in preds], gt_instance_ids=gt
    )
    on_device = InstanceAPStats(min_region_size=12).update(
        [(torch.from_numpy(m).to(device), int(LABEL_TO_TRAIN[lb]), s) for m, lb, s in preds],
        gt_instance_ids=torch.from_numpy(gt).to(device),
    )
    assert np.array_equal(on_cpu.ap_matrix(), on_device.ap_matrix(), equal_nan=True)
