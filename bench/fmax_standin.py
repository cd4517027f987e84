"""Fmax of everything but the lanes: `apotflow synth` with each lane replaced by a pipelined stand-in.

    .venv/bin/python bench/fmax_standin.py synth --model bench/models/digits.apot --target ecp5-25k \\
        --lanes 16 --out runs/fmax/standin --bitstreams runs/fmax/bs

A measurement, not a design: the stand-in has ``Lane``'s ports and arithmetic (two shifted terms, their
sum, the sign, accumulate or max) in three stages (shifted terms | sum and sign | accumulate) instead
of one, so its results come two cycles late and a program's output is wrong; but no path inside a
lane is longer than one carry chain, and nextpnr's critical path names the slowest path of the rest of the machine
(sequencer, ROMs, ACT banks and rotation, writeback, requantizer, serial shell). It was written when
the real lane was one cycle; since 996b66b ``Lane`` itself is three stages with the same split
(docs/resources.md, "Fmax") and its latency is accounted for, so `apotflow synth` measures that directly.
"""

import sys

from amaranth.hdl import Module, Mux, Signal, signed

import apotflow.hw.top as top
from apotflow.hw.lane import Lane
from apotflow.sim.cli import main


class StandInLane(Lane):
    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.ctrl
        wide = cfg.act_bits + cfg.max_shift + cfg.terms
        terms = [Signal(wide, name=f"t{t}") for t in range(cfg.terms)]
        m.d.sync += [terms[t].eq(Mux(c.en[t], self.a, 0) << c.s[t]) for t in range(cfg.terms)]
        c2, c3 = Signal.like(c), Signal.like(c)
        m.d.sync += [c2.eq(c), c3.eq(c2)]
        contrib = sum(terms[1:], terms[0])
        term = Signal(signed(wide + 1))
        m.d.sync += term.eq(Mux(c2.sign, -contrib, contrib))
        base = Mux(c3.first, c3.bias, self.acc)
        with m.If(c3.valid):
            with m.If(c3.rmax):
                m.d.sync += self.acc.eq(Mux(term > base, term, base))
            with m.Else():
                m.d.sync += self.acc.eq(base + term)
        return m


if __name__ == "__main__":
    top.make_lane = lambda cfg, kind="shift": StandInLane(cfg)
    sys.exit(main())
