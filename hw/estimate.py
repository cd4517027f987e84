"""Fast analytical resource estimate of the accelerator: ``estimate(cfg, target) -> dict``, no tools.

The model follows the RTL block by block (docs/hardware.md); its coefficients are fitted to Yosys
synthesis by ``bench/calibrate_estimator.py`` (results in ``bench/results/calibration.json`` and
docs/resources.md). What each term counts:

* flip-flops: exact register bits of the pipeline (per lane: the operand registers, the lane's three
  stages -- shifted terms or operand, product, accumulator -- and the writeback copy; the controls
  shared by the lanes), the sequencer/descriptor registers and the (count, bias) prefetch, and the
  serial shell; fitted terms for the rest.
* LUTs: per lane (shift-add: ``terms`` barrel shifters, adder, add/sub, max compare; multiplier:
  an act x weight array multiplier), the ACT rotation (``lanes x act_bits x log2(lanes)`` 2:1 muxes),
  per-lane padding checks and the writeback lane mux (two terms: with a model's program the
  descriptor fields that drive them are ROM constants and fold in; with random ROMs they do not), the
  requantizer (``max_levels-1`` comparators of ``acc_bits``), the read mux of a block-RAM memory
  deeper than its block shape, memories in logic, and a fitted constant for the sequencer. LUT4 for iCE40/ECP5, LUT6 for Xilinx
  (a LUT6 packs about 1.6 LUT4s of this logic).
* block RAM: each memory is placed as Yosys' memory_libmap places it (``bram_plan``): the cheapest
  block shape by its cost (blocks, plus the read mux of a memory deeper than the shape), the depth
  slices of a word packed side by side into the block columns. A ROM with two read ports is
  duplicated on iCE40 (1R1W blocks), one copy per port, and each copy keeps only the blocks holding
  bits its port reads (the RQ's port A reads count and bias, port B the thresholds; opt_clean drops
  the rest); on ECP5 it takes true-dual-port shapes (<= 18 bits), one copy. Memories that are cheaper
  in logic go to distributed RAM (ECP5/Xilinx) or flip-flops / LUTs instead, as Yosys maps them.
* lane groups (``lane_groups`` > 1): counted, not fitted (``group_regs``, ``group_luts``; the grouped WGT
  ROM and a VAL copy per slot in ``memory_map``); checked against hold-out syntheses only.
* the two-word writeback (``wb_words`` 2): counted, not fitted (``wb_regs``, ``wb_luts``; its second
  requantizer's comparators scale the fitted ``rq`` term); and from 64 lanes on the WGT select's registered
  first level and S1c (``memory_stage_regs``).

Everything is integer arithmetic on the config: microseconds per call.
"""

from __future__ import annotations

import math

from . import ecp5, isa
from .config import SPRAM_WORDS, WGT_BANK_WORDS, AcceleratorConfig
from .ioshell import shell_bits

# Block RAMs as Yosys' memory_libmap sees them (its techlibs brams*.txt): per family, the block types in
# the order Yosys tries them, each with its (depth, width) shapes, narrowest first (Yosys' order: on a
# cost tie the first shape wins), and the read ports one block gives a ROM. iCE40 SB_RAM40_4K is 1R1W:
# a ROM with two read ports is duplicated. ECP5 DP16KD is true dual port up to 18 bits; PDPW16KD is
# 1R1W up to 36. Xilinx is not calibrated: taken as ECP5.
_ECP5_BRAMS = [
    {"shapes": [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18)], "read_ports": 2},
    {"shapes": [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)], "read_ports": 1},
]
_BRAMS = {
    "ice40": [{"shapes": [(2048, 2), (1024, 4), (512, 8), (256, 16)], "read_ports": 1}],
    "ecp5": _ECP5_BRAMS,
    "xilinx": _ECP5_BRAMS,
}
FACTOR_MUX = 0.5  # memory_libmap's cost of one bit of read mux (a memory deeper than the shape), and demux
BLOCK_COST = {"ice40": 64, "ecp5": 128, "xilinx": 128}  # Yosys' cost of one block (its brams .txt files)

LUT6_PER_LUT4 = 0.62  # Xilinx (not calibrated): a LUT6 holds ~1.6 LUT4 of this logic; its LUT terms are ECP5's x this
FAMILY = {"ice40-up5k": "ice40", "ecp5-25k": "ecp5", "ecp5-85k": "ecp5", "xc7a100t": "xilinx"}

# Fitted by bench/calibrate_estimator.py on the syntheses of today's RTL (bench/results/calib-rtl.jsonl; see
# docs/resources.md), per family; tests/test_synth_fast.py checks that this is what that fit gives. Xilinx is
# not calibrated (no place and route here): the ECP5 LUT4 coefficients x LUT6_PER_LUT4, the ECP5 FF terms.
COEF = {
    "ice40": {
        "lut_lane": 2.0035,
        "lut_lane_mul": 0.7818,
        "lut_const": 1343.0222,
        "lut_rot": 0.0,
        "lut_bank": 7.7976,
        "lut_per_lane": 0.0,
        "lut_per_lane_random": 2.7306,
        "lut_rq": 0.0,
        "lut_ram": 0.0,
        "lut_bram_mux": 2.4219,
        "lut_rom": 0.5146,
        "lut_rom_random": 1.6207,
        "lut_copies": 0.0,
        "ff_const": 1545.8113,
        "ff_lane": 1.315,
        "ff_rom_words": 0.1821,
        # logic cells = LUT4 + lc_ff x FF: the flip-flops that do not pack with a LUT (and the carry-only
        # and chain cells), fitted to nextpnr's counts by bench/ice40_cells.py (docs/resources.md)
        "lc_ff": 0.6968,
    },
    "ecp5": {
        "lut_lane": 1.3069,
        "lut_lane_mul": 2.8136,
        "lut_const": 0.0,
        "lut_rot": 0.0,
        "lut_bank": 0.0,
        "lut_per_lane": 2.5525,
        "lut_per_lane_random": 4.0269,
        "lut_rq": 1.8363,
        "lut_ram": 1.9003,
        "lut_bram_mux": 2.5621,
        "lut_rom": 0.0,
        "lut_rom_random": 10.5114,
        "lut_copies": 0.5087,
        "ff_const": 1306.3443,
        "ff_lane": 20.0712,
        "ff_rom_words": 0.0,
    },
    "xilinx": {
        "lut_lane": 0.8103,
        "lut_lane_mul": 1.7444,
        "lut_const": 0.0,
        "lut_rot": 0.0,
        "lut_bank": 0.0,
        "lut_per_lane": 1.5826,
        "lut_per_lane_random": 2.4967,
        "lut_rq": 1.1385,
        "lut_ram": 1.1782,
        "lut_bram_mux": 1.5885,
        "lut_rom": 0.0,
        "lut_rom_random": 6.5171,
        "lut_copies": 0.3154,
        "ff_const": 1306.3443,
        "ff_lane": 20.0712,
        "ff_rom_words": 0.0,
    },
}


def _kept_blocks(width: int, w: int, segments: int, used: list[tuple[int, int]]) -> int:
    """Blocks of one tiling that hold a bit some port reads. memory_libmap packs the ``segments`` depth
    slices of a word side by side (flat bit ``s * width + b``) into ``w``-bit block columns; a block whose
    bits are read by no port is left unconnected and removed (opt_clean)."""
    cols = set()
    for s in range(segments):
        for lo, hi in used:
            if hi > lo:
                cols.update(range((s * width + lo) // w, (s * width + hi - 1) // w + 1))
    return len(cols)


def bram_plan(depth: int, width: int, family: str, read_ports: int = 1,
              port_bits: list[list[tuple[int, int]]] | None = None, writable: bool = False) -> tuple[int, float, int]:
    """(blocks, cost, read-mux bits) of a depth x width memory in block RAM, as memory_libmap places it.

    For each block type and shape: ``copies`` = read ports / read ports of a block (a 1R1W block:
    one copy of the whole memory per read port), ``ceil(depth / shape depth)`` depth segments, for a
    ROM packed into ``ceil(segments * width / shape width)`` blocks per copy; cost = block cost x blocks x copies
    + ``FACTOR_MUX`` x the read-mux (and write-demux) bits of the depth segments. The cheapest wins.
    ``port_bits[p]``: the bit ranges ``[lo, hi)`` read port ``p`` uses (default all): each copy keeps
    only the blocks holding bits of its own ports (an RQ row's port A reads count and bias, port B the
    thresholds)."""
    best = None
    for bram in _BRAMS[family]:
        copies = -(-read_ports // bram["read_ports"])
        for d, w in bram["shapes"]:
            segments = -(-depth // d)
            # a ROM's depth slices share block columns; a RAM's do not (its write enables would differ)
            per_copy = segments * -(-width // w) if writable else -(-(segments * width) // w)
            mux = read_ports * (segments - 1) * width + (segments if writable and segments > 1 else 0)
            cost = BLOCK_COST[family] * per_copy * copies + FACTOR_MUX * mux
            if best is None or cost < best[0]:
                best = (cost, w, segments, per_copy, copies, bram["read_ports"], mux)
    cost, w, segments, per_copy, copies, per, mux = best
    if not port_bits or writable:
        return per_copy * copies, cost, mux
    groups = [sum(port_bits[i:i + per], []) for i in range(0, read_ports, per)]
    return sum(_kept_blocks(width, w, segments, g) for g in groups), cost, mux


def bram_blocks(depth: int, width: int, family: str, read_ports: int = 1,
                port_bits: list[list[tuple[int, int]]] | None = None) -> int:
    """Blocks for a depth x width memory (``bram_plan``)."""
    return bram_plan(depth, width, family, read_ports, port_bits)[0]


def has_lutram(family: str | None) -> bool:
    """Whether the family has distributed (LUT) RAM: ECP5 and Xilinx do, the iCE40 does not."""
    return family != "ice40"


def dp16kd_instances(cfg: AcceleratorConfig, family: str | None) -> bool:
    """Whether the build instantiates DP16KD blocks itself (``Accelerator``'s ``dp16kd``: the WGT banks, and
    the thresholds where ``hw/top.rq_thr_outreg`` says so): ECP5, without lane groups."""
    return family == "ecp5" and cfg.lane_groups == 1


def rq_split(family: str | None) -> bool:
    """Whether the build holds RQ as two one-port memories (``hw/top.rq_rom``): on ECP5 / Xilinx, whose
    36-bit single-port shapes take the thresholds in half the blocks of the 18-bit two-port ones."""
    return family in ("ecp5", "xilinx")


def rq_thr_block(cfg: AcceleratorConfig, family: str | None, rom_used: dict | None = None) -> int:
    """Thresholds (the highest ones, thr{k}..) an iCE40 ``wgt_ram`` build holds in a one-port ROM of block
    RAM (``hw/top.rq_rom``'s ``thr_block``): as many as the EBR that the weights left free hold. There the
    RQ ROM is otherwise logic (two ports on 1R1W blocks: two copies), ~1,300 LUT4 for the digits net, the
    part's limit; 0 elsewhere (and for ROM weights, whose builds stay as they were)."""
    if family != "ice40" or not cfg.wgt_ram:
        return 0
    from .flows.devices import DEVICES

    free = DEVICES["ice40-up5k"]["bram"] - sum(memory_map(cfg, family, rom_used, 0)["blocks"].values())
    n = 0
    while n < cfg.max_levels - 1 and bram_blocks(cfg.rq_depth, (n + 1) * cfg.acc_bits, family) <= free:
        n += 1
    return n


def wgt_rows(cfg: AcceleratorConfig, rom_used: dict | None) -> int:
    """WGT words that reach block RAM: the banked ROM (``hw/top.wgt_rom``) drops the banks that hold no
    entry (all zero: Yosys removes them), so a program's WGT costs its used banks, not ``wgt_depth``."""
    if rom_used is None or cfg.wgt_depth <= WGT_BANK_WORDS:
        return cfg.wgt_depth
    used = min(cfg.wgt_depth, rom_used.get("wgt", cfg.wgt_depth))
    return max(1, -(-used // WGT_BANK_WORDS)) * WGT_BANK_WORDS


def _bits_of(layout, names) -> list[tuple[int, int]]:
    return [(layout.offsets[n], layout.offsets[n] + layout.by_name[n].width) for n in names]


def memory_map(cfg: AcceleratorConfig, family: str, rom_used: dict | None = None, thr_block: int | None = None) -> dict:
    """Where each memory goes and how many blocks it takes, by Yosys memory_libmap's cost rule: block
    RAM costs what ``bram_plan`` says; soft logic costs 1/16 per bit for a ROM and 1 per bit for a RAM;
    ECP5/Xilinx distributed RAM (16x4 per 4 units) is an option for RAMs. The cheapest wins.
    ``thr_block``: thresholds in a one-port block-RAM ROM (``rq_thr_block``, the default), the rest of
    RQ marked for logic."""
    blocks, where, logic_rom_bits, lutram_bits, ff_bits, rom_regs, mux_bits = {}, {}, 0, 0, 0, 0, 0
    rl = isa.rq_layout(cfg)
    cut = rl.offsets["thr0"]  # RQ split (hw/top.rq_rom): (count, bias) for port A, the thresholds for B
    from .actmem import tail_split

    split = tail_split(cfg, family)
    act = [("act", cfg.act_bank_rows, cfg.act_bits, None, False, cfg.lanes)] if split is None else [
        ("act", split, cfg.act_bits, None, False, cfg.lanes),
        ("act_tail", cfg.act_bank_rows - split, cfg.act_bits, None, False, cfg.lanes)]
    # RQ: port A (sequencer) reads count and bias, port B (writeback) the thresholds
    rq_ports = [_bits_of(rl, ("count", "bias")),
                _bits_of(rl, [f.name for f in rl.fields if f.name.startswith("thr")])]
    if not rq_split(family):
        rq = [("rq", cfg.rq_depth, rl.width, rq_ports, True, 1)]
    elif rom_used is None:  # random words: Yosys maps each copy at the row's full width (cost included) and
        # then drops the blocks its port does not read (a 171-bit row cut at bit 31: RQ 1 block, thresholds 5)
        rq = [("rq", cfg.rq_depth, rl.width, rq_ports[:1], True, 1),
              ("rq_thr", cfg.rq_depth, rl.width, rq_ports[1:], True, 1)]
    else:  # a program's words: the bits a copy never reads are dropped before mapping
        rq = [("rq", cfg.rq_depth, cut, None, True, 1), ("rq_thr", cfg.rq_depth, rl.width - cut, None, True, 1)]
    n_blk = rq_thr_block(cfg, family, rom_used) if thr_block is None else thr_block
    if n_blk:  # the highest n_blk thresholds in block RAM, the rest of the row forced into logic
        lo = rl.width - n_blk * cfg.acc_bits
        rq = [("rq", cfg.rq_depth, lo, None, True, 1), ("rq_thr", cfg.rq_depth, rl.width - lo, None, True, 1)]
    G = cfg.lane_groups
    wgt = [] if cfg.wgt_ram and family == "ice40" else [  # wgt_ram on iCE40: SPRAM (estimate()'s "spram")
        ("wgt", cfg.wgt_depth if cfg.wgt_ram else wgt_rows(cfg, rom_used), isa.entry_layout(cfg).width, None,
         not cfg.wgt_ram, 1)] if G == 1 else [  # lane groups: one ROM of G words a row (hw/top.wgt_rom_grouped)
        ("wgt", cfg.wgt_depth // G, G * isa.entry_layout(cfg).width, None, True, 1)]
    if not wgt:
        where["wgt"] = "spram"
    mems = [
        *wgt,
        *rq,
        ("prog", cfg.prog_depth, isa.desc_layout(cfg).width, None, True, 1),
        ("val", cfg.val_depth, isa.val_layout(cfg).width, None, True, G),  # lane groups: a copy a slot
        ("tap", cfg.tap_depth, isa.tap_layout(cfg).width, None, True, 1),
        *act,
        ("out", cfg.out_depth, cfg.acc_bits, None, False, 1),
        ("perf", cfg.prog_depth, 32, None, False, 1),
    ]
    from .top import table_outreg

    tables = table_outreg(cfg, dp16kd_instances(cfg, family))
    for name, depth, width, port_bits, rom, copies in mems:
        ports = len(port_bits) if port_bits else 1
        n, cost, mux = bram_plan(depth, width, family, ports, port_bits, writable=not rom)
        if tables and name in ("val", "tap"):  # DP16KD instances in their 1,024 x 18 mode (hw/top.outreg_rom)
            where[name], blocks[name] = "bram", -(-width // ecp5.ROW_BITS)
            continue
        if name == "wgt" and rom and G == 1 and depth > WGT_BANK_WORDS:  # banked (hw/top.wgt_rom): one memory a bank,
            # no depth slices packed across banks (iCE40, 6,144 x 9 bits: 3 x 5 EBR, not 14); the bank
            # select, in logic after the banks' registers, counts as the read mux
            banks = depth // WGT_BANK_WORDS
            n, cost, _ = bram_plan(WGT_BANK_WORDS, width, family)
            n, cost, mux = n * banks, cost * banks, (banks - 1) * width
        bits = depth * width
        options = {"logic": bits / 16 if rom else bits}  # first: a tie goes to logic
        options["bram"] = cost
        if has_lutram(family) and not rom:
            options["lutram"] = math.ceil(depth / 16) * math.ceil(width / 4) * 4
        if name == "act_tail":  # marked ram_style "distributed" (hw/actmem.py; only where there is LUT RAM)
            options = {"lutram": options["lutram"]}
        if name == "rq" and n_blk:  # stays in logic (hw/top.rq_rom; a near tie by the cost rule)
            options = {"logic": options["logic"]}
        best = min(options, key=options.get)
        where[name] = best
        blocks[name] = n * copies if best == "bram" else 0
        if best == "bram":
            mux_bits += mux * copies
        if best == "logic":
            if rom:  # words beyond the program are zero and fold away: count the used ones
                used = min(depth, (rom_used or {}).get(name, depth))
                logic_rom_bits += used * width * copies
                rom_regs += ports * width  # read-data registers as FFs (reported; Yosys trims constant bits)
            else:
                ff_bits += depth * width * copies
        elif best == "lutram":
            lutram_bits += depth * width * copies
    return {
        "blocks": blocks,
        "where": where,
        "logic_rom_bits": logic_rom_bits,
        "lutram_bits": lutram_bits,
        "ff_bits": ff_bits,
        "rom_regs": rom_regs,
        "bram_mux_bits": mux_bits,
    }


def _lane_luts(cfg: AcceleratorConfig, lane_kind: str) -> float:
    """LUT4 of one lane (before the family coefficient)."""
    if lane_kind == "mul":
        from .mul_lane import weight_int_bits

        wb = weight_int_bits(cfg)
        return (cfg.act_bits + 1) * wb + 2 * cfg.acc_bits  # partial products + accumulate/compare
    shifted = cfg.act_bits + cfg.max_shift
    # barrel shifters (act_bits x shift_bits 2:1 muxes per term), term adder, add/sub, max compare.
    return cfg.terms * cfg.act_bits * cfg.shift_bits + shifted + 2 * cfg.acc_bits


def act_row_bits(cfg: AcceleratorConfig) -> int:
    """Row-address bits of an ACT bank that reach its memory: its live rows' (Yosys trims the rest)."""
    return max(1, (cfg.act_bank_rows - 1).bit_length())


def lut_features(
    cfg: AcceleratorConfig,
    family: str,
    kind: str = "board",
    lane_kind: str = "shift",
    rom_used: dict | None = None,
) -> dict:
    """The LUT model's terms (LUT4-equivalents before the fitted coefficients)."""
    L = cfg.lanes
    lane = L * _lane_luts(cfg, lane_kind)
    if kind == "array":
        return {"lane": lane}
    mm = memory_map(cfg, family, rom_used)
    per_lane = L * (4 * (cfg.delta_bits + 1) + cfg.acc_bits / 3)
    return {
        "const": 1.0,
        "lane": lane,
        # ACT rotation (hw/actmem.py): a logarithmic barrel shifter, lane_bits stages of lanes x act_bits 2:1 muxes
        "rot": L * cfg.act_bits * max(1, cfg.lane_bits),
        # each ACT bank's addressing (hw/actmem.py): its read row (R or R + 1, then host or pipeline) and its
        # write row (pipeline or host), muxes of the row bits its live rows use, and its write decode
        "bank": L * act_row_bits(cfg),
        # padding checks and writeback select, driven by descriptor fields: with a model's program
        # (``rom_used``) the descriptor ROM's constant columns fold into them; two terms, fitted apart
        "per_lane": per_lane if rom_used is not None else 0.0,
        "per_lane_random": per_lane if rom_used is None else 0.0,
        "rq": (cfg.max_levels - 1) * cfg.acc_bits * cfg.wb_words,  # requantizer comparators, a requantizer a word
        # memories in logic: RAM bits in LUT RAM / flip-flops, and ROM bits as LUTs. A ROM of random words
        # (no program given) costs more logic per bit than a model's program, whose words repeat and
        # whose columns are often constant: two terms, fitted apart.
        "ram": mm["lutram_bits"] / 32 + mm["ff_bits"] / 4,
        # a memory deeper than its block shape: the read mux between the depth slices' blocks, in LUTs
        "bram_mux": mm["bram_mux_bits"],
        "rom": mm["logic_rom_bits"] / 16 if rom_used is not None else 0.0,
        "rom_random": mm["logic_rom_bits"] / 16 if rom_used is None else 0.0,
        # the per-group register copies (from 64 lanes on): the logic each group's copy drives on its own
        # (ABC no longer shares it across groups), counted as the copies' register bits (``copy_regs``)
        "copies": copy_regs(cfg, rom_used, lane_kind),
    }


def lane_regs(cfg: AcceleratorConfig, lane_kind: str = "shift") -> tuple[int, int]:
    """(per lane, shared) register bits of a lane array (``hw/lane.py``, ``hw/mul_lane.py``, three stages).
    Per shift lane: the shifted terms (S1), the product (S2) and ``acc``; per multiplier lane: the operand
    (its constant sign bit trimmed), the product and ``acc``. Shared: the controls that travel with the
    entry to S3 (valid, first, rmax, bias, twice), and the sign to S2 (shift) or the decoded weight (mul):
    Yosys merges the lanes' identical copies of these into one."""
    ctrl = 2 * (3 + cfg.acc_bits)
    if lane_kind == "mul":
        from .mul_lane import weight_int_bits

        wb = weight_int_bits(cfg)
        return cfg.act_bits + (cfg.act_bits + 1 + wb) + cfg.acc_bits, ctrl + wb
    shifted = cfg.act_bits + cfg.max_shift
    return cfg.terms * shifted + (shifted + cfg.terms + 1) + cfg.acc_bits, ctrl + 1


def decode_regs(cfg: AcceleratorConfig) -> int:
    """Register bits of the stream decode (hw/top.py S1b, D1..D3): the entry word, the position, the
    code, the input channel and filler flag (twice), the tap mask, the VAL and TAP rows, p0's ACT row + 1
    (D3), the decoded entry (its ``off`` held as the rows R and R + 1 and the rotation: one row more; rows
    count their live bits, ``act_row_bits``: Yosys trims the rest), and
    the issue record's four extra copies (its ``pos0`` only in the first: S1b uses it)."""
    from .sequencer import issue_layout

    iss = issue_layout(cfg).size
    return (isa.entry_layout(cfg).width + cfg.pos_width + cfg.code_bits + 2 * (cfg.addr_bits + 1)
            + (1 << isa.TAP_LOG2_BITS) + isa.val_layout(cfg).width + isa.tap_layout(cfg).width
            + 2 * act_row_bits(cfg) + isa.decoded_layout(cfg).width + 4 * iss - 3 * cfg.pos_width)


def memory_stage_regs(cfg: AcceleratorConfig, rom_used: dict | None = None) -> int:
    """Register bits of the stages that grow with the memories (added after the calibration sweeps): S1a,
    each used WGT bank's word registered beside its block RAM and its one-hot select twice (``hw/top.wgt_rom``);
    S2a, each ACT bank's row registered beside it and the rotation (``hw/actmem.py``); each LUT-RAM tail's
    registered read address (its live rows' bits; Yosys trims the rest) and select; the host's ACT row and
    rotation registered before their copies (``actmem.HOST_STAGES``); W4, the registered ACT
    write (valid, enable, address, level); and from 64 lanes on (``WIDE_LANES``) the WGT select's first level
    and S1c, the thresholds' second register and address register (``hw/top.rq_thr_stages``) and S5b."""
    from .actmem import COPY_GROUP, tail_split

    bits = 0
    if cfg.wgt_ram:  # hw/top.wgt_ram: on iCE40 each SPRAM row's word registered, the row index twice
        rows, lo = -(-cfg.wgt_depth // SPRAM_WORDS), (SPRAM_WORDS - 1).bit_length()
        bits += rows * isa.entry_layout(cfg).width + (2 * (cfg.wgt_addr_bits - lo) if rows > 1 else 0)
    elif cfg.wgt_depth > WGT_BANK_WORDS:
        lo = (WGT_BANK_WORDS - 1).bit_length()
        bits += wgt_rows(cfg, rom_used) // WGT_BANK_WORDS * (isa.entry_layout(cfg).width + 2)
        if cfg.wgt_read_latency == 3:  # the select's first level, a register per 4 used banks (hw/top.wgt_rom)
            bits += -(-wgt_rows(cfg, rom_used) // WGT_BANK_WORDS // COPY_GROUP) * isa.entry_layout(cfg).width
    bits += act_row_bits(cfg) + max(1, cfg.lane_bits)  # the host's ACT row and rotation before their copies
    if cfg.wgt_read_latency == 3:  # S1c: the issue record a stage more (64 lanes and more)
        from .sequencer import issue_layout

        bits += issue_layout(cfg).size
    from .top import rq_thr_stages, tail_layout

    if rq_thr_stages(cfg) == 2:  # the thresholds' second register and their registered address (hw/top.py)
        bits += (cfg.max_levels - 1) * cfg.acc_bits + cfg.rq_addr_bits
    if cfg.operand_stages == 2:
        # S5b: each lane's operand, the controls a copy per group (lane groups: a register per lane, which
        # Yosys merges like S5's: counted alike), the group tail a stage more
        from .actmem import copies
        from .lane import lane_ctrl_layout

        bits += cfg.lanes * cfg.act_bits + copies(cfg) * lane_ctrl_layout(cfg).size + tail_layout(cfg).size
    bits += cfg.lanes * (cfg.addr_bits - cfg.lane_bits) + cfg.lane_bits
    split = tail_split(cfg)
    if split is not None:
        bits += cfg.lanes * (max(1, (cfg.act_bank_rows - split - 1).bit_length()) + 1)
    return bits + 2 + cfg.addr_bits + cfg.act_bits


def copy_regs(cfg: AcceleratorConfig, rom_used: dict | None = None, lane_kind: str = "shift") -> int:
    """Register bits of the per-group copies beyond the one the other terms count (``hw/actmem.copies``:
    from 64 lanes on a copy per group of 4 lanes or banks; ``hw/top.wgt_copies``: the WGT address a copy per
    4 used WGT banks). Per extra copy: the lanes' S5 controls (``lane_ctrl_layout``) and the group's own
    S2/S3 controls (``lane_regs``' shared part, merged once a group), the ACT read rows (their live bits,
    twice), the rotation's three select registers, the writeback's load and shift enables, W3's write
    enable and address, and ``own``; per extra WGT address copy, its own RUN flag and copies of last_e,
    wb_free and last_group, and with any such copy one set more, RQ port A's (hw/sequencer.py)."""
    from .actmem import copies
    from .lane import lane_ctrl_layout
    from .top import wgt_copies

    per = (lane_ctrl_layout(cfg).size + lane_regs(cfg, lane_kind)[1] + 2 * act_row_bits(cfg)
           + 3 * max(1, cfg.lane_bits) + 4 + cfg.addr_bits)
    entries = None if rom_used is None else rom_used.get("wgt")
    wgt = 0 if cfg.wgt_ram else wgt_copies(cfg, True, WGT_BANK_WORDS, entries) - 1
    return (copies(cfg) - 1) * per + wgt * (cfg.wgt_addr_bits + 4) + (4 if wgt else 0)


def group_regs(cfg: AcceleratorConfig) -> int:
    """Register bits a lane-groups build (``cfg.lane_groups`` = G > 1, ``hw/top.py``) adds, counted from the
    RTL: slots 1.. of the entry (two code registers, the value row and its flag, sign / real / enables /
    shifts beside S2 .. S3b, a control register at S4), a control register per lane at S5 (in place of
    the per-group copies), the WGT row of G words, the fold tree (log2 G levels of every lane's
    accumulator) and the group tail beside it. Of the control registers only the bits that differ between
    slots count (sign, rmax, enables, shifts); valid and first are the same in every slot, and a slot's
    bias is 0 but slot 0's, so the lanes' copies of them are one register each (Yosys merges identical
    flip-flops). 0 without lane groups."""
    from .actmem import copies, read_latency
    from .lane import lane_ctrl_layout
    from .top import tail_layout

    G, F = cfg.lane_groups, cfg.fold_levels
    if G == 1:
        return 0
    slot = slot_ctrl_bits(cfg)
    stages = 5 + (read_latency(cfg) == 3)
    ctrl5 = cfg.lanes * slot + 2 * cfg.acc_bits + 2 - copies(cfg) * lane_ctrl_layout(cfg).size
    return ((G - 1) * (2 * cfg.code_bits + isa.val_layout(cfg).width + 2 + (stages + 1) * slot)
            + ctrl5 + (G - 1) * isa.entry_layout(cfg).width + 2 * F
            + F * (cfg.lanes * cfg.acc_bits + tail_layout(cfg).size) + F.bit_length())


def wb_regs(cfg: AcceleratorConfig) -> int:
    """Register bits the two-word writeback (``wb_words`` 2, hw/top.py) adds, counted from the RTL: the second
    word's W1 (valid, accumulator, pixel), W2 (valid, accumulator, address; its thresholds and channel base
    are the first word's registers again, which Yosys merges), its requantizer (comparator bits, the
    accumulator, the value) and comparator copies, W3 (valid, write enables, accumulator, address), the W3b
    and W4 flags, the ACT write's enable and address and the written word a copy per bank group, and the
    pairing flags (the pair-2 order's select a copy per lane group). 0 with one word."""
    from .actmem import copies
    from .sequencer import pix_bits
    from .top import rq_cmp_copies

    if cfg.wb_words == 1:
        return 0
    nthr, acc, a = cfg.max_levels - 1, cfg.acc_bits, cfg.addr_bits
    n = copies(cfg)
    return ((1 + acc + pix_bits(cfg)) + (1 + acc + a) + (nthr + acc + cfg.act_bits)
            + (nthr * acc if rq_cmp_copies(cfg) else 0) + (2 + acc + a) + 3
            + n * (1 + a + cfg.act_bits) + 2 + n)


def wb_luts(cfg: AcceleratorConfig) -> float:
    """LUT4 the two-word writeback adds besides its comparators (``lut_features``' ``rq``), counted: the
    buffer's pair-2 load order (a third input to the load mux of half the lanes: a LUT4 a bit), the pair's
    steering to the ports (a 2:1 mux a bit of two accumulators and lane indices), the second word's address
    (its adder and phase-split offset), popcount and level mux, and the written word's host/pipeline select
    a copy per bank group. 0 with one word."""
    from .actmem import copies

    if cfg.wb_words == 1:
        return 0.0
    nthr = cfg.max_levels - 1
    return (cfg.lanes // 2 * cfg.acc_bits + 2 * (cfg.acc_bits + cfg.lane_bits) + 2 * cfg.addr_bits
            + nthr + cfg.max_levels // 2 * cfg.act_bits + copies(cfg) * cfg.act_bits)


def slot_ctrl_bits(cfg: AcceleratorConfig) -> int:
    """The lane-control bits that differ between a grouped entry's slots: sign, real / rmax, and each
    term's enable and shift."""
    return 2 + cfg.terms * (1 + cfg.shift_bits)


def group_luts(cfg: AcceleratorConfig) -> float:
    """LUT4 a lane-groups build adds, counted (not fitted: no calibration row has lane groups): the fold
    tree's select (level k: lanes >> (k + 1) sums or passes, a 2:1 mux a bit), each lane's S5 control from
    one of log2 G + 1 slots (the distinct ones of lane l, ``l >> (log2 lanes - g)``; the bits that differ
    between slots: sign, rmax, enables and shifts, and the bias, which only slot 0 carries; ~1/2 LUT4 an
    input and bit), and the WGT row's slot select (slot j takes word (a | j) mod G of the row: one
    of 2**(log2 G - popcount j) words, 3**log2 G choices over the G slots, ~1/3 LUT4 a choice and entry bit).
    0 without lane groups."""
    G, F = cfg.lane_groups, cfg.fold_levels
    if G == 1:
        return 0.0
    fold = sum(cfg.lanes >> (k + 1) for k in range(F)) * cfg.acc_bits
    lb = cfg.lane_bits
    srcs = [len({l >> (lb - g) for g in range(F + 1)}) for l in range(cfg.lanes)]
    ctrl = (sum(n - 1 for n in srcs) * slot_ctrl_bits(cfg)
            + sum(n > 1 for n in srcs) * cfg.acc_bits) / 2
    slots = isa.entry_layout(cfg).width * (3 ** F - G) / 3
    return fold + ctrl + slots


def ff_features(cfg: AcceleratorConfig, rom_used: dict | None = None, lane_kind: str = "shift") -> dict:
    """The flip-flop model's terms: ``regs``, registers counted from the RTL (the lanes' three stages and
    accumulators, ``lane_regs``; per lane the writeback copy, the operand and ACT word registers; the host
    shell, the perf counters, the requantizer's inputs, the descriptor and entry registers, the sequencer's
    two-deep (count, bias) prefetch, the group tail that travels beside the lanes' extra two stages), and
    the terms whose coefficients are fitted (``ff_<name>``): a constant (control, pipeline flags), a
    per-lane rest, and the registered ROM words (WGT entry, RQ row) that Yosys keeps in full only when the
    ROMs hold random words (``rom_used`` None): with a model's program, their constant bits fold away."""
    from .actmem import read_latency
    from .sequencer import issue_layout
    from .top import tail_layout

    n_in, n_out = shell_bits(cfg)
    per_lane, shared = lane_regs(cfg, lane_kind)
    tail = tail_layout(cfg).size
    regs = (
        cfg.lanes * (per_lane + cfg.acc_bits + 3 * cfg.act_bits + 1)
        + shared
        + n_in
        + n_out
        + 64
        + 3 * cfg.acc_bits
        + isa.desc_layout(cfg).width
        + decode_regs(cfg)
        + 2 * (cfg.count_bits + cfg.acc_bits) + 3  # prefetch n1, n2, n1's two flags, settle's third bit
        + 2 * tail  # the group tail beside the lanes: three registers (S7..S9), was one
        + memory_stage_regs(cfg, rom_used)
        + cfg.wgt_addr_bits + 1  # the sequencer's ch_w_next and RUN flag (beside its FSM state)
        + copy_regs(cfg, rom_used, lane_kind)
        + group_regs(cfg)
        + wb_regs(cfg)
    )
    if read_latency(cfg) == 3:  # 128 lanes and more: the rotation's mid-way register and S3c
        regs += cfg.lanes * cfg.act_bits + cfg.lane_bits + isa.decoded_layout(cfg).width + cfg.lanes \
            + issue_layout(cfg).size
    rom_words = isa.rq_layout(cfg).width + isa.entry_layout(cfg).width + isa.val_layout(cfg).width \
        + isa.tap_layout(cfg).width
    return {"regs": regs, "const": 1.0, "lane": cfg.lanes, "rom_words": rom_words if rom_used is None else 0.0}


def estimate(
    cfg: AcceleratorConfig,
    target: str,
    *,
    kind: str = "board",
    lane_kind: str = "shift",
    rom_used: dict | None = None,
    coef: dict | None = None,
) -> dict:
    """Estimated ``lut``, ``ff``, ``bram`` (family units), ``dsp`` (0: none inferred for shift lanes),
    ``blocks`` (bram per memory) and ``memories_in`` for the design ``hw/flows/build.py`` synthesises; on
    iCE40 also ``lc``, the logic cells (LUT4 + the flip-flops that take a cell of their own, ``lc_ff``).

    ``rom_used`` ({"wgt"|"rq"|"prog": words holding the program}) matters for ROMs that Yosys turns
    into logic: their zero tail folds away. Default: every word used (random contents, the worst case)."""
    if target not in FAMILY:
        raise ValueError(f"Target must be one of {', '.join(FAMILY)}, not {target!r}")
    fam = FAMILY[target]
    c = COEF[fam] if coef is None else coef
    feats = lut_features(cfg, fam, kind, lane_kind, rom_used)
    lane_key = "lut_lane" if lane_kind == "shift" else "lut_lane_mul"
    lut = sum(c.get(lane_key if k == "lane" else f"lut_{k}", 1.0) * v for k, v in feats.items())
    if kind == "board":
        lut += group_luts(cfg) + wb_luts(cfg)
    dsp = cfg.lanes if (lane_kind == "mul" and fam == "ice40") else 0  # synth_ice40 -dsp: one SB_MAC16 a lane
    if kind == "array":
        per_lane, shared = lane_regs(cfg, lane_kind)
        return {"lut": round(lut), "ff": cfg.lanes * per_lane + shared, "bram": 0, "dsp": dsp, "target": target}
    mm = memory_map(cfg, fam, rom_used)
    f = ff_features(cfg, rom_used, lane_kind)
    ff = f["regs"] + mm["ff_bits"] + sum(c.get(f"ff_{k}", 0.0) * v for k, v in f.items() if k != "regs")
    from .top import rq_thr_outreg, table_outreg

    if rq_thr_outreg(cfg, dp16kd_instances(cfg, fam)):  # rq_thr_q in the blocks' output registers
        ff -= (cfg.max_levels - 1) * cfg.acc_bits
    if table_outreg(cfg, dp16kd_instances(cfg, fam)):  # D3's VAL and TAP rows in the blocks' output registers
        ff -= isa.val_layout(cfg).width + isa.tap_layout(cfg).width
    out = {
        "lut": round(lut),
        "ff": round(ff),
        "bram": sum(mm["blocks"].values()),
        "spram": cfg.wgt_sprams if mm["where"].get("wgt") == "spram" else 0,
        "dsp": dsp,
        "blocks": mm["blocks"],
        "memories_in": mm["where"],
        "target": target,
    }
    if "lc_ff" in c:  # iCE40: the logic cells nextpnr places (devices.RESOURCES "lc")
        out["lc"] = round(lut + c["lc_ff"] * ff)
    return out
