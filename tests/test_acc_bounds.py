"""Accumulator bounds: IntNet.acc_range is attained, the compiler refuses a too-narrow acc_bits with the
width it needs, and the RTL computes the worst case at exactly that width without overflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apotflow.hw.compile import CompileError, acc_bits_needed, compile_net, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sw import export
from apotflow.sw.golden import op_accumulator, run_integer
from apotflow.sw.intnet import IntNet, Op, Source, TensorSpec

B = 20  # the accumulator width the worst-case net needs exactly


def worst_case_net(bits: int = B) -> tuple[IntNet, np.ndarray]:
    """x (4, 2, 2) in 0..255 -> a global (fc-like) op of two channels whose accumulators reach exactly
    2**(bits-1) - 2 (channel 0) and -2**(bits-1) (channel 1) -> a raw fc. Returns (net, worst image)."""
    rng = np.random.default_rng(0)
    w0 = rng.integers(-40, 41, size=(4, 2, 2))
    w0[0, 0, 0], w0[1, 0, 0] = 40, -40  # both signs present
    pos, neg = int(w0[w0 > 0].sum()) * 255, int(-w0[w0 < 0].sum()) * 255
    assert pos + neg <= (1 << bits) - 2
    top, bottom = (1 << (bits - 1)) - 2, -(1 << (bits - 1))
    bias = np.array([top - pos, bottom + pos], dtype=np.int64)  # channel 1 has the weights -w0
    w = np.stack([w0, -w0])
    lv = np.array([0, 1, 2, 3], dtype=np.int64)
    thr = np.array([[top - 1, top, top + 1], [bottom, bottom + 1, bottom + 2]], dtype=np.int64)
    tensors = {"x": TensorSpec("x", (4, 2, 2), 255), "h": TensorSpec("h", (2, 1, 1), 3),
               "y": TensorSpec("y", (2, 1, 1), 1 << 20, signed=True)}
    ops = [Op("fc0", "fc", "h", [Source("x", w, 1, 0)], bias, "thresh", thr, lv),
           Op("fc1", "fc", "y", [Source("h", np.array([[[[5]], [[-7]]], [[[-3]], [[2]]]]), 1, 0)],
              np.array([100, -100]), "raw")]
    net = IntNet(tensors, ops, "x", "y").validate()
    x = np.where(w0 > 0, 255, 0)[None]  # channel 0's maximum and channel 1's minimum at once
    return net, x


def test_acc_range_is_attained():
    net, x = worst_case_net()
    lo, hi = net.acc_range(net.ops[0])
    assert (lo, hi) == (-(1 << (B - 1)), (1 << (B - 1)) - 2)
    acc = op_accumulator(net.ops[0], {"x": torch.as_tensor(x)}).reshape(-1).tolist()
    assert acc == [hi, lo]
    assert acc_bits_needed(lo, hi) == B and acc_bits_needed(lo, hi + 1) == B + 1 and acc_bits_needed(lo - 1, hi) == B + 1


def test_too_narrow_config_is_refused_with_the_width_it_needs():
    net, x = worst_case_net()
    cfg = fitted_config(net, AcceleratorConfig(lanes=2, acc_bits=B))
    prog = compile_net(net, cfg)
    got = run_functional(prog, x[0])  # the ISA interpreter raises OverflowError if acc leaves the range
    gold = run_integer(net, x)
    assert all(np.array_equal(got[k], gold[k][0].numpy()) for k in gold)
    with pytest.raises(CompileError, match=f"op fc0: the accumulator spans .* needs acc_bits >= {B}; acc_bits is {B - 1}"):
        compile_net(net, AcceleratorConfig(lanes=2, acc_bits=B - 1))


def test_cli_refuses_a_too_narrow_acc_bits(tmp_path, capsys):
    from apotflow.sim.cli import main

    digits = export.load("bench/models/digits.apot")
    need = max(acc_bits_needed(*digits.acc_range(op)) for op in digits.ops)
    assert main(["cycles", "--model", "bench/models/digits.apot", "--acc-bits", str(need), "--json"]) == 0
    capsys.readouterr()
    assert main(["cycles", "--model", "bench/models/digits.apot", "--acc-bits", str(need - 1)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"needs acc_bits >= {need}" in err[0]


@pytest.mark.verilator
@pytest.mark.slow  # a Verilator build: about a minute
def test_worst_case_input_on_the_rtl_at_the_exact_width(tmp_path):
    from apotflow.sim.cosim import execute, golden_tensors, prepare

    net, x = worst_case_net()
    cfg = fitted_config(net, AcceleratorConfig(lanes=2, acc_bits=B))
    xs = np.concatenate([x, 255 - x, np.zeros_like(x)])  # the worst case, its complement, zeros
    assert golden_tensors(net, xs)["h"][0].reshape(-1).tolist() == [2, 1]  # acc reached the top-2 and the bottom
    setup = prepare(net, cfg, xs, tmp_path, log=lambda m: None)
    s = execute(setup, waves_on_mismatch=False, log=lambda m: None)
    assert s["mismatches"] == 0, s["first_mismatch"]
