"""A serial host shell around the accelerator, so that a build fits any FPGA package.

``apotflow_top`` has ~130 host pins (ACT, OUT and perf ports); an iCE40UP5K SG48 has 39 IOs. The
shell keeps ``start``/``busy``/``done`` as pins and reaches every other host port through two shift
registers clocked by the accelerator clock:

* ``sin``/``sshift``: while ``sshift`` is high, ``sin`` is shifted (LSB first) into the input
  register {host_addr, host_wdata, host_we, out_addr, perf_addr} (``shell_fields``; a ``wgt_ram`` build
  adds {wgt_waddr, wgt_wdata, wgt_we}: the host loads the weight image through them at boot), which
  drives those ports. ``host_we`` and ``wgt_we`` are only applied for one cycle, on ``sapply`` (so a
  partly shifted word never writes).
* ``scapture``: loads {host_rdata, out_rdata, perf_rdata, cycles} into the output register;
  with ``sshift`` high it shifts out on ``sout`` (LSB first).

Six pins in all plus clk/rst. ``busy`` and ``done`` reach their pins through two registers (two cycles
after the core's): the core's FSM decode then drives flip-flops only, not a net to the pad as well
(the ResNet-8 ECP5-25k build's critical path at 8fb4a2f ran from the FSM state through the net of
the ``busy`` pin to the per-layer cycle counter, 9.28 of its 10.99 ns routing), and the first register
is free to sit by the core, the second by the pad: with one, the LUT decoding ``busy``, which the
sequencer shares, sat by the pin's register far from the FSM (the 64-lane ResNet-20 ECP5-85k build's
critical path at 808a46d, seed 1: the FSM state -> 3.52 ns -> that LUT -> 2.54 + 4.70 ns -> the
sequencer's ``settle``, 75.84 MHz). ``start`` reaches the
core through a register too (one cycle after the pin): unregistered, it drew the FSM's next-state logic
towards its pad (the 64-lane ResNet-20 ECP5-85k build's critical path once the requantizer's output was
registered ran from the FSM state through the ``start`` LUT to the per-layer cycle counter, 10.50 of its
12.20 ns routing). Latency: the ports see the input register directly (no extra cycle);
reads come back one cycle after the address (ACT: five, ``top.host_act_latency``; as on
``apotflow_top``), so capture that many cycles later.
The shell costs about in+out register bits of flip-flops and a few LUTs (the estimator adds it).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import AcceleratorConfig
from .top import Accelerator


def shell_fields(cfg: AcceleratorConfig) -> list[tuple[str, int]]:
    """The input register's fields, LSB first: (core port, bits). With ``cfg.wgt_ram`` the WGT write
    port's three follow (``wgt_we`` is the request bit, applied on ``sapply`` as ``host_we`` is)."""
    fields = [("host_addr", cfg.addr_bits), ("host_wdata", cfg.act_bits), ("host_we", 1),
              ("out_addr", cfg.out_addr_bits), ("perf_addr", cfg.prog_addr_bits)]
    if cfg.wgt_ram:
        fields += [("wgt_waddr", cfg.wgt_addr_bits), ("wgt_wdata", isa.entry_layout(cfg).width), ("wgt_we", 1)]
    return fields


def shell_bits(cfg: AcceleratorConfig) -> tuple[int, int]:
    """(input register bits, output register bits)."""
    n_in = sum(w for _, w in shell_fields(cfg))
    n_out = cfg.act_bits + cfg.acc_bits + 32 + 32
    return n_in, n_out


class SerialShell(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, images=None, rom_style: str = "readmemh", lane_kind: str = "shift",
                 wgt_banked: bool | None = None, rq_split: bool = False, wgt_spram: bool = False,
                 rq_thr_block: int = 0, dp16kd: bool = False, act_outreg: str | None = None, act_split: bool = True):
        self.cfg = cfg
        self.core = Accelerator(cfg, images, rom_style=rom_style, lane_kind=lane_kind, wgt_banked=wgt_banked,
                                rq_split=rq_split, wgt_spram=wgt_spram, rq_thr_block=rq_thr_block,
                                dp16kd=dp16kd, act_outreg=act_outreg, act_split=act_split)
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
        start_q = Signal()  # the pin registered: no pad net in the FSM's next-state logic (see the docstring)
        m.d.sync += start_q.eq(self.start)
        m.d.comb += core.start.eq(start_q)
        lo = 0
        for name, width in shell_fields(cfg):  # a write request bit drives its port for the cycle after sapply
            field, lo = ireg[lo:lo + width], lo + width
            m.d.comb += getattr(core, name).eq(we & field if name.endswith("_we") else field)
        m.d.comb += self.sout.eq(oreg[0])
        busy_q, done_q = Signal(name="busy_q"), Signal(name="done_q")  # by the core; the pins' own by the pads
        m.d.sync += [busy_q.eq(core.busy), done_q.eq(core.done), self.busy.eq(busy_q), self.done.eq(done_q)]
        with m.If(self.scapture):
            m.d.sync += oreg.eq(Cat(core.host_rdata, core.out_rdata, core.perf_rdata, core.cycles))
        with m.Elif(self.sshift):
            m.d.sync += oreg.eq(oreg >> 1)
        return m
