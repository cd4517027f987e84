"""Run a program on the Amaranth simulation of ``Accelerator`` through its host ports only."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from . import isa
from .config import AcceleratorConfig
from .top import Accelerator, host_act_latency


async def _read_port(ctx, addr, data, n: int, latency: int = 1) -> np.ndarray:
    """Read words 0..n-1 of a synchronous read port (data follows the address by ``latency`` cycles),
    one address per cycle."""
    out = np.zeros(n, dtype=np.int64)
    ctx.set(addr, 0)
    await ctx.tick()
    for step in range(n + latency - 1):
        ctx.set(addr, (step + 1) % n)
        if step >= latency - 1:
            out[step - latency + 1] = ctx.get(data)
        await ctx.tick()
    return out


def simulate(cfg: AcceleratorConfig, images: isa.MemoryImages, act, max_cycles: int = 200_000,
             n_perf: int | None = None, vcd: str | None = None, wgt_bank_words: int | None = None,
             on_cycle=None, wgt_words=None, rq_thr_block: int = 0, act_outreg: str | None = None,
             rq_split: bool = False) -> dict:
    """Load ACT through the host port, start, wait for done, read ACT, OUT and the perf counters.

    ``wgt_bank_words``: the WGT ROM's bank size (hw/top.py wgt_rom; small values test the banked form).
    With ``cfg.wgt_ram`` the weight words are written first, through the WGT write port, one a cycle to
    addresses 0, 1, ...: ``wgt_words`` (default ``images.wgt``; a test drops one to see the run fail).
    ``rq_thr_block``: RQ's highest thresholds in a one-port copy (hw/top.py rq_rom, iCE40 wgt_ram builds).
    ``rq_split``: RQ as the ECP5 builds have it (two one-port ROMs, the thresholds' word registered).
    ``act_outreg`` "sim": the ACT banks in the form of the ECP5 builds' DP16KD output registers (hw/actmem.py).
    ``on_cycle(ctx, dut)``: called in every cycle from start to the one after done (checks on internals).
    Returns {"act", "out", "cycles", "perf", "busy_cycles", "done_pulses"}.
    """
    dut = Accelerator(cfg, images, **({"wgt_bank_words": wgt_bank_words} if wgt_bank_words else {}),
                      rq_thr_block=rq_thr_block, act_outreg=act_outreg, rq_split=rq_split)
    act = np.asarray(act, dtype=np.int64)
    n_perf = len(images.prog) if n_perf is None else n_perf
    res = {}

    async def bench(ctx):
        if cfg.wgt_ram:
            ctx.set(dut.wgt_we, 1)
            for a, w in enumerate(images.wgt if wgt_words is None else wgt_words):
                ctx.set(dut.wgt_waddr, a)
                ctx.set(dut.wgt_wdata, int(w))
                await ctx.tick()
            ctx.set(dut.wgt_we, 0)
        for a in range(cfg.act_depth):
            ctx.set(dut.host_addr, a)
            ctx.set(dut.host_wdata, int(act[a]))
            ctx.set(dut.host_we, 1)
            await ctx.tick()
        ctx.set(dut.host_we, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        busy = 0
        done = 0
        for _ in range(max_cycles):
            if on_cycle:
                on_cycle(ctx, dut)
            b, d = ctx.get(dut.busy), ctx.get(dut.done)
            busy += b
            done += d
            await ctx.tick()
            if d:
                break
        else:
            raise TimeoutError(f"no done after {max_cycles} cycles")
        # One more cycle to check that done is a pulse and busy fell.
        if on_cycle:
            on_cycle(ctx, dut)
        if ctx.get(dut.busy) or ctx.get(dut.done):
            raise AssertionError("busy/done still high the cycle after done")
        out_act = await _read_port(ctx, dut.host_addr, dut.host_rdata, cfg.act_depth, host_act_latency(cfg))
        out = await _read_port(ctx, dut.out_addr, dut.out_rdata, cfg.out_depth)
        perf = (await _read_port(ctx, dut.perf_addr, dut.perf_rdata, n_perf)).tolist()
        res.update(act=out_act, out=out, cycles=ctx.get(dut.cycles), perf=perf, busy_cycles=busy,
                   done_pulses=done)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return res
