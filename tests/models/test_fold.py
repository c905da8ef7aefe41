"""fold_batchnorm: the folded network computes the eval-mode function of the original."""

import pytest
import torch
from torch import nn

from panonet.models import PanoNet
from panonet.models.fold import fold_batchnorm
from tests.models.helpers import randomize_batchnorm


def _model(seed: int = 0, **kwargs) -> PanoNet:
    torch.manual_seed(seed)
    return randomize_batchnorm(PanoNet(width=0.25, **kwargs), seed).eval()


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(x)
    return [*out.semantic, *out.embedding]


def _image(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize(
    ("share_weights", "detail"), [(False, "none"), (True, "semantic"), (False, "both")]
)
def test_float64_fold_is_the_same_function(share_weights, detail):
    # In float64 the fold's only change is rounding at ~1e-16 relative; 1e-10 leaves room for
    # its growth through ~60 layers and still fails for a wrong scale or shift (~1e-1).
    model = _model(share_weights=share_weights, detail=detail).double()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = _image(torch.float64)
    for got, want in zip(_outputs(folded, x), _outputs(model, x), strict=True):
        err = float((got - want).abs().max())
        assert err <= 1e-10 * float(want.abs().max()), err


def test_float32_fold_is_as_accurate_as_the_original():
    # Against the float64 network, the folded float32 network errs by float32 rounding like the
    # original does (another rounding pattern, the same order of magnitude): within 4x of the
    # original's error. Folding in float32 or with the wrong running stats is far outside.
    model = _model()
    reference = _outputs(model.double(), _image(torch.float64))
    model = model.float()
    x = _image()
    plain = _outputs(model, x)
    folded = _outputs(fold_batchnorm(model), x)
    for got, base, want in zip(folded, plain, reference, strict=True):
        base_err = float((base.double() - want).abs().max())
        got_err = float((got.double() - want).abs().max())
        assert 0 < base_err  # float32 does round: the comparison means something
        assert got_err <= 4 * base_err, (got_err, base_err)


def test_the_model_is_left_unchanged():
    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training and not folded.training
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_a_training_mode_model_folds_its_eval_function():
    model = _model().double().train()
    x = _image(torch.float64)
    folded = _outputs(fold_batchnorm(model), x)
    for got, want in zip(folded, _outputs(model.eval(), x), strict=True):
        assert torch.allclose(got, want, rtol=0, atol=1e-10 * float(want.abs().max()))


def test_folding_twice_changes_nothing():
    model = _model()
    once = fold_batchnorm(model)
    twice = fold_batchnorm(once)
    x = _image()
    for a, b in zip(_outputs(once, x), _outputs(twice, x), strict=True):
        assert torch.equal(a, b)


def test_an_unknown_batchnorm_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match=r"got 1 elsewhere: 1"):
        fold_batchnorm(model)


def test_a_batchnorm_without_running_stats_is_refused():
    model = _model()
    block = model.semantic.trunk.sub1[0]
    block.bn = nn.BatchNorm2d(block.bn.num_features, track_running_stats=False)
    with pytest.raises(ValueError, match="track_running_stats=False"):
        fold_batchnorm(model)
