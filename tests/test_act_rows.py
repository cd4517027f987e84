"""ACT sized to the live tensors (AcceleratorConfig.act_rows, hw/fit.py), a bank's tail in LUT RAM
(hw/actmem.tail_split), RQ in two one-port memories on ECP5, and what the estimator makes of ResNet-8."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from apotflow.hw.actmem import BankedActMem, tail_split
from apotflow.hw.compile import CompileError, compile_net, reuse_bases
from apotflow.hw.config import AcceleratorConfig, ConfigError
from apotflow.hw.fit import fit
from apotflow.hw.flows import devices
from apotflow.hw.flows.build import design_estimate
from apotflow.sw import export

MODELS = Path(__file__).resolve().parent.parent / "bench" / "models"


def _bank_reads(split_rows, ops, outreg=None):
    """rd_data of a 4-lane ACT (banks of 12 live rows) after each (write address, value, read row, rot)."""
    cfg = AcceleratorConfig(lanes=4, act_depth=64, act_rows=12, out_depth=16)
    dut = BankedActMem(cfg, split_rows=split_rows, outreg=outreg)
    seen, pipe = [], []

    async def bench(ctx):
        for waddr, value, row, rot in ops:
            ctx.set(dut.wr_en, (1 << len(dut.wr_en)) - 1)  # every bank group's copy
            ctx.set(dut.wr_addr, [waddr] * len(dut.wr_en))
            ctx.set(dut.wr_data, [value] * cfg.wb_words)
            ctx.set(dut.rd_row, row)
            ctx.set(dut.rd_row1, row + 1)
            ctx.set(dut.rd_rot, rot)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        for _, _, row, rot in ops:
            ctx.set(dut.rd_row, row)
            ctx.set(dut.rd_row1, row + 1)
            ctx.set(dut.rd_rot, rot)
            await ctx.tick()
            seen.append([int(v) for v in ctx.get(dut.rd_data)])
            pipe.append([int(v) for v in ctx.get(dut.rd_pipe)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # the pipeline's words (its rotation registered half-way, actmem.pipe_split): rd_data a cycle later
    assert pipe[1:] == seen[:-1]
    return seen


def test_split_bank_reads_what_one_memory_reads():
    rng = random.Random(1)
    ops = [(rng.randrange(48), rng.randrange(256), rng.randrange(11), rng.randrange(4)) for _ in range(120)]
    one, split = _bank_reads(None, ops), _bank_reads(8, ops)
    assert one == split
    # the ECP5 builds' form: the block part's word in its output register, the tail/block choice after it
    assert _bank_reads(8, ops, outreg="sim") == one == _bank_reads(None, ops, outreg="sim")
    assert len({tuple(r) for r in one}) > 30  # the reads saw the writes, rows in both memories


def test_split_rows_and_act_rows_are_checked():
    cfg = AcceleratorConfig(lanes=4, act_depth=64, act_rows=12, out_depth=16)
    for bad in (5, 4, 12, 16):  # not a power of two; the tail deeper than the head; no tail; beyond
        with pytest.raises(ValueError, match="split_rows"):
            BankedActMem(cfg, split_rows=bad)
    with pytest.raises(ConfigError, match="act_rows"):
        AcceleratorConfig(lanes=4, act_depth=64, act_rows=17)
    with pytest.raises(ConfigError, match="act_rows must be a non-negative"):
        AcceleratorConfig(act_rows=-1)


def test_reuse_largest_first_when_it_is_lower():
    # the input (first produced) would split the three big tensors apart; largest first packs them
    sizes = {"x": 3, "a": 12, "b": 12, "c": 12}
    ranges = {"x": (-1, 0), "a": (0, 2), "b": (1, 2), "c": (2, 3)}
    bases = reuse_bases(sizes, ranges)
    assert max(bases[t] + sizes[t] for t in sizes) == 36


@pytest.fixture(scope="module")
def resnet8():
    return export.load(MODELS / "resnet8-rand.apot")


def test_resnet8_fits_the_ecp5_25k_at_16_lanes_only(resnet8):
    prog = fit(resnet8, AcceleratorConfig(lanes=16), reuse=True)
    cfg = prog.config
    assert (prog.act_words, cfg.act_rows, tail_split(cfg)) == (36864, 2304, 2048)
    est = design_estimate(cfg, "ecp5-25k", prog.images)
    assert est["blocks"]["act"] == 16 and est["memories_in"]["act_tail"] == "lutram"
    assert est["blocks"]["rq"] + est["blocks"]["rq_thr"] == 12 and est["blocks"]["wgt"] == 21
    assert devices.fit(est, "ecp5-25k")["fits"]
    wide = fit(resnet8, AcceleratorConfig(lanes=32), reuse=True)
    msg = devices.fit_message(devices.fit(design_estimate(wide.config, "ecp5-25k", wide.images), "ecp5-25k"),
                              "ecp5-25k")
    assert msg.startswith("does not fit") and "bram: needs 67, has 56 (11 over)" in msg
    with pytest.raises(CompileError, match="the ACT banks hold 36848"):
        compile_net(resnet8, replace(cfg, act_rows=2303), reuse=True)


def test_an_ice40_build_keeps_each_act_bank_whole(resnet8, tmp_path):
    """The iCE40 has no LUT RAM: a bank in the tail-split range (ResNet-8 at 16 lanes, 2,304 rows) stays one
    memory in its estimate and in its board Verilog (Yosys found no mapping for the tail before), while the
    ECP5 build of the same config splits it."""
    from apotflow.hw.flows.build import write_design

    prog = fit(resnet8, AcceleratorConfig(lanes=16), reuse=True)
    cfg = prog.config
    assert tail_split(cfg, "ice40") is None and tail_split(cfg, "ecp5") == tail_split(cfg) == 2048
    est = design_estimate(cfg, "ice40-up5k", prog.images)
    assert "act_tail" not in est["memories_in"] and "act_tail" in design_estimate(cfg, "ecp5-25k", prog.images)["memories_in"]
    texts = {f: write_design(cfg, tmp_path / f, prog.images, family=f)["verilog"][0].read_text() for f in ("ice40", "ecp5")}
    assert "ram_style" not in texts["ice40"] and "ram_style" in texts["ecp5"]
