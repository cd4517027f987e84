"""APoT quantizer: exact level sets, tie rule, codebook membership, idempotence, int form, grads."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from apotflow.sw.quant import (
    ActQuantizer,
    QConv2d,
    QLinear,
    WeightQuantizer,
    _codes,
    apot_levels,
    exact_copy,
    midpoints,
    weight_stats,
)

BITS = [2, 3, 4, 5, 8]
floats = st.floats(-20.0, 20.0, allow_nan=False, width=32)


def test_exact_level_sets():
    assert apot_levels(4, signed=True) == ([0, 1, 2, 3, 4, 6, 8, 10], 10)
    assert apot_levels(4, signed=False) == ([0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48], 48)
    assert apot_levels(2, signed=True) == ([0, 1], 1)  # ternary
    assert apot_levels(3, signed=True) == ([0, 1, 2, 4], 4)
    assert apot_levels(2, signed=False) == ([0, 1, 2, 4], 4)
    n5, d5 = apot_levels(5, signed=False)
    assert d5 == 100 and len(n5) == 32 and n5[-1] == 100
    assert apot_levels(8, True) == (list(range(128)), 127)
    assert apot_levels(8, False) == (list(range(256)), 255)
    # every 4-bit activation code is p0 + p1, p0 in {0,2,8,32}, p1 in {0,1,4,16}
    sums = {a + b for a in (0, 2, 8, 32) for b in (0, 1, 4, 16)}
    assert sums == set(apot_levels(4, False)[0])


def test_midpoints_4bit():
    w = [0.05, 0.15, 0.25, 0.35, 0.50, 0.70, 0.90]
    assert torch.allclose(midpoints(4, True), torch.tensor(w, dtype=torch.float64), atol=1e-15)
    a = [0.5, 1.5, 2.5, 3.5, 5, 7, 8.5, 10.5, 14, 17, 21, 28, 32.5, 34.5, 42]
    assert torch.equal(midpoints(4, False) * 48, torch.tensor(a, dtype=torch.float64))


@pytest.mark.parametrize("bits", [1, 6, 7, 16, "4"])
def test_unsupported_bits(bits):
    with pytest.raises(ValueError, match="bits must be one of"):
        apot_levels(bits, True)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", BITS)
def test_tie_goes_to_larger_level(bits, signed):
    nums, _ = apot_levels(bits, signed)
    mids = midpoints(bits, signed)
    levels = torch.tensor(nums, dtype=torch.float32)
    for i, m in enumerate(mids.tolist()):
        x = torch.tensor([m], dtype=torch.float32)
        if float(x) != m:  # not representable in float32: no exact tie possible
            continue
        below = torch.nextafter(x, torch.tensor([-1.0]))
        assert _codes(x, levels, mids, signed).item() == nums[i + 1]  # tie -> larger magnitude
        assert _codes(below, levels, mids, signed).item() == nums[i]
        if signed:
            assert _codes(-x, levels, mids, signed).item() == -nums[i + 1]
    if not signed:  # through the module too
        q = ActQuantizer(bits, alpha_init=1.0)
        x = mids.float()
        exact = x.double() == mids
        assert torch.equal(q.int_codes(x)[exact], torch.tensor(nums[1:])[exact])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BITS), st.lists(floats, min_size=2, max_size=64), st.floats(0.5, 10.0))
def test_act_codebook_idempotent_int_form(bits, xs, alpha):
    q = ActQuantizer(bits, alpha_init=alpha)
    x = torch.tensor(xs).relu()
    y = q(x)
    codes = q.int_codes(x)
    nums, d = apot_levels(bits, False)
    assert set(codes.tolist()) <= set(nums)
    assert torch.equal(y, q.alpha * codes.float() / d)
    assert torch.equal(q(y), y)  # idempotent
    # brief's reference formula for the index
    xn = (x / q.alpha).clamp(0, 1)
    idx = (xn.double().unsqueeze(-1) >= midpoints(bits, False)).sum(-1)
    assert torch.equal(torch.tensor(nums)[idx], codes)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BITS), st.lists(floats, min_size=4, max_size=64))
def test_weight_codebook_int_form(bits, ws):
    w = torch.tensor(ws)
    if w.std() == 0:
        return
    wq = WeightQuantizer(bits)
    w = w.view(-1, 1)
    y = wq(w)
    w_int, scale = wq.int_weight(w)
    nums, d = apot_levels(bits, True)
    assert set(w_int.abs().flatten().tolist()) <= set(nums)
    assert torch.equal(y, scale * w_int.float())
    assert scale == pytest.approx(3.0 / d)


def test_weight_mask_and_kept_stats():
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3)
    mask = torch.tensor([True, False] * 4)
    wq = WeightQuantizer(4)
    y = wq(w, mask)
    assert (y[~mask] == 0).all()
    # statistics over kept filters only: same as quantizing the kept filters alone
    assert torch.equal(y[mask], wq(w[mask]))


def test_weight_stats_do_not_depend_on_summation_order():
    """The export (CPU) and the GPU's evaluation sum the weights in different orders; the statistics
    (and so the weight codes) must come out the same. A float32 mean/std differs with the order in
    about half of these layers; the float64-then-rounded one in none."""
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        k = torch.randn(45, 45, 3, 3, generator=g) * 0.05 + 0.001
        p = k.flatten()[torch.randperm(k.numel(), generator=g)].view_as(k)
        (m1, s1), (m2, s2) = weight_stats(k), weight_stats(p)
        assert m1.dtype == s1.dtype == torch.float32
        assert torch.equal(m1, m2) and torch.equal(s1, s2)
        assert torch.allclose(m1.double(), k.double().mean(), rtol=1e-7) and torch.allclose(s1.double(), k.double().std())


def test_fast_kernel_weight_codes_equal_evaluation_codes():
    """The trainer's dense masked statistics (sw/fastkernels.py) give the evaluation's weight codes."""
    from apotflow.sw.fastkernels import _fast_wquantize

    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        w = torch.randn(23, 12, 3, 3, generator=g) * 0.1
        mask = torch.rand(23, generator=g) > 0.3
        wq = WeightQuantizer(4)
        assert torch.equal(_fast_wquantize(wq, w, mask)[1], wq.quantize(w, mask)[1])


def test_alpha_gradient_matches_reference():
    q = ActQuantizer(4, alpha_init=2.0)
    x = torch.tensor([0.3, 1.1, 2.5, 5.0])
    q(x).sum().backward()
    xn = x / 2.0
    qn = q.int_codes(x).float() / 48
    ref = torch.where(xn > 1, torch.ones_like(xn), qn - xn).sum()
    assert torch.allclose(q.alpha.grad, ref)
    # input gradient only inside the range
    xr = x.clone().requires_grad_(True)
    q(xr).sum().backward()
    assert xr.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_weight_gradient_straight_through():
    wq = WeightQuantizer(4)
    w = torch.tensor([[-10.0], [0.1], [0.2], [10.0]], requires_grad=True)
    wq(w).sum().backward()
    std = w.detach().std()
    assert torch.allclose(w.grad, torch.full_like(w, 1 / std))  # not clipped (through 1/std)
    assert wq.alpha.grad is not None


@pytest.mark.parametrize("cls", ["conv", "linear"])
def test_qlayer_grads_match_float_fakequant(cls):
    torch.manual_seed(0)
    if cls == "conv":
        layer = QConv2d(3, 5, 3, padding=1, w_bits=4, a_bits=4)
        x = torch.rand(2, 3, 6, 6) * 6
    else:
        layer = QLinear(7, 4, w_bits=4, a_bits=4)
        x = torch.rand(3, 7) * 6
    layer.quantize = True
    x.requires_grad_(True)
    y = layer(x)
    y.pow(2).sum().backward()
    g = [x.grad.clone(), layer.weight.grad.clone(), layer.aq.alpha.grad.clone()]
    # reference: same math on the fake-quant tensors with autograd
    x.grad = None
    layer.zero_grad()
    wq, aq = layer.wq(layer.weight), layer.aq(x)
    ref = torch.nn.functional.conv2d(aq, wq, layer.bias, 1, 1) if cls == "conv" else aq @ wq.t() + layer.bias
    assert torch.allclose(y, ref, atol=1e-4)
    ref.pow(2).sum().backward()
    for a, b in zip(g, [x.grad, layer.weight.grad, layer.aq.alpha.grad]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_float64_copy_takes_weight_codes_in_float32():
    """A float64 copy (``exact_copy``) must quantize weights as the float32 model does (the codes the
    export reads), not in float64: the normalised weight moves by ~1e-7 between the two, so a weight that
    lies that close to a decision point changes code. Alpha is chosen to put one weight exactly there."""
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    w64 = w.double()
    x32 = ((w - w.mean()) / w.std()).double().flatten()
    x64 = ((w64 - w64.mean()) / w64.std()).flatten()
    e = int((x32 - x64).abs().argmax())
    q = WeightQuantizer(4)
    q.alpha.data = torch.tensor(abs(float(x32[e] + x64[e])) / 2 / 0.35)  # a decision point in |w / alpha|
    codes = q.quantize(w)[1]
    in_float64 = q._quantize(w64, None, None, q.alpha.double())[1]
    assert int((in_float64 != codes.double()).sum()) == 1  # the construction does reach a decision point
    copy64 = exact_copy(q)
    got = copy64.quantize(w64)[1]
    assert got.dtype == torch.float64 and torch.equal(got, codes.double())
