"""The serial host shell (hw/ioshell.py) driven through its pins only, as a host drives a board: a
``wgt_ram`` build's weights and the input shifted in word by word, a run, OUT shifted out. This is the
path the UP5K bitstream's host uses (bitstreams/ice40-up5k/digits-l2: weights in SPRAM, loaded at boot)."""

import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from apotflow.hw import isa
from apotflow.hw.cycles import total_cycles
from apotflow.hw.ioshell import SerialShell, shell_bits, shell_fields
from apotflow.hw.randprog import random_config, random_program

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run_through_pins(cfg, images, act, wgt_words) -> tuple[np.ndarray, int]:
    """Load ``wgt_words`` (WGT entries 0, 1, ...) and ACT through the shell's serial input, start, wait
    for done, read OUT and the cycle count through its serial output. Returns (OUT, cycles)."""
    dut = SerialShell(cfg, images, rom_style="memory")
    fields = shell_fields(cfg)
    n_in, n_out = shell_bits(cfg)
    res = {}

    async def shift_in(ctx, apply: bool, **values):
        word, lo = 0, 0
        for name, width in fields:
            word |= (values.get(name, 0) & ((1 << width) - 1)) << lo
            lo += width
        ctx.set(dut.sshift, 1)
        for i in range(n_in):
            ctx.set(dut.sin, (word >> i) & 1)
            await ctx.tick()
        ctx.set(dut.sshift, 0)
        if apply:  # the write request applies for one cycle
            ctx.set(dut.sapply, 1)
            await ctx.tick()
            ctx.set(dut.sapply, 0)

    async def capture(ctx) -> int:
        await ctx.tick()  # the read port's latency (OUT and perf: one cycle)
        ctx.set(dut.scapture, 1)
        await ctx.tick()
        ctx.set(dut.scapture, 0)
        word = 0
        ctx.set(dut.sshift, 1)
        for i in range(n_out):
            word |= ctx.get(dut.sout) << i
            await ctx.tick()
        ctx.set(dut.sshift, 0)
        return word

    async def bench(ctx):
        for k, w in enumerate(wgt_words):
            await shift_in(ctx, True, wgt_waddr=k, wgt_wdata=int(w), wgt_we=1)
        for a in np.flatnonzero(act):
            await shift_in(ctx, True, host_addr=int(a), host_wdata=int(act[a]), host_we=1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(200_000):
            await ctx.tick()
            if ctx.get(dut.done):
                break
        else:
            raise TimeoutError("no done")
        out = np.zeros(cfg.out_depth, dtype=np.int64)
        lo = cfg.act_bits  # oreg = {host_rdata, out_rdata, perf_rdata, cycles}
        for o in range(cfg.out_depth):
            await shift_in(ctx, False, out_addr=o)
            v = (await capture(ctx) >> lo) & ((1 << cfg.acc_bits) - 1)
            out[o] = v - (1 << cfg.acc_bits) if v >> (cfg.acc_bits - 1) else v
        res["out"], res["cycles"] = out, (await capture(ctx)) >> (lo + cfg.acc_bits + 32)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res["out"], res["cycles"]


def test_weights_loaded_through_the_serial_pins():
    """Bit-exact OUT and the model's cycle count after a serial weight load; a load that skips one word
    (the rest one address early) gives a different OUT."""
    rng = random.Random(408)  # a program whose last layer writes 16 raw words to OUT
    cfg = replace(random_config(rng), wgt_ram=1)
    images, act = random_program(cfg, rng)
    _, exp_out, _ = isa.run_program(cfg, images, act)
    assert np.count_nonzero(exp_out) > 8
    out, cycles = run_through_pins(cfg, images, act, images.wgt)
    assert out.tolist() == exp_out.tolist() and cycles == total_cycles(cfg, images)
    k = len(images.wgt) // 2
    out, _ = run_through_pins(cfg, images, act, images.wgt[:k] + images.wgt[k + 1:])
    assert out.tolist() != exp_out.tolist()
