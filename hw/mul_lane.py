"""The multiplier-lane baseline: the same lane contract as ``Lane``, computed with a multiplier.

``MulLane`` takes exactly the ports of :class:`apotflow.hw.lane.Lane` (the same ``ctrl`` fields, the
same operand and accumulator widths), rebuilds the weight's signed integer value
``w = (-1)**sign * sum_t en_t << s_t`` and computes ``acc = base + a * w`` (or ``max(base, a * w)``
in max-reduce mode). It is bit-identical to the shift-add lane, so an ``Accelerator(lane_kind="mul")``
runs the same programs; it exists only to measure what the shift-add lane saves. The decode of ``w``
depends on shared inputs only, so after flattening Yosys merges it into one copy for the whole array.

``LaneArray`` is the bare array used for the side-by-side comparison: ``lanes`` lanes of either kind
sharing one ``ctrl``, one operand and one accumulator each, nothing else (no memories, no sequencer);
``max_reduce=False`` ties the max-pooling control to 0 (the lanes as they were before max pooling).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .lane import Lane, lane_ctrl_layout
from .layouts import reject

LANE_KINDS = ("shift", "mul")


def weight_int_bits(cfg: AcceleratorConfig) -> int:
    """Signed width of ``sum_t en_t << s_t`` with its sign: the multiplier's weight operand."""
    return cfg.max_shift + 1 + (cfg.terms - 1).bit_length() + 1


class MulLane(Lane):
    """Multiplier lane; ports, latency (``LATENCY``, 3), flow control (none) and accumulation as
    ``Lane``: only the product differs (a multiplier instead of the shifters). S1 registers the
    operand and the decoded weight, S2 the product."""

    def term(self, m: Module) -> Signal:
        cfg, c = self.cfg, self.ctrl
        wb = weight_int_bits(cfg)
        mag = Signal(wb - 1)
        m.d.comb += mag.eq(sum((Mux(c.en[t], 1 << c.s[t], 0) for t in range(cfg.terms)), 0))
        w = Signal(signed(wb))
        m.d.sync += w.eq(Mux(c.sign, -mag, mag))
        a = Signal(signed(cfg.act_bits + 1))  # the unsigned activation as a non-negative signed value
        m.d.sync += a.eq(self.a)
        term = Signal(signed(cfg.act_bits + 1 + wb))
        m.d.sync += term.eq(a * w)
        return term


def make_lane(cfg: AcceleratorConfig, kind: str = "shift"):
    if kind == "shift":
        return Lane(cfg)
    if kind == "mul":
        return MulLane(cfg)
    raise ValueError(f"lane_kind must be one of {', '.join(LANE_KINDS)}, not {kind!r}")


class LaneArray(wiring.Component):
    """``cfg.lanes`` lanes of ``kind`` with a shared ``ctrl``: lanes and accumulators only."""

    def __init__(self, cfg: AcceleratorConfig, kind: str = "shift", max_reduce: bool = True):
        if kind not in LANE_KINDS:
            reject(self, ValueError(f"lane_kind must be one of {', '.join(LANE_KINDS)}, not {kind!r}"))
        self.cfg, self.kind = cfg, kind
        self.max_reduce = max_reduce  # False: rmax tied to 0, the max-pooling logic optimizes away
        super().__init__({
            "ctrl": In(lane_ctrl_layout(cfg)),
            "a": In(data.ArrayLayout(cfg.act_bits, cfg.lanes)),
            "acc": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for i in range(self.cfg.lanes):
            m.submodules[f"lane{i}"] = ln = make_lane(self.cfg, self.kind)
            m.d.comb += [ln.ctrl.eq(self.ctrl), ln.a.eq(self.a[i]), self.acc[i].eq(ln.acc)]
            if not self.max_reduce:
                m.d.comb += ln.ctrl.rmax.eq(0)
        return m
