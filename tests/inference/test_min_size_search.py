"""search_min_instance_size: the things PQ of each candidate and the choice among them."""

import math

import pytest
import torch

from panonet.data.cityscapes import CityscapesPanoptic
from panonet.data.synthetic import generate
from panonet.evaluation.panoptic import gt_panoptic_from_semantic_instance
from panonet.evaluation.run import evaluate_model
from panonet.inference import Predictor
from panonet.inference.min_size_search import DEFAULT_MIN_SIZES, search_min_instance_size
from panonet.models import PanoNet


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> CityscapesPanoptic:
    root = tmp_path_factory.mktemp("synth")
    generate(root, train=2, val=0, size=(64, 128), seed=3, progress=False)
    return CityscapesPanoptic(root, "train")


class TruthAbove:
    """A stand-in predictor: the ground truth of ``item`` when its minimum size is at least
    ``threshold``, else a map whose thing pixels have no instances (things PQ 1, else less)."""

    def __init__(self, item, threshold: int, min_instance_size: int = 0, calls=None):
        self.item, self.threshold, self.min_instance_size = item, threshold, min_instance_size
        self.calls = {"network": 0, "predict": 0} if calls is None else calls

    def with_settings(self, *, min_instance_size: int) -> "TruthAbove":
        return TruthAbove(self.item, self.threshold, min_instance_size, self.calls)

    def run_network(self, image):
        self.calls["network"] += 1
        return ("network output", image)

    def predict(self, output):
        assert output[0] == "network output", "post-processes run_network's output"
        self.calls["predict"] += 1
        sem, inst = self.item["semantic"].long(), self.item["instance"].long()
        if self.min_instance_size < self.threshold:
            inst = torch.full_like(inst, -1)
        return {"panoptic": gt_panoptic_from_semantic_instance(sem, inst)}


def test_picks_the_best_and_the_smallest_among_ties(dataset):
    items = [dataset[0]]
    stand_in = TruthAbove(items[0], 100)
    result = search_min_instance_size(
        stand_in, items * 3, candidates=[200, 0, 100, 50], progress=False
    )
    # The network once per image, the post-processing once per image and candidate.
    assert stand_in.calls == {"network": 3, "predict": 12}
    assert result.candidates == [0, 50, 100, 200] and result.images == 3
    low, high = result.things_pq[:2], result.things_pq[2:]
    assert low[0] == low[1] < 1.0 and high == [1.0, 1.0]
    assert result.best == 100
    assert result.to_json()["best"] == 100


def test_things_pq_is_the_evaluations(dataset):
    torch.manual_seed(0)
    predictor = Predictor(PanoNet(width=0.25), bandwidths={"car": 2.0, "person": 2.0})
    result = search_min_instance_size(
        predictor, dataset, images=2, candidates=[0, 64], progress=False
    )
    for size, pq in zip(result.candidates, result.things_pq, strict=True):
        want = evaluate_model(
            predictor.with_settings(min_instance_size=size), dataset, progress=False
        )["panoptic"]["Things"]["pq"]
        assert (math.isnan(pq) and math.isnan(want)) or pq == pytest.approx(want, abs=1e-12)
    valid = [(p, -s) for s, p in zip(result.candidates, result.things_pq, strict=True)]
    assert result.best == -max(v for v in valid if not math.isnan(v[0]))[1] or all(
        math.isnan(p) for p in result.things_pq
    )
    assert predictor.min_instance_size == 0  # the predictor itself is left as it was


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(candidates=[]), "at least one candidate"),
        (dict(candidates=[32, -1]), r"integers >= 0, got \[-1\]"),
        (dict(candidates=[1.5]), r"integers >= 0, got \[1.5\]"),
        (dict(images=0), "images >= 1"),
    ],
)
def test_bad_arguments(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        search_min_instance_size(TruthAbove(dataset[0], 0), dataset, progress=False, **kwargs)


def test_empty_dataset_and_defaults():
    with pytest.raises(ValueError, match="empty"):
        search_min_instance_size(TruthAbove(None, 0), [], progress=False)
    assert list(DEFAULT_MIN_SIZES) == sorted(DEFAULT_MIN_SIZES)
