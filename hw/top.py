"""The accelerator: sequencer, WGT/RQ/PROG ROMs, banked ACT, ``lanes`` shift-add lanes, writeback.

Pipeline of one entry issued in cycle I (see docs/hardware.md for the diagram). No block RAM output
feeds anything but a register or a multiplexer, and no stage has more than one carry chain:

  I    issue: WGT address presented (sequencer)
  I+1  S1: the WGT bank words arrive and are registered as they are (``wgt_rom``; ECP5: in the DP16KD)
  I+2  S1a: the stream entry (code, delta) is chosen among the banks' registers and registered (from 64
           lanes on: S1a registers only the select's first level, the OR of each group of 4 banks; S1c ORs
           those registers, and every stage below comes a cycle later: ``wgt_read_latency`` 3)
  I+3  S1b: the channel's position += step (registered)
  I+4  D1: VAL row (code) and TAP row (position's tap) addressed; input channel = pos >> tap_log2
  I+5  D2: the rows arrive and are registered as they are; p0's ACT row + 1 (registered)
  I+6  D3: the first lane's ACT address off + p0 (off = tap.off + (ic << ch_shift)) as its row R and
           rotation, and the row R + 1 (two three-operand adders in parallel); decoded entry registered;
           first lane's output coordinates from p0
  I+7  S2: the rows R and R + 1 and the rotation registered in a copy per group of banks (S2a)
  I+8  S2a: each bank's row (R or R + 1) registered beside the bank (in BankedActMem)
  I+9  S2b: the banks are addressed
  I+10 S3: bank words arrive and are registered as they are (in BankedActMem); padding mask
  I+11 S4: rotation to lanes, padding mask; operands registered
  I+12 S5: operands (one register per lane, next to it) and controls registered again (from 64 lanes on
           twice: S5b, ``operand_stages``)
  I+13 S6: lanes: shifted terms (registered)
  I+14 S7: lanes: product, the terms' sum with the sign (registered)
  I+15 S8: lanes accumulate (acc register)
  I+16 S9: if the entry was a group's last, the accumulators move to the writeback buffer
  I+17 W0: the writeback unit takes one valid lane per cycle (``wb_words`` 2: two; pixel; RQ port B addressed)
  I+18 W1: RQ thresholds arrive and are registered; output address computed
  I+19 W2: requantizer comparators (registered; a requantizer per word)
  I+20 W3: popcount and level mux (or shift), registered in the requantizer (or the OUT write, RAW layers)
  I+21 W3b: the level registered beside each group of ACT banks, with the write's enable and row
  I+22 W4: write ACT (a bank's registered write)

With lane groups (``cfg.lane_groups`` > 1; docs/hardware.md, "Lane groups") the WGT row holds
``lane_groups`` words (an entry's slots), slots 1.. decode through copies of VAL beside D1..D3, each lane
takes its group's slot's controls in S5, and the fold tree's log2 lane_groups registered levels sit
between S8 and S9: S9 and the writeback come that many cycles later, in every layer.

Flow control is entirely at issue (see ``Sequencer``): nothing downstream ever stalls.
Host ports (ACT, OUT, perf) are synchronous reads: the address of cycle t gives data in cycle t+1
(the perf counters' last write lands at the end of the cycle after done),
ACT's in cycle t+5 (``host_act_latency``: its row registered twice, then it shares the pipeline's registered bank words and its
rotation, registered half-way, ``BankedActMem.rd_pipe``; from 128 lanes on the rotation registered
mid-way, ``rd_data``, where S3 has a second register, S3c).
ACT host access is for when ``busy`` is low. With ``cfg.wgt_ram`` WGT is a RAM with no contents
(``wgt_ram``; SPRAM on the iCE40 UP5K) and the host writes the weight image (wgt.hex, one entry a
word) through ``wgt_we``/``wgt_waddr``/``wgt_wdata`` while ``busy`` is low, before the first start.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import actmem, ecp5, isa
from .actmem import (
    COPY_GROUP,
    HOST_STAGES,
    BankedActMem,
    copies,
    copy_group,
    keep_attrs,
    kept_copies,
    read_latency,
    tail_split,
)
from .config import SPRAM_BITS, SPRAM_WORDS, WGT_BANK_WORDS, AcceleratorConfig
from .isa import TAP_LOG2_BITS
from .lane import LATENCY, lane_ctrl_layout
from .layouts import addr_bits, reject, rom, struct
from .mul_lane import LANE_KINDS, make_lane
from .requant import Requantizer
from .sequencer import Sequencer, issue_layout, pix_bits

PAD_COPY_LANES = 16  # S3's padding register: a copy per COPY_GROUP lanes from this many lanes on
HEX_FILES = {"wgt": "wgt.hex", "rq": "rq.hex", "prog": "prog.hex", "val": "val.hex", "tap": "tap.hex"}


def wgt_copies(cfg: AcceleratorConfig, banked: bool, bank_words: int = WGT_BANK_WORDS, entries: int | None = None) -> int:
    """Copies of the WGT address register (the sequencer's ``w_ptr``): one per ``actmem.COPY_GROUP`` banks of
    the banked WGT ROM (of those holding any of ``entries`` words, where given) where the RTL keeps register
    copies (``actmem.copies``: from 64 lanes on), else one. One ``w_ptr`` drove all 64 WGT DP16KD of the
    64-lane ResNet-20 build on the ECP5-85k: 12.34 ns of routing in its 13.11 ns critical path
    (docs/resources.md)."""
    banks = cfg.wgt_depth // bank_words if entries is None else min(cfg.wgt_depth // bank_words,
                                                                      -(-entries // bank_words))
    if not banked or cfg.wgt_ram or banks <= 1 or copies(cfg) == 1:
        return 1
    return -(-banks // COPY_GROUP)


def pad_copies(cfg: AcceleratorConfig) -> int:
    """Copies of S3's padding-test register (the first lane's tap coordinates ``ty``, ``tx``, the null flag
    and the layer's padding masks): one per ``actmem.COPY_GROUP`` lanes from ``PAD_COPY_LANES`` lanes on,
    else one. Its threshold is lower than the other copies' (``actmem.COPY_LANES``): the one register read
    by every lane's padding test was the critical path of the 64-lane ResNet-20 build on the ECP5-85k
    (6.63 ns of routing to lane 46) and of the 16-lane ResNet-8 build on the ECP5-25k (``s3.ty``, 7.51 ns
    of routing in 10.09 ns; docs/resources.md)."""
    return -(-cfg.lanes // COPY_GROUP) if cfg.lanes >= PAD_COPY_LANES else 1


def rq_cmp_copies(cfg: AcceleratorConfig) -> bool:
    """Whether W2 holds the accumulator value in a copy per threshold comparator (``Requantizer``'s
    ``cmp_copies``), from ``actmem.COPY_LANES`` lanes on: the one ``w2.acc`` register read by all 15
    comparators was the 64-lane ResNet-20 build's critical path on the ECP5-85k (10.95 ns of routing in
    13.04 ns, docs/resources.md). The copies are loaded from W1's register, whose long routes then land in
    a cycle of register-to-register wire."""
    return cfg.lanes >= actmem.COPY_LANES


def rq_thr_stages(cfg: AcceleratorConfig) -> int:
    """Registers between the split RQ's threshold blocks and W2 (``Accelerator``'s ``rq_split``, the ECP5 builds):
    one, or two from ``actmem.COPY_LANES`` lanes on (the row addressed a cycle earlier: the same latency)."""
    return 2 if cfg.lanes >= actmem.COPY_LANES else 1


def rq_thr_outreg(cfg: AcceleratorConfig, dp16kd: bool) -> str | None:
    """"dp16kd" where the split RQ's thresholds are DP16KD instances (``dp16kd``: the ECP5 builds) in their
    1,024 x 18 mode, whose own output register is ``rq_thr_q`` (``rq_rom``; read latency 2): with
    ``rq_thr_stages`` 2 and 513 to 1,024 rows, where Yosys' own mapping takes as many blocks (512 x 36
    PDPW16KD, two a 36-bit slice); else None. The fabric rq_thr_q, fed by the blocks' 5.61 ns clock-to-output,
    was the 64-lane two-word ResNet-20 build's critical path at seed 2 (84.45 MHz: 6.23 ns of routing from
    a block to it). ("sim", for the tests: the same blocks as Amaranth memories, each with its register.)"""
    fits = rq_thr_stages(cfg) == 2 and ecp5.WORDS // 4 < cfg.rq_depth <= ecp5.WORDS // 2
    return "dp16kd" if dp16kd and fits else None


def table_outreg(cfg: AcceleratorConfig, dp16kd: bool) -> str | None:
    """"dp16kd" where the decode tables VAL and TAP are DP16KD instances (``dp16kd``: the ECP5 builds) in their
    1,024 x 18 mode whose own output registers are D3's rows (``outreg_rom``; the address of D1, the same
    latency): from ``actmem.COPY_LANES`` lanes on, each table at most 1,024 rows. The TAP block's 5.83 ns
    clock-to-output and 5.34 ns of routing to the fabric D3 register were the 64-lane two-word ResNet-20
    build's critical path at 89.49 MHz (5bb20b8, seed 3). TAP takes a block more than Yosys' 512 x 36 shape
    (28 bits in two 18-bit slices). ("sim", for the tests: the same slices as memories, each with its register.)"""
    fits = cfg.lanes >= actmem.COPY_LANES and max(cfg.val_depth, cfg.tap_depth) <= ecp5.WORDS // 2
    return "dp16kd" if dp16kd and fits else None


def outreg_rom(m: Module, name: str, width: int, depth: int, init, form: str) -> tuple[Signal, Value]:
    """A ROM of ``width``-bit words read with latency 2, its second register the block's own output register:
    slices of 18 bits, each a DP16KD in its 1,024 x 18 mode (``form`` "dp16kd", ``ecp5.dp16kd_rom``) or an
    Amaranth memory read into a register ("sim", the tests' form: the same words and timing). Returns (the
    blocks' address ``{name}_blk_addr``, the word), as ``layouts.rom`` returns a port."""
    if init is None:
        raise ValueError(f"the DP16KD {name} ROM needs its contents")
    addr = Signal(addr_bits(depth), name=f"{name}_blk_addr")
    w = ecp5.ROW_BITS
    rows = list(init) + [0] * (depth - len(init))
    slices = []
    for k in range(-(-width // w)):
        sl = [(r >> (k * w)) & ((1 << w) - 1) for r in rows]
        if form == "dp16kd":
            slices.append(ecp5.dp16kd_rom(m, f"{name}_blk{k}", addr, sl, w))
        else:
            ((a, d),) = rom(m, f"{name}_blk{k}", w, depth, sl, 1, "memory", "")
            q = Signal(w, name=f"{name}_blk{k}_q")
            m.d.comb += a.eq(addr)
            m.d.sync += q.eq(d)
            slices.append(q)
    return addr, Cat(*slices)[:width]


def tail_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """The group tail: what travels beside the lanes from S4 to the writeback (the channel's last entry,
    the group's first pixel, its valid lanes, the output channel's ACT base and its RQ row)."""
    return data.StructLayout({"last": 1, "p0": pix_bits(cfg), "nvalid": cfg.lane_bits + 1,
                              "ch_base": cfg.addr_bits, "rq_row": cfg.rq_addr_bits})


def later(m: Module, cfg: AcceleratorConfig, word: Signal) -> Signal:
    """A WGT form's word registered once more where the read's latency is 3 (``cfg.wgt_read_latency``, 64
    lanes and more), so that every form has the banked ROM's timing; else the word itself."""
    if cfg.wgt_read_latency == 2:
        return word
    q = Signal.like(word, name=word.name + "_q")
    m.d.sync += q.eq(word)
    return q


def wgt_rom(m: Module, cfg: AcceleratorConfig, width: int, init, rom_style: str, banked: bool,
            bank_words: int = WGT_BANK_WORDS, dp16kd: bool = False, n_addr: int = 1):
    """The weight stream ROM, read latency 2: the address of cycle t gives its word in cycle t+2.

    ``banked``: ``bank_words``-word memories (their contents inlined), each read into a register
    beside it in t+1, and the word chosen among the registers in t+2, so that neither the block RAMs'
    slow outputs nor the wide select across the chip has to fit in one cycle with the other. Else one
    ROM (``apotflow_rom`` loading wgt.hex for ``rom_style`` "readmemh") and its word registered once
    more: the same function and timing, one memory (the co-simulation's form). ``dp16kd`` (ECP5 synthesis,
    banked, ``ecp5.WORDS``-word banks): each bank's 9-bit slices are DP16KD instances whose own output
    register is the bank's register (``hw/ecp5.py``; all-zero slices are constants, as Yosys drops an
    all-zero ROM), so no fabric flip-flop waits on a block RAM's slow output. ``n_addr`` (``wgt_copies``):
    copies of the address, bank g addressed by copy g // ``COPY_GROUP``. Returns (the address copies, data)."""
    abits = cfg.wgt_addr_bits
    addr, out = Signal(abits, name="wgt_addr"), Signal(width, name="wgt_word")
    addrs = [addr, *(Signal(abits, name=f"wgt_addr_g{g}") for g in range(1, n_addr))]
    if not banked or cfg.wgt_depth <= bank_words:
        if n_addr != 1:
            raise ValueError(f"one WGT ROM has one address, not {n_addr}")
        ((a, d),) = rom(m, "wgt", width, cfg.wgt_depth, init, 1, rom_style, HEX_FILES["wgt"])
        m.d.comb += a.eq(addr)
        m.d.sync += out.eq(d)
        return addrs, later(m, cfg, out)
    words = list(init or [])
    lo = (bank_words - 1).bit_length()
    regs = []
    if dp16kd and bank_words != ecp5.WORDS:
        raise ValueError(f"DP16KD WGT banks hold {ecp5.WORDS} words, not {bank_words}")
    for g in range(cfg.wgt_depth // bank_words):
        part = words[g * bank_words:(g + 1) * bank_words]
        bank_addr = addrs[min(g // COPY_GROUP, n_addr - 1)]  # banks past the copies' hold no words
        if dp16kd:
            slices = []
            for s in range(0, width, ecp5.BITS):
                sl = [(w >> s) & ((1 << ecp5.BITS) - 1) for w in part]
                slices.append(ecp5.dp16kd_rom(m, f"wgt_bank{g}_{s // ecp5.BITS}", bank_addr[:lo], sl) if any(sl)
                              else Const(0, ecp5.BITS))
            q = Signal(width, name=f"wgt_bank{g}_q")
            m.d.comb += q.eq(Cat(*slices))
            regs.append(q)
            continue
        mem = Memory(shape=width, depth=bank_words, init=part + [0] * (bank_words - len(part)))
        m.submodules[f"wgt_bank{g}"] = mem
        rp = mem.read_port(domain="sync")
        q = Signal(width, name=f"wgt_bank{g}_q")
        m.d.comb += rp.addr.eq(bank_addr[:lo])
        m.d.sync += q.eq(rp.data)
        regs.append(q)
    # The bank's word chosen by a one-hot select registered twice beside each bank (from its address
    # copy): an AND-OR tree of the 64 banks' words (four LUT levels) instead of a 64:1 multiplexer on a
    # binary index registered once for all banks (six LUT levels; 69.78 MHz at f0a8c45, seed 2).
    picked = []
    for g, q in enumerate(regs):
        bank_addr = addrs[min(g // COPY_GROUP, n_addr - 1)]
        sel_q, sel_qq = Signal(name=f"wgt_sel{g}_q"), Signal(name=f"wgt_sel{g}_qq")
        m.d.sync += [sel_q.eq(bank_addr[lo:] == g), sel_qq.eq(sel_q)]
        picked.append(Mux(sel_qq, q, 0))
    if cfg.wgt_read_latency == 3:
        # (64 lanes and more) the select's first level, the OR of each COPY_GROUP banks' picked words (banks
        # side by side), registered beside them, then the OR of those registers: the tree's routes from the
        # banks spread over the die and its LUT levels no longer fit one cycle together (the 64-lane
        # ResNet-20 build's critical path at two seeds: a bank's word -> the tree -> s1b.word, 8-10 ns of
        # routing in 13-14 ns, docs/resources.md). Latency 3.
        parts = []
        for k in range(0, len(picked), COPY_GROUP):
            part = Signal(width, name=f"wgt_part{k // COPY_GROUP}")
            m.d.sync += part.eq(reduce(operator.or_, picked[k:k + COPY_GROUP]))
            parts.append(part)
        picked = parts
    m.d.comb += out.eq(reduce(operator.or_, picked))
    return addrs, out


def grouped_rows(cfg: AcceleratorConfig, words) -> list[int]:
    """The WGT image of a lane-groups build (``wgt_rom_grouped``): ``lane_groups`` consecutive words a row,
    word a in slot a mod lane_groups of row a // lane_groups (slot k at bits k * entry width)."""
    G, w = cfg.lane_groups, isa.entry_layout(cfg).width
    words = list(words or [])
    words += [0] * (-len(words) % G)
    return [sum(x << (k * w) for k, x in enumerate(words[r:r + G])) for r in range(0, len(words), G)]


def wgt_rom_grouped(m: Module, cfg: AcceleratorConfig, width: int, init, rom_style: str):
    """The WGT ROM of a lane-groups build, read latency 2 as ``wgt_rom``: rows of ``lane_groups`` words
    (``grouped_rows``: the banks interleaved by the low address bits), the row of the address of cycle t
    registered in t+2 and slot j of the entry at that address chosen from it, word (a + j) of the row
    (a is a multiple of 2**grp_log2 in a grouped layer; slot 0 is today's word). Returns ([addr], slots)."""
    G, gm = cfg.lane_groups, cfg.fold_levels
    abits = cfg.wgt_addr_bits
    addr = Signal(abits, name="wgt_addr")
    ((a, d),) = rom(m, "wgt", width * G, cfg.wgt_depth // G, grouped_rows(cfg, init) if init is not None else None,
                    1, rom_style, HEX_FILES["wgt"])
    row, lo_q, lo_qq = Signal(width * G, name="wgt_row"), Signal(gm), Signal(gm)
    m.d.comb += a.eq(addr[gm:])
    m.d.sync += [row.eq(d), lo_q.eq(addr[:gm]), lo_qq.eq(lo_q)]
    words = Array([row[k * width:(k + 1) * width] for k in range(G)])
    slots = []
    for j in range(G):
        s = Signal(width, name=f"wgt_slot{j}")
        m.d.comb += s.eq(words[(lo_qq | j)[:gm]])
        slots.append(later(m, cfg, s))
    return [addr], slots


def wgt_ram(m: Module, cfg: AcceleratorConfig, width: int, spram: bool):
    """The weight stream as a RAM the host writes while the accelerator is idle (``cfg.wgt_ram``: no ROM
    contents, the words come through the host port before the first start), read latency 2 as
    ``wgt_rom``. Single-ported, as SB_SPRAM256KA is: one address, the host's while it writes (``we``),
    else the sequencer's. ``spram`` (iCE40 synthesis): SB_SPRAM256KA instances (16k x 16; SPRAM cannot
    be initialised by the bitstream, hence the host load), an entry's 16-bit slices side by side and
    16k-word slices of the depth stacked, each block's word registered in t+1 and the slice chosen in
    t+2 (as the banked ROM); else one memory (simulation, other targets). Returns (addr, data, we,
    waddr, wdata)."""
    abits = cfg.wgt_addr_bits
    addr, out = Signal(abits, name="wgt_addr"), Signal(width, name="wgt_word")
    we, waddr, wdata = Signal(name="wgt_we"), Signal(abits, name="wgt_waddr"), Signal(width, name="wgt_wdata")
    a = Signal(abits, name="wgt_port_addr")
    m.d.comb += a.eq(Mux(we, waddr, addr))
    if not spram:
        m.submodules.wgt = mem = Memory(shape=width, depth=cfg.wgt_depth, init=[])
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        m.d.comb += [wp.addr.eq(a), wp.data.eq(wdata), wp.en.eq(we), rp.addr.eq(a)]
        m.d.sync += out.eq(rp.data)
        return addr, later(m, cfg, out), we, waddr, wdata
    lo = (SPRAM_WORDS - 1).bit_length()
    n_rows, n_cols = -(-cfg.wgt_depth // SPRAM_WORDS), -(-width // SPRAM_BITS)
    wide, sp_addr = Signal(n_cols * SPRAM_BITS), Signal(lo, name="wgt_spram_addr")
    m.d.comb += [wide.eq(wdata), sp_addr.eq(a)]  # zero-extended (or the low 14 bits of a deeper WGT)
    regs = []
    for r in range(n_rows):
        sel = (a[lo:] == r) if n_rows > 1 else 1
        q = Signal(n_cols * SPRAM_BITS, name=f"wgt_spram{r}_q")
        for c in range(n_cols):
            dout = Signal(SPRAM_BITS, name=f"wgt_spram{r}_{c}_data")
            m.submodules[f"wgt_spram{r}_{c}"] = Instance(
                "SB_SPRAM256KA", i_ADDRESS=sp_addr,
                i_DATAIN=wide[c * SPRAM_BITS:(c + 1) * SPRAM_BITS], i_MASKWREN=Const(0b1111, 4),
                i_WREN=we & sel, i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal("sync"), i_STANDBY=Const(0, 1),
                i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
            m.d.sync += q[c * SPRAM_BITS:(c + 1) * SPRAM_BITS].eq(dout)
        regs.append(q[:width])
    if n_rows == 1:
        m.d.comb += out.eq(regs[0])
        return addr, later(m, cfg, out), we, waddr, wdata
    hi_q, hi_qq = Signal(abits - lo), Signal(abits - lo)
    m.d.sync += [hi_q.eq(a[lo:]), hi_qq.eq(hi_q)]
    m.d.comb += out.eq(Array(regs)[hi_qq])
    return addr, later(m, cfg, out), we, waddr, wdata


def rq_rom(m: Module, cfg: AcceleratorConfig, init, rom_style: str, split: bool, thr_block: int = 0,
           thr_outreg: str | None = None):
    """The RQ ROM's two read ports ``[(addr, data)] * 2``, latency 1: port A for the sequencer's (count,
    bias), port B for the writeback's thresholds (latency 2 with ``thr_outreg``, ``rq_thr_outreg``: the
    thresholds in DP16KD blocks of 18 bits, each word in its block's output register; "sim": the same
    slices as memories, each read into a register). One two-port ROM, or (``split``, the ECP5 builds) two
    copies of the ROM (one rq.hex), one a port, each
    word keeping only its port's fields (the rest reads 0): Yosys drops the bits no port reads, so one
    memory holds (count, bias) and the other the thresholds, each with one read port: the thresholds
    take single-port 36-bit block shapes (ECP5 PDPW16KD: ResNet-8's 256 x 360 bits in 10, where one
    two-port memory of 401-bit rows took 23 DP16KD at 18 bits) and port A's address reaches only the
    (count, bias) blocks. The row layout (``isa.rq_layout``) is unchanged. Not split on iCE40, whose
    blocks are 1R1W: its one ROM of two ports is already two copies, and a small RQ stays in logic there
    (one threshold memory alone would take block RAM by Yosys' cost rule: 23 EBR for the digits net).
    ``thr_block`` (iCE40 ``wgt_ram`` builds, ``estimate.rq_thr_block``): the highest ``thr_block``
    thresholds in a third, one-port copy for port B (block RAM: the EBR the weights left free), the rest
    of the row in the two-port ROM, which stays in logic (marked ``rom_style`` "logic" where it is an
    Amaranth memory; as ``apotflow_rom``, the synthesised form, by Yosys' cost rule, a near tie for a
    two-port ROM on 1R1W blocks: "FF mapping" in the digits builds' yosys.log)."""
    rl = isa.rq_layout(cfg)
    if thr_block and not split:
        cut = rl.width - thr_block * cfg.acc_bits  # the two-port ROM keeps the bits below, the copy the rest
        lo_mask = (1 << cut) - 1
        (a, da), (b, db) = rom(m, "rq", rl.width, cfg.rq_depth, init, 2, rom_style, HEX_FILES["rq"],
                               attrs={"rom_style": "logic"})
        if rom_style == "memory" or init is not None:  # the copy holds only its bits, inlined (a masked
            # copy of the whole row took one EBR more: 18 for the digits net's 11 thresholds, not 17)
            ((bh, dbh),) = rom(m, "rq_thr", rl.width - cut, cfg.rq_depth, [w >> cut for w in init or []], 1,
                               "memory", HEX_FILES["rq"])
            hi = Cat(Const(0, cut), dbh)
        else:  # one rq.hex for both: the copy's word masked
            ((bh, dbh),) = rom(m, "rq_thr", rl.width, cfg.rq_depth, init, 1, rom_style, HEX_FILES["rq"])
            hi = dbh & ~lo_mask
        addr_b = Signal(cfg.rq_addr_bits, name="rq_b_addr")
        word_a, word_b = Signal(rl.width, name="rq_word"), Signal(rl.width, name="rq_thr_word")
        m.d.comb += [b.eq(addr_b), bh.eq(addr_b), word_a.eq(da & lo_mask), word_b.eq((db & lo_mask) | hi)]
        return [(a, word_a), (addr_b, word_b)]
    if not split:
        return rom(m, "rq", rl.width, cfg.rq_depth, init, 2, rom_style, HEX_FILES["rq"])
    cut = rl.offsets["thr0"]  # count and bias below, the thresholds above
    ports = []
    for name, keep in (("rq", (1 << cut) - 1), ("rq_thr", ((1 << rl.width) - 1) ^ ((1 << cut) - 1))):
        word = Signal(rl.width, name=f"{name}_word")
        if name == "rq_thr" and thr_outreg:
            addr, thr = outreg_rom(m, "rq_thr", rl.width - cut, cfg.rq_depth, [r >> cut for r in init], thr_outreg)
            m.d.comb += word.eq(Cat(Const(0, cut), thr))
        else:
            ((addr, data),) = rom(m, name, rl.width, cfg.rq_depth, init, 1, rom_style, HEX_FILES["rq"])
            m.d.comb += word.eq(data & keep)
        ports.append((addr, word))
    return ports


def host_act_latency(cfg: AcceleratorConfig) -> int:
    """Cycles from host_addr to host_rdata on the ACT port (OUT and perf ports: one): 5. The host's row
    and rotation are registered twice (``actmem.HOST_STAGES``: the row once, then in a copy per group of banks;
    one register before s31, 4 cycles), then it reads
    lane 0 of the pipeline's read (``rd_pipe``, whose rotation has a register half-way; from 128 lanes on
    ``rd_data``, registered mid-way): with the whole rotation in one cycle (2 before s19) the host's
    64-way select from the banks to the serial shell's capture register was the 64-lane ResNet-8
    build's critical path (13.75 ns at f92babb, docs/resources.md)."""
    return HOST_STAGES + (read_latency(cfg) + 1 if read_latency(cfg) == 2 else read_latency(cfg))


def accelerator_signature(cfg: AcceleratorConfig) -> dict:
    wgt = {"wgt_we": In(1), "wgt_waddr": In(cfg.wgt_addr_bits), "wgt_wdata": In(isa.entry_layout(cfg).width)} \
        if cfg.wgt_ram else {}  # the host's WGT write port (a wgt_ram build only)
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
        **wgt,
    }


class Accelerator(wiring.Component):
    """The whole machine. ``images`` gives the ROM contents for rom_style="memory" (None: zeros);
    rom_style="readmemh" instantiates ``apotflow_rom`` loading wgt.hex / rq.hex / prog.hex / val.hex / tap.hex."""

    def __init__(self, cfg: AcceleratorConfig, images: isa.MemoryImages | None = None,
                 rom_style: str = "memory", act_init=None, lane_kind: str = "shift", wgt_banked: bool | None = None,
                 wgt_bank_words: int = WGT_BANK_WORDS, rq_split: bool = False, wgt_spram: bool = False,
                 rq_thr_block: int = 0, dp16kd: bool = False, act_outreg: str | None = None,
                 act_split: bool = True):
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"Accelerator needs an AcceleratorConfig, not {cfg!r}"))
        if rom_style not in ("memory", "readmemh"):
            reject(self, ValueError(f"rom_style must be 'memory' or 'readmemh', not {rom_style!r}"))
        if images is not None:
            if images.config != cfg:
                reject(self, ValueError("the memory images were built for a different AcceleratorConfig"))
            images.check()
        if cfg.lane_groups > 1 and (cfg.wgt_ram or dp16kd or cfg.wgt_depth < cfg.lane_groups):
            reject(self, ValueError(f"lane groups (lane_groups {cfg.lane_groups}) are built with a WGT ROM of "
                                    "lane_groups words a row only: not with wgt_ram or dp16kd, and wgt_depth >= "
                                    "lane_groups"))
        if cfg.out_depth > cfg.act_depth:
            reject(self, ValueError(f"out_depth ({cfg.out_depth}) must not exceed act_depth ({cfg.act_depth})"))
        if cfg.bank_depth < 2:
            reject(self, ValueError(f"act_depth ({cfg.act_depth}) must be at least 2 x lanes ({cfg.lanes})"))
        if lane_kind not in LANE_KINDS:
            reject(self, ValueError(f"lane_kind must be one of {', '.join(LANE_KINDS)}, not {lane_kind!r}"))
        self.cfg, self.images, self.rom_style, self.act_init = cfg, images, rom_style, act_init
        self.lane_kind = lane_kind  # "mul": the multiplier baseline (hw/mul_lane.py), same results
        # WGT in banks with registered outputs (wgt_rom): the synthesised form (contents inlined, so it needs
        # the images) and the Amaranth simulation's; the co-simulation reads one wgt.hex ROM of equal timing.
        if wgt_banked and rom_style == "readmemh" and images is None:
            reject(self, ValueError("a banked WGT ROM in readmemh style needs the memory images"))
        self.wgt_banked = rom_style == "memory" if wgt_banked is None else wgt_banked
        self.wgt_bank_words = wgt_bank_words
        self.rq_split = rq_split  # RQ as two one-port memories (rq_rom): the ECP5/Xilinx builds
        if wgt_spram and not cfg.wgt_ram:
            reject(self, ValueError("wgt_spram needs a config with wgt_ram (WGT written by the host)"))
        self.wgt_spram = wgt_spram  # the wgt_ram WGT as SB_SPRAM256KA instances (wgt_ram): iCE40 builds
        if not 0 <= rq_thr_block < cfg.max_levels or (rq_thr_block and rq_split):
            reject(self, ValueError(f"rq_thr_block must be 0..{cfg.max_levels - 1} and not with rq_split, "
                                    f"not {rq_thr_block!r}"))
        # ECP5 builds: the banked WGT ROM as DP16KD instances whose own output registers hold the words read
        # (hw/ecp5.py); ``act_outreg`` (hw/actmem.py): "dp16kd", the ACT banks' block parts likewise (where
        # they are block RAM: flows.build.act_outreg), "sim" the same form simulated (tests)
        self.dp16kd = dp16kd
        self.act_outreg = act_outreg
        self.act_split = act_split  # False: each ACT bank one memory, no LUT-RAM tail (actmem.tail_split; iCE40)
        self.rq_thr_block = rq_thr_block  # thresholds in a one-port block-RAM copy (rq_rom): iCE40 wgt_ram builds
        super().__init__(accelerator_signature(cfg))

    def elaborate(self, platform):
        cfg, img = self.cfg, self.images
        m = Module()
        L = cfg.lanes
        pb = pix_bits(cfg)
        el, rl, dl = isa.entry_layout(cfg), isa.rq_layout(cfg), isa.desc_layout(cfg)
        vl, tl, xl = isa.val_layout(cfg), isa.tap_layout(cfg), isa.decoded_layout(cfg)

        grouped = cfg.lane_groups > 1  # lane groups (docs/hardware.md, "Lane groups"): the G-word WGT read, a
        # value decode per slot, each lane's controls from its group's slot, the fold tree before the writeback
        n_wgt = 1 if cfg.wgt_ram or grouped else wgt_copies(cfg, self.wgt_banked, self.wgt_bank_words, img and len(img.wgt))
        m.submodules.seq = seq = Sequencer(cfg, n_wgt)
        m.submodules.act = act = BankedActMem(
            cfg, self.act_init, style="verilog" if self.rom_style == "readmemh" and self.act_init is None else "memory",
            split_rows=tail_split(cfg) if self.act_split else None, outreg=self.act_outreg)
        # one requantizer per word the writeback takes a cycle (wb_words): rqu, rqu_b
        rqus = [Requantizer(cfg, cmp_copies=rq_cmp_copies(cfg)) for _ in range(cfg.wb_words)]
        for w, r in enumerate(rqus):
            m.submodules["rqu" + ("_b" if w else "")] = r
        lanes = [make_lane(cfg, self.lane_kind) for _ in range(L)]
        for i, ln in enumerate(lanes):
            m.submodules[f"lane{i}"] = ln

        if cfg.wgt_ram:  # written by the host while idle (as ACT), never while a run reads it
            wgt_addr, wgt_data, wgt_we, wgt_waddr, wgt_wdata = wgt_ram(m, cfg, el.width, self.wgt_spram)
            wgt_addrs = [wgt_addr]
            m.d.comb += [wgt_we.eq(self.wgt_we & seq.idle), wgt_waddr.eq(self.wgt_waddr),
                         wgt_wdata.eq(self.wgt_wdata)]
        elif grouped:
            wgt_addrs, wgt_slots = wgt_rom_grouped(m, cfg, el.width, img and img.wgt, self.rom_style)
            wgt_data = wgt_slots[0]
        else:
            wgt_addrs, wgt_data = wgt_rom(m, cfg, el.width, img and img.wgt, self.rom_style, self.wgt_banked,
                                           self.wgt_bank_words, self.dp16kd, n_wgt)
        thr_outreg = rq_thr_outreg(cfg, self.dp16kd) if self.rq_split else None
        rq_a, rq_b = rq_rom(m, cfg, img and img.rq, self.rom_style, self.rq_split, self.rq_thr_block, thr_outreg)
        (prog_port,) = rom(m, "prog", dl.width, cfg.prog_depth, img and img.prog, 1, self.rom_style, HEX_FILES["prog"])
        tables = table_outreg(cfg, self.dp16kd)
        if tables:  # VAL and TAP in blocks whose output registers are D3's rows (table_outreg): ports (addr, row)
            val_port = outreg_rom(m, "val", vl.width, cfg.val_depth, img and img.val, tables)
            tap_port = outreg_rom(m, "tap", tl.width, cfg.tap_depth, img and img.tap, tables)
            vrow, trow = struct(vl)(val_port[1]), struct(tl)(tap_port[1])
        else:
            (val_port,) = rom(m, "val", vl.width, cfg.val_depth, img and img.val, 1, self.rom_style, HEX_FILES["val"])
            (tap_port,) = rom(m, "tap", tl.width, cfg.tap_depth, img and img.tap, 1, self.rom_style, HEX_FILES["tap"])

        if cfg.wb_words == 1:
            m.submodules.outmem = outmem = Memory(shape=signed(cfg.acc_bits), depth=cfg.out_depth, init=[])
            out_rds, out_wrs = [outmem.read_port()], [outmem.write_port()]
        else:
            # two words a cycle: OUT as two memories, the even and the odd addresses (word a at a >> 1 of memory
            # a mod 2), one write port each, as the ACT banks are split between the two write ports: one memory
            # with two write ports became flip-flops whose write decode was the 64-lane two-word ResNet-20
            # build's critical path at a seed (w3.addr -> the decode -> 6.62 ns of routing -> a word's enable)
            half = max(1, cfg.out_depth // 2)
            mems = [Memory(shape=signed(cfg.acc_bits), depth=half, init=[]) for _ in range(2)]
            m.submodules.outmem, m.submodules.outmem_b = mems
            out_rds, out_wrs = [mm.read_port() for mm in mems], [mm.write_port() for mm in mems]
        m.submodules.perfmem = perfmem = Memory(shape=32, depth=cfg.prog_depth, init=[])
        perf_rd, perf_wr = perfmem.read_port(), perfmem.write_port()

        m.d.comb += [
            seq.start.eq(self.start), self.busy.eq(seq.busy), self.done.eq(seq.done),
            self.cycles.eq(seq.cycles),
            prog_port[0].eq(seq.prog_addr), seq.prog_data.eq(prog_port[1]),
            rq_a[0].eq(seq.rq_addr), seq.rq_data.eq(rq_a[1]),
            *((wgt_addrs[0].eq(seq.wgt_addr),) if n_wgt == 1 else (a.eq(seq.wgt_addr[g]) for g, a in enumerate(wgt_addrs))),
            perf_rd.addr.eq(self.perf_addr), self.perf_rdata.eq(perf_rd.data),
            *(r.addr.eq(self.out_addr >> (cfg.wb_words - 1)) for r in out_rds),
        ]
        if cfg.wb_words == 1:
            m.d.comb += self.out_rdata.eq(out_rds[0].data)
        else:  # the host's word from the memory of its address's parity (registered with the read)
            out_odd = Signal()
            m.d.sync += out_odd.eq(self.out_addr[0])
            m.d.comb += self.out_rdata.eq(Mux(out_odd, out_rds[1].data, out_rds[0].data))
        # The perf write (a layer's cycle count) registered: the sequencer's layer-start decode and pc - 1
        # reach a flip-flop, not the LUT RAM's write port (the trained ResNet-8 ECP5-25k build's critical
        # path, settle -> perfmem write address). It lands a cycle later: the counters are read after done.
        perf_q = Signal(data.StructLayout({"we": 1, "addr": cfg.prog_addr_bits, "data": 32}), name="perf_q")
        m.d.sync += [perf_q.we.eq(seq.perf_we), perf_q.addr.eq(seq.perf_waddr), perf_q.data.eq(seq.perf_wdata)]
        m.d.comb += [perf_wr.addr.eq(perf_q.addr), perf_wr.data.eq(perf_q.data), perf_wr.en.eq(perf_q.we)]
        desc = seq.desc
        wl, hl = desc.wo_log2, desc.ho_log2
        # Layer constants from the descriptor, registered (one cycle behind desc: a layer's first entry
        # reaches S1 two cycles after the descriptor is latched, and the previous layer's writes in
        # flight at that moment are past W1). Masks instead of compares: no carry chain on them.
        wo, wmask, hi_mask, q = Signal(pb + 1), Signal(pb), Signal(pb), Signal(pb)
        m.d.sync += [wo.eq(1 << wl), wmask.eq((1 << wl) - 1), hi_mask.eq(~((2 << wl) - 1)),
                     q.eq(1 << (hl + wl) >> 2)]
        # The padding test's masks (S2a, S3): a coordinate t + off (off < 2**lw, a lane's offset) is split at
        # the lane bits, t = hi * 2**lw + lo; (hm, sm) = ones below max(log2 - lw, 0) and min(log2, lw).
        # hm is registered here, sm in each S3 padding copy (below).
        lw = max(1, cfg.lane_bits)
        hb = pb + 2 - lw  # bits of hi (signed)
        # The padding's constants come from local copies of wo_log2 and ho_log2 (pad_wl, pad_hl: a cycle behind
        # desc, the masks and lane offsets a cycle or two more; a layer's first entry reaches S2a ten cycles
        # after the descriptor is latched): desc -> the lane offsets' logic -> yoff was the 64-lane ResNet-20
        # build's critical path at two seeds (10.42 ns of routing in 12.55 ns at one).
        # From them a copy per padding copy group (pad_wl_g*, pad_hl_g*, kept apart: a cycle more), from which
        # each group's lanes take their offsets and its S3 copy its low masks: pad_wl driving every lane's
        # offsets and all sixteen S3 copies' masks across the die was the build's critical path at 53c1e96,
        # seed 1 (pad_wl -> the mask logic -> 9.18 ns of routing in 11.3 ns -> s3_pad_g8).
        pwl, phl = Signal.like(wl, name="pad_wl"), Signal.like(hl, name="pad_hl")
        m.d.sync += [pwl.eq(wl), phl.eq(hl)]
        n_pad = pad_copies(cfg)
        pwl_g, phl_g = [pwl], [phl]
        if n_pad > 1:
            pwl_g, phl_g = (kept_copies(cfg, nm, len(v), n=n_pad) for nm, v in (("pad_wl", wl), ("pad_hl", hl)))
            m.d.sync += [*(c.eq(pwl) for c in pwl_g), *(c.eq(phl) for c in phl_g)]
        yhm, xhm = Signal(hb, name="pad_yhm"), Signal(hb, name="pad_xhm")
        m.d.sync += [hm.eq((1 << Mux(lg > lw, (lg - lw).as_unsigned(), 0)) - 1) for hm, lg in ((yhm, phl), (xhm, pwl))]
        lb = cfg.lane_bits
        row_bits = cfg.addr_bits - lb

        # S1: the stream entry arrives and is registered as it is (S1b: nothing behind the ROM's slow
        # output). S1b: the position of its output channel's walk (restarted at a group's first entry, from
        # 0 or, in a diag layer, channel << diag_log2) is updated and registered with the code (D1).
        s1 = Signal(issue_layout(cfg))
        m.d.sync += s1.eq(seq.issue)
        s1a = Signal(issue_layout(cfg))  # the WGT read's second cycle (its banks' registered words, see wgt_rom)
        m.d.sync += s1a.eq(s1)
        s1c = s1a  # the WGT read's third cycle, from 64 lanes on (its bank select's first level registered)
        if cfg.wgt_read_latency == 3:
            s1c = Signal(issue_layout(cfg), name="s1c")
            m.d.sync += s1c.eq(s1a)
        s1b = Signal(data.StructLayout({"iss": issue_layout(cfg), "word": struct(el)}))
        m.d.sync += [s1b.iss.eq(s1c), s1b.word.eq(wgt_data)]
        word = s1b.word
        pos = Signal(cfg.pos_width)
        step = Mux(word.code == 0, word.delta << cfg.pos_bits, word.delta)
        if grouped:  # slots 1.. of a grouped entry: their codes (0 past the layer's 2**grp_log2 slots)
            Gm = cfg.lane_groups
            grp = Signal(range(cfg.fold_levels + 1), name="grp")  # layer constant, registered
            m.d.sync += grp.eq(desc.grp_log2)
            s1b_codes = Signal(data.ArrayLayout(cfg.code_bits, Gm), name="s1b_codes")
            m.d.sync += [s1b_codes[j].eq(Mux((j >> grp) == 0, struct(el)(wgt_slots[j]).code, 0)) for j in range(1, Gm)]
            filler = (word.code == 0) & (Cat(*(s1b_codes[j] for j in range(1, Gm))) == 0)  # every slot's code 0
            step = Mux(filler, word.delta << cfg.pos_bits, word.delta)
        with m.If(s1b.iss.valid):
            m.d.sync += pos.eq(Mux(s1b.iss.first, s1b.iss.pos0, pos) + step)
        d1 = Signal(data.StructLayout({"iss": issue_layout(cfg), "code": cfg.code_bits}))
        m.d.sync += [d1.iss.eq(s1b.iss), d1.code.eq(word.code)]
        # D1: the layer's value table (row code) and tap table (row pos mod 2**tap_log2; the table is
        # aligned, so an OR) are addressed; the input channel pos >> tap_log2 is registered (D2).
        tmask = Signal(1 << TAP_LOG2_BITS)
        m.d.sync += tmask.eq((1 << desc.tap_log2) - 1)
        m.d.comb += [val_port[0].eq(Cat(d1.code, desc.val_base)), tap_port[0].eq(desc.tap_base | (pos & tmask))]
        dl2 = data.StructLayout({"iss": issue_layout(cfg), "real": 1, "ic": cfg.addr_bits})
        d2 = Signal(dl2)
        m.d.sync += [d2.iss.eq(d1.iss), d2.real.eq(d1.code != 0), d2.ic.eq(pos >> desc.tap_log2)]
        # D2: the rows arrive and are registered as they are (D3; ``tables``: in the blocks' output registers).
        d3 = Signal(data.StructLayout({"d": dl2} | ({} if tables else {"v": struct(vl), "t": struct(tl)})))
        m.d.sync += d3.d.eq(d2)
        if not tables:
            m.d.sync += [d3.v.eq(val_port[1]), d3.t.eq(tap_port[1])]
            vrow, trow = d3.v, d3.t
        d3_p0_row1 = Signal(row_bits, name="d3_p0_row1")  # p0's ACT row + 1, for D3's second address
        m.d.sync += d3_p0_row1.eq((d2.iss.p0 >> lb) + 1)
        if grouped:  # slots 1..: their value-table rows (a copy of VAL each), registered beside d1..d3
            d1_codes = Signal(data.ArrayLayout(cfg.code_bits, Gm), name="d1_codes")
            gvl = data.StructLayout({"v": struct(vl), "real": 1})
            m.d.sync += d1_codes.eq(s1b_codes)
            d2_real, d3_slots = Signal(Gm, name="d2_real"), Signal(data.ArrayLayout(gvl, Gm), name="d3_slots")
            for j in range(1, Gm):
                (vport,) = rom(m, f"val_s{j}", vl.width, cfg.val_depth, img and img.val, 1, self.rom_style,
                               HEX_FILES["val"])
                m.d.comb += vport[0].eq(Cat(d1_codes[j], desc.val_base))
                m.d.sync += [d2_real[j].eq(d1_codes[j] != 0), d3_slots[j].v.eq(vport[1]), d3_slots[j].real.eq(d2_real[j])]
        # D3: the first lane's ACT address off + p0, off = tap.off + (ic << tap.ch_shift): its row R and
        # rotation (off mod lanes: p0 is a multiple of lanes, its low bits are left out) and the row R + 1
        # (p0's row + 1, computed in D2), each one carry chain behind a LUT level (three operands; the two in
        # parallel), registered (S2): S2's registers feed the row copies with nothing between (an adder
        # there, before the copies spread over the die, was the ECP5-85k build's critical path). A filler's
        # terms are disabled. The decoded entry is registered (S2; ``ent.off`` is not kept: the rows are),
        # with the first lane's output coordinates from p0. (The TAP block -> the shift and adders -> row1 is a
        # critical path of the 64-lane ResNet-20 build at some seeds; a register splitting it, D3b, made the
        # placement congest at five of six seeds: docs/resources.md, s32.)
        d3i = d3.d.iss
        s2 = Signal(data.StructLayout({"iss": issue_layout(cfg), "ent": struct(xl), "oy0": pb, "ox0": pb,
                                       "row": row_bits, "row1": row_bits, "rot": max(1, lb)}))
        ch_off, base = Signal(cfg.addr_bits, name="d3_ch_off"), Signal(cfg.addr_bits, name="d3_base")
        p0_base = (d3i.p0 >> lb) << lb
        m.d.comb += [ch_off.eq(d3.d.ic << trow.ch_shift), base.eq(trow.off + ch_off + p0_base)]
        m.d.sync += [
            s2.iss.eq(d3i), s2.ent.sign.eq(vrow.sign), s2.ent.real.eq(d3.d.real),
            s2.ent.dy.eq(trow.dy), s2.ent.dx.eq(trow.dx),
            s2.row.eq(base >> lb), s2.rot.eq(base[:lb] if lb else 0),
            s2.row1.eq((trow.off + ch_off + (d3_p0_row1 << lb))[lb:cfg.addr_bits]),
            s2.oy0.eq(d3i.p0 >> wl), s2.ox0.eq(d3i.p0 & wmask),
        ]
        for t in range(cfg.terms):
            m.d.sync += [getattr(s2.ent, f"en{t}").eq(getattr(vrow, f"en{t}") & d3.d.real),
                         getattr(s2.ent, f"s{t}").eq(getattr(vrow, f"s{t}"))]
        if grouped:  # slots 1..: sign, enables (a slot with code 0 has none), shifts; they follow s2 .. s3b (s3c)
            gsl = data.ArrayLayout(data.StructLayout({"sign": 1, "real": 1, "en": data.ArrayLayout(1, cfg.terms),
                                                      "s": data.ArrayLayout(cfg.shift_bits, cfg.terms)}), Gm)
            gx = [Signal(gsl, name="gx_s2")]
            for j in range(1, Gm):
                sv = d3_slots[j]
                m.d.sync += [gx[0][j].sign.eq(sv.v.sign), gx[0][j].real.eq(sv.real)]
                m.d.sync += [gx[0][j].en[t].eq(getattr(sv.v, f"en{t}") & sv.real) for t in range(cfg.terms)]
                m.d.sync += [gx[0][j].s[t].eq(getattr(sv.v, f"s{t}")) for t in range(cfg.terms)]
            for nm in ("s2a", "s2b", "s3", "s3b") + (("s3c",) if read_latency(cfg) == 3 else ()):
                gx.append(Signal(gsl, name=f"gx_{nm}"))
                m.d.sync += gx[-1].eq(gx[-2])

        # S2: address the banks with row R (R + 1 in banks b < rot), as computed in D3. Padding mask per lane.
        rd_row, rd_row1, rd_rot = s2.row, s2.row1, s2.rot
        # S2a: the rows registered in BankedActMem, a copy per group of banks (then, S2b, each bank's row
        # beside it); the entry waits for its bank words in s2a, s2b.
        s2_layout = s2.shape()
        s2a, s2b = Signal(s2_layout, name="s2a"), Signal(s2_layout, name="s2b")
        m.d.sync += [s2a.eq(s2), s2b.eq(s2a)]
        # Padding mask, over S2 and S3: lane l's output pixel p0 + l has coordinates (oy0 + yoff_l,
        # ox0 + xoff_l) with per-layer lane offsets (registered layer constants): a row of >= lanes
        # pixels holds the whole group (yoff 0, xoff l; ox0 is a multiple of lanes), else the group
        # spans rows (yoff l >> wo_log2, xoff l & (wo-1); ox0 = 0). S2a adds dy, dx once for all lanes.
        # Lane l's offsets from its padding group's copies (``pad_copies``: lane l reads copy l // COPY_GROUP).
        pad_grp = COPY_GROUP if n_pad > 1 else L
        yoff = [Signal(lw, name=f"yoff{l}") for l in range(L)]
        xoff = [Signal(lw, name=f"xoff{l}") for l in range(L)]
        for l in range(L):
            gwl, ghl = pwl_g[l // pad_grp], phl_g[l // pad_grp]
            wide_row = gwl >= cfg.lane_bits
            m.d.sync += [yoff[l].eq(Mux(wide_row, 0, (l >> gwl) & ((1 << ghl) - 1) if grouped else l >> gwl)),
                         xoff[l].eq(Mux(wide_row, l, l & ((1 << gwl) - 1)))]
        # S2a: the first lane's tap coordinates (ty, tx) = (oy0 + dy, ox0 + dx) and the tests of their high
        # bits, registered (S2b). S3's per-lane padding test, 0 <= t + off_l < 2**log2 for (ty, yoff, ho_log2)
        # and (tx, xoff, wo_log2), without a full-width adder per lane: with t = hi * 2**lw + lo and
        # lo + off_l = c * 2**lw + s (an lw-bit add), t + off_l = (hi + c) * 2**lw + s is in range iff hi + c
        # is in [0, 2**max(log2 - lw, 0)) and s in [0, 2**min(log2, lw)). The two tests of hi (c = 0:
        # ``ok0``, c = 1: ``ok1``) do not depend on the lane: they are made here, once; each lane chooses by
        # its carry.
        pad_fields = {}
        for nm, o0, d, hm in (("y", s2a.oy0, s2a.ent.dy, yhm), ("x", s2a.ox0, s2a.ent.dx, xhm)):
            t = Signal(signed(pb + 2), name=f"pad_t{nm}")
            m.d.comb += t.eq(o0 + d)  # bench/mutants.py locates this line
            hi = t >> lw
            ok0, ok1 = Signal(name=f"pad_{nm}ok0"), Signal(name=f"pad_{nm}ok1")
            m.d.comb += [ok0.eq((hi.as_unsigned() & ~hm) == 0),  # hi in [0, 2**max(log2 - lw, 0))
                         ok1.eq((hi == -1) | (ok0 & ((hi.as_unsigned() & hm) != hm)))]  # hi + 1 in it
            pad_fields.update({f"{nm}lo": t.as_unsigned()[:lw], f"{nm}ok0": ok0, f"{nm}ok1": ok1})
        t2 = Signal(data.StructLayout({k: len(v) for k, v in pad_fields.items()}), name="pad_t")
        m.d.sync += [getattr(t2, k).eq(v) for k, v in pad_fields.items()]
        s3 = Signal(data.StructLayout({"iss": issue_layout(cfg), "ent": struct(xl)}))
        m.d.sync += [s3.iss.eq(s2b.iss), s3.ent.eq(s2b.ent)]
        # S3 has them in a copy per group of COPY_GROUP lanes (``pad_copies``, kept apart), each with the null
        # flag and the low masks its lanes' tests read: one register (s3.tx) read by all 64 lanes' padding
        # tests was the 64-lane ResNet-20 build's critical path (6.63 ns of routing in 12.65 ns,
        # docs/resources.md).
        pad_layout = data.StructLayout({**{k: len(v) for k, v in pad_fields.items()}, "null": 1, "ysm": lw, "xsm": lw})
        pad = kept_copies(cfg, "s3_pad", pad_layout, n=n_pad)
        for c, gwl, ghl in zip(pad, pwl_g, phl_g):
            ysm, xsm = ((1 << Mux(lg > lw, lw, lg)) - 1 for lg in (ghl, gwl))
            m.d.sync += [*(getattr(c, k).eq(getattr(t2, k)) for k in pad_fields), c.null.eq(s2b.iss.null),
                         c.ysm.eq(ysm), c.xsm.eq(xsm)]
        mask = Signal(L)
        for l in range(L):
            c, ok = pad[l // pad_grp], []
            for lo, sm, off, ok0, ok1, nm in ((c.ylo, c.ysm, yoff, c.yok0, c.yok1, "y"),
                                              (c.xlo, c.xsm, xoff, c.xok0, c.xok1, "x")):
                cs = Signal(lw + 1, name=f"pad_{nm}{l}")
                m.d.comb += cs.eq(lo + off[l])
                ok.append(Mux(cs[lw], ok1, ok0) & ((cs[:lw] & ~sm) == 0))
            m.d.comb += mask[l].eq(ok[0] & ok[1])
        s3b_layout = data.StructLayout({"iss": issue_layout(cfg), "ent": struct(xl), "mask": L})
        s3b = Signal(s3b_layout)
        m.d.sync += [s3b.iss.eq(s3.iss), s3b.ent.eq(s3.ent)]
        m.d.sync += s3b.mask.eq(Cat(*(Mux(c.null, 0, mask[g * pad_grp:(g + 1) * pad_grp]) for g, c in enumerate(pad))))
        s4in, s3c_valid = s3b, 0
        if read_latency(cfg) == 3:  # S3c: the ACT rotation's mid-way register (128 lanes and more)
            s4in = Signal(s3b_layout, name="s3c")
            m.d.sync += s4in.eq(s3b)
            s3c_valid = s4in.iss.valid

        # S4: the bank words' rotation to lanes, registered after its first stages in BankedActMem
        # (``actmem.pipe_split``); the padding mask registered.
        tail = tail_layout(cfg)
        s4 = Signal(data.StructLayout({"ctrl": lane_ctrl_layout(cfg), "mask": L, "tail": tail}))
        m.d.sync += [
            s4.ctrl.valid.eq(s4in.iss.valid), s4.ctrl.first.eq(s4in.iss.first), s4.ctrl.sign.eq(s4in.ent.sign),
            s4.ctrl.bias.eq(s4in.iss.bias), s4.ctrl.rmax.eq(desc.rmax & s4in.ent.real & ~s4in.iss.null),
            s4.tail.last.eq(s4in.iss.valid & s4in.iss.last), s4.tail.p0.eq(s4in.iss.p0),
            s4.tail.nvalid.eq(s4in.iss.nvalid), s4.tail.ch_base.eq(s4in.iss.ch_base), s4.tail.rq_row.eq(s4in.iss.rq_row),
        ]
        for t in range(cfg.terms):
            m.d.sync += [s4.ctrl.en[t].eq(getattr(s4in.ent, f"en{t}")), s4.ctrl.s[t].eq(getattr(s4in.ent, f"s{t}"))]
        m.d.sync += s4.mask.eq(s4in.mask)

        # S5: the rest of the rotation (``act.rd_pipe``), padding masked, each lane's operand registered
        # next to its lane (S4 sits towards the banks: 2.8 ns of routing into the lane otherwise). The
        # controls: a copy per group of copy_group lanes (4 from 64 lanes on), kept apart in synthesis (``keep_attrs``: one
        # register for all 64 lanes was the 64-lane ResNet-8 build's critical path, 13.77 of its 15.24 ns
        # routing), so each lane's S2/S3 controls and shift decode come from its group's copy too.
        if grouped:  # slot j's controls (S4; bias 0: group 0 alone starts from it); S5: lane l's from its
            # group's slot l >> (lane_bits - grp_log2), a register per lane
            sctrl = [s4.ctrl]
            gxs = gx[-1]
            for j in range(1, Gm):
                c = Signal(lane_ctrl_layout(cfg), name=f"ctrl_slot{j}")
                m.d.sync += [c.valid.eq(s4in.iss.valid), c.first.eq(s4in.iss.first), c.sign.eq(gxs[j].sign),
                             c.rmax.eq(desc.rmax & gxs[j].real & ~s4in.iss.null), c.bias.eq(0),
                             c.en.eq(gxs[j].en), c.s.eq(gxs[j].s)]
                sctrl.append(c)
            lb_ = cfg.lane_bits
            ctrl5 = [Signal(lane_ctrl_layout(cfg), name=f"ctrl5_l{l}") for l in range(L)]
            for l in range(L):
                m.d.sync += ctrl5[l].eq(Array([sctrl[l >> (lb_ - g)].as_value()
                                               for g in range(cfg.fold_levels + 1)])[grp])
        else:  # with S5b below, S5 has a copy per COPY_GROUP of S5b's copies (a tree: 1 -> 4 -> 16 at 64 lanes)
            ctrl5 = kept_copies(cfg, "ctrl5", lane_ctrl_layout(cfg),
                                n=-(-copies(cfg) // COPY_GROUP) if cfg.operand_stages == 2 else None)
            m.d.sync += [c.eq(s4.ctrl) for c in ctrl5]
        if cfg.operand_stages == 2:
            # S5b (64 lanes and more): the controls again, a copy per group (per lane with lane groups), and below
            # each operand again, beside its lane: S5's register sits between the rotation and the lane, and the
            # route from it to the lane's shifters was the 64-lane two-word ResNet-20 build's critical path at
            # seed 3 (lane 14's operand: 7.84 ns of routing in 11.58 ns)
            # (kept apart like the copies they come from; a lane-groups build's per-lane ones are not kept, so
            # Yosys merges the lanes' identical registers, as it merges S5's). Without lane groups S5b's copy g
            # is loaded from S5's copy g // COPY_GROUP: S4's controls to sixteen S5 copies across the die were
            # the 64-lane ResNet-20 build's critical path at 79265ea, seed 3 (10.65 ns of routing in 11.41 ns)
            n5b = cfg.lanes if grouped else copies(cfg)
            ctrl5b = [Signal(lane_ctrl_layout(cfg), name=f"ctrl5b_{i}", attrs={} if grouped else keep_attrs())
                      for i in range(n5b)]
            m.d.sync += [b.eq(ctrl5[i] if grouped else ctrl5[i // COPY_GROUP]) for i, b in enumerate(ctrl5b)]
            ctrl5 = ctrl5b
        for l, ln in enumerate(lanes):
            a_l = Signal(cfg.act_bits, name=f"lane{l}_a")
            m.d.sync += a_l.eq(Mux(s4.mask[l], act.rd_pipe[l], 0))
            if cfg.operand_stages == 2:
                a_q = Signal(cfg.act_bits, name=f"lane{l}_a_q")
                m.d.sync += a_q.eq(a_l)
                a_l = a_q
            m.d.comb += [ln.ctrl.eq(ctrl5[l] if grouped else ctrl5[l // copy_group(cfg)]), ln.a.eq(a_l)]
        s4b = Signal(tail)
        m.d.sync += s4b.eq(s4.tail)

        # S6..S8: lanes (shifted terms | product | accumulate, LATENCY cycles); the tail follows (and through S5b).
        tails = [s4b]
        for k in range(LATENCY + cfg.operand_stages - 1 + cfg.fold_levels):
            tails.append(Signal(tail, name=f"tail_s{7 + k}"))
            m.d.sync += tails[-1].eq(tails[-2])
        s5 = tails[-1]  # in S9 with the group's accumulators
        accs = [ln.acc for ln in lanes]
        # The fold tree (lane groups): level k, stride lanes >> (k + 1), adds lane l + stride into lane l < stride
        # in a layer of more than k + 1 ... groups (k < grp_log2), else passes every lane; registered a level.
        for k in range(cfg.fold_levels):
            stride = L >> (k + 1)
            nxt = [Signal(signed(cfg.acc_bits), name=f"fold{k}_{l}") for l in range(L)]
            for l in range(L):
                m.d.sync += nxt[l].eq(Mux(grp > k, accs[l] + accs[l + stride], accs[l]) if l < stride else accs[l])
            accs = nxt

        # S9: transfer to the writeback buffer; W0: ``wb_words`` (W) valid lanes per cycle, RQ port B addressed with
        # the group's row. p = p0 + k is a concatenation (p0 is a multiple of lanes, k < lanes). The buffer
        # is a shift register (lane k is in wb_acc0 in the k-th cycle; W = 2: the pair in wb_acc0, wb_acc1): no
        # lanes-way mux before W1.
        W = cfg.wb_words
        wb_acc = [Signal(signed(cfg.acc_bits), name=f"wb_acc{l}") for l in range(L)]
        wb = Signal(tail)
        wb_pending = Signal()
        wb_k = Signal(cfg.lane_bits + 1)  # the lane (W = 1) or the pair (W = 2) in W0
        w1_layout = data.StructLayout({"valid": 1, "acc": signed(cfg.acc_bits), "p": pb, "ch_base": cfg.addr_bits})
        if self.rq_split:
            # The thresholds' block RAMs (ten 36-bit blocks at 64 lanes) answer into a register of their own,
            # and W2's threshold register takes that: the block's slow clock-to-output and the route to the
            # comparators are no longer one path (the 64-lane ResNet-20 build's critical path at seed 2:
            # 5.61 ns clock-to-output + 9.43 ns of routing). Same timing: the row is addressed a cycle earlier
            # with the buffer's next row (a group's row is constant over its writes, and the next group's
            # first write follows the last one's W0), so its word is in thr_q when its first write is in W1.
            # From 64 lanes on (``rq_thr_stages``) a second register, thr_q2, and the row addressed one cycle
            # earlier again (the group's row from S8's tail, which holds it a cycle before S9; a group ending
            # in S9 in the same cycle has its one word's row addressed already): thr_q beside the blocks, a
            # cycle of wire to thr_q2 beside the comparators (the 64-lane two-word ResNet-20 build's critical
            # path at seed 2: a threshold block's output -> 7.51 ns of routing -> rq_thr_q, 13.12 ns). There the
            # blocks' address is a register too, rq_thr_addr: what that row select would be in the next cycle,
            # computed a stage earlier (tails[-3] is a cycle before tails[-2], which is a cycle before S9; the
            # buffer's tail wb takes S9's at every group end), so the address in each cycle is the same. The flow's
            # seed 2 of the 64-lane two-word ResNet-20 build (85.84 MHz) ran tail_s10 -> the select -> 9.31 ns of
            # routing -> a threshold block's address.
            if thr_outreg:  # rq_thr_q is the blocks' output register (rq_rom)
                thr_q = rq_b[1]
            else:
                thr_q = Signal.like(rq_b[1], name="rq_thr_q")
                m.d.sync += thr_q.eq(rq_b[1])
            rq_thr_word = thr_q
            if rq_thr_stages(cfg) == 2:
                assert len(tails) >= 3, "the registered threshold address needs the tail three stages before S9"
                thr_addr = Signal.like(rq_b[0], name="rq_thr_addr")
                m.d.sync += thr_addr.eq(Mux(tails[-3].last, tails[-3].rq_row, Mux(tails[-2].last, tails[-2].rq_row,
                                                                                  Mux(s5.last, s5.rq_row, wb.rq_row))))
                m.d.comb += rq_b[0].eq(thr_addr)
                thr_q2 = Signal.like(rq_b[1], name="rq_thr_q2")
                m.d.sync += thr_q2.eq(thr_q)
                rq_thr_word = thr_q2
            else:
                m.d.comb += rq_b[0].eq(Mux(s5.last, s5.rq_row, wb.rq_row))
        else:
            m.d.comb += rq_b[0].eq(wb.rq_row)
            rq_thr_word = rq_b[1]
        if W == 1:
            words = [(wb_pending, wb_acc[0], wb_k)]  # (valid, accumulator, lane) of each word in W0
        else:
            # Two words a cycle, written through two ACT write ports: port 0 writes the even banks, port 1 the
            # odd ones (hw/actmem.py), so the pair's addresses must differ in parity. Linear output: lanes 2c
            # and 2c + 1 (consecutive addresses). A phase-split output (addresses ch_base + phase * npix / 4 +
            # (y >> 1) * wo / 2 + (x >> 1)) of 4 or more columns: lanes k and k + 2 (x and x + 2 of one
            # row; with npix / 4 even, lanes k and k + 1 would differ by npix / 4), pairs (0, 2), (1, 3), (4, 6),
            # (5, 7), ...: the buffer is loaded with the middle two of every four lanes swapped (``wb_pair2``, a
            # layer constant). Of each pair the first word's address has the parity of the channel's base
            # ch_base (its offset is even: the lane, or x >> 1, is even, and npix / 4 is even or, 2x2, multiplied
            # by an even phase), so ch_base's bit 0 steers the pair to the ports; a group of one valid lane
            # (n = 1, ``wb_one``) writes its first word only. (The compiler rejects a phase-split output of 2
            # columns and more than 2 rows: isa.wb_pairs_fit.)
            wb_pair2 = Signal()
            m.d.sync += wb_pair2.eq(desc.out_phase & (wl >= 2))
            wb_one = Signal()
            k_a, k_b, valid_b = Signal(lb, name="wb_k_a"), Signal(lb, name="wb_k_b"), Signal(name="wb_valid_b")
            m.d.comb += k_a.eq(Mux(wb_pair2, Cat(wb_k[0], Const(0, 1), wb_k[1:]), Cat(Const(0, 1), wb_k)))
            m.d.comb += k_b.eq(k_a | Mux(wb_pair2, 2, 1))
            m.d.comb += valid_b.eq(wb_pending & ~wb_one)
            pair = [(wb_pending, wb_acc[0], k_a), (valid_b, wb_acc[1], k_b)]
            cb0 = wb.ch_base[0]
            words = [tuple(Mux(cb0, b, a) for a, b in zip(pair[w], pair[1 - w])) for w in range(2)]
        w1s = []
        for w, (valid, acc, k) in enumerate(words):
            w1 = Signal(w1_layout, name="w1" + ("_b" if w else ""))
            m.d.sync += [
                w1.valid.eq(valid), w1.acc.eq(acc),
                w1.p.eq(Cat(k[:lb], wb.p0[lb:])), w1.ch_base.eq(wb.ch_base),
            ]
            w1s.append(w1)
        # The buffer's load (s5.last) and shift (wb_pending) enables reach every lane's accumulator copy: a
        # copy of each per group of copy_group lanes, registered from one register each (kept apart), so that
        # only a route lies between: the load's from tails[-2].last, the shift's from wb_ahead, = wb_pending
        # a cycle ahead (s5.last | wb_more: the tail's last -> that OR -> a wb_shift copy was the 64-lane
        # ResNet-20 build's critical path at seed 1, 13.42 ns). wb_end (= wb_k at its last value) and wb_more
        # (= wb_pending & ~wb_end) from registers, computed from the next wb_k and nvalid: the comparator's
        # carry chain is not in front of the copies' long routes (the 0b06535 64-lane ResNet-8 build's
        # critical path, wb.nvalid -> the compare -> wb_shift_g8, 12.82 ns)
        wb_end, wb_more, wb_ahead = Signal(), Signal(), Signal()
        end_at_load, end_next = Signal(), Signal()  # wb_end's next value at a load, and while it shifts
        # (the last writeback cycle of n valid lanes is ceil(n / W) - 1 = (n - 1) >> (W - 1))
        m.d.comb += end_at_load.eq(s5.nvalid <= W)
        m.d.comb += end_next.eq(wb_k == ((wb.nvalid - 1) >> (W - 1)) - 1)
        if W == 2:
            with m.If(s5.last):
                m.d.sync += wb_one.eq(s5.nvalid == 1)
        more_next = Mux(s5.last, ~end_at_load, wb_more & ~end_next)
        m.d.sync += [wb_more.eq(more_next), wb_ahead.eq(tails[-2].last | more_next)]
        with m.If(s5.last):
            m.d.sync += wb_end.eq(end_at_load)
        with m.Elif(wb_more):
            m.d.sync += wb_end.eq(end_next)
        with m.If(wb_pending):
            with m.If(wb_end):
                m.d.sync += wb_pending.eq(0)
            with m.Else():
                m.d.sync += wb_k.eq(wb_k + 1)
        with m.If(s5.last):
            m.d.sync += [wb.eq(s5), wb_pending.eq(1), wb_k.eq(0)]
        n = copies(cfg)
        wb_load = kept_copies(cfg, "wb_load")  # = s5.last
        wb_shift = kept_copies(cfg, "wb_shift")  # = wb_pending
        m.d.sync += [c.eq(tails[-2].last) for c in wb_load]
        m.d.sync += [c.eq(wb_ahead) for c in wb_shift]
        if W == 2:  # the pair-2 load order's select, a copy per group of lanes (kept apart)
            wb_swap = kept_copies(cfg, "wb_swap")
            m.d.sync += [c.eq(desc.out_phase & (wl >= 2)) for c in wb_swap]
        for l in range(L):
            g = l // copy_group(cfg)
            load = accs[l]
            if W == 2 and l % 4 in (1, 2):
                load = Mux(wb_swap[g], accs[l + 1 if l % 4 == 1 else l - 1], accs[l])
            nxt = Mux(wb_load[g], load, wb_acc[l + W] if l + W < L else wb_acc[l])
            with m.If(wb_load[g] | wb_shift[g]):
                m.d.sync += wb_acc[l].eq(nxt)

        # W1: the RQ row arrives and is registered; output address (linear or 2x2 phase-split). W2: the
        # requantizer's comparators; W3: its popcount and level mux (registered); W3b: the write. One
        # requantizer and ACT write port per word (wb_words).
        nthr = cfg.max_levels - 1
        rqb = struct(rl)(rq_thr_word)
        raw = desc.mode == isa.MODE_RAW
        valids = []  # each word's valid bits, W1..W4 (the drain)
        for w, (w1, rqu) in enumerate(zip(w1s, rqus)):
            sfx = "_b" if w else ""
            # Phase-split offset: phase * npix/4 + (y >> 1) * wo/2 + (x >> 1); the three parts occupy
            # disjoint bits (npix/4 is a power of two above the in-phase offset), so they are ORed.
            p = w1.p
            phase_off = Mux((p & wo) != 0, q << 1, 0) | Mux(p[0], q, 0) | ((p & hi_mask) >> 2) | ((p & wmask) >> 1)
            w2 = Signal(data.StructLayout({"valid": 1, "acc": signed(cfg.acc_bits), "addr": cfg.addr_bits,
                                           "thr": data.ArrayLayout(signed(cfg.acc_bits), nthr)}), name="w2" + sfx)
            m.d.sync += [
                w2.valid.eq(w1.valid), w2.acc.eq(w1.acc),
                w2.addr.eq(w1.ch_base + Mux(desc.out_phase, phase_off, p)),
            ]
            m.d.sync += [w2.thr[j].eq(getattr(rqb, f"thr{j}")) for j in range(nthr)]
            m.d.comb += [rqu.acc.eq(w2.acc), rqu.mode.eq(desc.mode), rqu.shift.eq(desc.shift)]
            m.d.comb += [rqu.thr[j].eq(w2.thr[j]) for j in range(nthr)]
            if rqu.cmp_copies:  # w2.acc again, a copy per comparator (kept apart: rq_cmp_copies)
                w2_acc_cmp = kept_copies(cfg, "w2_acc_cmp" + sfx, signed(cfg.acc_bits), nthr)
                m.d.sync += [c.eq(w1.acc) for c in w2_acc_cmp]
                m.d.comb += [rqu.acc_cmp[j].eq(w2_acc_cmp[j]) for j in range(nthr)]
            m.d.comb += [rqu.lv[j].eq(getattr(desc, f"lv{j}")) for j in range(cfg.max_levels)]
            # W3's write enables (ACT or OUT) decoded from the layer's mode in W2, registered: no descriptor
            # decode in front of the banks' write enables and rows (desc is the same layer's from W1 to W4:
            # the next layer starts only when nothing is in flight before W4).
            w3 = Signal(data.StructLayout({"valid": 1, "out_we": 1, "acc": signed(cfg.acc_bits),
                                           "addr": cfg.addr_bits}), name="w3" + sfx)
            m.d.sync += [w3.valid.eq(w2.valid), w3.acc.eq(w2.acc), w3.addr.eq(w2.addr)]
            act_we2 = Signal(name="act_we2" + sfx)
            m.d.comb += act_we2.eq(w2.valid & ~raw)  # one line each: bench/mutants.py locates them by line
            m.d.sync += w3.out_we.eq(w2.valid & raw)
            # W3b's ACT write enable and address (beside the requantizer's registered value), a copy per group
            # of copy_group banks (kept apart): each drives only its group's bank decodes and row registers, not
            # all 64 banks spread over the die
            act_we3, w3b_valid = Signal(name="act_we3" + sfx), Signal(name="w3b_valid" + sfx)
            m.d.sync += [act_we3.eq(act_we2), w3b_valid.eq(w3.valid)]
            w3_we = kept_copies(cfg, "w3_act_we" + sfx)
            w3_addr = kept_copies(cfg, "w3_addr" + sfx, cfg.addr_bits)
            m.d.sync += [c.eq(act_we3) for c in w3_we]
            m.d.sync += [c.eq(w3.addr) for c in w3_addr]
            m.d.comb += [
                out_wrs[w].addr.eq(w3.addr >> (W - 1)), out_wrs[w].data.eq(w3.acc), out_wrs[w].en.eq(w3.out_we),
            ]
            # W4: the ACT write (enable, row, level) registered beside each bank, after the bank decode, in
            # BankedActMem (its wr_* ports take W3b's write; port w's copies at g * W + w): nothing but a
            # flip-flop before a bank's write port. w4_valid marks the stage for the drain.
            w4_valid = Signal(name="w4_valid" + sfx)
            m.d.sync += w4_valid.eq(w3b_valid)
            m.d.comb += act.wr_data[w].eq(rqu.value)
            m.d.comb += [act.wr_en[g * W + w].eq(w3_we[g]) for g in range(n)]
            m.d.comb += [act.wr_addr[g * W + w].eq(w3_addr[g]) for g in range(n)]
            valids.append((w1.valid | w2.valid | w3.valid | w3b_valid, w4_valid))
        in_lanes = 0
        for t in tails:
            in_lanes = in_lanes | t.last
        m.d.comb += seq.front_busy.eq(s1.valid | s1a.valid | s1c.valid | s1b.iss.valid | d1.iss.valid | d2.iss.valid
                                      | d3.d.iss.valid | s2.iss.valid | s2a.iss.valid | s2b.iss.valid
                                      | s3.iss.valid | s3c_valid | s3b.iss.valid
                                      | s4.ctrl.valid | in_lanes
                                      | wb_pending | reduce(operator.or_, (v for v, _ in valids)))
        m.d.comb += seq.pipe_busy.eq(seq.front_busy | reduce(operator.or_, (v4 for _, v4 in valids)))

        # ACT: pipeline or host (the host reads lane 0 only: row1 is not needed; latency 3). The host has
        # the read port from the done cycle on (the pipeline is empty by then), so a read presented with
        # done is served; it writes only while busy is low (its write lands at the end of the next
        # cycle, registered beside the bank as the pipeline's W4 is). The writes need no select: the
        # pipeline writes only while busy, the host only while not.
        m.d.comb += [act.rd_row.eq(rd_row), act.rd_row1.eq(rd_row1), act.rd_rot.eq(rd_rot),
                     act.host_row.eq(self.host_addr >> lb), act.host_rot.eq(self.host_addr[:lb] if lb else 0),
                     act.host_sel.eq(~seq.own_copies),  # own = busy & ~done, registered, a copy per bank group
                     act.host_wr_addr.eq(self.host_addr), act.host_wr_data.eq(self.host_wdata),
                     act.host_wr_en.eq(self.host_we & seq.idle)]  # seq.idle = ~busy, registered
        m.d.comb += self.host_rdata.eq(act.rd_pipe[0] if read_latency(cfg) == 2 else act.rd_data[0])
        return m
