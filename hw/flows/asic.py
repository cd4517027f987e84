"""ASIC side: Yosys generic synthesis mapped to CMOS gates (``abc -g cmos2``, ``stat -tech cmos``).

A technology-independent estimate: Yosys counts cells of its own simple gate library (NAND, NOR,
NOT, AOI/OAI...) and a transistor number per cell; flip-flops are left out of the transistor count
(Yosys prints it with a trailing "+"), so ``transistors`` is combinational logic only and ``ff``
counts the flip-flops beside it. No standard-cell library, no timing, no area in um^2. Memories
are synthesised to logic here (the ROM contents become gates), so for a whole accelerator the figure
is dominated by the memories; compare lanes with :func:`asic_estimate` on ``kind="array"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .. import isa
from ..config import AcceleratorConfig
from . import yosys
from .build import write_design


def asic_estimate(cfg: AcceleratorConfig, workdir: Path, images: isa.MemoryImages | None = None, *,
                  kind: str = "array", lane_kind: str = "shift", max_reduce: bool = True, log: Callable[[str], None] = lambda m: None) -> dict:
    """``gates`` (combinational cells), ``ff``, ``transistors`` (flip-flops excluded), ``cells_by_type``."""
    workdir = Path(workdir)
    t0 = time.perf_counter()
    src = write_design(cfg, workdir, images, kind=kind, lane_kind=lane_kind, max_reduce=max_reduce)
    log(f"[generic] CMOS gate synthesis of {kind} ({cfg.lanes} {lane_kind} lanes) ...")
    res = yosys.synthesize(src["verilog"], src["top"], "generic", workdir)
    out = {"target": "generic", "kind": kind, "lane_kind": lane_kind, "max_reduce": max_reduce, "lanes": cfg.lanes,
           "gates": res["gates"], "ff": res["ff"], "transistors": res.get("transistors"),
           "transistors_exclude_ff": res.get("transistors_exclude_ff"), "cells_by_type": res["cells_by_type"],
           "config": cfg.to_dict(), "seconds": round(time.perf_counter() - t0, 2),
           "notes": [("technology-independent estimate: Yosys abc -g cmos2 gates and stat -tech cmos transistor "
                      "counts, flip-flops excluded from the transistor count; not a standard-cell area")]}
    log(f"[generic] {out['gates']} gates, {out['ff']} flip-flops, {out['transistors']} transistors (FF excluded)")
    return out
