"""The requantizer against its integer model, and against isa's definition of the modes."""

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from apotflow.hw import isa
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.requant import LATENCY, Requantizer, requant_model

CFG = AcceleratorConfig(lanes=4, act_bits=6, acc_bits=16, max_levels=8)


def run_requant(cfg, cases):
    dut = Requantizer(cfg)
    got = []

    async def bench(ctx):
        for acc, mode, shift, thr, lv in cases:
            ctx.set(dut.acc, acc)
            ctx.set(dut.mode, mode)
            ctx.set(dut.shift, shift)
            for j, t in enumerate(thr):
                ctx.set(dut.thr[j], t)
            for j, v in enumerate(lv):
                ctx.set(dut.lv[j], v)
            await ctx.tick().repeat(LATENCY)  # value LATENCY cycles later, inputs held
            got.append(ctx.get(dut.value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def _case(cfg):
    lo, hi = cfg.acc_range
    return st.tuples(
        st.integers(lo, hi),
        st.sampled_from([isa.MODE_THRESH, isa.MODE_SHIFT]),
        st.integers(0, (1 << isa.SHIFT_FIELD_BITS) - 1),
        st.lists(st.integers(lo, hi), min_size=cfg.max_levels - 1, max_size=cfg.max_levels - 1),
        st.lists(st.integers(0, (1 << cfg.act_bits) - 1), min_size=cfg.max_levels, max_size=cfg.max_levels),
    )


@settings(max_examples=30, deadline=None)
@given(st.lists(_case(CFG), min_size=1, max_size=30))
def test_requant_matches_model(cases):
    got = run_requant(CFG, cases)
    for i, c in enumerate(cases):
        exp = requant_model(CFG, *c)
        assert got[i] == exp, f"case {i}: {c} expected {exp} got {got[i]}"


def test_thresholds_at_the_boundaries():
    """acc exactly on a threshold counts it (>=); sorted thresholds give monotone levels."""
    rng = random.Random(3)
    thr = sorted(rng.sample(range(-500, 500), CFG.max_levels - 1))
    lv = list(range(CFG.max_levels))
    cases = [(t + d, isa.MODE_THRESH, 0, thr, lv) for t in thr for d in (-1, 0, 1)]
    got = run_requant(CFG, cases)
    for (acc, *_), g in zip(cases, got):
        assert g == sum(acc >= t for t in thr)


def test_model_rejects_raw():
    with pytest.raises(ValueError):
        requant_model(CFG, 0, isa.MODE_RAW, 0, [0] * 7, [0] * 8)
