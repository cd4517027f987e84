"""Shared fixtures: small integer networks built from (untrained) DigitsNets with non-trivial BN."""

from __future__ import annotations

import numpy as np
import pytest


def random_digits_net(seed: int = 0, widths=(16, 16, 32), prune: float = 0.0):
    """(IntNet, model): a DigitsNet with random weights, BN statistics and clipping thresholds, lowered."""
    from apotflow.sw.lower import lower

    m = random_digits_net_model(seed, widths, prune)
    return lower(m), m


def random_digits_net_model(seed: int = 0, widths=(16, 16, 32), prune: float = 0.0):
    """A DigitsNet (fake-quant, eval mode; pruned: sliced) with random weights, BN statistics and clipping
    thresholds."""
    import torch

    from apotflow.sw.models.digits import DigitsNet
    from apotflow.sw.prune import apply_masks, compute_masks, slice_pruned
    from apotflow.sw.quant import set_quantize

    torch.manual_seed(seed)
    m = DigitsNet(widths=widths)
    for bn in (m.bn1, m.bn2, m.bn3, m.bn4):
        bn.weight.data.uniform_(-1, 2)
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    for q in (m.conv2.aq, m.conv3.aq, m.conv4.aq, m.qpool):
        q.alpha.data.fill_(2.0)
    if prune:
        compute_masks(m, prune)
        apply_masks(m)
        m = slice_pruned(m)
    set_quantize(m, True)
    return m.eval()


def random_resnet20(seed: int = 0, **kw):
    """A small pruned CifarResNet-20 (widths 8/16/32, masks at 30%, float mode) with random BatchNorm
    statistics and clipping thresholds 2.0; kw go to the constructor."""
    import torch

    from apotflow.sw.models.resnet import CifarResNet
    from apotflow.sw.prune import compute_masks
    from apotflow.sw.quant import ActQuantizer

    torch.manual_seed(seed)
    m = CifarResNet(20, widths=(8, 16, 32), **kw)
    compute_masks(m, 0.3)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.5, 1.5)
        if isinstance(mod, ActQuantizer):
            mod.alpha.data.fill_(2.0)
    return m


@pytest.fixture(scope="session")
def digits_images():
    from apotflow.sw.digits_run import digits_test_images

    return digits_test_images(0)


@pytest.fixture(scope="session")
def small_net():
    return random_digits_net(1, widths=(8, 8, 16), prune=0.3)[0]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def quantizer_codes_and_integer_run(m, net, x):
    """Run the float64 fake-quant copy of model ``m`` and the integer network ``net`` on images ``x``; assert
    their top-1 is equal. Returns (the codes each conv's activation quantizer computed, in call order, with
    the pruned input channels dropped; the integer run's tensors)."""
    import torch

    from apotflow.sw.golden import run_integer
    from apotflow.sw.quant import QConv2d, exact_copy

    e = exact_copy(m)
    seen = []
    for mod in e.modules():
        if isinstance(mod, QConv2d) and mod.aq is not None:
            orig = mod.aq.quantize
            mod.aq.quantize = (lambda o, mask: lambda v: (seen.append(o(v)[1][:, mask]), o(v))[1])(orig, mod.in_mask)
    vals = run_integer(net, x.long().numpy())
    with torch.no_grad():
        pf = e(x.double()).argmax(1)
    assert torch.equal(pf, vals["logits"].reshape(len(x), -1).argmax(1))
    return seen, vals
