"""PanoNet: outputs, parameter counts, coordinates wiring, stage-2 surgery, checkpoints."""

import os

import numpy as np
import pytest
import torch

from panonet.models.checkpoint import load_model, save_checkpoint
from panonet.models.panonet import IMAGENET_MEAN, IMAGENET_STD, PanoNet, PanoNetOutput, preprocess
from tests.models.helpers import assert_close_to_scale, randomize_batchnorm


@pytest.fixture(scope="module")
def model() -> PanoNet:
    torch.manual_seed(0)
    return randomize_batchnorm(PanoNet()).eval()


@pytest.mark.parametrize("share_weights", [False, True])
def test_output_structure_and_shapes(model, share_weights):
    net = model if not share_weights else PanoNet(share_weights=True).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 65, 129))
    assert isinstance(out, PanoNetOutput)
    sizes = [(17, 33), (9, 17), (5, 9)]
    assert [tuple(t.shape) for t in out.semantic] == [(2, 19, *s) for s in sizes]
    assert [tuple(t.shape) for t in out.embedding] == [(2, 12, *s) for s in sizes]
    assert PanoNet.output_sizes(65, 129) == tuple(sizes)


def test_parameter_counts():
    # Measured numbers quoted in PanoNet's docstring; semantic ICNet(3, 19) + instance ICNet(5, 12).
    assert PanoNet().count_parameters() == 13_412_189 == 6_707_321 + 6_704_868
    assert PanoNet(use_coords=False).count_parameters() == 13_411_037
    shared = PanoNet(share_weights=True)
    assert shared.count_parameters() == 7_199_005
    # Shared: one trunk (with the 5-channel input) and two heads.
    trunk = sum(p.numel() for p in shared.trunk.parameters())
    heads = [
        sum(p.numel() for p in h.parameters()) for h in (shared.semantic_head, shared.instance_head)
    ]
    assert trunk + sum(heads) == 7_199_005
    assert PanoNet(share_weights=True, use_coords=False).count_parameters() == 7_197_853


@pytest.mark.parametrize("share_weights", [False, True])
def test_width_scales_inner_channels_only(share_weights):
    half = PanoNet(width=0.5, share_weights=share_weights).eval()
    with torch.no_grad():
        out = half(torch.randn(1, 3, 64, 96))
    assert [t.shape[1] for t in out.semantic] == [19] * 3
    assert [t.shape[1] for t in out.embedding] == [12] * 3
    full = PanoNet(share_weights=share_weights)
    # Convs dominate and scale with width squared: about a quarter of the parameters.
    assert 0.2 < half.count_parameters() / full.count_parameters() < 0.3
    trunk = half.trunk if share_weights else half.instance.trunk
    assert trunk.conv5[0].conv3.out_channels == 512 and trunk.sub1[0].conv.out_channels == 16
    assert PanoNet(width=0.1).instance.trunk.sub1[0].conv.out_channels == 8  # at least 8


def test_width_is_checked():
    for bad in (0.0, -1.0, 5.0):
        with pytest.raises(ValueError, match=rf"expected 0 < width <= 4, got {bad}"):
            PanoNet(width=bad)


def test_width_round_trips_through_checkpoints(tmp_path):
    torch.manual_seed(4)
    net = randomize_batchnorm(PanoNet(width=0.5)).eval()
    path = save_checkpoint(tmp_path / "half.pt", net)
    loaded = load_model(path)
    assert loaded.config == net.config and loaded.width == 0.5
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).embedding[0], net(x).embedding[0])
    with pytest.raises(ValueError, match=r"shape mismatches"):
        load_model(path, width=1.0)
    # Checkpoints written before the option existed have no "width": the paper's network.
    raw = torch.load(save_checkpoint(tmp_path / "full.pt", PanoNet()), weights_only=True)
    del raw["config"]["width"]
    assert load_model(raw).width == 1.0


def test_coord_scale_scales_the_coordinate_input(tmp_path):
    # coord_scale s on the coordinates is the same network as s times the weights that read
    # them; it round-trips through checkpoints, and old checkpoints load with 1.
    torch.manual_seed(5)
    scaled = randomize_batchnorm(PanoNet(width=0.25, coord_scale=4.0)).eval()
    plain = PanoNet(width=0.25).eval()
    state = scaled.state_dict()
    for key in plain.input_conv_keys():
        state[key] = state[key].clone()
        state[key][:, 3:] *= 4.0
    plain.load_state_dict(state)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        a, b = scaled.double()(x).embedding[0], plain.double()(x).embedding[0]
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    loaded = load_model(save_checkpoint(tmp_path / "s.pt", scaled))
    assert loaded.coord_scale == 4.0 and loaded.config == scaled.config
    raw = torch.load(save_checkpoint(tmp_path / "p.pt", PanoNet(width=0.25)), weights_only=True)
    del raw["config"]["coord_scale"]
    assert load_model(raw).coord_scale == 1.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"expected a finite coord_scale > 0"):
            PanoNet(coord_scale=bad)


def _output_coordinate_reference(
    size: tuple[int, int], crop: tuple[int, int], offset: tuple[int, int], full: tuple[int, int]
) -> np.ndarray:
    """(2, h, w) float64 (x, y) of the output pixels: the normalised input coordinate (full-image
    convention of ``panonet.models.coords``) at each output pixel's centre in input pixels,
    ``(j + 1/2) * W / w - 1/2`` clamped to the crop (bilinear, half-pixel centres)."""
    out = []
    for axis in (1, 0):  # x first
        n_out, n_in, start, n_full = size[axis], crop[axis], offset[axis], full[axis]
        centre = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        out.append(2.0 * (start + centre) / (n_full - 1) - 1.0)
    h, w = size
    return np.stack(
        [np.broadcast_to(out[0][None, :], (h, w)), np.broadcast_to(out[1][:, None], (h, w))]
    )


@pytest.mark.parametrize("share_weights", [False, True])
def test_coord_output_adds_the_output_pixels_coordinates(tmp_path, share_weights):
    # With the same weights, coord_output s changes only the embedding's channels 0 and 1, by s
    # times the output pixels' full-image coordinates, at every scale, for whole images and
    # for crops placed in a larger image.
    torch.manual_seed(6)
    kwargs = {"width": 0.25, "share_weights": share_weights}
    moved = randomize_batchnorm(PanoNet(coord_output=3.0, **kwargs)).double().eval()
    plain = PanoNet(**kwargs).double().eval()
    plain.load_state_dict(moved.state_dict())
    x = torch.randn(2, 3, 66, 100, dtype=torch.float64)
    cases = [
        ({}, (0, 0), (66, 100)),
        (
            {"offset": torch.tensor([[10, 20], [10, 20]]), "full_size": (90, 150)},
            (10, 20),
            (90, 150),
        ),
    ]
    for kw, offset, full in cases:
        with torch.no_grad():
            a, b = moved(x, **kw), plain(x, **kw)
        torch.testing.assert_close(a.semantic, b.semantic, rtol=0, atol=0)
        for ea, eb in zip(a.embedding, b.embedding, strict=True):
            ref = 3.0 * _output_coordinate_reference(tuple(ea.shape[-2:]), (66, 100), offset, full)
            diff = (ea - eb).numpy()
            np.testing.assert_allclose(
                diff[:, :2], np.broadcast_to(ref, diff[:, :2].shape), atol=1e-12
            )
            assert not diff[:, 2:].any()
    # Stage 1 (no coordinate input) adds nothing either.
    stage1 = PanoNet(use_coords=False, coord_output=3.0, **kwargs).eval()
    with torch.no_grad():
        out = stage1(x.float())
    ref = PanoNet(use_coords=False, **kwargs).eval()
    ref.load_state_dict(stage1.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(out.embedding, ref(x.float()).embedding, rtol=0, atol=0)
    loaded = load_model(save_checkpoint(tmp_path / "o.pt", moved))
    assert loaded.coord_output == 3.0 and loaded.config == moved.config
    raw = torch.load(save_checkpoint(tmp_path / "p.pt", PanoNet(width=0.25)), weights_only=True)
    del raw["config"]["coord_output"]
    assert load_model(raw).coord_output == 0.0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"expected a finite coord_output >= 0"):
            PanoNet(coord_output=bad)
    with pytest.raises(ValueError, match=r"coord_output needs embedding_dim >= 2, got 1"):
        PanoNet(embedding_dim=1, coord_output=1.0)


def test_shared_variant_separates_only_the_heads():
    names = {n.split(".")[0] for n, _ in PanoNet(share_weights=True).named_parameters()}
    assert names == {"trunk", "semantic_head", "instance_head"}
    head_modules = {
        n.split(".")[1]
        for n, _ in PanoNet(share_weights=True).named_parameters()
        if n.startswith("instance_head.")
    }
    assert head_modules == {"cff_sub24", "cff_sub12", "classifier"}


def test_bad_images(model):
    with pytest.raises(ValueError, match=r"PanoNet: expected input of shape \(B, 3, H, W\)"):
        model(torch.randn(1, 5, 64, 64))
    with pytest.raises(ValueError, match=r"expected H and W >= 32.*got H=20, W=64"):
        model(torch.randn(1, 3, 20, 64))
    with pytest.raises(ValueError, match=r"crop 0 .* does not fit"):
        model(torch.randn(1, 3, 64, 64), offset=torch.tensor([[10, 0]]), full_size=(70, 70))


def test_coordinates_reach_the_instance_branch_only():
    torch.manual_seed(1)
    net = PanoNet().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        full = net(x)
        crop = net(x, offset=torch.tensor([[64, 128], [0, 0]]), full_size=(256, 256))
    # Same pixels, different position in the full image: only the embedding changes.
    torch.testing.assert_close(crop.semantic[0], full.semantic[0], rtol=0, atol=0)
    assert not torch.allclose(crop.embedding[0], full.embedding[0])


def test_offset_is_ignored_without_coords():
    net = PanoNet(use_coords=False).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a = net(x).embedding[0]
        b = net(x, offset=torch.tensor([[3, 4], [0, 1]]), full_size=(100, 100)).embedding[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("share_weights", [False, True])
def test_stage2_surgery_preserves_stage1_outputs(share_weights):
    torch.manual_seed(2)
    stage1 = randomize_batchnorm(PanoNet(use_coords=False, share_weights=share_weights)).eval()
    stage2 = PanoNet(use_coords=True, share_weights=share_weights)
    stage2.load_stage1(stage1.state_dict())
    stage2.eval()

    sd2 = stage2.state_dict()
    for key in stage2.input_conv_keys():
        assert sd2[key].shape[1] == 5
        assert torch.equal(sd2[key][:, 3:], torch.zeros_like(sd2[key][:, 3:]))
        assert torch.equal(sd2[key][:, :3], stage1.state_dict()[key])
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out1, out2 = stage1(x), stage2(x)
    # Zero weights on the coordinates add exact zeros; only the convolution's summation order
    # over 5 instead of 3 input channels may differ (float32 rounding).
    for a, b in zip(out1.embedding + out1.semantic, out2.embedding + out2.semantic, strict=True):
        assert_close_to_scale(b, a, 1e-6, "stage-2 vs stage-1")


def test_surgery_rejects_other_mismatches():
    stage1 = PanoNet(num_classes=7, use_coords=False)
    stage2 = PanoNet(use_coords=True)
    # The three classifiers' weights and biases of the semantic head.
    with pytest.raises(ValueError, match=r"shape mismatches \(6\):.*semantic.head.classifier"):
        stage2.load_stage1(stage1.state_dict())
    sd = PanoNet(use_coords=False).state_dict()
    del sd["instance.head.classifier.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError,
        match=r"missing keys \(1\): instance.head.classifier.bias; unexpected keys \(1\): extra",
    ):
        stage2.load_stage1(sd)


def test_surgery_accepts_a_stage2_state_dict():
    src, dst = PanoNet(), PanoNet()
    dst.load_stage1(src.state_dict())
    loaded = dst.state_dict()
    for k, v in src.state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    net = randomize_batchnorm(PanoNet(num_classes=5, embedding_dim=4, share_weights=True))
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", net, epoch=3, note="x")
    assert sorted(os.listdir(path.parent)) == ["model.pt"]  # no temporary file left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["epoch"] == 3 and raw["config"] == net.config
    loaded = load_model(path)
    assert loaded.config == net.config and not loaded.training
    loaded_sd = loaded.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(loaded_sd[k], v), k
    # A raw state dict with matching overrides also loads.
    load_model(net.state_dict(), num_classes=5, embedding_dim=4, share_weights=True)


def test_checkpoint_mismatch_names_keys(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", PanoNet(num_classes=5))
    with pytest.raises(
        ValueError,
        match=r"c.pt does not match PanoNet\(num_classes=19, .*\): shape mismatches \(6\): "
        r"semantic.head.cff_sub12.classifier.bias: checkpoint \(5,\) vs model \(19,\)",
    ):
        load_model(path, num_classes=19)
    with pytest.raises(
        ValueError, match=r"missing keys \(414\): instance_head.*unexpected keys \(768\): instance"
    ):
        load_model(path, share_weights=True)
    with pytest.raises(ValueError, match=r"unknown PanoNet config keys \['depth'\]"):
        load_model(path, depth=3)


def test_stage1_checkpoint_hint(tmp_path):
    path = save_checkpoint(tmp_path / "s1.pt", PanoNet(use_coords=False))
    raw_state = torch.load(path, weights_only=True)["model"]
    with pytest.raises(ValueError, match=r"stage-1 checkpoint.*instance.trunk.sub1.0.conv.weight"):
        load_model(raw_state)
    assert load_model(path).use_coords is False


def test_preprocess():
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255
    x = preprocess(img)
    assert x.shape == (1, 3, 4, 5) and x.dtype == torch.float32
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]] + [
        -IMAGENET_MEAN[c] / IMAGENET_STD[c] for c in (1, 2)
    ]
    torch.testing.assert_close(x[0, :, 2, 3], torch.tensor(expected))
    assert preprocess(torch.zeros(2, 4, 5, 3, dtype=torch.uint8)).shape == (2, 3, 4, 5)
    with pytest.raises(
        ValueError, match=r"uint8 RGB image.*got torch.float32 of shape \(4, 5, 3\)"
    ):
        preprocess(torch.zeros(4, 5, 3))


@pytest.mark.parametrize("share_weights", [False, True])
@pytest.mark.parametrize("detail", ["semantic", "both"])
def test_detail_round_trips_and_defaults_to_off(tmp_path, share_weights, detail):
    torch.manual_seed(6)
    net = PanoNet(width=0.25, detail=detail, share_weights=share_weights)
    net = randomize_batchnorm(net).eval()
    if share_weights:
        heads = (net.semantic_head, net.instance_head)
    else:
        heads = (net.semantic.head, net.instance.head)
    assert [h.detail is not None for h in heads] == [True, detail == "both"]
    loaded = load_model(save_checkpoint(tmp_path / "d.pt", net))
    assert loaded.config == net.config and loaded.detail == detail
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).semantic[0], net(x).semantic[0])
        assert torch.equal(loaded(x).embedding[0], net(x).embedding[0])
    # Checkpoints written before the option existed have no "detail": the paper's ICNet.
    raw = torch.load(save_checkpoint(tmp_path / "plain.pt", PanoNet(width=0.25)), weights_only=True)
    del raw["config"]["detail"]
    assert load_model(raw).detail == "none"
    with pytest.raises(ValueError, match=r"unexpected"):
        load_model(tmp_path / "d.pt", detail="none")
    with pytest.raises(ValueError, match=r"detail in \('none', 'semantic', 'both'\), got True"):
        PanoNet(detail=True)
