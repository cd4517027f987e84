"""Verilog generation: files, top name, ports, hex images padded to the memory depths."""

import random
from dataclasses import replace

from apotflow.hw import isa
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.randprog import random_config, random_program
from apotflow.hw.rtl import generate_verilog, ports_manifest


def test_generate_verilog(tmp_path):
    rng = random.Random(1)
    cfg = random_config(rng)
    images, _ = random_program(cfg, rng)
    r = generate_verilog(cfg, images, tmp_path)
    top = (tmp_path / "apotflow_top.v").read_text()
    assert "module apotflow_top(" in top
    assert "apotflow_rom #(" in top and "wgt.hex" in top and "rq.hex" in top and "prog.hex" in top
    assert (tmp_path / "apotflow_rom.v").read_text().count("$readmemh(INIT_FILE, mem)") == 1
    for key, depth, layout in (("wgt", cfg.wgt_depth, isa.entry_layout(cfg)), ("rq", cfg.rq_depth, isa.rq_layout(cfg)),
                               ("prog", cfg.prog_depth, isa.desc_layout(cfg))):
        words = isa.read_hex(r["hex"][key])
        assert len(words) == depth
        assert words[:len(getattr(images, key))] == getattr(images, key)
        assert all(w >> layout.width == 0 for w in words)
    names = [p["name"] for p in r["ports"]]
    assert "apotflow_top" not in names
    assert {"clk", "rst", "start", "busy", "done", "host_rdata", "out_rdata", "perf_rdata", "cycles"} <= set(names)


def test_ports_manifest_widths():
    cfg = AcceleratorConfig()
    assert ports_manifest(cfg)["act_read_latency_cycles"] == 5  # two registers, then the pipeline's split rotation
    assert ports_manifest(AcceleratorConfig(lanes=128, act_depth=1024))["act_read_latency_cycles"] == 5
    ports = {p["name"]: p for p in ports_manifest(cfg)["ports"]}
    assert ports["host_addr"]["width"] == cfg.addr_bits and ports["host_addr"]["direction"] == "in"
    assert ports["out_rdata"]["width"] == cfg.acc_bits and ports["out_rdata"]["signed"]
    assert ports["perf_addr"]["width"] == cfg.prog_addr_bits
    assert ports["cycles"]["width"] == 32 and ports["cycles"]["direction"] == "out"


def test_wgt_ram_verilog_is_the_spram_form(tmp_path):
    """A wgt_ram config: WGT is SB_SPRAM256KA instances (the UP5K's form, hw/top.py wgt_ram) with Yosys'
    simulation model beside apotflow_top.v, the host's WGT port on the top, and no WGT ROM."""
    rng = random.Random(2)
    cfg = replace(random_config(rng), wgt_ram=1)
    images, _ = random_program(cfg, rng)
    r = generate_verilog(cfg, images, tmp_path)
    top = (tmp_path / "apotflow_top.v").read_text()
    assert top.count("SB_SPRAM256KA ") == cfg.wgt_sprams == 1 and "INIT_FILE(\"wgt.hex\")" not in top
    assert "module SB_SPRAM256KA" in (tmp_path / "ice40_spram_sim.v").read_text()
    assert {"wgt_we", "wgt_waddr", "wgt_wdata"} <= {p["name"] for p in r["ports"]}
    assert len(isa.read_hex(r["hex"]["wgt"])) == cfg.wgt_depth  # the image the host writes
