"""An 8-bit residual stream in the integer model (``residual_bits`` 8, sw/models/resnet.py; the lowering in
sw/graph_lower.py and sw/lower.py ``_stream_codes_op``): block inputs stored as the stream's 8-bit codes, a
1x1 op giving conv_a its A4 codes; equal to the fake-quant model code for code, and run by the compiled
program (the stored-order codes op before a stride-2 block, hw/compile.py ``_layouts``) and the RTL."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apotflow.hw.compile import CompileError, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit, fitted_config
from apotflow.sw.golden import run_integer
from apotflow.sw.lower import lower
from apotflow.sw.models import CifarResNet
from apotflow.sw.prune import slice_pruned
from apotflow.sw.quant import exact_copy
from apotflow.sw.randmodel import random_images, random_model


@pytest.fixture(scope="module")
def stream_net():
    """(masked model, IntNet, images): ResNet-20 of widths 8/16/32, 30% GM, an 8-bit residual stream."""
    m = random_model(CifarResNet(20, widths=(8, 16, 32), residual_bits=8), 0.3, seed=0)
    return m, lower(m), random_images(6, seed=3)


def test_stream_tensors_and_codes_ops(stream_net):
    """Every tensor a shortcut reads (the stem's and each block's output but the last) holds 8-bit codes, and
    the op ``<tensor>q`` after it gives conv_a its A4 codes (15 thresholds, the same for every channel)."""
    _, net, _ = stream_net
    streams = ["stem"] + [f"s{s}b{b}" for s in (1, 2, 3) for b in range(3)][:-1]
    for t in streams:
        assert net.tensors[t].bits == 8 and net.tensors[t].max_value == 255, t
        op = net.op_producing(t + "q")
        assert (op.kind, op.mode, op.sources[0].tensor, op.sources[0].role) == ("pool", "thresh", t, "pool")
        assert op.thresholds.shape[1] == 15 and (op.thresholds == op.thresholds[0]).all()
        assert net.tensors[t + "q"].max_value == 48
    assert [s.tensor for s in net.op_producing("s2b0a").sources] == ["s1b2q"]
    assert [s.tensor for s in net.op_producing("s2b0").sources][1] == "s1b2"  # the shortcut reads the stream
    assert net.tensors["s3b2"].bits == 4  # read by the pooling only: A4 as without a stream


@pytest.mark.parametrize("bits", [8, 6])
def test_integer_model_equals_fake_quant_code_for_code(stream_net, bits):
    """The golden model's stream codes and conv_a codes equal the fake-quant model's (float64 copy) in every
    block, and so do the top-1 classes (an 8-bit and a 6-bit stream)."""
    m, net, x = stream_net
    if bits != 8:
        m = random_model(CifarResNet(20, widths=(8, 16, 32), residual_bits=bits), 0.3, seed=2)
        net = lower(m)
    ex = exact_copy(slice_pruned(m)).eval()  # the integer model's channels: the kept ones
    seen = {}
    hooks = [blk.register_forward_pre_hook(lambda mod, a, i=i: seen.__setitem__(i, a[0]))
             for i, blk in enumerate(ex.blocks)]
    with torch.no_grad():
        logits = ex(x.double())
    for h in hooks:
        h.remove()
    vals = run_integer(net, x.long().numpy())
    names = ["stem"] + [f"s{s}b{b}" for s in (1, 2, 3) for b in range(3)]
    for i, blk in enumerate(ex.blocks):
        r = blk.residual_stream(seen[i])
        q = torch.round(r / blk.conv_a.aq.alpha.double() * ((1 << bits) - 1)).long()
        assert torch.equal(q, vals[names[i]]), names[i]
        assert torch.equal(blk.conv_a.aq.int_codes(r), vals[names[i] + "q"]), names[i] + "q"
    assert torch.equal(logits.argmax(1), vals["logits"].reshape(len(x), -1).argmax(1))


def test_compiled_program_equals_golden(stream_net):
    """fit raises max_levels to the stream's 256 levels; the codes op before a stride-2 block reads and writes
    its phase-split tensors in stored order (its descriptor writes linearly), and the program's every tensor
    equals the golden model's."""
    _, net, x = stream_net
    prog = fit(net, AcceleratorConfig(lanes=16))
    assert prog.config.max_levels == 256
    assert prog.placements["s1b2"].phase and prog.placements["s1b2q"].phase and not prog.placements["s1b1q"].phase
    exp = {k: v[0].numpy() for k, v in run_integer(net, x[:1].long().numpy()).items()}
    got = run_functional(prog, x[0].long().numpy())
    assert first_mismatch(exp, got, list(prog.placements)) is None


def test_levels_given_are_kept(stream_net):
    """--max-levels given (kept) is not raised: the compiler names the op that needs more; a network of A4
    codes keeps the default requantizer."""
    _, net, _ = stream_net
    with pytest.raises(CompileError, match="op stem has 256 output levels; max_levels is 16"):
        fit(net, AcceleratorConfig(lanes=16), keep={"max_levels"})
    plain = lower(random_model(CifarResNet(20, widths=(8, 16, 32)), 0.3, seed=0))
    assert fitted_config(plain, AcceleratorConfig(lanes=16)).max_levels == 16


def test_a_float_or_wider_stream_is_refused():
    from apotflow.sw.graph_lower import GraphLoweringError

    with pytest.raises(GraphLoweringError, match="residual_bits=0 .* cannot be lowered"):
        lower(random_model(CifarResNet(20, widths=(8, 16, 32), residual_bits=0), 0.3, seed=0))
    with pytest.raises(GraphLoweringError, match="residual_bits=12: .* at most 8 bits"):
        lower(random_model(CifarResNet(20, widths=(8, 16, 32), residual_bits=12), 0.3, seed=0))


@pytest.mark.verilator
def test_rtl_equals_golden_on_verilator(tmp_path):
    """The generated RTL (8 lanes, the 256-level requantizer) co-simulated on Verilator: every tensor of two
    random images equal to the golden model's, cycles equal to the cycle model's."""
    from apotflow.sim.cosim import execute, prepare

    m = random_model(CifarResNet(20, widths=(4, 8, 16), residual_bits=8), 0.3, seed=1)
    net = lower(m)
    cfg = fitted_config(net, AcceleratorConfig(lanes=8))
    quiet = {"log": lambda msg: None}
    s = execute(prepare(net, cfg, random_images(2, seed=5).numpy().astype(np.int64), tmp_path, **quiet), **quiet)
    assert s["images"] == 2 and s["mismatches"] == 0 and s["passed"] and s["cycle_mismatches"] == 0
    assert s["cycles_total"] == s["cycles_model"]
    assert any(pl["layer"] == "s1b2q" for pl in s["per_layer"])
