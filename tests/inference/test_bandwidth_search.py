"""Bandwidth search: on embeddings whose good bandwidths are known, it finds them."""

import json

import pytest
import torch

from panonet.data.labels import TRAIN_TO_LABEL
from panonet.inference import bandwidth_table
from panonet.inference.bandwidth_search import (
    default_candidates,
    search_bandwidths,
    search_bandwidths_on_embeddings,
)
from panonet.models import PanoNet
from panonet.models.panonet import PanoNetOutput
from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)

PERSON, CAR, ROAD = 11, 13, 0
D, H, W = 4, 32, 64


def ball(n: int, radius: float, g: torch.Generator) -> torch.Tensor:
    """n points uniform in a D-ball of the given radius, (n, D) float64."""
    direction = torch.randn(n, D, generator=g, dtype=torch.float64)
    direction /= direction.norm(dim=1, keepdim=True)
    return direction * radius * torch.rand(n, 1, generator=g, dtype=torch.float64) ** (1 / D)


def scene(seed: int):
    """Cars: tight blobs (radius 0.15) only 0.6 apart -> bandwidths in ~[0.2, 0.45) separate
    them and larger ones merge neighbours. Persons: wide blobs (radius 0.45) 2.5 apart ->
    bandwidths below ~0.45 split them, ~[0.5, 1.5] are right."""
    g = torch.Generator().manual_seed(seed)
    sem = torch.full((H, W), ROAD, dtype=torch.int64)
    gt = torch.full((H, W), int(TRAIN_TO_LABEL[ROAD]), dtype=torch.int64)
    emb = torch.zeros(D, H, W, dtype=torch.float64)
    regions = [(CAR, 0, 16 * k, 0.6 * k, 0.15) for k in range(4)]
    regions += [(PERSON, 16, 21 * k, 2.5 * k, 0.45) for k in range(3)]
    count = {CAR: 0, PERSON: 0}
    for cls, y, x, offset, radius in regions:
        h, w = 16, min(16, W - x)
        center = torch.zeros(D, dtype=torch.float64)
        center[0] = offset
        center[1] = 5.0 if cls == PERSON else 0.0
        pts = center + ball(h * w, radius, g)
        emb[:, y : y + h, x : x + w] = pts.T.reshape(D, h, w)
        sem[y : y + h, x : x + w] = cls
        gt[y : y + h, x : x + w] = int(TRAIN_TO_LABEL[cls]) * 1000 + count[cls]
        count[cls] += 1
    return emb.float(), sem, gt


def test_finds_the_known_good_bandwidths():
    samples = [scene(s) for s in range(3)]
    candidates = [0.1 * i for i in range(1, 17)]
    result = search_bandwidths_on_embeddings(samples, candidates)
    assert set(result.best) == {CAR, PERSON}, "only classes present get a bandwidth"
    assert 0.2 <= result.best[CAR] < 0.5
    assert 0.5 <= result.best[PERSON] <= 1.5
    assert result.pq[:, CAR].max() == pytest.approx(1.0)
    assert result.pq[:, PERSON].max() == pytest.approx(1.0)
    # The search can fail: too large merges the cars, too small splits the persons.
    i_big = candidates.index(min(c for c in candidates if c >= 0.9))
    i_small = candidates.index(min(c for c in candidates if c >= 0.2))
    assert result.pq[i_big, CAR] < 0.9
    assert result.pq[i_small, PERSON] < 0.9


def test_result_json_is_what_the_predictor_reads(tmp_path):
    result = search_bandwidths_on_embeddings([scene(0)], [0.3, 0.8])
    path = result.save(tmp_path / "bandwidths.json")
    record = json.loads(path.read_text())
    assert set(record["bandwidths"]) == {"car", "person"}
    assert record["candidates"] == [0.3, 0.8] and record["images"] == 1
    table = bandwidth_table(path)
    assert table[CAR] == pytest.approx(result.best[CAR])
    assert table[PERSON] == pytest.approx(result.best[PERSON])
    assert table[12] == pytest.approx(0.5), "classes without data keep the default"


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive candidate"):
        search_bandwidths_on_embeddings([scene(0)], [0.5, -1.0])
    with pytest.raises(ValueError, match="no images"):
        search_bandwidths_on_embeddings([], [0.5])
    cands = default_candidates()
    assert cands[:16] == [round(0.25 + 0.05 * i, 6) for i in range(16)]
    assert cands[16:] == [1.25, 1.5, 1.75, 2.0, 2.5, 3.0]


def test_runs_a_model_on_dataset_items(native_cpu_convolutions):  # noqa: F811
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    item = {
        "image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=g),
        "semantic": torch.full((64, 96), CAR, dtype=torch.int64),
        "instance": torch.full((64, 96), 26000, dtype=torch.int64),
    }
    result = search_bandwidths(PanoNet(), [item], candidates=[0.5, 1.0], progress=False)
    assert result.images == 1 and result.pq.shape == (2, 19)
    assert result.seconds > 0


class ConstantNetwork(torch.nn.Module):
    """Stands in for a PanoNet: whatever the image, scene 0's embedding (good car bandwidths
    in [0.2, 0.5), person ones in [0.5, 1.5]) and a semantic map of road everywhere."""

    def __init__(self):
        super().__init__()
        self.embedding = scene(0)[0][None]

    def forward(self, image):
        logits = torch.zeros(1, 19, H, W)
        logits[:, ROAD] = 1.0
        return PanoNetOutput((logits,) * 3, (self.embedding,) * 3)


def test_ground_truth_semantics_choose_by_the_embedding_alone():
    # The network's semantic map misses every thing here, so a search on it learns nothing
    # (PQ 0 for every candidate: every instance unmatched); on the ground-truth map it finds
    # the embedding's good bandwidths.
    _, sem, gt = scene(0)
    item = {
        "image": torch.zeros(3, H, W, dtype=torch.uint8),
        "semantic": sem,
        "instance": torch.where(gt >= 1000, gt, torch.full_like(gt, -1)),
    }
    candidates = [0.1 * i for i in range(1, 17)]
    pred = search_bandwidths(ConstantNetwork(), [item], candidates=candidates, progress=False)
    assert pred.semantic_source == "pred"
    assert (pred.pq[:, [CAR, PERSON]] == 0).all()
    truth = search_bandwidths(
        ConstantNetwork(), [item], candidates=candidates, progress=False, semantic_source="gt"
    )
    assert truth.semantic_source == "gt" and truth.to_json()["semantic_source"] == "gt"
    assert 0.2 <= truth.best[CAR] < 0.5
    assert 0.5 <= truth.best[PERSON] <= 1.5
    assert truth.pq[:, CAR].max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="semantic_source must be 'pred' or 'gt', got 'GT'"):
        search_bandwidths(ConstantNetwork(), [item], semantic_source="GT", progress=False)


def test_vote_group_gets_the_best_common_bandwidth():
    # Classes of a vote group are clustered together, so one bandwidth serves the group: here
    # cars want < 0.45 and persons > 0.45; the choice maximises their mean PQ.
    samples = [scene(s) for s in range(2)]
    candidates = [0.1 * i for i in range(1, 17)]
    result = search_bandwidths_on_embeddings(samples, candidates, vote_groups=[(PERSON, CAR)])
    assert set(result.best) == {CAR, PERSON}
    assert result.best[CAR] == result.best[PERSON]
    mean = result.pq[:, [CAR, PERSON]].mean(dim=1)
    chosen = candidates.index(result.best[CAR])
    assert mean[chosen] == pytest.approx(float(mean.max()))
    # Classes outside every group keep their own search.
    apart = search_bandwidths_on_embeddings(samples, candidates, vote_groups=[(12, 14)])
    plain = search_bandwidths_on_embeddings(samples, candidates)
    assert apart.best == plain.best


class NoisyLogitsNetwork(ConstantNetwork):
    """ConstantNetwork with fixed noisy logits (cars likely where scene 0 has them), at a
    quarter of the image's resolution like PanoNet's outputs."""

    def __init__(self):
        super().__init__()
        _, sem, _ = scene(0)
        g = torch.Generator().manual_seed(3)
        self.logits = torch.randn(1, 19, H, W, generator=g)
        self.logits[0, CAR] += 2.0 * (sem == CAR)
        self.logits[0, PERSON] += 2.0 * (sem == PERSON)

    def forward(self, image):
        return PanoNetOutput((self.logits,) * 3, (self.embedding,) * 3)


def test_guided_cluster_searches_on_the_guided_map_the_predictor_clusters():
    from panonet.data.transforms import resize_labels
    from panonet.inference import GuidedUpsampling
    from panonet.inference.guided_upsample import guided_semantic

    _, sem, gt = scene(0)
    g = torch.Generator().manual_seed(4)
    image = torch.randint(0, 256, (3, 4 * H, 4 * W), dtype=torch.uint8, generator=g)
    big = (4 * H, 4 * W)
    gt_big = resize_labels(gt, big)
    item = {
        "image": image,
        "semantic": resize_labels(sem, big),
        "instance": torch.where(gt_big >= 1000, gt_big, torch.full_like(gt_big, -1)),
    }
    candidates = [0.2, 0.5, 1.0]
    net = NoisyLogitsNetwork()
    settings = GuidedUpsampling(1.0, 0.1, 4, cluster=True)
    got = search_bandwidths(
        net, [item], candidates=candidates, progress=False, guided_upsampling=settings
    )
    guided = guided_semantic(net.logits, image.permute(1, 2, 0)[None], settings)[0]
    want = search_bandwidths_on_embeddings(
        [(net.embedding[0], resize_labels(guided, (H, W)), resize_labels(gt_big, (H, W)))],
        candidates,
    )
    torch.testing.assert_close(got.pq, want.pq, equal_nan=True)
    assert got.to_json()["guided_upsampling"] == settings.to_json()
    # Without cluster the guided map is not what the Predictor clusters: the plain search.
    plain = search_bandwidths(net, [item], candidates=candidates, progress=False)
    no_cluster = search_bandwidths(
        net,
        [item],
        candidates=candidates,
        progress=False,
        guided_upsampling=GuidedUpsampling(1.0, 0.1, 4, cluster=False),
    )
    torch.testing.assert_close(no_cluster.pq, plain.pq, equal_nan=True)
    assert no_cluster.guided_upsampling is None
    assert not torch.equal(torch.nan_to_num(got.pq), torch.nan_to_num(plain.pq))
