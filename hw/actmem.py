"""Banked activation memory: ``lanes`` consecutive words per cycle, no bank conflicts.

ACT is split into ``lanes`` banks (bank = address mod lanes, row = address >> lane_bits). A read of the
``lanes`` words ``a .. a + lanes - 1`` touches every bank exactly once: bank b serves row
``R + (b < rot)`` with ``R = a >> lane_bits`` and ``rot = a mod lanes``, and a barrel rotation by
``rot`` routes bank outputs to lanes, so ``rd_data[l] = ACT[(a + l) mod act_depth]``.

The read is given already split: ``rd_row`` = R, ``rd_row1`` = R + 1 (mod rows) and ``rd_rot`` = rot,
so that a bank's address is a 2:1 mux and no adder sits in front of the block RAMs (the caller
computes both rows in parallel, see hw/top.py). Only banks ``b < rot`` use ``rd_row1``. The
pipeline's read (``rd_*``) goes through two registers before the banks, as the host's does (``host_*``, selected by
``host_sel``, one copy per ``copy_group`` banks): ``rd_*`` registered in a copy per group of
``copy_group`` banks (S2a), then each bank's row (``R`` or ``R + 1``) registered beside its bank
(S2b; ``ADDR_STAGES``), so the fan-out of one row to every bank, spread over the chip, has two cycles;
the host reads lane 0 alone (``host_row``, ``host_rot``) with two registers (``HOST_STAGES``: one, then the
row in a copy per group beside its banks' address selects), as many as the pipeline's rows have.

Latency 2 (``read_latency``; the pipeline's ``rd_*`` and the host's ``host_*`` two more): the address presented in cycle t gives the bank words in cycle t+1,
which are registered as they are (nothing but a flip-flop behind the block RAMs' slow outputs: a
multiplexer of 16 banks spread over the chip right after them costs ~6 ns) and rotated
combinationally in cycle t+2, when ``rd_data`` is valid. From ``config.SPLIT_LANE_BITS`` (128 lanes) on,
the rotation is registered after its first ``SPLIT_STAGES`` stages and the latency is 3: left whole,
its 7-stage mux chain was restructured by ABC into 46,084 LUT4 for the 128-lane digits build on the
ECP5-85k instead of 35,745 with the register (+1,024 FF). One write per cycle, the pipeline's
(``wr_*``) or the host's (``host_wr_*``; the two never overlap), registered beside each bank after
the bank decode (``WRITE_STAGES``; the word in one register for all banks): a write presented in cycle t lands at the end of cycle t+1 (the
pipeline's W4, hw/cycles.WB counts it), so nothing but a flip-flop sits before a bank's write port
(the ACT ports' host/pipeline select and the bank decode used to sit before the write enables of the
LUT RAM tails: ResNet-8's critical path on the ECP5-25k). A read in the same
cycle as a write lands on the same word returns the old word, except in a bank's LUT-RAM tail (``split_rows``),
which registers its read address and reads in the next cycle, so it returns the new word: the pipeline
never reads a word in the cycle it writes it (a layer's output never overlaps its inputs).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import ecp5
from .config import AcceleratorConfig
from .layouts import reject

SPLIT_STAGES = 4  # rotation stages before that register (a 16-way select), the rest after it
ADDR_STAGES = 2  # the pipeline read's row registers: a copy per bank group (S2a), each bank's row (S2b)
COPY_GROUP = 4  # banks (and lanes, hw/top.py) served by one copy of a register that fans out to all of them
COPY_LANES = 64  # from this many lanes on (below it: one copy, ``copy_group``)
HOST_STAGES = 2  # the host read's row registers: one, then a copy per bank group (and its rotation's two)
WRITE_STAGES = 1  # the write's per-bank register (the pipeline's W4 stage: hw/cycles.WB counts it)


def tail_split(cfg: AcceleratorConfig, family: str | None = None) -> int | None:
    """Rows of each bank kept in block RAM when the bank's tail goes to distributed RAM (the banks'
    ``split_rows``), or None (one memory a bank): a bank deeper than the deepest ECP5 block shape that
    holds a word (2048 x 9 for 8-bit words), by at most a quarter of it, keeps that shape in one block
    and the rest in LUT RAM instead of a second block. ResNet-8 at 16 lanes: 2,304 rows a bank, 16
    DP16KD and 16 x 256 x 8 bits of LUT RAM instead of 32 DP16KD. ``family`` "ice40": None (the iCE40
    has no LUT RAM: Yosys found no mapping for such a tail); None: the generic RTL (simulation)."""
    from .estimate import _ECP5_BRAMS, has_lutram

    if not has_lutram(family):
        return None
    depth = max(d for d, w in _ECP5_BRAMS[0]["shapes"] if w >= cfg.act_bits)
    rows = cfg.act_bank_rows
    return depth if depth < rows <= depth + depth // 4 else None


def copy_group(cfg: AcceleratorConfig) -> int:
    """Banks (and lanes) served by one copy of a register that would fan out to every bank or lane:
    ``COPY_GROUP`` from ``COPY_LANES`` lanes on, else all of them (one copy). One register driving 64 banks
    or lanes spread over the ECP5-85k spent 12 to 14 ns of a 15 to 16 ns path in routing
    (docs/resources.md); at 16 lanes on the ECP5-25k the copies cost 466 FFs and no path was such a
    fan-out (its critical paths were the requantizer, the padding test and the sequencer's FSM)."""
    return COPY_GROUP if cfg.lanes >= COPY_LANES else cfg.lanes


def copies(cfg: AcceleratorConfig) -> int:
    """How many copies of a register that would fan out to every bank (or lane) the RTL keeps: one per
    ``copy_group`` banks, a copy near its group. The copies are identical, so they carry ``keep``
    (``keep_attrs``) and the synthesis flow keeps their flip-flops apart (hw/flows/yosys.py), which
    Yosys' opt_merge would merge back into one."""
    return -(-cfg.lanes // copy_group(cfg))


def keep_attrs() -> dict:
    """The attributes of a register copy that synthesis must not merge with its twins (``copies``)."""
    return {"keep": 1}


def kept_copies(cfg: AcceleratorConfig, name: str, shape=1, n: int | None = None, init=None) -> list[Signal]:
    """``n`` (default ``copies(cfg)``) signals ``{name}_g{g}`` of one shape (reset value ``init``, if given),
    each marked ``keep_attrs``: the per-group copies of a register that would fan out to every bank or lane."""
    return [Signal(shape, name=f"{name}_g{g}", init=init, attrs=keep_attrs())
            for g in range(copies(cfg) if n is None else n)]


def pipe_split(cfg: AcceleratorConfig) -> int:
    """Stages of the pipeline's read rotation (``rd_pipe``) before its register: half of them where
    ``rd_data`` is not registered mid-way (below 128 lanes), else all (``rd_pipe`` is ``rd_data``
    registered). The register is the one hw/top.py's S4 had after the whole rotation: the same latency,
    but the rotation from 64 banks to 64 lanes across the die is split over two cycles."""
    lb = cfg.lane_bits
    return (lb + 1) // 2 if read_latency(cfg) == 2 else lb


def read_latency(cfg: AcceleratorConfig) -> int:
    """Cycles from rd_row/rd_row1/rd_rot to rd_data (``AcceleratorConfig.act_read_latency``)."""
    return cfg.act_read_latency


class BankedActMem(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, init=None, style: str = "memory", split_rows: int | None = None,
                 outreg: str | None = None):
        """style "memory": Amaranth memories (simulation); "verilog": instances of ``apotflow_ram``
        (hw/apotflow_rom.v) without initial contents, which keeps the Verilog small for deep banks.
        Each bank holds ``cfg.act_bank_rows`` rows. ``split_rows`` (``tail_split``): each bank's rows from
        ``split_rows`` on go to a second memory marked for distributed RAM (``ram_style``), the rest
        stays one block-RAM shape deep (``hw/estimate.act_split``: ResNet-8's 2,304 rows a bank on the
        ECP5 are one 2048 x 9 DP16KD and 256 rows of LUT RAM, not two DP16KD); the read picks the
        memory by the row registered beside it, the write goes to the one that holds the row. The tail
        registers its read address and is read asynchronously in the next cycle (the same latency): the
        bank's address select and the LUT RAM's read mux are then in different cycles.

        ``outreg`` (ECP5 synthesis: "dp16kd"): a bank's block-RAM part (its first ``split_rows`` rows, or
        all) is a DP16KD whose own output register holds the word read (``hw/ecp5.dp16kd_ram``), the tail's
        word is registered from its LUT RAM, and the tail/block choice comes after the two registers, by
        the row registered twice: the same latency, but no fabric flip-flop behind the block's slow
        clock-to-output (``outreg_fits``). "sim": the same structure with an Amaranth memory and a register
        for the block (the simulations test it)."""
        if outreg not in (None, "sim", "dp16kd") or (outreg and not outreg_fits(cfg, split_rows)) \
                or (outreg == "dp16kd" and init is not None):
            reject(self, ValueError(f"outreg must be None, 'sim' or 'dp16kd' (no init), on banks whose block part "
                                    f"fits one DP16KD, not {outreg!r}"))
        self.outreg = outreg
        if style not in ("memory", "verilog") or (style == "verilog" and init is not None):
            reject(self, ValueError(f"style must be 'memory' or 'verilog' (no init), not {style!r}"))
        self.style = style
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"BankedActMem needs an AcceleratorConfig, not {cfg!r}"))
        if cfg.bank_depth < 2:
            reject(self, ValueError(f"act_depth ({cfg.act_depth}) must be at least 2 x lanes ({cfg.lanes}) "
                             "so that every bank has two rows"))
        rows = cfg.act_bank_rows
        if split_rows is not None and not (0 < split_rows < rows <= 2 * split_rows
                                           and split_rows & (split_rows - 1) == 0):
            reject(self, ValueError(f"split_rows must be a power of two in [{rows}/2, {rows}), not {split_rows!r}"))
        self.split_rows = split_rows
        self.cfg = cfg
        self.init = list(init) if init is not None else None
        super().__init__({
            "rd_row": In(cfg.addr_bits - cfg.lane_bits),
            "rd_row1": In(cfg.addr_bits - cfg.lane_bits),
            "rd_rot": In(max(1, cfg.lane_bits)),
            "host_sel": In(copies(cfg)),  # copy b // copy_group selects bank b's address
            "host_row": In(cfg.addr_bits - cfg.lane_bits),
            "host_rot": In(max(1, cfg.lane_bits)),
            "rd_data": Out(data.ArrayLayout(cfg.act_bits, cfg.lanes)),
            "rd_pipe": Out(data.ArrayLayout(cfg.act_bits, cfg.lanes)),  # rd_data a cycle later (``pipe_split``)
            # the pipeline's writes, ``wb_words`` ports (port w writes the banks b = w mod wb_words), each a copy
            # per group of banks: bank b takes copy (b // copy_group) * wb_words + b mod wb_words
            "wr_en": In(copies(cfg) * cfg.wb_words),
            "wr_addr": In(data.ArrayLayout(cfg.addr_bits, copies(cfg) * cfg.wb_words)),
            "wr_data": In(data.ArrayLayout(cfg.act_bits, cfg.wb_words)),
            "host_wr_en": In(1),
            "host_wr_addr": In(cfg.addr_bits),
            "host_wr_data": In(cfg.act_bits),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        L, lb = cfg.lanes, cfg.lane_bits
        row_bits = cfg.addr_bits - lb
        # S2a: the pipeline's rows and rotation registered, one copy per group of copy_group banks (kept apart
        # in synthesis: one register fanned out to every bank spread over the die was most of a cycle of routing)
        n, cg = copies(cfg), copy_group(cfg)
        row_g = kept_copies(cfg, "rd_row", row_bits)
        row1_g = kept_copies(cfg, "rd_row1", row_bits)
        rot_g = kept_copies(cfg, "rd_rot", max(1, lb))
        m.d.sync += [row_g[g].eq(self.rd_row) for g in range(n)]
        m.d.sync += [row1_g[g].eq(self.rd_row1) for g in range(n)]
        m.d.sync += [rot_g[g].eq(self.rd_rot if lb else 0) for g in range(n)]
        rot_p = Signal(max(1, lb))  # the pipeline's rotation, beside its per-bank rows (S2b)
        m.d.sync += rot_p.eq(rot_g[0])
        # the host's row and rotation registered, the row in a copy per group of banks (kept apart): the shell's
        # address register driving 64 banks' address selects spread over the die was the 64-lane ResNet-20
        # build's critical path at two placement seeds (s25: 8.42 + 4.42 and 10.82 + 4.97 ns of routing)
        # (``HOST_STAGES``: the row and rotation registered once before the copies, so that the shell's address
        # register, one bit of a shift chain, drives one flip-flop and not copies all over the die: the 64-lane
        # ResNet-20 build's critical path at 4eba441, seed 1, 9.93 of 10.69 ns routing)
        host_row_g = kept_copies(cfg, "host_row", row_bits)
        host_row_q = Signal(row_bits, name="host_row_q")
        host_rot_in = Signal(max(1, lb), name="host_rot_in")
        host_rot_q = Signal(max(1, lb), name="host_rot_q")
        m.d.sync += [host_row_q.eq(self.host_row), host_rot_in.eq(self.host_rot if lb else 0)]
        m.d.sync += [*(c.eq(host_row_q) for c in host_row_g), host_rot_q.eq(host_rot_in)]
        rot = Mux(self.host_sel[0], host_rot_q, rot_p) if lb else 0
        split = SPLIT_STAGES if read_latency(cfg) == 3 else None
        # the rotation's selects (rot_qq, and rot_q3 after the mid-way register) drive lanes x act_bits
        # multiplexers a stage (2,156 LUT inputs from one bit in the 64-lane ResNet-8 netlist): a copy per
        # group of copy_group lanes, each selecting its group's outputs of every stage
        rot_q = Signal(max(1, lb))
        rot_qq = kept_copies(cfg, "rot_qq", max(1, lb))
        rot_q3 = kept_copies(cfg, "rot_q3", max(1, lb)) if split else []
        m.d.sync += [rot_q.eq(rot), *(c.eq(rot_q) for c in rot_qq), *(c.eq(rot_qq[0]) for c in rot_q3)]
        outs_q = []
        rows = cfg.act_bank_rows
        # The word written, one register for every bank (a per-bank copy would put the requantizer's
        # level mux in front of `lanes` registers: the ResNet-8 ECP5-25k build's critical path); from
        # COPY_LANES lanes on a copy per group of copy_group banks (kept apart): the one register driving
        # 64 banks spent 17.59 of 18.33 ns in routing (the 64-lane ResNet-20 build, placement seed 3)
        # (with two write ports, a copy per port: port 1's named wdata_b*)
        W = cfg.wb_words
        wdata_g = []
        for w in range(W):
            name = "wdata" + ("_b" if w else "")
            wdata_g += [kept_copies(cfg, name, cfg.act_bits) if copies(cfg) > 1 else [Signal(cfg.act_bits, name=name)]]
            m.d.sync += [c.eq(Mux(self.wr_en[g * W + w], self.wr_data[w], self.host_wr_data))
                         for g, c in enumerate(wdata_g[w])]
        for b in range(L):
            init = [0] * rows
            if self.init is not None:
                init = [int(self.init[r * L + b]) if r * L + b < len(self.init) else 0 for r in range(rows)]
            raddr, rdata = Signal(row_bits, name=f"bank{b}_raddr"), Signal(cfg.act_bits, name=f"bank{b}_rdata")
            raddr_p = Signal(row_bits, name=f"bank{b}_raddr_p")  # registered next to the bank
            g = b // cg
            m.d.sync += raddr_p.eq(Mux(b < rot_g[g], row1_g[g], row_g[g]))
            m.d.comb += raddr.eq(Mux(self.host_sel[g], host_row_g[g], raddr_p))
            # The bank's write enable and row registered beside it (``WRITE_STAGES``), after the
            # pipeline/host select and the bank decode: nothing but a flip-flop before the memory's
            # write port. The two writers never overlap (the pipeline writes while busy, the host while
            # not), so the pipeline's write selects the row without a host/pipeline select.
            pw = Signal(name=f"bank{b}_pw")
            wp = g * W + b % W  # the write port's copy for this bank
            m.d.comb += pw.eq(self.wr_en[wp] & ((self.wr_addr[wp][:lb] if lb else 0) == b))
            hw = self.host_wr_en & ((self.host_wr_addr[:lb] if lb else 0) == b)
            we = Signal(name=f"bank{b}_we")
            wrow_q = Signal(row_bits, name=f"bank{b}_wrow")
            m.d.sync += [we.eq(pw | hw), wrow_q.eq(Mux(pw, self.wr_addr[wp] >> lb, self.host_wr_addr >> lb))]
            wdata_q = wdata_g[b % W][g]
            if self.outreg:
                outs_q.append(self._outreg_bank(m, b, raddr, we, wrow_q, wdata_q, init))
                continue
            if self.style == "verilog" and self.split_rows is not None:
                m.submodules[f"bank{b}"] = Instance(
                    "apotflow_ram_split", p_WIDTH=cfg.act_bits, p_DEPTH=rows, p_ABITS=row_bits,
                    p_SPLIT=self.split_rows, p_SBITS=self.split_rows.bit_length() - 1,
                    i_clk=ClockSignal("sync"), i_raddr=raddr, o_rdata=rdata, i_we=we,
                    i_waddr=wrow_q, i_wdata=wdata_q)
            elif self.style == "verilog":
                m.submodules[f"bank{b}"] = Instance(
                    "apotflow_ram", p_WIDTH=cfg.act_bits, p_DEPTH=rows, p_ABITS=row_bits,
                    i_clk=ClockSignal("sync"), i_raddr=raddr, o_rdata=rdata, i_we=we,
                    i_waddr=wrow_q, i_wdata=wdata_q)
            elif self.split_rows is None:
                mem = Memory(shape=cfg.act_bits, depth=rows, init=init)
                m.submodules[f"bank{b}"] = mem
                rp = mem.read_port(domain="sync")
                wp = mem.write_port()
                m.d.comb += [rp.addr.eq(raddr), rdata.eq(rp.data),
                             wp.addr.eq(wrow_q), wp.data.eq(wdata_q), wp.en.eq(we)]
            else:
                k = self.split_rows
                wrow = wrow_q
                hi_q = Signal(name=f"bank{b}_hi_q")  # the row read was in the tail memory
                m.d.sync += hi_q.eq(raddr >= k)
                kb = k.bit_length() - 1  # the row within its memory: the low bits (k is a power of two)
                # the tail's read address registered, the tail read asynchronously from it (as
                # apotflow_ram_split does): the same latency, the address logic and the LUT RAM in two cycles
                tail_a = Signal(kb, name=f"bank{b}_tail_a")
                m.d.sync += tail_a.eq(raddr[:kb])
                words = []
                for part, (lo, hi, attrs) in enumerate(((0, k, None), (k, rows, {"ram_style": "distributed"}))):
                    mem = Memory(shape=cfg.act_bits, depth=hi - lo, init=init[lo:hi], attrs=attrs)
                    m.submodules[f"bank{b}_{part}"] = mem
                    rp, wp = mem.read_port(domain="comb" if part else "sync"), mem.write_port()
                    inside = (wrow >= k) if part else (wrow < k)
                    m.d.comb += [rp.addr.eq(tail_a if part else raddr[:kb]), wp.addr.eq(wrow[:kb]),
                                 wp.data.eq(wdata_q), wp.en.eq(we & inside)]
                    words.append(rp.data)
                m.d.comb += rdata.eq(Mux(hi_q, words[1], words[0]))
            rdata_q = Signal(cfg.act_bits, name=f"bank{b}_rdata_q")
            m.d.sync += rdata_q.eq(rdata)
            outs_q.append(rdata_q)
        # The rotation as a logarithmic barrel shifter: stage k rotates by 2**k when bit k of rot is
        # set, so lane l ends on bank (l + rot) mod lanes. Written as an array index per lane (a
        # lanes-way case on rot + l), Yosys/ABC9 map it at 64 lanes to 64:1 mux trees (~3x the LUTs,
        # 20k PFUMX/L6MUX21 in the digits build); this is lanes x act_bits x lane_bits 2:1 muxes.
        def rotate(v, stages, r, name):
            for k in stages:
                step = 1 << k
                nxt = [Signal(cfg.act_bits, name=f"{name}{k}_{lane}") for lane in range(L)]
                m.d.comb += [nxt[lane].eq(Mux(r[lane // cg][k], v[(lane + step) % L], v[lane]))
                             for lane in range(L)]
                v = nxt
            return v

        # rd_data (the host's lane 0; every lane in the unit tests): the whole rotation in one cycle, or
        # registered after `split` stages (latency 3), the later stages using the rotation a cycle later
        psplit = pipe_split(cfg)
        v = rotate(outs_q, range(min(lb, split if split is not None else lb, psplit)), rot_qq, "rot")
        half = v  # the pipeline's words after its first psplit stages
        if split is not None:
            v = rotate(v, range(psplit, split), rot_qq, "rot")
            v = [_registered(m, v[lane], f"rot{split}_q_{lane}") for lane in range(L)]
            v = rotate(v, range(split, lb), rot_q3, "rot")
        else:
            v = rotate(v, range(psplit, lb), rot_qq, "rot")
        for lane in range(L):
            m.d.comb += self.rd_data[lane].eq(v[lane])
        # rd_pipe: the pipeline's words, a cycle after rd_data: the rotation registered after its first
        # psplit stages (a copy of the rotation's selects a group for the later stages), the rest in the
        # next cycle, so that neither half of the die-wide rotation shares a cycle with the other; from
        # 128 lanes on (rd_data registered mid-way) the whole of rd_data registered
        if split is not None:
            v = [_registered(m, v[lane], f"pipe_q_{lane}") for lane in range(L)]
        else:
            rot_late = kept_copies(cfg, "rot_late", max(1, lb))
            m.d.sync += [rot_late[g].eq(rot_qq[g]) for g in range(n)]
            v = [_registered(m, half[lane], f"pipe_q_{lane}") for lane in range(L)]
            v = rotate(v, range(psplit, lb), rot_late, "prot")
        for lane in range(L):
            m.d.comb += self.rd_pipe[lane].eq(v[lane])
        return m


    def _outreg_bank(self, m: Module, b: int, raddr, we, wrow, wdata, init) -> Signal:
        """Bank ``b`` with its block part's word in the block's output register (``outreg``); returns the
        word read, two cycles after ``raddr``, as the other forms' ``rdata_q``."""
        cfg, k = self.cfg, self.split_rows or self.cfg.act_bank_rows
        kb = min(len(raddr), ecp5.ADDR_BITS)
        tail = self.split_rows is not None
        lo_we = we & (wrow < k) if tail else we
        block_q = Signal(cfg.act_bits, name=f"bank{b}_lo_q")
        if self.outreg == "dp16kd":
            q = ecp5.dp16kd_ram(m, f"bank{b}_lo", raddr[:kb], wrow[:kb], wdata, lo_we)
            m.d.comb += block_q.eq(q[:cfg.act_bits])
        else:
            mem = Memory(shape=cfg.act_bits, depth=k, init=init[:k])
            m.submodules[f"bank{b}_lo"] = mem
            rp, wp = mem.read_port(domain="sync"), mem.write_port()
            m.d.comb += [rp.addr.eq(raddr), wp.addr.eq(wrow), wp.data.eq(wdata), wp.en.eq(lo_we)]
            m.d.sync += block_q.eq(rp.data)
        if not tail:
            return block_q
        tb = k.bit_length() - 1  # the tail's row bits
        hi_q, hi_qq = Signal(name=f"bank{b}_hi_q"), Signal(name=f"bank{b}_hi_qq")
        tail_a, tail_q = Signal(tb, name=f"bank{b}_tail_a"), Signal(cfg.act_bits, name=f"bank{b}_tail_q")
        mem = Memory(shape=cfg.act_bits, depth=cfg.act_bank_rows - k, init=init[k:], attrs={"ram_style": "distributed"})
        m.submodules[f"bank{b}_hi"] = mem
        rp, wp = mem.read_port(domain="comb"), mem.write_port()
        m.d.comb += [rp.addr.eq(tail_a), wp.addr.eq(wrow[:tb]), wp.data.eq(wdata), wp.en.eq(we & (wrow >= k))]
        m.d.sync += [hi_q.eq(raddr >= k), hi_qq.eq(hi_q), tail_a.eq(raddr[:tb]), tail_q.eq(rp.data)]
        word = Signal(cfg.act_bits, name=f"bank{b}_rdata_q")
        m.d.comb += word.eq(Mux(hi_qq, tail_q, block_q))
        return word


def outreg_fits(cfg: AcceleratorConfig, split_rows: int | None) -> bool:
    """A bank's block part (its first ``split_rows`` rows, or all) is one DP16KD (``ecp5.WORDS`` x ``ecp5.BITS``)."""
    return (split_rows or cfg.act_bank_rows) <= ecp5.WORDS and cfg.act_bits <= ecp5.BITS


def _registered(m: Module, v, name: str) -> Signal:
    q = Signal(len(v), name=name)
    m.d.sync += q.eq(v)
    return q
