"""One shift-add lane: ``acc (+|-)= sum_t en_t * (a << s_t)`` (or ``acc = max(acc, ...)``), no multiplier.

Latency 1: the inputs presented in cycle t (with ``valid``) update ``acc`` at the clock edge that ends
cycle t, so ``acc`` shows the new value in cycle t+1. ``first`` restarts the sum from ``bias`` instead of
the old accumulator. No flow control: a lane takes one entry per cycle, ``valid`` low holds ``acc``.
Arithmetic wraps modulo 2**acc_bits, which is exact whenever the final sum fits (the export checks it).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .layouts import reject


def lane_model(cfg: AcceleratorConfig, acc: int, a: int, sign: int, en: list[int], s: list[int],
               first: bool, bias: int, rmax: bool = False) -> int:
    """The integer model of one lane step (what ``isa.run_program`` does per entry and pixel)."""
    contrib = sum((a << st) for et, st in zip(en, s) if et)
    term = -contrib if sign else contrib
    base = bias if first else acc
    acc = max(base, term) if rmax else base + term
    lo, hi = cfg.acc_range
    return (acc - lo) % (1 << cfg.acc_bits) + lo  # two's-complement wrap


def lane_ctrl_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """The part of an entry shared by all lanes of a cycle."""
    return data.StructLayout({
        "valid": 1, "first": 1, "sign": 1, "rmax": 1,
        "en": data.ArrayLayout(1, cfg.terms),
        "s": data.ArrayLayout(cfg.shift_bits, cfg.terms),
        "bias": signed(cfg.acc_bits),
    })


class Lane(wiring.Component):
    """Shift-add lane. Ports: ``ctrl`` (shared entry fields), ``a`` (operand, already zero when the
    input pixel is padding), ``acc`` (registered accumulator)."""

    def __init__(self, cfg: AcceleratorConfig):
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"{type(self).__name__} needs an AcceleratorConfig, not {cfg!r}"))
        self.cfg = cfg
        super().__init__({
            "ctrl": In(lane_ctrl_layout(cfg)),
            "a": In(cfg.act_bits),
            "acc": Out(signed(cfg.acc_bits)),
        })

    def term(self, m: Module) -> Signal:
        """The signed product a * weight of this cycle's entry: two barrel shifters and an add/sub."""
        cfg, c = self.cfg, self.ctrl
        wide = cfg.act_bits + cfg.max_shift + cfg.terms  # enough for the sum of all terms
        # a barrel shifter per term; the enable gates the narrow operand before the shift (Yosys/ABC map
        # that to ~half the LUTs of gating the shifted value)
        terms = [Mux(c.en[t], self.a, 0) << c.s[t] for t in range(cfg.terms)]
        contrib = Signal(wide)
        m.d.comb += contrib.eq(sum(terms[1:], terms[0]))
        term = Signal(signed(wide + 1))
        m.d.comb += term.eq(Mux(c.sign, -contrib, contrib))
        return term

    def elaborate(self, platform):
        m = Module()
        c = self.ctrl
        term = self.term(m)
        base = Signal(signed(self.cfg.acc_bits))
        m.d.comb += base.eq(Mux(c.first, c.bias, self.acc))
        # One adder for both modes: base + term, or for max pooling ~base + term = term - base - 1, whose
        # sign (one bit wider than either operand, so it cannot wrap) is set iff base >= term. No comparator.
        r = Signal(signed(max(len(base), len(term)) + 1))
        m.d.comb += r.eq((base ^ c.rmax.replicate(len(base)).as_signed()) + term)
        keep_base = c.rmax & r[-1]
        with m.If(c.valid & ~(keep_base & ~c.first)):  # max keeps the old acc: no write at all
            with m.If(c.rmax):
                m.d.sync += self.acc.eq(Mux(keep_base, c.bias, term))
            with m.Else():
                m.d.sync += self.acc.eq(r)
        return m
