"""The loss on the real PanoNet: gradients reach both branches; one optimiser step descends.

Tiny inputs (2 x 64 x 96) keep each forward/backward well under a second on the CPU.
"""

import pytest
import torch

from panonet.models import PanoNet
from panonet.train import LossConfig, OptimConfig, PanoNetLoss, build_optimizer, build_scheduler

H, W = 64, 96


def fixed_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised images (2, 3, H, W), trainIds with a void band, three thing instances."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, H, W, generator=g)
    semantic = torch.randint(0, 19, (2, H, W), generator=g)
    semantic[:, :8] = 255
    instance = torch.full((2, H, W), -1, dtype=torch.int64)
    instance[:, 8:32, 8:40] = 26001
    instance[:, 32:64, 48:96] = 24002
    instance[1, 0:24, 56:96] = 26002
    return images, semantic, instance


def test_gradient_reaches_both_branches():
    torch.manual_seed(0)
    model = PanoNet().train()
    images, semantic, instance = fixed_batch()
    loss = PanoNetLoss()
    total, terms = loss(model(images), semantic, instance)
    assert torch.isfinite(total)
    assert float(terms["sem"]) > 0 and float(terms["inst"]) > 0
    total.backward()
    for branch in (model.semantic, model.instance):
        grads = {name: p.grad for name, p in branch.named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        # Every parameter tensor of both branches gets a non-zero gradient: the three scales
        # reach every layer (the 1/16 classifier only feeds the 1/16 loss, and so on), the
        # coordinate channels of the instance branch's input convs included.
        zero = [name for name, g in grads.items() if float(g.abs().sum()) == 0]
        assert not zero, zero
    # In particular the weights that read the (x, y) coordinate channels (inputs 3 and 4).
    params = dict(model.named_parameters())
    for key in model.input_conv_keys():
        weight = params[key]
        assert weight.shape[1] == 5 and float(weight.grad[:, 3:].abs().sum()) > 0, key


@pytest.mark.parametrize("name", ["adadelta", "adamw"])
def test_one_optimiser_step_lowers_the_loss(name):
    """One step of the configured optimizer (paper's Adadelta, lr 0.003; or AdamW).

    BatchNorm is in eval mode (frozen statistics, as when fine-tuning with small batches), so
    the loss is one fixed function of the parameters before and after the step. With train-mode
    BN on this 2-image 64 x 96 batch the 1/32 branch normalises over 12 values per channel and
    the landscape is so steep at random init that Adadelta's first step (about
    lr * sqrt(eps) / sqrt(1 - rho) = 1e-5 on every parameter, whatever the gradient's size)
    overshoots on some seeds; with frozen BN it descends on every seed tried (loss x0.84-0.86
    for Adadelta, x0.05-0.17 for AdamW over seeds 3-8).
    """
    images, semantic, instance = fixed_batch()
    torch.manual_seed(0)
    model = PanoNet().eval()
    cfg = OptimConfig(name=name, max_steps=100)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    loss = PanoNetLoss(LossConfig())

    before, terms_before = loss(model(images), semantic, instance)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        after, terms_after = loss(model(images), semantic, instance)

    assert after.item() < 0.97 * before.item(), (before.item(), after.item())
    # Both halves of the loss go down: both branches were updated in a descent direction.
    assert float(terms_after["sem"]) < float(terms_before["sem"])
    assert float(terms_after["inst"]) < float(terms_before["inst"])
    assert scheduler.get_last_lr()[0] == pytest.approx(cfg.base_lr * (1 - 1 / 100) ** 0.9)
