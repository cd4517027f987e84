"""The shift-add lane against its integer model (Hypothesis)."""

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.lane import LATENCY, Lane, lane_model

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

CFG = AcceleratorConfig(lanes=4, terms=2, act_bits=8, acc_bits=20, shift_bits=4)


def _steps(cfg, rmax=st.just(False)):  # noqa: B008  (a strategy value, never mutated)
    lo, hi = cfg.acc_range
    return st.lists(st.tuples(
        st.integers(0, (1 << cfg.act_bits) - 1),  # a
        st.integers(0, 1),  # sign
        st.lists(st.integers(0, 1), min_size=cfg.terms, max_size=cfg.terms),
        st.lists(st.integers(0, cfg.max_shift), min_size=cfg.terms, max_size=cfg.terms),
        st.booleans(),  # first
        st.integers(lo, hi),  # bias
        st.booleans(),  # valid
        rmax,
    ), min_size=1, max_size=40)


def run_lane(cfg, steps, dut=None):
    """acc after each step: the inputs of step i show in acc LATENCY cycles later (the steps are
    followed by LATENCY - 1 cycles with valid low, so every step's result is read)."""
    dut = Lane(cfg) if dut is None else dut
    got = []

    async def bench(ctx):
        for a, sign, en, s, first, bias, valid, *rmax in steps:
            ctx.set(dut.a, a)
            ctx.set(dut.ctrl.valid, valid)
            ctx.set(dut.ctrl.rmax, bool(rmax and rmax[0]))
            ctx.set(dut.ctrl.first, first)
            ctx.set(dut.ctrl.sign, sign)
            ctx.set(dut.ctrl.bias, bias)
            for t in range(cfg.terms):
                ctx.set(dut.ctrl.en[t], en[t])
                ctx.set(dut.ctrl.s[t], s[t])
            await ctx.tick()
            got.append(ctx.get(dut.acc))
        ctx.set(dut.ctrl.valid, 0)
        for _ in range(LATENCY - 1):
            await ctx.tick()
            got.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got[LATENCY - 1:]


@settings(max_examples=40, deadline=None)
@given(_steps(CFG))
def test_lane_matches_model(steps):
    check_against_model(CFG, steps)


def check_against_model(cfg, steps):
    got = run_lane(cfg, steps)
    acc = 0
    for i, (a, sign, en, s, first, bias, valid, rmax) in enumerate(steps):
        if valid:
            acc = lane_model(cfg, acc, a, sign, en, s, first, bias, rmax=rmax)
        assert got[i] == acc, f"step {i}: inputs {steps[i]} expected {acc} got {got[i]}"


@settings(max_examples=60, deadline=None)
@given(_steps(CFG, rmax=st.booleans()))
def test_lane_mixed_modes_match_model(steps):
    """Sums and max steps interleaved, any bias: the max shares the sum's adder, whose extra sign bit
    must order base and term exactly even where base - term overflows the accumulator width (here the
    term, up to 255 << 15, is wider than the 20-bit accumulator)."""
    check_against_model(CFG, steps)


def test_lane_one_term_config():
    cfg = AcceleratorConfig(lanes=4, terms=1, act_bits=4, acc_bits=12, shift_bits=3)
    steps = [(15, 0, [1], [7], True, 5, True), (15, 1, [1], [7], False, 0, True), (3, 0, [0], [2], False, 0, True)]
    assert run_lane(cfg, steps) == [5 + 15 * 128, 5, 5]


def test_lane_rejects_non_config():
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        Lane(16)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 1), st.integers(0, 4), st.booleans(),
                          st.integers(-1000, 1000)), min_size=1, max_size=30))
def test_lane_max_mode_matches_model(steps):
    """rmax: acc = max(acc or bias, +/-(a << s)) -- max pooling on the same lane."""
    dut = Lane(CFG)
    got = []

    async def bench(ctx):
        ctx.set(dut.ctrl.rmax, 1)
        ctx.set(dut.ctrl.valid, 1)
        for a, sign, s, first, bias in steps:
            ctx.set(dut.a, a)
            ctx.set(dut.ctrl.first, first)
            ctx.set(dut.ctrl.sign, sign)
            ctx.set(dut.ctrl.bias, bias)
            ctx.set(dut.ctrl.en[0], 1)
            ctx.set(dut.ctrl.en[1], 0)
            ctx.set(dut.ctrl.s[0], s)
            await ctx.tick()
            got.append(ctx.get(dut.acc))
        ctx.set(dut.ctrl.valid, 0)
        for _ in range(LATENCY - 1):
            await ctx.tick()
            got.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    got = got[LATENCY - 1:]
    acc = 0
    for i, (a, sign, s, first, bias) in enumerate(steps):
        acc = lane_model(CFG, acc, a, sign, [1, 0], [s, 0], first, bias, rmax=True)
        assert got[i] == acc, f"step {i}: {steps[i]} expected {acc} got {got[i]}"


def test_lane_latency():
    """An entry's result shows in acc exactly LATENCY cycles after its inputs, not earlier."""
    dut = Lane(CFG)
    seen = []

    async def bench(ctx):
        ctx.set(dut.a, 3)
        ctx.set(dut.ctrl.valid, 1)
        ctx.set(dut.ctrl.first, 1)
        ctx.set(dut.ctrl.bias, 7)
        ctx.set(dut.ctrl.en[0], 1)
        ctx.set(dut.ctrl.s[0], 2)
        await ctx.tick()
        ctx.set(dut.ctrl.valid, 0)
        for _ in range(LATENCY + 1):
            seen.append(ctx.get(dut.acc))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0] * (LATENCY - 1) + [7 + 12] * 2
