"""ICNet: output sizes, parameter count, pyramid pooling, input validation, ImageNet init."""

import math

import pytest
import torch
import torch.nn.functional as F

from panonet.models.icnet import (
    ICNet,
    PyramidPoolingSum,
    _pool_window,
    icnet_output_sizes,
)
from panonet.models.pretrained import load_imagenet_resnet50


@pytest.fixture(scope="module")
def icnet() -> ICNet:
    torch.manual_seed(0)
    return ICNet(3, 19).eval()


def _ceil_sizes(h: int, w: int) -> list[tuple[int, int]]:
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16)]


@pytest.mark.parametrize(
    ("h", "w"), [(1025, 2049), (1024, 2048), (512, 1024), (33, 47), (32, 32), (777, 1001)]
)
def test_output_sizes_formula(h, w):
    assert list(icnet_output_sizes(h, w)) == _ceil_sizes(h, w)


@pytest.mark.parametrize(("h", "w"), [(64, 128), (65, 129), (96, 160), (33, 47), (32, 32)])
def test_forward_shapes(icnet, h, w):
    with torch.no_grad():
        outs = icnet(torch.randn(2, 3, h, w))
    assert len(outs) == 3
    for out, (oh, ow) in zip(outs, _ceil_sizes(h, w), strict=True):
        assert out.shape == (2, 19, oh, ow) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_forward_full_cityscapes_size(icnet):
    # The released model's odd size: 1025 x 2049 -> 257 x 513, 129 x 257, 65 x 129.
    with torch.no_grad():
        outs = icnet(torch.randn(1, 3, 1025, 2049))
    assert [tuple(o.shape[-2:]) for o in outs] == [(257, 513), (129, 257), (65, 129)]


def test_float64_input():
    model = ICNet(5, 4).double().eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 5, 40, 70, dtype=torch.float64))
    assert [o.shape for o in outs] == [(1, 4, 10, 18), (1, 4, 5, 9), (1, 4, 3, 5)]
    assert all(o.dtype == torch.float64 for o in outs)


def _conv_bn(i: int, o: int, k: int) -> int:
    return i * o * k * k + 2 * o


def _bottleneck(i: int, o: int, projection: bool) -> int:
    m = o // 4
    n = _conv_bn(i, m, 1) + _conv_bn(m, m, 3) + _conv_bn(m, o, 1)
    return n + (_conv_bn(i, o, 1) if projection else 0)


def _stage(i: int, o: int, blocks: int) -> int:
    return _bottleneck(i, o, True) + (blocks - 1) * _bottleneck(o, o, False)


def expected_icnet_parameters(in_channels: int, out_channels: int) -> int:
    """Closed-form count of the layout in the module docstring (independent of the code)."""
    stem_like = _conv_bn(in_channels, 32, 3) + _conv_bn(32, 32, 3) + _conv_bn(32, 64, 3)
    trunk = 2 * stem_like  # sub1 and the PSPNet stem have the same shapes
    trunk += _stage(64, 128, 3) + _stage(128, 256, 4) + _stage(256, 512, 6) + _stage(512, 1024, 3)
    trunk += _conv_bn(1024, 256, 1)

    def cff(low: int, high: int) -> int:
        return _conv_bn(low, 128, 3) + _conv_bn(high, 128, 1) + low * out_channels + out_channels

    head = cff(256, 256) + cff(128, 64) + 128 * out_channels + out_channels
    return trunk + head


def test_parameter_count():
    model = ICNet(3, 19)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_icnet_parameters(3, 19) == 6_707_321
    assert sum(p.numel() for p in ICNet(5, 12).parameters()) == 6_704_868


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (
            torch.randn(1, 4, 64, 64),
            r"expected input of shape \(B, 3, H, W\), got \(1, 4, 64, 64\)",
        ),
        (torch.randn(3, 64, 64), r"expected input of shape \(B, 3, H, W\), got \(3, 64, 64\)"),
        (torch.randn(1, 3, 31, 64), r"expected H and W >= 32.*got H=31, W=64"),
        (torch.randn(1, 3, 64, 16), r"expected H and W >= 32.*got H=64, W=16"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), r"floating-point input, got torch.uint8"),
    ],
)
def test_bad_inputs(icnet, x, match):
    with pytest.raises(ValueError, match=match):
        icnet(x)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 12, 32, 33, 65])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_pool_window_tiles_the_map(n, bins):
    kernel, stride = _pool_window(n, bins)
    windows = (n - kernel) // stride + 1
    assert windows == min(bins, n)
    assert (windows - 1) * stride + kernel == n  # the last window ends at the border


def test_pyramid_pooling_matches_adaptive_pooling_when_bins_divide():
    x = torch.randn(2, 8, 12, 18)  # 12 and 18 are multiples of 1, 2, 3, 6
    expected = x.clone()
    for b in (1, 2, 3, 6):
        pooled = F.adaptive_avg_pool2d(x, b)
        expected += F.interpolate(pooled, size=(12, 18), mode="bilinear", align_corners=False)
    torch.testing.assert_close(PyramidPoolingSum()(x), expected, rtol=1e-6, atol=1e-6)


def test_pyramid_pooling_on_a_single_pixel():
    x = torch.randn(1, 4, 1, 1)
    torch.testing.assert_close(PyramidPoolingSum()(x), 5 * x)


def _fake_torchvision_resnet50(seed: int = 0, width: int = 64) -> dict[str, torch.Tensor]:
    """Keys and shapes of torchvision's resnet50().state_dict(), random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, o: int, i: int, k: int) -> None:
        sd[f"{name}.weight"] = torch.randn(o, i, k, k, generator=g)

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = torch.rand(c, generator=g)
        sd[f"{name}.bias"] = torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = torch.rand(c, generator=g)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    in_ch = width
    for li, blocks in enumerate((3, 4, 6, 3), start=1):
        mid = width * 2 ** (li - 1)
        out = 4 * mid
        for b in range(blocks):
            p = f"layer{li}.{b}"
            conv(f"{p}.conv1", mid, in_ch, 1)
            bn(f"{p}.bn1", mid)
            conv(f"{p}.conv2", mid, mid, 3)
            bn(f"{p}.bn2", mid)
            conv(f"{p}.conv3", out, mid, 1)
            bn(f"{p}.bn3", out)
            if b == 0:
                conv(f"{p}.downsample.0", out, in_ch, 1)
                bn(f"{p}.downsample.1", out)
            in_ch = out
    sd["fc.weight"] = torch.randn(1000, 4 * 8 * width, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


def test_load_imagenet_resnet50(tmp_path):
    source = _fake_torchvision_resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(source, path)
    model = ICNet(3, 19)
    sub1_before = model.trunk.sub1[0].conv.weight.clone()

    report = load_imagenet_resnet50(model, path)

    trunk_sd = model.trunk.state_dict()
    backbone = [k for k in trunk_sd if k.split(".")[0] in ("conv2", "conv3", "conv4", "conv5")]
    # 16 blocks x (3 convs + 3 BNs x 5 tensors) + 4 projections x (conv + BN)
    assert len(report.loaded) == len(backbone) == 16 * 18 + 4 * 6
    assert {k for k, _ in report.loaded} == {f"trunk.{k}" for k in backbone}
    # First half of output and input channels; layer1.0's input (64) is already ours.
    sd = model.state_dict()
    assert torch.equal(sd["trunk.conv3.0.conv1.weight"], source["layer2.0.conv1.weight"][:64, :128])
    assert torch.equal(sd["trunk.conv2.0.conv1.weight"], source["layer1.0.conv1.weight"][:32])
    assert torch.equal(
        sd["trunk.conv5.2.bn3.running_var"], source["layer4.2.bn3.running_var"][:1024]
    )
    assert torch.equal(
        sd["trunk.conv4.0.downsample.0.weight"], source["layer3.0.downsample.0.weight"][:512, :256]
    )
    # Stem, sub1, conv5_4 and the head are not touched; the 7x7 stem and fc are unused.
    assert torch.equal(model.trunk.sub1[0].conv.weight, sub1_before)
    skipped = {k for k, _ in report.skipped}
    assert "trunk.stem.0.conv.weight" in skipped and "trunk.sub1.0.conv.weight" in skipped
    assert "head.classifier.weight" not in skipped  # the report covers the trunk only
    assert set(report.unused) == {k for k in source if not k.startswith("layer")}
    assert "loaded" in report.summary()


def test_load_imagenet_resnet50_rejects_a_smaller_network():
    source = _fake_torchvision_resnet50(width=16)  # a quarter-width "ResNet-50"
    with pytest.raises(ValueError, match=r"layer1.0.conv1.weight has shape \(16, 16, 1, 1\)"):
        load_imagenet_resnet50(ICNet(3, 19), source)
    with pytest.raises(ValueError, match=r"no layer1..layer4 keys"):
        load_imagenet_resnet50(ICNet(3, 19), {"conv1.weight": torch.zeros(1)})
    with pytest.raises(TypeError, match=r"expected an ICNet or ICNetTrunk.*got Conv2d"):
        load_imagenet_resnet50(torch.nn.Conv2d(1, 1, 1), source)


def test_pool_windows_of_the_released_model():
    # icnet_cityscapes.prototxt at 1025 x 2049 (a 33 x 65 map): bins 1, 2 and 6 as released.
    assert [(_pool_window(33, b), _pool_window(65, b)) for b in (1, 2, 6)] == [
        ((33, 33), (65, 65)),
        ((17, 16), (33, 32)),
        ((8, 5), (15, 10)),
    ]


def test_detail_adds_one_conv_bn_per_head_and_changes_only_the_quarter_output():
    # The third fusion (ours): a 3x3 conv-BN from sub1's 32 channels to the head's 128.
    plain, detailed = ICNet(3, 19), ICNet(3, 19, detail=True)
    n = sum(p.numel() for p in detailed.parameters())
    assert n == expected_icnet_parameters(3, 19) + _conv_bn(32, 128, 3)
    missing = set(detailed.state_dict()) - set(plain.state_dict())
    assert missing and all(k.startswith("head.detail.") for k in missing)
    detailed.load_state_dict(plain.state_dict(), strict=False)
    torch.manual_seed(3)
    for p in detailed.head.detail.parameters():
        p.data.normal_()
    plain.eval(), detailed.eval()
    x = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        want, got = plain(x), detailed(x)
    assert [tuple(o.shape) for o in got] == [tuple(o.shape) for o in want]
    # The 1/8 and 1/16 outputs do not see the detail path; the 1/4 one does.
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert not torch.allclose(got[0], want[0])


def test_detail_quarter_output_follows_a_formula():
    # out_1/4 = classifier(relu(upsampled 1/8 fusion + BN(conv3x3(sub1's second conv)))).
    torch.manual_seed(5)
    model = ICNet(3, 7, width=0.25, detail=True).double().eval()
    x = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    with torch.no_grad():
        f1, f2, f4, fq = model.trunk(x)
        f24, _ = model.head.cff_sub24(f4, f2)
        f12, _ = model.head.cff_sub12(f24, f1)
        up = F.interpolate(f12, size=(12, 20), mode="bilinear", align_corners=False)
        want = model.head.classifier(F.relu(up + model.head.detail(fq)))
        got = model(x)[0]
    assert fq.shape[-2:] == (12, 20)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
