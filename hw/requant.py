"""The requantizer: one accumulator in, one stored value out (combinational, latency 0).

MODE_THRESH: ``lv[#(acc >= thr_j)]`` with ``max_levels-1`` comparators in parallel and a population
count (the thresholds need not be sorted); MODE_SHIFT: ``(acc >> shift) mod 2**act_bits``
(arithmetic shift); MODE_RAW: ``value`` is don't-care, the caller writes ``acc`` itself.
The writeback unit registers its inputs and writes its output, so it is one pipeline stage there.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import AcceleratorConfig
from .layouts import reject


def requant_model(cfg: AcceleratorConfig, acc: int, mode: int, shift: int, thr: list[int], lv: list[int]) -> int:
    mask = (1 << cfg.act_bits) - 1
    if mode == isa.MODE_THRESH:
        return lv[sum(1 for t in thr if acc >= t)] & mask
    if mode == isa.MODE_SHIFT:
        return (acc >> shift) & mask
    raise ValueError(f"requant_model: mode {mode} has no stored value")


class Requantizer(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig):
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"Requantizer needs an AcceleratorConfig, not {cfg!r}"))
        self.cfg = cfg
        super().__init__({
            "acc": In(signed(cfg.acc_bits)),
            "mode": In(2),
            "shift": In(isa.SHIFT_FIELD_BITS),
            "thr": In(data.ArrayLayout(signed(cfg.acc_bits), cfg.max_levels - 1)),
            "lv": In(data.ArrayLayout(cfg.act_bits, cfg.max_levels)),
            "value": Out(cfg.act_bits),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        nthr = cfg.max_levels - 1
        ge = Signal(nthr)
        for j in range(nthr):
            m.d.comb += ge[j].eq(self.acc >= self.thr[j])
        k = Signal(range(cfg.max_levels))
        m.d.comb += k.eq(sum(ge[j] for j in range(nthr)))
        lv = Array(self.lv[j] for j in range(cfg.max_levels))
        with m.If(self.mode == isa.MODE_THRESH):
            m.d.comb += self.value.eq(lv[k])
        with m.Else():
            m.d.comb += self.value.eq(self.acc >> self.shift)
        return m
