"""Predictor: an untrained PanoNet end to end, input forms, bandwidths, checkpoints, bad input."""

import json

import numpy as np
import pytest
import torch

from panonet.data.labels import LABEL_TO_TRAIN, THING_TRAIN_IDS
from panonet.inference import Predictor
from panonet.inference.merge import INSTANCE_REACH, semantic_from_logits
from panonet.models import PanoNet
from panonet.models.checkpoint import save_checkpoint
from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)

H, W = 64, 96
STAGES = {"preprocess", "network", "semantic", "clustering", "panoptic", "total"}


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions(native_cpu_convolutions):  # noqa: F811
    yield


@pytest.fixture(scope="module")
def model() -> PanoNet:
    torch.manual_seed(0)
    return PanoNet().eval()


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    return Predictor(model)


def image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def check_consistent(out: dict) -> None:
    """The three maps agree: panoptic decodes to the semantic class, instances to thing ids."""
    sem, inst, pan = out["semantic"], out["instance"], out["panoptic"]
    assert sem.dtype == inst.dtype == pan.dtype == torch.int64
    assert ((sem >= 0) & (sem < 19)).all()
    things = torch.tensor(THING_TRAIN_IDS)
    is_thing = torch.isin(sem, things)
    assert (inst[~is_thing] == 0).all(), "stuff pixels carry no instance"
    # Thing pixels with an instance: id // 1000 is their labelId; without one: void (0).
    with_inst = is_thing & (inst > 0)
    label_of = torch.tensor(LABEL_TO_TRAIN)
    assert (label_of[pan[with_inst] // 1000] == sem[with_inst]).all()
    assert (pan[is_thing & (inst == 0)] == 0).all()
    assert (label_of[pan[~is_thing]] == sem[~is_thing]).all()
    # One panoptic id per instance and vice versa.
    pairs = torch.unique(torch.stack([inst[with_inst], pan[with_inst]]), dim=1)
    assert pairs.shape[1] == torch.unique(inst[with_inst]).numel()
    assert pairs.shape[1] == torch.unique(pan[with_inst]).numel()


def test_untrained_model_end_to_end(predictor):
    out = predictor.predict(image())
    assert set(out) == {"semantic", "instance", "panoptic", "timings"}
    for key in ("semantic", "instance", "panoptic"):
        assert out[key].shape == (H, W)
        assert out[key].device.type == "cpu"
    assert set(out["timings"]) == STAGES
    assert all(t >= 0 for t in out["timings"].values())
    check_consistent(out)


def test_instances_are_clustered_at_quarter_scale_and_upsampled(predictor, model):
    """Instance ids equal the op run by hand on the 1/4-scale outputs, resized nearest."""
    from panonet.inference.merge import resize_labels
    from panonet.models.panonet import preprocess
    from panonet.ops import cluster_instances

    img = image(1)
    out = predictor.predict(img)
    with torch.inference_mode():
        net = predictor.model(preprocess(img))  # the predictor's network (BatchNorm folded)
    logits, emb = net.semantic[0], net.embedding[0]
    bw = torch.zeros(19)
    bw[list(THING_TRAIN_IDS)] = 0.5
    low = cluster_instances(emb[0], logits[0].argmax(0), bw)
    up = resize_labels(low, (H, W))
    sem_low_up = resize_labels(logits[0].argmax(0), (H, W))
    agree = out["semantic"] == sem_low_up
    for reach in (0, INSTANCE_REACH):
        inst = predictor.with_settings(instance_reach=reach).predict(img)["instance"]
        # Where the classes agree and the predictor kept an instance, it is the hand-made one
        # up to renumbering.
        kept = (inst > 0) & agree
        pairs = torch.unique(torch.stack([inst[kept], up[kept]]), dim=1)
        assert pairs.shape[1] == torch.unique(inst[kept]).numel() == torch.unique(up[kept]).numel()
        # It drops only pixels whose full-resolution class differs from the low-res one.
        assert (out["semantic"][(up > 0) & (inst == 0)] != sem_low_up[(up > 0) & (inst == 0)]).all()
        # Such pixels keep no instance without reach, and with it take one of their own class.
        reached = (inst > 0) & ~agree
        if reach == 0:
            assert not reached.any()
        else:
            assert torch.equal(inst, out["instance"]) and reached.any()
            id_class = torch.full((int(inst.max()) + 1,), -1)
            id_class[inst[kept]] = out["semantic"][kept]
            assert torch.equal(id_class[inst[reached]], out["semantic"][reached])


def test_batchnorm_folded_into_a_copy(model):
    from tests.models.helpers import assert_close_to_scale, randomize_batchnorm

    torch.manual_seed(1)
    net = randomize_batchnorm(PanoNet(width=0.25), seed=1).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded, plain = Predictor(net), Predictor(net, fold_batchnorm=False)
    # The folded predictor runs a copy without BatchNorm and leaves the model alone (mode,
    # weights); the unfolded one runs the model itself, put in eval mode.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.model.modules())
    assert plain.model is net and not net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    # The same function: the 1/4 logits agree to float32 rounding (1e-5 of their scale; the fold
    # itself is tested against float64 in tests/models/test_fold.py).
    img = image(6)
    a = folded.predict(img, return_logits=True)
    b = plain.predict(img, return_logits=True)
    assert_close_to_scale(a["logits"], b["logits"], 1e-5, "logits")


def test_bfloat16_network_on_the_cpu(model):
    from tests.models.helpers import assert_close_to_scale

    img = image(7)
    exact = Predictor(model).predict(img, return_logits=True)
    low = Predictor(model, precision="bfloat16").predict(img, return_logits=True)
    # Autocast ran (float32 would give the same bits) and gave float32 logits close to float32's:
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per value), which through the
    # network's ~60 layers stays within a few percent of the logits' scale here.
    assert low["logits"].dtype == torch.float32
    assert not torch.equal(low["logits"], exact["logits"])
    assert_close_to_scale(low["logits"], exact["logits"], 0.05, "bfloat16 logits")
    check_consistent(low)


def test_compiled_network_matches_eager():
    from tests.models.helpers import assert_close_to_scale

    # torch.compile (inductor, frozen weights) reorders float32 arithmetic, so the logits agree
    # to rounding (1e-5 of their scale, as the fold) and the maps are made as always.
    torch.manual_seed(2)
    net = PanoNet(width=0.25).eval()
    img = image(8)
    eager = Predictor(net).predict(img, return_logits=True)
    compiled = Predictor(net, compile_network=True)
    out = compiled.predict(img, return_logits=True)
    assert_close_to_scale(out["logits"], eager["logits"], 1e-5, "compiled logits")
    check_consistent(out)


def test_with_settings_shares_the_network_and_changes_only_what_is_asked(model):
    timed = Predictor(model, min_instance_size=3, bandwidths={"car": 0.3})
    lean = timed.with_settings(stage_timings=False, output_device=None)
    assert lean.model is timed.model
    assert (lean.min_instance_size, lean.stage_timings, lean.output_device) == (3, False, None)
    assert torch.equal(lean.bandwidth, timed.bandwidth)
    assert timed.stage_timings and timed.output_device == torch.device("cpu")
    img = image(9)
    a, b = timed.predict(img), lean.predict(img)
    assert set(b["timings"]) == {"total"}
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(a[key], b[key])
    with pytest.raises(TypeError, match=r"expected settings among .*got \['device'\]"):
        timed.with_settings(device="cpu")
    with pytest.raises(ValueError, match="min_instance_size must be >= 0"):
        timed.with_settings(min_instance_size=-1)
    assert timed.instance_reach == INSTANCE_REACH
    assert timed.with_settings(instance_reach=0).instance_reach == 0
    with pytest.raises(ValueError, match=r"instance_reach as an integer >= 0, got 1.5"):
        timed.with_settings(instance_reach=1.5)


def test_with_settings_shares_the_compiled_network(monkeypatch):
    # A stand-in for torch.compile that counts the programs it would make (one per wrapper and
    # input shape): a predictor and its twin compile a frame size once between them, as
    # `panonet bench --compile` relies on.
    from panonet.bench import time_predictor

    programs = []

    def fake_compile(module, **kwargs):
        seen = set()

        def run(*args):
            if args[0].shape not in seen:
                seen.add(args[0].shape)
                programs.append(args[0].shape)
            return module(*args)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    torch.manual_seed(2)
    compiled = Predictor(PanoNet(width=0.25).eval(), compile_network=True)
    time_predictor(compiled, image(10), runs=1, warmup=0, progress=False)
    assert len(programs) == 1
    compiled.with_settings(min_instance_size=4).predict(image(11, h=32, w=64))
    assert len(programs) == 2
    # Switched off in the twin, it runs the network itself.
    compiled.with_settings(compile_network=False).predict(image(12, h=48, w=64))
    assert len(programs) == 2


def test_batch_forms_agree(predictor):
    a, b = image(2), image(3)
    single = predictor.predict(a)
    batch_np = predictor.predict(np.stack([a, b]))
    batch_list = predictor.predict([a, torch.from_numpy(b).permute(2, 0, 1)])
    chw = predictor.predict(torch.from_numpy(a).permute(2, 0, 1))
    assert batch_np["semantic"].shape == (2, H, W)
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(batch_np[key], batch_list[key])
        assert torch.equal(chw[key], single[key])
    # (A batch is not compared with single images bit for bit: batched convolutions may round
    # differently, and the argmax / clustering can flip on near ties.)
    check_consistent({k: v[0] for k, v in batch_np.items() if k != "timings"})
    check_consistent({k: v[1] for k, v in batch_np.items() if k != "timings"})


def test_from_checkpoint_and_bandwidth_forms(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model)
    img = image(4)
    reference = Predictor(model).predict(img)
    from_file = Predictor(path).predict(img)
    assert torch.equal(from_file["panoptic"], reference["panoptic"])

    # The same bandwidths as a tensor, a mapping and a JSON file give the same result.
    table = torch.zeros(19)
    table[list(THING_TRAIN_IDS)] = 0.3
    mapping = {str(c): 0.3 for c in THING_TRAIN_IDS}
    (tmp_path / "bw.json").write_text(json.dumps({"bandwidths": mapping}))
    outs = [
        Predictor(model, bandwidths=bw).predict(img)["instance"]
        for bw in (table, mapping, tmp_path / "bw.json", str(tmp_path / "bw.json"))
    ]
    for other in outs[1:]:
        assert torch.equal(outs[0], other)


def test_huge_bandwidth_gives_one_instance_per_thing_class(model):
    """With a bandwidth far above the embedding's spread, mean-shift finds one cluster per class."""
    out = Predictor(model, bandwidths={c: 1e6 for c in THING_TRAIN_IDS}).predict(image(5))
    inst, sem = out["instance"], out["semantic"]
    ids = torch.unique(inst[inst > 0])
    classes = [torch.unique(sem[inst == i]) for i in ids]
    assert all(c.numel() == 1 for c in classes), "an instance spans one class"
    assert len({int(c) for c in classes}) == ids.numel(), "one instance per class"


def test_min_instance_size_removes_small_instances(model):
    img = image(6)
    full = Predictor(model).predict(img)["instance"]
    sizes = torch.bincount(full.flatten())[1:]
    sizes = sizes[sizes > 0]
    if sizes.numel() < 2:
        pytest.skip("the untrained model gave fewer than two instances on this image")
    cut = int(sizes.median())
    pruned = Predictor(model, min_instance_size=cut).predict(img)["instance"]
    kept_sizes = torch.bincount(pruned.flatten())[1:]
    assert (kept_sizes[kept_sizes > 0] >= cut).all()
    assert int(pruned.max()) == int((sizes >= cut).sum())


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((H, W, 3), np.float32), "expected a uint8 RGB image"),
        (np.zeros((H, W, 4), np.uint8), r"expected an RGB image of shape \(H, W, 3\)"),
        (torch.zeros(H, W, 3, dtype=torch.uint8), r"\(3, H, W\)"),
        (np.zeros((16, 200, 3), np.uint8), "at least 32x32 pixels, got 16x200"),
        (np.zeros((H, W), np.uint8), "expected an RGB image"),
        ([], "empty list"),
        ([image(0), image(0, 48, 48)], "must share one size"),
        ("frame.png", "got a path"),
    ],
)
def test_bad_images(predictor, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        predictor.predict(bad)


def test_bad_construction(model):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Predictor(model, half=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Predictor(model, precision="float16")
    with pytest.raises(ValueError, match=r"expected precision in .* got 'int8'"):
        Predictor(model, precision="int8")
    with pytest.raises(ValueError, match="half=True means precision='float16'"):
        Predictor(model, half=True, precision="bfloat16")
    with pytest.raises(TypeError, match="expected a PanoNet"):
        Predictor(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="min_instance_size"):
        Predictor(model, min_instance_size=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(model, device="cuda")


def test_limit_instances_per_class_keeps_the_largest():
    from panonet.inference.merge import limit_instances_per_class

    sem = torch.tensor([[11, 11, 11, 11, 13, 13], [11, 11, 11, 0, 13, 13]])
    # class 11: id 1 (3 px), id 2 (1 px), id 3 (2 px); class 13: id 4 (4 px); stuff: id 0.
    inst = torch.tensor([[1, 1, 3, 2, 4, 4], [1, 3, 5, 0, 4, 4]])
    inst[1, 2] = 1  # id 1 has 3 pixels
    out, removed = limit_instances_per_class(sem, inst, max_per_class=2)
    assert removed == 1
    assert (out[inst == 2] == 0).all(), "the smallest instance of class 11 goes"
    assert torch.equal(out[inst != 2], inst[inst != 2])
    same, removed = limit_instances_per_class(sem[None], inst[None], max_per_class=3)
    assert removed == 0 and torch.equal(same[0], inst)


def test_given_semantic_map_and_logits(predictor):
    img = image(5)
    gt = torch.full((H, W), 255, dtype=torch.int64)
    gt[:, : W // 2] = 13  # left half car, right half ignore
    out = predictor.predict(img, semantic=gt, return_logits=True)
    assert torch.equal(out["semantic"], gt)
    assert (out["instance"][:, W // 2 :] == 0).all() and (out["panoptic"][:, W // 2 :] == 0).all()
    assert out["logits"].shape == (predictor.num_classes, H // 4, W // 4)
    assert out["logits"].dtype == torch.float32 and out["logits"].device.type == "cpu"
    plain = predictor.predict(img)
    assert "logits" not in plain
    assert torch.equal(plain["semantic"], semantic_from_logits(out["logits"], (H, W)))


def test_outputs_left_on_the_device_and_untimed_stages(model):
    img = image(6)
    timed = Predictor(model)
    lean = Predictor(model, output_device=None, stage_timings=False)
    a, b = timed.predict(img), lean.predict(img)
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(a[key], b[key].cpu())
        assert b[key].device == lean.device
    assert set(a["timings"]) == {
        "preprocess",
        "network",
        "semantic",
        "clustering",
        "panoptic",
        "total",
    }
    assert set(b["timings"]) == {"total"} and b["timings"]["total"] > 0
    with pytest.raises(RuntimeError, match="device"):
        Predictor(model, output_device="no-such-device")


def test_network_output_post_processed_later_gives_the_same_maps(model):
    """run_network + predict(output) is predict(image) in two calls, for single images and
    batches, a given semantic map and the logits; a with_settings twin post-processes the same
    output with its own settings."""
    predictor = Predictor(model, bandwidths={"car": 0.8, "person": 0.8})
    for img in (image(7), [image(8), image(9)]):
        output = predictor.run_network(img)
        assert output.logits.shape[1] == predictor.num_classes
        assert output.embedding.shape[:1] + output.embedding.shape[2:] == (
            output.logits.shape[:1] + output.logits.shape[2:]
        )
        assert output.size == (H, W) and output.batched == isinstance(img, list)
        direct, later = predictor.predict(img), predictor.predict(output)
        for key in ("semantic", "instance", "panoptic"):
            assert torch.equal(direct[key], later[key]), key
        assert set(later["timings"]) == STAGES - {"preprocess", "network"}
    output = predictor.run_network(image(7))
    gt = torch.full((H, W), 13, dtype=torch.int64)
    direct = predictor.predict(image(7), semantic=gt, return_logits=True)
    later = predictor.predict(output, semantic=gt, return_logits=True)
    for key in ("semantic", "instance", "panoptic", "logits"):
        assert torch.equal(direct[key], later[key]), key
    twin = predictor.with_settings(min_instance_size=40, bandwidths={"car": 2.0})
    assert torch.equal(twin.predict(image(7))["panoptic"], twin.predict(output)["panoptic"])


def test_bad_network_outputs(model):
    from panonet.inference import NetworkOutput

    predictor = Predictor(model)
    good = predictor.run_network(image(7))
    few = NetworkOutput(good.logits[:, :5], good.embedding, good.size, False)
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, 19, h, w\), got \(1, 5,"):
        predictor.predict(few)
    short = NetworkOutput(good.logits, good.embedding[..., :-1], good.size, False)
    with pytest.raises(ValueError, match="expected an embedding of shape .* like the logits"):
        predictor.predict(short)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="expected a network output on cuda"):
            Predictor(model, device="cuda").predict(good)


def test_guided_upsampling_gives_the_guided_semantic_map(model):
    """With guided_upsampling the semantic map is guided_semantic of the logits and the frame;
    instances keep only pixels of their class; the two-call path carries the image."""
    from panonet.inference import NetworkOutput
    from panonet.inference.guided_upsample import GuidedUpsampling, guided_semantic

    settings = GuidedUpsampling(1.0, 0.1, 4)
    plain = Predictor(model, bandwidths={"car": 0.8, "person": 0.8})
    guided = plain.with_settings(guided_upsampling=settings)
    assert guided.guided_upsampling == settings and plain.guided_upsampling is None
    for img in (image(3), [image(4), image(5)]):
        out = guided.predict(img, return_logits=True)
        check_consistent(
            out if not isinstance(img, list) else {k: out[k][1] for k in out if k != "timings"}
        )
        logits = out["logits"] if isinstance(img, list) else out["logits"][None]
        frames = torch.from_numpy(np.stack(img) if isinstance(img, list) else img[None])
        want = guided_semantic(logits, frames, settings)
        assert torch.equal(out["semantic"], want if isinstance(img, list) else want[0])
        assert torch.equal(guided.predict(guided.run_network(img))["panoptic"], out["panoptic"])
    # The guided map differs from the bilinear one on a random image (edges everywhere).
    assert not torch.equal(
        plain.predict(image(3))["semantic"], guided.predict(image(3))["semantic"]
    )
    # A given semantic map is used as it is: nothing to upsample.
    gt = torch.full((H, W), 13, dtype=torch.int64)
    assert torch.equal(guided.predict(image(3), semantic=gt)["semantic"], gt)
    # A network output without its image cannot be guided.
    output = plain.run_network(image(3))
    bare = NetworkOutput(output.logits, output.embedding, output.size, output.batched)
    with pytest.raises(
        ValueError, match="expected the image .* with guided_upsampling, got NoneType"
    ):
        guided.predict(bare)
    wrong = NetworkOutput(
        output.logits, output.embedding, output.size, False, image=output.image[..., :2]
    )
    with pytest.raises(
        ValueError, match=r"expected the output's image as uint8 of shape \(1, 64, 96, 3\)"
    ):
        plain.predict(wrong)
    with pytest.raises(
        TypeError, match="expected guided_upsampling as a GuidedUpsampling or None, got dict"
    ):
        Predictor(model, guided_upsampling={"window": 4})
