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
