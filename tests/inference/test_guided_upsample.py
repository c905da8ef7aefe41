"""panonet.inference.guided_upsample: the settings and the semantic map from the logits, guided
by the image (the op itself: tests/ops/test_guided_upsample_argmax.py)."""

import math

import pytest
import torch

from panonet.inference.guided_upsample import (
    GuidedUpsampling,
    check_guided_upsampling,
    guided_semantic,
)
from panonet.ops import guided_upsample_argmax


def test_guided_semantic_is_the_op_with_its_settings(device):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 8, generator=g).to(device)
    image = torch.randint(0, 256, (2, 24, 32, 3), dtype=torch.uint8, generator=g).to(device)
    s = GuidedUpsampling(1.0, 0.2, 4)
    want = guided_upsample_argmax(logits, image, 1.0, 0.2, 4)
    assert torch.equal(guided_semantic(logits, image, s), want)
    d = GuidedUpsampling()
    default = guided_upsample_argmax(logits, image, d.sigma_spatial, d.sigma_range, d.window)
    assert torch.equal(guided_semantic(logits, image), default)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma_spatial": 0.0}, "finite sigma_spatial > 0, got 0.0"),
        ({"sigma_range": math.inf}, "finite sigma_range > 0, got inf"),
        ({"window": 3}, r"even window in \[2, 8\], got 3"),
        ({"window": 0}, r"even window in \[2, 8\], got 0"),
        ({"window": 10}, r"even window in \[2, 8\], got 10"),
        ({"window": 4.0}, r"even window in \[2, 8\], got 4.0"),
        ({"cluster": 1}, r"expected cluster as a bool, got 1"),
    ],
)
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuidedUpsampling(**kwargs)


def test_inputs_are_checked():
    logits = torch.zeros(1, 3, 4, 4)
    image = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"guided_semantic: .* expected a uint8 image, got Float"):
        guided_semantic(logits, image.float())
    with pytest.raises(ValueError, match=r"guided_semantic: .* image of shape \(1, H, W, 3\)"):
        guided_semantic(logits, image.permute(0, 3, 1, 2))
    assert check_guided_upsampling(None, "f") is None
    with pytest.raises(TypeError, match="f: expected guided_upsampling as a GuidedUpsampling"):
        check_guided_upsampling({"window": 4}, "f")


def test_parse_and_to_json():
    s = GuidedUpsampling.parse("1.5,0.1,4")
    assert s == GuidedUpsampling(1.5, 0.1, 4) and s.cluster
    assert s.to_json() == {"sigma_spatial": 1.5, "sigma_range": 0.1, "window": 4, "cluster": True}
    assert not GuidedUpsampling.parse("1.5,0.1,4,0").cluster
    assert GuidedUpsampling.parse("1.5,0.1,4, 1").cluster
    for text, message in [
        ("1,2", "three or four values"),
        ("1,2,4,yes", "CLUSTER 0 or 1, got 'yes'"),
        ("1,2,4,1,0", "three or four values"),
        ("1,2,x", "invalid literal"),
        ("1,2,3", "got 3"),
    ]:
        with pytest.raises(ValueError, match=message):
            GuidedUpsampling.parse(text)
