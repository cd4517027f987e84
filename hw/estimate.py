"""Fast analytical resource estimate of the accelerator: ``estimate(cfg, target) -> dict``, no tools.

The model follows the RTL block by block (docs/hardware.md); its coefficients are fitted to Yosys
synthesis by ``bench/calibrate_estimator.py`` (results in ``bench/results/calibration.json`` and
docs/resources.md). What each term counts:

* flip-flops: exact register bits of the pipeline (per lane: S3 operand, accumulator, writeback
  copy), the sequencer/descriptor registers, and the serial shell; a fitted constant for the rest.
* LUTs: per lane (shift-add: ``terms`` barrel shifters, adder, add/sub, max compare; multiplier:
  an act x weight array multiplier), the ACT rotation (``lanes x act_bits x log2(lanes)`` 2:1 muxes),
  per-lane padding checks, the writeback lane mux, the requantizer (``max_levels-1`` comparators of
  ``acc_bits``), and a fitted constant for the sequencer. LUT4 for iCE40/ECP5, LUT6 for Xilinx
  (a LUT6 packs about 1.6 LUT4s of this logic).
* block RAM: each memory is cut into the block shapes of the family, the cheapest shape chosen
  (as Yosys' memory_libmap does); ROMs with two read ports need two copies on iCE40 (1R1W blocks)
  and true-dual-port shapes (<= 18 bits) on ECP5. Activation banks smaller than ``LUTRAM_MAX_BITS``
  go to distributed RAM (ECP5/Xilinx) or flip-flops (iCE40) instead, as Yosys maps them.

Everything is integer arithmetic on the config: microseconds per call.
"""

from __future__ import annotations

import math

from . import isa
from .config import AcceleratorConfig
from .ioshell import shell_bits

# (depth, width) shapes of one block RAM, and whether the shape is available with 2 ports.
_BRAM_SHAPES = {
    "ice40": [(256, 16), (512, 8), (1024, 4), (2048, 2)],
    "ecp5": [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)],
    "xilinx": [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)],
}
_TDP_MAX_WIDTH = {"ice40": 0, "ecp5": 18, "xilinx": 18}  # widest shape with two independent ports

FAMILY = {"ice40-up5k": "ice40", "ecp5-25k": "ecp5", "ecp5-85k": "ecp5", "xc7a100t": "xilinx"}

# Fitted by bench/calibrate_estimator.py (see docs/resources.md). Per family.
COEF = {
    "ice40": {"lut_const": 900.0, "lut_lane": 1.0, "lut_rot": 0.55, "lut_rq": 1.1, "ff_const": 150.0,
              "lutram_max_bits": 0},
    "ecp5": {"lut_const": 900.0, "lut_lane": 1.0, "lut_rot": 0.55, "lut_rq": 1.1, "ff_const": 150.0,
             "lutram_max_bits": 1024},
    "xilinx": {"lut_const": 560.0, "lut_lane": 0.62, "lut_rot": 0.35, "lut_rq": 0.7, "ff_const": 150.0,
               "lutram_max_bits": 1024},
}


def bram_blocks(depth: int, width: int, family: str, read_ports: int = 1) -> int:
    """Blocks for a depth x width memory (cheapest shape); two read ports as the family allows."""
    shapes = _BRAM_SHAPES[family]
    if read_ports == 2:
        if _TDP_MAX_WIDTH[family] == 0:  # iCE40: 1R1W only -> one copy per read port
            return 2 * bram_blocks(depth, width, family, 1)
        shapes = [s for s in shapes if s[1] <= _TDP_MAX_WIDTH[family]]
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)


def memory_map(cfg: AcceleratorConfig, family: str) -> dict:
    """Block RAM per memory, and the activation banks' placement (bram / lutram / ff)."""
    c = COEF[family]
    mems = {
        "wgt": bram_blocks(cfg.wgt_depth, isa.entry_layout(cfg).width, family),
        "rq": bram_blocks(cfg.rq_depth, isa.rq_layout(cfg).width, family, read_ports=2),
        "prog": bram_blocks(cfg.prog_depth, isa.desc_layout(cfg).width, family),
    }
    bank_bits = cfg.bank_depth * cfg.act_bits
    if bank_bits <= c["lutram_max_bits"]:
        act_where, act_blocks = ("lutram" if family != "ice40" else "ff"), 0
    else:
        act_where, act_blocks = "bram", cfg.lanes * bram_blocks(cfg.bank_depth, cfg.act_bits, family)
    mems["act"] = act_blocks
    mems["out"] = 0 if cfg.out_depth * cfg.acc_bits <= 1024 else bram_blocks(cfg.out_depth, cfg.acc_bits, family)
    mems["perf"] = 0 if cfg.prog_depth * 32 <= 1024 else bram_blocks(cfg.prog_depth, 32, family)
    return {"blocks": mems, "act_banks_in": act_where}


def _lane_luts(cfg: AcceleratorConfig, lane_kind: str) -> float:
    """LUT4 of one lane (before the family coefficient)."""
    if lane_kind == "mul":
        from .mul_lane import weight_int_bits

        wb = weight_int_bits(cfg)
        return (cfg.act_bits + 1) * wb + 2 * cfg.acc_bits  # partial products + accumulate/compare
    shifted = cfg.act_bits + cfg.max_shift
    # barrel shifters (act_bits x shift_bits 2:1 muxes per term), term adder, add/sub, max compare.
    return cfg.terms * cfg.act_bits * cfg.shift_bits + shifted + 2 * cfg.acc_bits


def estimate(cfg: AcceleratorConfig, target: str, *, kind: str = "board", lane_kind: str = "shift") -> dict:
    """Estimated ``lut``, ``ff``, ``bram`` (family units), ``dsp`` (0: none inferred for shift lanes),
    ``blocks`` (bram per memory) for the design ``hw/flows/build.py`` synthesises."""
    if target not in FAMILY:
        raise ValueError(f"Target must be one of {', '.join(FAMILY)}, not {target!r}")
    fam = FAMILY[target]
    c = COEF[fam]
    L, lb = cfg.lanes, cfg.lane_bits
    lane = c["lut_lane"] * _lane_luts(cfg, lane_kind)
    if kind == "array":
        return {"lut": round(L * lane), "ff": L * cfg.acc_bits, "bram": 0, "dsp": 0, "target": target}
    mm = memory_map(cfg, fam)
    rot = c["lut_rot"] * L * cfg.act_bits * max(1, lb)
    pad = 4 * L * (cfg.delta_bits + 1)  # per-lane iy/ix range checks
    wbmux = cfg.acc_bits * L / 3  # writeback lane select
    rq = c["lut_rq"] * (cfg.max_levels - 1) * cfg.acc_bits
    act_lut = 0
    if mm["act_banks_in"] == "lutram":
        act_lut = L * math.ceil(cfg.bank_depth / 16) * math.ceil(cfg.act_bits / 4) * 2
    lut = c["lut_const"] + L * lane + rot + pad + wbmux + rq + act_lut
    n_in, n_out = shell_bits(cfg)
    ff = (L * (2 * cfg.acc_bits + cfg.act_bits + 1) + n_in + n_out + 64 + 3 * cfg.acc_bits
          + isa.desc_layout(cfg).width + isa.entry_layout(cfg).width + c["ff_const"])
    if mm["act_banks_in"] == "ff":
        ff += cfg.act_depth * cfg.act_bits
    if mm["act_banks_in"] == "bram":
        ff += 0
    bram = sum(mm["blocks"].values())
    return {"lut": round(lut), "ff": round(ff), "bram": bram, "dsp": 0, "blocks": mm["blocks"],
            "act_banks_in": mm["act_banks_in"], "target": target}
