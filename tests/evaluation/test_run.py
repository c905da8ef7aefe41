"""evaluate_model / format_tables on a tiny synthetic split with an untrained PanoNet, and an
oracle predictor that returns the ground truth (every metric must then be perfect)."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.data.labels import NUM_CLASSES
from panonet.data.synthetic import generate
from panonet.evaluation.run import SCORE_NAME, evaluate_model, format_summary, format_tables
from panonet.inference import Predictor
from panonet.inference.merge import panoptic_from_semantic_instance
from panonet.models import PanoNet
from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)

STAGES = {"preprocess", "network", "semantic", "clustering", "panoptic", "total"}


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions(native_cpu_convolutions):  # noqa: F811
    yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> CityscapesPanoptic:
    root = tmp_path_factory.mktemp("synth")
    generate(root, train=0, val=2, size=(64, 128), seed=0, progress=False)
    return CityscapesPanoptic(root, "val")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(PanoNet())


@pytest.fixture(scope="module")
def pred_run(tmp_path_factory, predictor, dataset):
    out = tmp_path_factory.mktemp("pred_run")
    result = evaluate_model(
        predictor,
        dataset,
        progress=False,
        save_vis=out / "vis",
        num_vis=1,
        predictions_dir=out / "predictions",
    )
    return result, out


def in_unit_or_nan(x: float) -> bool:
    return math.isnan(x) or 0.0 <= x <= 1.0


def test_result_keys_and_ranges(pred_run):
    result, _ = pred_run
    assert result["images"] == 2 and result["semantic_source"] == "pred"
    assert result["image_size"] == [64, 128]
    for group in ("All", "Things", "Stuff"):
        assert {"pq", "sq", "rq", "n"} <= set(result["panoptic"][group])
        assert all(in_unit_or_nan(result["panoptic"][group][k]) for k in ("pq", "sq", "rq"))
    assert len(result["panoptic"]["per_class"]) == NUM_CLASSES
    assert in_unit_or_nan(result["semantic"]["miou"])
    assert len(result["semantic"]["per_class_iou"]) == NUM_CLASSES
    inst = result["instance"]
    assert inst["score"] == SCORE_NAME and inst["min_region_size"] == 1  # 100 scaled to 64x128
    assert in_unit_or_nan(inst["AP"]) and in_unit_or_nan(inst["AP50"])
    assert len(inst["per_class"]) == 8
    assert set(result["runtime_ms"]) == STAGES
    assert all(v >= 0 for v in result["runtime_ms"].values())
    json.dumps(result)  # JSON-ready (NaN aside, which the CLI writes as null)


def test_outputs_written(pred_run):
    _, out = pred_run
    assert [p.name for p in sorted((out / "vis").iterdir())] == ["renderdorf_000000_000019.png"]
    record = json.loads((out / "predictions" / "panoptic.json").read_text())
    assert len(record["annotations"]) == 2
    for a in record["annotations"]:
        assert (out / "predictions" / "panoptic" / a["file_name"]).is_file()


def test_format_tables(pred_run):
    text = format_tables(pred_run[0])
    for column in ("PQ", "SQ", "RQ", "PQ_Th", "RQ_St", "mIoU", "AP", "AP50", "runtime (ms)"):
        assert f"| {column} |" in text
    for name in ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"):
        assert f"| {name} |" in text or f" {name} |" in text
    assert "AP_GT" not in text


def test_format_summary_by_hand():
    result = {
        "panoptic": {"All": {"pq": 0.465}, "Things": {"pq": 0.2514}, "Stuff": {"pq": 0.631}},
        "semantic": {"miou": 0.628},
        "instance": {"AP": float("nan")},
    }
    assert format_summary(result) == "PQ 46.5 PQ_Th 25.1 PQ_St 63.1 mIoU 62.8 AP -"


def test_gt_semantic(predictor, dataset):
    result = evaluate_model(predictor, dataset, images=1, semantic_source="gt", progress=False)
    assert result["images"] == 1 and result["semantic_source"] == "gt"
    # The semantic map is the ground truth: perfect mIoU and stuff PQ, whatever the network.
    assert result["semantic"]["miou"] == 1.0
    assert result["panoptic"]["Stuff"]["pq"] == pytest.approx(1.0)
    assert in_unit_or_nan(result["instance"]["AP"])
    assert {"network", "clustering", "total"} <= set(result["runtime_ms"])
    assert "AP_GT" in format_tables(result)


def test_bad_arguments(predictor, dataset):
    with pytest.raises(ValueError, match="semantic_source"):
        evaluate_model(predictor, dataset, semantic_source="oracle", progress=False)
    with pytest.raises(ValueError, match="images"):
        evaluate_model(predictor, dataset, images=0, progress=False)


class _OracleNet(nn.Module):
    """Returns confident one-hot logits of the class map it is given (as PanoNet's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.semantic: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        logits = 10.0 * torch.nn.functional.one_hot(self.semantic, NUM_CLASSES)
        return SimpleNamespace(semantic=(logits.permute(2, 0, 1)[None].float(),))


class _OraclePredictor:
    """Predicts the ground truth of the dataset's items in order (ignore pixels: class 0);
    ``shift`` > 0 rolls the maps that many columns (an imperfect prediction: partial overlaps,
    unmatched small segments)."""

    def __init__(self, dataset, shift: int = 0) -> None:
        self.dataset, self.k, self.model, self.shift = dataset, 0, _OracleNet(), shift

    def predict(self, image: torch.Tensor, *, semantic=None, return_logits=False) -> dict:
        assert semantic is None  # the oracle predicts; it is not given the ground truth
        item = self.dataset[self.k]
        self.k += 1
        assert torch.equal(image, item["image"])
        sem = torch.where(item["semantic"] == 255, 0, item["semantic"])
        # Instance ids need not be consecutive: the Cityscapes ids themselves, 0 elsewhere.
        inst = torch.where(item["instance"] >= 1000, item["instance"], 0)
        sem, inst = sem.roll(self.shift, dims=1), inst.roll(self.shift, dims=1)
        self.model.semantic = sem
        logits = self.model(image).semantic[0][0]
        pan = panoptic_from_semantic_instance(sem, inst)
        out = {"semantic": sem, "instance": inst, "panoptic": pan, "timings": {"total": 1.0}}
        return {**out, "logits": logits} if return_logits else out


def test_oracle_is_perfect(dataset):
    result = evaluate_model(_OraclePredictor(dataset), dataset, progress=False)
    assert result["panoptic"]["All"]["pq"] == pytest.approx(1.0)
    assert result["panoptic"]["All"]["sq"] == pytest.approx(1.0)
    assert result["semantic"]["miou"] == pytest.approx(1.0)
    assert result["instance"]["n"] > 0
    assert result["instance"]["AP"] == pytest.approx(1.0)
    assert result["runtime_ms"] == {"total": 1.0}
    assert np.isfinite(result["panoptic"]["Things"]["pq"])


def test_written_predictions_score_the_same_with_the_official_script(tmp_path):
    """panonet's PQ of a run equals cityscapesscripts' pq_compute on the files the run wrote,
    against the official panoptic ground truth (createPanopticImgs) of the same split."""
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    from tests.evaluation.test_panoptic_files import official

    root = tmp_path / "data"
    generate(root, train=0, val=3, size=(96, 192), seed=5, progress=False)
    data = CityscapesPanoptic(root, "val")
    result = evaluate_model(
        _OraclePredictor(data, shift=4), data, progress=False, predictions_dir=tmp_path / "pred"
    )
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    convert2panoptic(str(root / "gtFine"), str(gt_dir), useTrainId=False, setNames=["val"])
    reference, _ = official(
        gt_dir / "cityscapes_panoptic_val.json",
        gt_dir / "cityscapes_panoptic_val",
        tmp_path / "pred" / "panoptic.json",
        tmp_path / "pred" / "panoptic",
    )
    ours = result["panoptic"]
    assert 0.05 < ours["All"]["pq"] < 0.95, "an imperfect prediction: a meaningful comparison"
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(reference[group][key], abs=1e-6), (group, key)
        assert ours[group]["n"] == reference[group]["n"], group
