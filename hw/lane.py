"""One shift-add lane: ``acc (+|-)= sum_t en_t * (a << s_t)`` (or ``acc = max(acc, ...)``), no multiplier.

Latency ``LATENCY`` (3), three stages, none with more than one carry chain after its registers:

  t    S1: the shifted terms ``en_t ? a << s_t : 0`` (barrel shifters), registered
  t+1  S2: their sum with the sign applied (the product), registered
  t+2  S3: accumulate (or max): ``acc`` updated at the clock edge that ends cycle t+2

so the inputs presented in cycle t (with ``valid``) show in ``acc`` in cycle t+3. The controls travel
with their entry (``valid``/``first``/``rmax``/``bias`` to S3, ``sign`` to S2); an entry in S3 sees the
accumulator written by the entry before it, so one entry per cycle needs no bypass. ``first`` restarts
the sum from ``bias`` instead of the old accumulator. No flow control: a lane takes one entry per
cycle, ``valid`` low holds ``acc``. Arithmetic wraps modulo 2**acc_bits, which is exact whenever the
final sum fits (the export checks it).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import LANE_LATENCY, AcceleratorConfig
from .layouts import reject

LATENCY = LANE_LATENCY  # cycles from a lane's inputs to its acc (S1 shifted terms, S2 product, S3 accumulate)


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


def acc_ctrl_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """The controls the accumulate stage (S3) needs."""
    return data.StructLayout({"valid": 1, "first": 1, "rmax": 1, "bias": signed(cfg.acc_bits)})


class Lane(wiring.Component):
    """Shift-add lane. Ports: ``ctrl`` (shared entry fields), ``a`` (operand, already zero when the
    input pixel is padding), ``acc`` (registered accumulator, ``LATENCY`` cycles behind the inputs)."""

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
        """The signed product a * weight of the entry presented two cycles earlier (registered in S2):
        S1 two barrel shifters, registered; S2 their sum and the sign."""
        cfg, c = self.cfg, self.ctrl
        wide = cfg.act_bits + cfg.max_shift + cfg.terms  # enough for the sum of all terms
        # a barrel shifter per term; the enable gates the narrow operand before the shift (Yosys/ABC map
        # that to ~half the LUTs of gating the shifted value)
        sh = [Signal(cfg.act_bits + cfg.max_shift, name=f"sh{t}") for t in range(cfg.terms)]
        m.d.sync += [sh[t].eq(Mux(c.en[t], self.a, 0) << c.s[t]) for t in range(cfg.terms)]
        sign = Signal()
        m.d.sync += sign.eq(c.sign)
        contrib = Signal(wide)
        m.d.comb += contrib.eq(sum(sh[1:], sh[0]))
        term = Signal(signed(wide + 1))
        m.d.sync += term.eq(Mux(sign, -contrib, contrib))
        return term

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.ctrl
        term = self.term(m)  # S2's register: the product of the entry now in S3
        c2, c3 = Signal(acc_ctrl_layout(cfg)), Signal(acc_ctrl_layout(cfg))
        m.d.sync += [c2.valid.eq(c.valid), c2.first.eq(c.first), c2.rmax.eq(c.rmax), c2.bias.eq(c.bias),
                     c3.eq(c2)]
        base = Signal(signed(cfg.acc_bits))
        m.d.comb += base.eq(Mux(c3.first, c3.bias, self.acc))
        # One adder for both modes: base + term, or for max pooling ~base + term = term - base - 1, whose
        # sign (one bit wider than either operand, so it cannot wrap) is set iff base >= term. No comparator.
        r = Signal(signed(max(len(base), len(term)) + 1))
        m.d.comb += r.eq((base ^ c3.rmax.replicate(len(base)).as_signed()) + term)
        keep_base = c3.rmax & r[-1]
        with m.If(c3.valid & ~(keep_base & ~c3.first)):  # max keeps the old acc: no write at all
            with m.If(c3.rmax):
                m.d.sync += self.acc.eq(Mux(keep_base, c3.bias, term))
            with m.Else():
                m.d.sync += self.acc.eq(r)
        return m
