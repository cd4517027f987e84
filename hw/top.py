"""The accelerator: sequencer, WGT/RQ/PROG ROMs, banked ACT, ``lanes`` shift-add lanes, writeback.

Pipeline of one entry issued in cycle I (see docs/hardware.md for the diagram):

  I    issue: WGT address presented (sequencer)
  I+1  S1: entry word arrives; ACT address off+p0 presented to the banks; per-lane padding mask
  I+2  S2: rotated bank words arrive; masked operands registered
  I+3  S3: lanes accumulate (acc register)
  I+4  S4: if the entry was a group's last, the accumulators move to the writeback buffer
  I+5  W0: the writeback unit takes one valid lane per cycle (address computed; RQ port B addressed)
  I+6  W1: requantize and write ACT (or OUT for RAW layers)

Flow control is entirely at issue (see ``Sequencer``): nothing downstream ever stalls.
Host ports (ACT, OUT, perf) are synchronous reads: the address of cycle t gives data in cycle t+1.
ACT host access is for when ``busy`` is low.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .actmem import BankedActMem
from .config import AcceleratorConfig
from .lane import lane_ctrl_layout
from .layouts import reject, rom, struct
from .mul_lane import LANE_KINDS, make_lane
from .requant import Requantizer
from .sequencer import Sequencer, issue_layout, pix_bits

HEX_FILES = {"wgt": "wgt.hex", "rq": "rq.hex", "prog": "prog.hex"}


def accelerator_signature(cfg: AcceleratorConfig) -> dict:
    return {
        "start": In(1),
        "busy": Out(1),
        "done": Out(1),
        "host_addr": In(cfg.addr_bits),
        "host_wdata": In(cfg.act_bits),
        "host_we": In(1),
        "host_rdata": Out(cfg.act_bits),
        "out_addr": In(cfg.out_addr_bits),
        "out_rdata": Out(signed(cfg.acc_bits)),
        "perf_addr": In(cfg.prog_addr_bits),
        "perf_rdata": Out(32),
        "cycles": Out(32),
    }


class Accelerator(wiring.Component):
    """The whole machine. ``images`` gives the ROM contents for rom_style="memory" (None: zeros);
    rom_style="readmemh" instantiates ``apotflow_rom`` loading wgt.hex / rq.hex / prog.hex."""

    def __init__(self, cfg: AcceleratorConfig, images: isa.MemoryImages | None = None,
                 rom_style: str = "memory", act_init=None, lane_kind: str = "shift"):
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"Accelerator needs an AcceleratorConfig, not {cfg!r}"))
        if rom_style not in ("memory", "readmemh"):
            reject(self, ValueError(f"rom_style must be 'memory' or 'readmemh', not {rom_style!r}"))
        if images is not None:
            if images.config != cfg:
                reject(self, ValueError("the memory images were built for a different AcceleratorConfig"))
            images.check()
        if cfg.out_depth > cfg.act_depth:
            reject(self, ValueError(f"out_depth ({cfg.out_depth}) must not exceed act_depth ({cfg.act_depth})"))
        if cfg.bank_depth < 2:
            reject(self, ValueError(f"act_depth ({cfg.act_depth}) must be at least 2 x lanes ({cfg.lanes})"))
        if lane_kind not in LANE_KINDS:
            reject(self, ValueError(f"lane_kind must be one of {', '.join(LANE_KINDS)}, not {lane_kind!r}"))
        self.cfg, self.images, self.rom_style, self.act_init = cfg, images, rom_style, act_init
        self.lane_kind = lane_kind  # "mul": the multiplier baseline (hw/mul_lane.py), same results
        super().__init__(accelerator_signature(cfg))

    def elaborate(self, platform):
        cfg, img = self.cfg, self.images
        m = Module()
        L = cfg.lanes
        pb = pix_bits(cfg)
        el, rl, dl = isa.entry_layout(cfg), isa.rq_layout(cfg), isa.desc_layout(cfg)

        m.submodules.seq = seq = Sequencer(cfg)
        m.submodules.act = act = BankedActMem(
            cfg, self.act_init, style="verilog" if self.rom_style == "readmemh" and self.act_init is None else "memory")
        m.submodules.rqu = rqu = Requantizer(cfg)
        lanes = [make_lane(cfg, self.lane_kind) for _ in range(L)]
        for i, ln in enumerate(lanes):
            m.submodules[f"lane{i}"] = ln

        (wgt_port,) = rom(m, "wgt", el.width, cfg.wgt_depth, img and img.wgt, 1, self.rom_style, HEX_FILES["wgt"])
        rq_a, rq_b = rom(m, "rq", rl.width, cfg.rq_depth, img and img.rq, 2, self.rom_style, HEX_FILES["rq"])
        (prog_port,) = rom(m, "prog", dl.width, cfg.prog_depth, img and img.prog, 1, self.rom_style, HEX_FILES["prog"])

        m.submodules.outmem = outmem = Memory(shape=signed(cfg.acc_bits), depth=cfg.out_depth, init=[])
        out_rd, out_wr = outmem.read_port(), outmem.write_port()
        m.submodules.perfmem = perfmem = Memory(shape=32, depth=cfg.prog_depth, init=[])
        perf_rd, perf_wr = perfmem.read_port(), perfmem.write_port()

        m.d.comb += [
            seq.start.eq(self.start), self.busy.eq(seq.busy), self.done.eq(seq.done),
            self.cycles.eq(seq.cycles),
            prog_port[0].eq(seq.prog_addr), seq.prog_data.eq(prog_port[1]),
            rq_a[0].eq(seq.rq_addr), seq.rq_data.eq(rq_a[1]),
            wgt_port[0].eq(seq.wgt_addr),
            perf_wr.addr.eq(seq.perf_waddr), perf_wr.data.eq(seq.perf_wdata), perf_wr.en.eq(seq.perf_we),
            perf_rd.addr.eq(self.perf_addr), self.perf_rdata.eq(perf_rd.data),
            out_rd.addr.eq(self.out_addr), self.out_rdata.eq(out_rd.data),
        ]
        desc = seq.desc
        wl, hl = desc.wo_log2, desc.ho_log2
        wo, ho, wmask = Signal(pb + 1), Signal(pb + 1), Signal(pb)
        m.d.comb += [wo.eq(1 << wl), ho.eq(1 << hl), wmask.eq(wo - 1)]

        # S1: entry word arrives; address the banks; padding mask per lane.
        s1 = Signal(issue_layout(cfg))
        m.d.sync += s1.eq(seq.issue)
        ent = struct(el)(wgt_port[1])
        oy0, ox0 = Signal(pb), Signal(pb)
        m.d.comb += [oy0.eq(s1.p0 >> wl), ox0.eq(s1.p0 & wmask)]
        wide_row = wl >= cfg.lane_bits
        mask = Signal(L)
        for l in range(L):
            oy, ox = Signal(pb + 1, name=f"oy{l}"), Signal(pb + 1, name=f"ox{l}")
            m.d.comb += [
                oy.eq(Mux(wide_row, oy0, oy0 + (Const(l, cfg.lane_bits + 1) >> wl))),
                ox.eq(Mux(wide_row, ox0 + l, l & wmask)),
            ]
            iy, ix = oy + ent.dy, ox + ent.dx
            m.d.comb += mask[l].eq((iy >= 0) & (iy < ho) & (ix >= 0) & (ix < wo))
        s2 = Signal(data.StructLayout({"iss": issue_layout(cfg), "ent": struct(el), "mask": L}))
        m.d.sync += [s2.iss.eq(s1), s2.ent.eq(ent), s2.mask.eq(Mux(s1.null, 0, mask))]

        # S2: rotated bank words arrive; mask padding.
        tail = data.StructLayout({"last": 1, "p0": pb, "nvalid": cfg.lane_bits + 1,
                                  "ch_base": cfg.addr_bits, "rq_row": cfg.rq_addr_bits})
        s3 = Signal(data.StructLayout({"ctrl": lane_ctrl_layout(cfg), "a": data.ArrayLayout(cfg.act_bits, L),
                                       "tail": tail}))
        m.d.sync += [
            s3.ctrl.valid.eq(s2.iss.valid), s3.ctrl.first.eq(s2.iss.first), s3.ctrl.sign.eq(s2.ent.sign),
            s3.ctrl.bias.eq(s2.iss.bias), s3.ctrl.rmax.eq(desc.rmax),
            s3.tail.last.eq(s2.iss.valid & s2.iss.last), s3.tail.p0.eq(s2.iss.p0),
            s3.tail.nvalid.eq(s2.iss.nvalid), s3.tail.ch_base.eq(s2.iss.ch_base), s3.tail.rq_row.eq(s2.iss.rq_row),
        ]
        for t in range(cfg.terms):
            m.d.sync += [s3.ctrl.en[t].eq(getattr(s2.ent, f"en{t}")), s3.ctrl.s[t].eq(getattr(s2.ent, f"s{t}"))]
        for l in range(L):
            m.d.sync += s3.a[l].eq(Mux(s2.mask[l], act.rd_data[l], 0))

        # S3: lanes.
        for l, ln in enumerate(lanes):
            m.d.comb += [ln.ctrl.eq(s3.ctrl), ln.a.eq(s3.a[l])]
        s4 = Signal(tail)
        m.d.sync += s4.eq(s3.tail)

        # S4: transfer to the writeback buffer; W0: one lane per cycle.
        wb_acc = [Signal(signed(cfg.acc_bits), name=f"wb_acc{l}") for l in range(L)]
        wb = Signal(tail)
        wb_pending = Signal()
        wb_k = Signal(cfg.lane_bits + 1)
        w1 = Signal(data.StructLayout({"valid": 1, "acc": signed(cfg.acc_bits), "addr": cfg.addr_bits}))
        m.d.comb += rq_b[0].eq(wb.rq_row)
        p = Signal(pb)
        m.d.comb += p.eq(wb.p0 + wb_k)
        q, hi_mask = Signal(pb), Signal(pb)
        m.d.comb += [q.eq(seq.npix >> 2), hi_mask.eq(~((wo << 1) - 1))]
        phase_off = Mux((p & wo) != 0, q << 1, 0) + Mux(p[0], q, 0)
        addr_phase = wb.ch_base + phase_off + ((p & hi_mask) >> 2) + ((p & wmask) >> 1)
        m.d.sync += [
            w1.valid.eq(wb_pending),
            w1.acc.eq(Array(wb_acc)[wb_k]),
            w1.addr.eq(Mux(desc.out_phase, addr_phase, wb.ch_base + p)),
        ]
        with m.If(wb_pending):
            with m.If(wb_k == wb.nvalid - 1):
                m.d.sync += wb_pending.eq(0)
            with m.Else():
                m.d.sync += wb_k.eq(wb_k + 1)
        with m.If(s4.last):
            m.d.sync += [wb.eq(s4), wb_pending.eq(1), wb_k.eq(0)]
            m.d.sync += [wb_acc[l].eq(lanes[l].acc) for l in range(L)]

        # W1: requantize and write.
        rqb = struct(rl)(rq_b[1])
        m.d.comb += [rqu.acc.eq(w1.acc), rqu.mode.eq(desc.mode), rqu.shift.eq(desc.shift)]
        m.d.comb += [rqu.thr[j].eq(getattr(rqb, f"thr{j}")) for j in range(cfg.max_levels - 1)]
        m.d.comb += [rqu.lv[j].eq(getattr(desc, f"lv{j}")) for j in range(cfg.max_levels)]
        raw = desc.mode == isa.MODE_RAW
        m.d.comb += [
            out_wr.addr.eq(w1.addr), out_wr.data.eq(w1.acc), out_wr.en.eq(w1.valid & raw),
        ]
        m.d.comb += seq.front_busy.eq(s1.valid | s2.iss.valid | s3.ctrl.valid | s4.last | wb_pending)
        m.d.comb += seq.pipe_busy.eq(seq.front_busy | w1.valid)

        # ACT: pipeline or host.
        with m.If(seq.busy):
            m.d.comb += [
                act.rd_addr.eq(ent.off + s1.p0),
                act.wr_addr.eq(w1.addr), act.wr_data.eq(rqu.value), act.wr_en.eq(w1.valid & ~raw),
            ]
        with m.Else():
            m.d.comb += [
                act.rd_addr.eq(self.host_addr),
                act.wr_addr.eq(self.host_addr), act.wr_data.eq(self.host_wdata), act.wr_en.eq(self.host_we),
            ]
        m.d.comb += self.host_rdata.eq(act.rd_data[0])
        return m
