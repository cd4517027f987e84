"""A serial host shell around the accelerator, so that a build fits any FPGA package.

``apotflow_top`` has ~130 host pins (ACT, OUT and perf ports); an iCE40UP5K SG48 has 39 IOs. The
shell keeps ``start``/``busy``/``done`` as pins and reaches every other host port through two shift
registers clocked by the accelerator clock:

* ``sin``/``sshift``: while ``sshift`` is high, ``sin`` is shifted (LSB first) into the input
  register {host_addr, host_wdata, host_we, out_addr, perf_addr}, which drives those ports.
  ``host_we`` is only applied for one cycle, on ``sapply`` (so a partly shifted word never writes).
* ``scapture``: loads {host_rdata, out_rdata, perf_rdata, cycles} into the output register;
  with ``sshift`` high it shifts out on ``sout`` (LSB first).

Six pins in all plus clk/rst. ``busy`` and ``done`` reach their pins through a register (one cycle
after the core's): the core's FSM decode then drives flip-flops only, not a net to the pad as well
(the ResNet-8 ECP5-25k build's critical path at 8fb4a2f ran from the FSM state through the net of
the ``busy`` pin to the per-layer cycle counter, 9.28 of its 10.99 ns routing). Latency: the ports see the input register directly (no extra cycle);
reads come back one cycle after the address (ACT: two; as on ``apotflow_top``), so capture two cycles
later.
The shell costs about in+out register bits of flip-flops and a few LUTs (the estimator adds it).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .top import Accelerator


def shell_bits(cfg: AcceleratorConfig) -> tuple[int, int]:
    """(input register bits, output register bits)."""
    n_in = cfg.addr_bits + cfg.act_bits + 1 + cfg.out_addr_bits + cfg.prog_addr_bits
    n_out = cfg.act_bits + cfg.acc_bits + 32 + 32
    return n_in, n_out


class SerialShell(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, images=None, rom_style: str = "readmemh", lane_kind: str = "shift",
                 wgt_banked: bool | None = None, rq_split: bool = False):
        self.cfg = cfg
        self.core = Accelerator(cfg, images, rom_style=rom_style, lane_kind=lane_kind, wgt_banked=wgt_banked,
                                rq_split=rq_split)
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "sin": In(1), "sshift": In(1), "sapply": In(1), "scapture": In(1), "sout": Out(1),
        })

    def elaborate(self, platform):
        cfg, core = self.cfg, self.core
        m = Module()
        m.submodules.core = core
        n_in, n_out = shell_bits(cfg)
        ireg, oreg = Signal(n_in), Signal(n_out)
        we = Signal()
        with m.If(self.sshift):
            m.d.sync += ireg.eq(Cat(ireg[1:], self.sin))
        m.d.sync += we.eq(self.sapply)
        host_addr, host_wdata, _we_bit, out_addr, perf_addr = (
            ireg[: cfg.addr_bits],
            ireg[cfg.addr_bits: cfg.addr_bits + cfg.act_bits],
            ireg[cfg.addr_bits + cfg.act_bits],
            ireg[cfg.addr_bits + cfg.act_bits + 1: cfg.addr_bits + cfg.act_bits + 1 + cfg.out_addr_bits],
            ireg[n_in - cfg.prog_addr_bits:],
        )
        m.d.comb += [
            core.start.eq(self.start),
            core.host_addr.eq(host_addr), core.host_wdata.eq(host_wdata), core.host_we.eq(we & _we_bit),
            core.out_addr.eq(out_addr), core.perf_addr.eq(perf_addr),
            self.sout.eq(oreg[0]),
        ]
        m.d.sync += [self.busy.eq(core.busy), self.done.eq(core.done)]
        with m.If(self.scapture):
            m.d.sync += oreg.eq(Cat(core.host_rdata, core.out_rdata, core.perf_rdata, core.cycles))
        with m.Elif(self.sshift):
            m.d.sync += oreg.eq(oreg >> 1)
        return m
