"""GM pruning: scores vs a numpy float64 brute force, floor count, frozen zeros, exact slicing."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from apotflow.sw.models import DigitsNet
from apotflow.sw.prune import apply_masks, compute_masks, gm_mask, gm_scores, group_weight, slice_pruned
from apotflow.sw.quant import set_quantize


def _ref_scores(w: np.ndarray) -> np.ndarray:
    f = w.reshape(w.shape[0], -1).astype(np.float64)
    return np.array([sum(np.sqrt(np.sum((f[i] - f[j]) ** 2)) for j in range(len(f))) for i in range(len(f))])


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_gm_scores_match_bruteforce(n, f, seed):
    w = torch.randn(n, f, generator=torch.Generator().manual_seed(seed))
    assert np.allclose(gm_scores(w).numpy(), _ref_scores(w.numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,rate", [(16, 0.3), (32, 0.3), (10, 0.15), (7, 0.5), (5, 0.0), (3, 0.99)])
def test_floor_count(n, rate):
    keep = gm_mask(torch.randn(n, 9), rate)
    assert int((~keep).sum()) == int(n * rate)


def test_smallest_pruned_and_ties_lower_index():
    w = torch.tensor([[0.0], [0.0], [5.0], [-5.0], [0.0]])  # rows 0,1,4 tie with the smallest sum
    keep = gm_mask(w, 0.4)  # prune 2
    assert keep.tolist() == [False, False, True, True, True]
    with pytest.raises(ValueError):
        gm_mask(w, 1.0)


def test_group_scored_over_concatenation():
    torch.manual_seed(0)
    m = DigitsNet()
    g = m.prune_groups()[0]
    gw = group_weight(g)
    assert gw.shape == (16, 9 + 16 * 9)
    masks = compute_masks(m, 0.3)
    assert torch.equal(masks[0], gm_mask(gw, 0.3))
    assert torch.equal(m.conv1.filter_mask, m.conv3.filter_mask)
    assert torch.equal(m.conv2.in_mask, masks[0]) and torch.equal(m.fc.in_mask, masks[2])


@pytest.mark.parametrize("quant", [False, True])
def test_pruned_weights_stay_zero_after_step(quant):
    torch.manual_seed(0)
    m = DigitsNet()
    set_quantize(m, quant)
    compute_masks(m, 0.3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randint(0, 17, (32, 1, 8, 8)).float()
    y = torch.randint(0, 10, (32,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        apply_masks(m, opt)
    for group in m.prune_groups():
        for conv, bn in group:
            drop = ~conv.filter_mask
            assert (conv.weight[drop] == 0).all()
            assert (bn.weight[drop] == 0).all() and (bn.bias[drop] == 0).all()
            if quant:
                assert (conv.wq(conv.weight, conv.filter_mask)[drop] == 0).all()


def test_slice_gives_equal_logits():
    torch.manual_seed(1)
    m = DigitsNet()
    x = torch.randint(0, 17, (64, 1, 8, 8)).float()
    set_quantize(m, True)
    m.train()
    m(x)  # populate BN running statistics
    compute_masks(m, 0.3)
    with torch.no_grad():
        for bn in [m.bn1, m.bn2, m.bn3, m.bn4]:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.5)
        m.conv2.aq.alpha.fill_(2.7)
        m.qpool.alpha.fill_(3.3)
    apply_masks(m)
    m.eval()
    s = slice_pruned(m)
    assert type(s) is DigitsNet and s.widths == (12, 12, 23)
    with torch.no_grad():
        a, b = m(x), s(x)
    assert torch.equal(a, b)
    assert sum(p.numel() for p in s.parameters()) < sum(p.numel() for p in m.parameters())
    # every sliced layer's recorded widths are its weight's (conv channels, linear features)
    for layer in (s.conv1, s.conv2, s.conv3, s.conv4):
        assert (layer.out_channels, layer.in_channels) == tuple(layer.weight.shape[:2])
    assert (s.fc.out_features, s.fc.in_features) == tuple(s.fc.weight.shape) == (10, 23)
