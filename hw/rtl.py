"""Verilog generation: apotflow_top.v (ROMs as $readmemh instances), apotflow_rom.v and the hex images.

The ROM contents are not baked into the Verilog: ``apotflow_rom`` loads ``wgt.hex``, ``rq.hex``,
``prog.hex``, ``val.hex`` and ``tap.hex`` with ``$readmemh`` at simulation/synthesis start, resolving the relative names against
the working directory of the simulator or of yosys. Swapping weights = replacing the hex files.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from . import isa
from .config import AcceleratorConfig
from .top import HEX_FILES, Accelerator, accelerator_signature, grouped_rows, host_act_latency

TOP = "apotflow_top"
ROM_SOURCE = Path(__file__).with_name("apotflow_rom.v")
SPRAM_MODEL = Path(__file__).with_name("ice40_spram_sim.v")  # SB_SPRAM256KA for simulating wgt_ram builds


def sim_accelerator(cfg: AcceleratorConfig) -> Accelerator:
    """The accelerator ``generate_verilog`` emits (its ROMs load the hex files: the text depends on the
    config alone). A ``wgt_ram`` config is the iCE40 UP5K's build: WGT as SB_SPRAM256KA instances, and
    RQ's highest thresholds in the one-port copy that its free EBR holds (``estimate.rq_thr_block``)."""
    from .estimate import rq_thr_block

    return Accelerator(cfg, None, rom_style="readmemh", wgt_spram=bool(cfg.wgt_ram),
                       rq_thr_block=rq_thr_block(cfg, "ice40"))


def sim_sources(cfg: AcceleratorConfig) -> list[Path]:
    """The Verilog files beside apotflow_top.v that a simulator needs: apotflow_rom.v, and for a
    ``wgt_ram`` config the SB_SPRAM256KA model (its WGT is the UP5K's SPRAM instances, as synthesised)."""
    return [ROM_SOURCE] + ([SPRAM_MODEL] if cfg.wgt_ram else [])

_MEANING = {
    "clk": "clock; everything is synchronous to its rising edge",
    "rst": "synchronous reset, active high",
    "start": "pulse while busy is low: run the program from descriptor 0",
    "busy": "high from the cycle after start until (and including) the done cycle",
    "done": "one-cycle pulse when the last layer's writes have landed",
    "host_addr": "activation memory address for host access (when busy is low)",
    "host_wdata": "activation word to write",
    "host_we": "write host_wdata to host_addr (ignored while busy)",
    "host_rdata": "activation word at the host_addr of act_read_latency_cycles earlier (5)",
    "out_addr": "raw output (OUT) memory address",
    "out_rdata": "raw output word (signed) at the out_addr of the previous cycle",
    "perf_addr": "layer index for the per-layer cycle counters",
    "perf_rdata": "cycles layer perf_addr took in the last run (previous cycle's perf_addr)",
    "cycles": "total cycles of the last run (= cycles busy was high)",
    "wgt_we": "wgt_ram builds: write wgt_wdata to WGT word wgt_waddr (ignored while busy); the host writes "
              "every word of wgt.hex before the first start",
    "wgt_waddr": "wgt_ram builds: weight entry address (the line of wgt.hex)",
    "wgt_wdata": "wgt_ram builds: weight entry (code, delta) as in wgt.hex",
}


def ports_manifest(cfg: AcceleratorConfig) -> dict:
    """The top-level interface: name, direction, width, signedness and meaning of every port."""
    ports = [
        {"name": "clk", "direction": "in", "width": 1, "signed": False, "meaning": _MEANING["clk"]},
        {"name": "rst", "direction": "in", "width": 1, "signed": False, "meaning": _MEANING["rst"]},
    ]
    for name, member in wiring.Signature(accelerator_signature(cfg)).members.items():
        shape = member.shape if hasattr(member, "shape") else None
        from amaranth.hdl import Shape

        sh = Shape.cast(shape)
        ports.append({"name": name, "direction": "in" if member.flow == wiring.In else "out",
                      "width": sh.width, "signed": sh.signed, "meaning": _MEANING[name]})
    return {"top": TOP, "ports": ports, "read_latency_cycles": 1, "act_read_latency_cycles": host_act_latency(cfg),
            "rom_files": {k: {"file": v, "width": w, "depth": d} for (k, v), (w, d) in
                          zip(HEX_FILES.items(), rom_shapes(cfg))}}


def rom_shapes(cfg: AcceleratorConfig):
    """(width, depth) of each ROM, in HEX_FILES order."""
    G = cfg.lane_groups  # a lane-groups build's WGT: rows of G words (hw/top.grouped_rows)
    return [(isa.entry_layout(cfg).width * G, cfg.wgt_depth // G), (isa.rq_layout(cfg).width, cfg.rq_depth),
            (isa.desc_layout(cfg).width, cfg.prog_depth), (isa.val_layout(cfg).width, cfg.val_depth),
            (isa.tap_layout(cfg).width, cfg.tap_depth)]


def write_hex_images(cfg: AcceleratorConfig, images: isa.MemoryImages, out_dir) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {}
    for (key, fname), (width, depth) in zip(HEX_FILES.items(), rom_shapes(cfg)):
        paths[key] = out_dir / fname
        words = getattr(images, key)
        if key == "wgt" and cfg.lane_groups > 1:
            words = grouped_rows(cfg, words)
        isa.write_hex(paths[key], words, width, depth)
    return paths


def generate_verilog(cfg: AcceleratorConfig, images: isa.MemoryImages, out_dir) -> dict:
    """Write apotflow_top.v, apotflow_rom.v and the hex images (``HEX_FILES``) into out_dir. A ``wgt_ram``
    config's WGT is the iCE40 UP5K's form (``SB_SPRAM256KA`` instances, ``hw/top.wgt_ram``), with
    ice40_spram_sim.v, Yosys' simulation model of that cell, beside it; the host writes wgt.hex.

    Returns {"top", "verilog": [paths], "hex": {name: path}, "ports": ports_manifest(cfg)["ports"],
    "seconds"}.
    """
    if images is None:
        raise ValueError("generate_verilog needs MemoryImages (the hex files are written from them)")
    images.check()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(sim_accelerator(cfg), name=TOP, emit_src=False)
    top_v = out_dir / f"{TOP}.v"
    top_v.write_text(text)
    others = [out_dir / src.name for src in sim_sources(cfg)]
    for src, dst in zip(sim_sources(cfg), others):
        shutil.copyfile(src, dst)
    hexes = write_hex_images(cfg, images, out_dir)
    return {"top": TOP, "verilog": [top_v, *others], "hex": hexes, "ports": ports_manifest(cfg)["ports"],
            "seconds": time.perf_counter() - t0}
