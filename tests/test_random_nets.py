"""Differential testing: random integer networks on random accelerator configs, golden model = ISA
interpreter on every tensor (bench/random_nets.py runs 10,000; this runs a few dozen)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apotflow.hw.compile import CompileError, compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.sim.differential import probe_images, random_config, run_one
from apotflow.sw.intnet import IntNet, Op, Source, TensorSpec
from apotflow.sw.randnet import random_net


@given(seed=st.integers(0, 2**32 - 1), max_ops=st.integers(1, 6), max_ch=st.integers(1, 5),
       max_hw=st.sampled_from([1, 2, 4, 8]))
@settings(max_examples=40, deadline=None)
def test_golden_equals_isa_on_random_networks(seed, max_ops, max_ch, max_hw):
    outcome, detail = run_one(seed, max_ops=max_ops, max_ch=max_ch, max_hw=max_hw)
    assert outcome != "mismatch", detail


def test_random_networks_cover_the_contract():
    """The generator reaches what the contract has: strides 1, 2 and global, padding, residual sources,
    max and sum reductions, all three modes, both encodings, non-square tensors."""
    seen = set()
    for seed in range(60):
        net = random_net(seed)
        for op in net.ops:
            _, h, w = net.tensors[op.out].shape
            seen |= {op.mode, op.reduce, "nonsquare" if h != w else "square", f"sources{len(op.sources)}"}
            for s in op.sources:
                seen |= {s.encoding, s.role, f"stride{min(s.stride, 3)}", "pad" if s.pad else "nopad"}
    want = {"thresh", "shift", "raw", "sum", "max", "nonsquare", "sources2", "levels", "int", "residual", "pool",
            "stride1", "stride2", "stride3", "pad"}
    assert want <= seen, want - seen


def test_max_reduction_on_the_padding_of_a_1x1_output_is_refused():
    """Found by the random networks: at a 1x1 output the weight stream skips padded positions, which a
    max reduction must see as zero terms (golden 0, ISA the largest negative product); the compiler
    refuses such an op with one line rather than run it wrong."""
    w = -np.ones((1, 1, 3, 3), dtype=np.int64)
    net = IntNet({"x": TensorSpec("x", (1, 2, 2), 15), "y": TensorSpec("y", (1, 1, 1), 100, signed=True)},
                 [Op("mp", "pool", "y", [Source("x", w, 2, 1, role="pool")], np.array([-100]), "raw",
                     reduce="max")], "x", "y").validate()
    cfg = AcceleratorConfig(lanes=2, act_depth=16, wgt_depth=16, rq_depth=2, prog_depth=2, out_depth=2)
    with pytest.raises(CompileError, match="max reduction to one pixel with weights on its padding"):
        compile_net(net, cfg)


def test_empty_max_channel_with_negative_bias_is_refused():
    """Found by the random networks (seeds 661, 781): the array's max reduction starts from an empty
    entry's zero term, so a channel without weights cannot keep a negative bias."""
    w = np.zeros((1, 1, 2, 2), dtype=np.int64)
    net = IntNet({"x": TensorSpec("x", (1, 2, 2), 15), "y": TensorSpec("y", (1, 1, 1), 100, signed=True)},
                 [Op("mp", "pool", "y", [Source("x", w, 2, 0, role="pool")], np.array([-5]), "raw",
                     reduce="max")], "x", "y").validate()
    try:
        compile_net(net, random_config(net, 0))
    except CompileError as e:
        assert "no weight and a negative bias" in str(e)
    else:
        raise AssertionError("compiled")
    for seed in (661, 781):
        assert run_one(seed)[0] == "refused"
    assert probe_images(net, 0).shape == (2, 1, 2, 2)
