"""The requantizer: one accumulator in, one stored value out, latency 2.

MODE_THRESH: ``lv[#(acc >= thr_j)]`` with ``max_levels-1`` comparators in parallel and a population
count (the thresholds need not be sorted); MODE_SHIFT: ``(acc >> shift) mod 2**act_bits``
(arithmetic shift); MODE_RAW: ``value`` is don't-care, the caller writes ``acc`` itself.

Two halves split by a register, so that neither the comparators nor the popcount and level mux sit
behind a block RAM's slow output: ``acc`` and ``thr`` presented in cycle t are compared at the clock
edge ending t (the ``>=`` bits and ``acc`` are registered); the popcount and level mux run in cycle t+1
with the ``mode``, ``shift`` and ``lv`` of cycle t+1 (the descriptor's, constant over a layer), and
their result is registered: ``value`` is valid in cycle t+2, from a flip-flop, so the wires to the
ACT banks' write-data copies spread over the die carry no logic (the level mux in front of them was the
64-lane ResNet-20 build's critical path on the ECP5-85k: ``ge`` -> popcount -> level mux -> 8.9 ns of
routing -> ``act.wdata_g*``, docs/resources.md). No flow control: one accumulator per cycle.

With ``cmp_copies`` each comparator j reads its own copy of the accumulator (``acc_cmp[j]``, the same
value as ``acc`` in every cycle, driven by the caller from its own register) instead of ``acc``: one
register driving all ``max_levels-1`` comparators was the 64-lane ResNet-20 build's critical path on the
ECP5-85k (``w2.acc`` -> 10.95 ns of routing -> a comparator's carry chain, docs/resources.md).
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import AcceleratorConfig
from .layouts import reject

LATENCY = 2  # cycles from acc to value


def requant_model(cfg: AcceleratorConfig, acc: int, mode: int, shift: int, thr: list[int], lv: list[int]) -> int:
    mask = (1 << cfg.act_bits) - 1
    if mode == isa.MODE_THRESH:
        return lv[sum(1 for t in thr if acc >= t)] & mask
    if mode == isa.MODE_SHIFT:
        return (acc >> shift) & mask
    raise ValueError(f"requant_model: mode {mode} has no stored value")


def popcount(bits: list):
    """Balanced adder tree over single bits (a chain of adds would be as deep as the bit count)."""
    vals = list(bits)
    while len(vals) > 1:
        vals = [vals[i] + vals[i + 1] if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
    return vals[0]


class Requantizer(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, cmp_copies: bool = False):
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"Requantizer needs an AcceleratorConfig, not {cfg!r}"))
        self.cfg = cfg
        self.cmp_copies = cmp_copies
        copies = {"acc_cmp": In(data.ArrayLayout(signed(cfg.acc_bits), cfg.max_levels - 1))} if cmp_copies else {}
        super().__init__({
            **copies,
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
        acc_q = Signal.like(self.acc)
        m.d.sync += acc_q.eq(self.acc)
        for j in range(nthr):
            m.d.sync += ge[j].eq((self.acc_cmp[j] if self.cmp_copies else self.acc) >= self.thr[j])
        k = Signal(range(cfg.max_levels))
        m.d.comb += k.eq(popcount([ge[j] for j in range(nthr)]))
        lv = Array(self.lv[j] for j in range(cfg.max_levels))
        with m.If(self.mode == isa.MODE_THRESH):
            m.d.sync += self.value.eq(lv[k])
        with m.Else():
            m.d.sync += self.value.eq(acc_q >> self.shift)
        return m
