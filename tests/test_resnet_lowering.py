"""CIFAR ResNet (reduced widths): tied GM masks, exact slicing, lowering, golden vs fake-quant, compiled program."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apotflow.hw.compile import compile_net, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sw.golden import run_integer
from apotflow.sw.lower import lower
from apotflow.sw.models import CifarResNet
from apotflow.sw.prune import get_masks, slice_pruned
from apotflow.sw.quant import QConv2d, exact_copy
from apotflow.sw.randmodel import random_images, random_model

RATE = 0.3


@pytest.fixture(scope="module")
def r20():
    """(masked model, sliced model, IntNet, images): ResNet-20 at widths (4, 8, 16), 30% GM."""
    m = random_model("resnet20", RATE, seed=0, width_scale=0.25, batches=1, batch_size=8)
    s = slice_pruned(m)
    return m, s, lower(m), random_images(12, seed=7)


def test_structure_and_names():
    m = CifarResNet(32, widths=(4, 8, 16))
    assert m.n == 5 and len(m.blocks) == 15 and m.name == "resnet32"
    assert [b.downsample for b in m.blocks].count(True) == 2
    assert m.blocks[5].sc_index.tolist() == [-1, -1, 0, 1, 2, 3, -1, -1]  # option A: planes // 4 each side
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(18)


def test_tied_stream_masks_and_rates(r20):
    m = r20[0]
    masks = get_masks(m)
    for s in (1, 2):  # stage s+1 keeps pad + c wherever stage s keeps c
        blk = m.stage_blocks(s)[0]
        sel = blk.sc_index >= 0
        assert bool(masks[s][sel][masks[s - 1][blk.sc_index[sel]]].all())
    for r in m.prune_report():
        if r["group"] == "stream1" or r["group"].endswith("a"):
            assert r["total"] - r["kept"] == int(r["total"] * RATE), r
        else:  # tied streams: floor(N * rate) unless too few channels are free
            assert 0 < r["total"] - r["kept"] <= int(r["total"] * RATE), r


def test_slicing_gives_equal_logits(r20):
    m, s, _, x = r20
    with torch.no_grad():
        assert torch.equal(m(x), s(x))
    assert sum(p.numel() for p in s.parameters()) < sum(p.numel() for p in m.parameters())
    blk = s.stage_blocks(1)[0]  # the sliced option-A shortcut: a channel selection into the kept inputs
    assert len(blk.sc_index) == blk.conv_b.out_channels
    assert int(blk.sc_index.max()) < blk.conv_a.in_channels


def test_op_and_tensor_naming(r20):
    net = r20[2]
    names = [op.name for op in net.ops]
    assert names[:3] == ["stem", "s1b0a", "s1b0b"] and names[-2:] == ["pool", "fc"]
    assert net.op_producing("s2b0").sources[1].stride == 2 and net.op_producing("s2b0").sources[1].role == "residual"
    assert list(net.tensors)[:4] == ["x", "stem", "s1b0a", "s1b0"]
    assert net.meta["model"] == "resnet20" and net.meta["fp32_shapes"]["s3b2b"] == [16, 16, 3, 3]
    assert net.tensors["x"].shape == (3, 32, 32) and net.tensors["x"].max_value == 255


def test_stem_codes_equal_and_blocks_close(r20):
    """The stem is exact; each block, fed the golden input, differs only by the residual scale K's
    rounding (a few codes per thousand); top-1 agreement is reported (random nets amplify flips)."""
    _, s, net, x = r20
    vals = run_integer(net, x.long().numpy())
    with torch.no_grad():
        h = torch.relu(s.bn(s.stem(x / 255, x, torch.tensor(1 / 255))))
        assert torch.equal(vals["stem"], s.blocks[0].conv_a.aq.int_codes(h))
        cur = "stem"
        for k, b in enumerate(s.blocks):
            tag = f"s{k // s.n + 1}b{k % s.n}"
            xin = (b.conv_a.aq.alpha * vals[cur].float()) / b.conv_a.aq.denominator
            nxt = s.blocks[k + 1].conv_a.aq if k + 1 < len(s.blocks) else s.qpool
            assert torch.equal(vals[tag + "a"], b.conv_b.aq.int_codes(torch.relu(b.bn_a(b.conv_a(xin)))))
            assert (nxt.int_codes(b(xin)) != vals[tag]).float().mean() < 0.01, tag
            cur = tag
        pf = s(x).argmax(1).numpy()
    pi = vals["logits"].reshape(len(x), -1).argmax(1).numpy()
    print(f"top-1 agreement golden vs fake-quant: {(pf == pi).mean():.3f}")
    assert (pf == pi).mean() >= 0.25


def test_exact_copy_equals_golden_on_every_code():
    """The fake-quant model's float64 copy computes every activation code of the integer model exactly
    (full-width ResNet-20, 40 images, ~7M codes), and so its logits' argmax. Evaluated in float32 the same
    model puts about 2 codes in 1e5 on the other side of a decision point (bench/fakequant_precision.py)."""
    m = random_model("resnet20", RATE, seed=0)
    net, x = lower(m), random_images(40, seed=1)
    e = exact_copy(m)
    seen = []

    def record(mask):
        def hook(q):
            def quantize(v):
                out = q(v)
                seen.append(out[1][:, mask])
                return out
            return quantize
        return hook

    for mod in e.modules():
        if isinstance(mod, QConv2d) and mod.aq is not None:
            mod.aq.quantize = record(mod.in_mask)(mod.aq.quantize)
    e.qpool.quantize = record(e.fc.in_mask)(e.qpool.quantize)
    vals = run_integer(net, x.long().numpy())
    with torch.no_grad():
        pf = e(x.to(next(e.parameters()).dtype)).argmax(1)
    names = list(net.tensors)[1:1 + len(seen)]
    assert names[0] == "stem" and names[-1] == "s3b2" and len(seen) == 19
    for name, codes in zip(names, seen):
        assert torch.equal(codes.long(), vals[name]), name
    assert torch.equal(pf, vals["logits"].reshape(len(x), -1).argmax(1))
    assert next(m.parameters()).dtype == torch.float32  # the original is untouched


def test_compiled_program_equals_golden(r20):
    net, x = r20[2], r20[3]
    prog = compile_net(net, fitted_config(net, AcceleratorConfig(lanes=16)))
    assert prog.placements["s1b2"].phase and not prog.placements["s1b1"].phase
    exp = {k: v[0].numpy() for k, v in run_integer(net, x[:1].long().numpy()).items()}
    got = run_functional(prog, x[0].long().numpy())
    assert first_mismatch(exp, got, list(prog.placements)) is None


def test_lower_dispatch_rejects_unknown():
    from apotflow.sw.frontend import UnsupportedModel

    with pytest.raises(ValueError, match="needs the input shape"):
        lower(torch.nn.Linear(2, 2))  # outside the zoo: lowered from its graph (tests/test_graph_lowering.py)
    with pytest.raises(UnsupportedModel, match="linear is outside the op set"):
        lower(torch.nn.Linear(2, 2), (2, 1, 1))  # a bare module's own forward is traced: F.linear
    net = lower(CifarResNet(20, widths=(4, 8, 16)))  # a zoo class: its input shape is known; unpruned, untrained
    assert net.meta["fp32_shapes"]["stem"] == [4, 3, 3, 3]
    assert np.all([np.all(o.bias == 0) for o in net.ops if o.kind == "conv"])
