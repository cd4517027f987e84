"""Synthesis flow: script generation and stat parsing without tools; one real yowasp run."""

import json
import time

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from apotflow.hw.flows import nextpnr, yosys

# Trimmed `stat -json` outputs of Yosys 0.70 (the layout it writes: per-module and "design").
ICE40_STAT = {
    "modules": {"\\top": {"num_cells": 62, "num_cells_by_type": {"SB_LUT4": 1}}},
    "design": {
        "num_cells": 70,
        "num_cells_by_type": {
            "SB_CARRY": 14, "SB_DFFESR": 16, "SB_DFF": 2, "SB_LUT4": 32,
            "SB_RAM40_4K": 3, "SB_SPRAM256KA": 1, "SB_MAC16": 2,
        },
    },
}  # fmt: skip
XILINX_STAT = {
    "design": {
        "num_cells": 30,
        "num_cells_by_type": {
            "LUT2": 4, "LUT6": 4, "LUT5": 1, "FDRE": 16, "FDSE": 1, "CARRY4": 4,
            "RAMB36E1": 2, "RAMB18E1": 1, "DSP48E1": 3, "IBUF": 19, "MUXF7": 2,
        },
    }
}  # fmt: skip
GENERIC_STAT = {
    "design": {
        "num_cells": 170,
        "num_cells_by_type": {"$_NAND_": 44, "$_NOR_": 72, "$_NOT_": 38, "$_SDFFE_PP0P_": 16},
        "estimated_num_transistors": "540+",
    }
}


def test_script_ice40():
    s = yosys.synth_script(["a.v", "b.sv"], "top", "ice40-up5k")
    assert 'read_verilog "a.v"' in s and 'read_verilog -sv "b.sv"' in s
    assert "synth_ice40 -device u -dsp -top top" in s
    assert "tee -q -o stat.json stat -json\n" in s
    assert s.rstrip().endswith('write_json "top.json"')


def test_script_targets():
    assert "synth_ecp5 -top t" in yosys.synth_script(["a.v"], "t", "ecp5-85k")
    x = yosys.synth_script(["a.v"], "t", "xc7a100t")
    assert "synth_xilinx -family xc7" in x and "write_json" not in x
    g = yosys.synth_script(["a.v"], "t", "generic")
    assert g.index("synth -flatten -top t") < g.index("abc -g cmos2") < g.index("stat -json -tech cmos")
    assert "synth_ice40 -device u -dsp -top t -spram" in yosys.synth_script(
        ["a.v"], "t", "ice40-up5k", extra_synth_args="-spram"
    )


def test_script_relative_to_workdir(tmp_path):
    s = yosys.synth_script([tmp_path / "src" / "a.v"], "t", "ecp5-25k", workdir=tmp_path / "synth")
    assert 'read_verilog "../src/a.v"' in s


def test_script_rejects_bad_input():
    with pytest.raises(ValueError, match="Target must be one of"):
        yosys.synth_script(["a.v"], "t", "gowin")
    with pytest.raises(ValueError, match="identifier"):
        yosys.synth_script(["a.v"], "t; shell", "generic")
    with pytest.raises(ValueError, match="at least one"):
        yosys.synth_script([], "t", "generic")


def test_parse_stat_ice40():
    r = yosys.parse_stat(ICE40_STAT, "ice40-up5k")
    assert (r["lut"], r["ff"], r["carry"], r["bram"], r["spram"], r["dsp"]) == (32, 18, 14, 3, 1, 2)
    assert r["cells"] == 70 and r["cells_by_type"]["SB_LUT4"] == 32


def test_parse_stat_xilinx_and_text_input(tmp_path):
    r = yosys.parse_stat(json.dumps(XILINX_STAT), "xc7a100t")
    assert (r["lut"], r["ff"], r["carry"], r["dsp"], r["mux"]) == (9, 17, 4, 3, 2)
    assert (r["bram"], r["bram36"], r["bram18_only"]) == (5, 2, 1)
    path = tmp_path / "stat.json"
    path.write_text(json.dumps(XILINX_STAT))
    assert yosys.parse_stat(path, "xc7a100t") == r


def test_parse_stat_generic_transistors():
    r = yosys.parse_stat(GENERIC_STAT, "generic")
    assert r["ff"] == 16 and r["gates"] == 154
    assert r["transistors"] == 540 and r["transistors_exclude_ff"] is True


def test_parse_fmax_takes_last_line_per_clock():
    log = (
        "Info: Max frequency for clock 'clk': 66.93 MHz (PASS at 50.00 MHz)\n"
        "Info: Max frequency for clock 'clk': 61.74 MHz (PASS at 50.00 MHz)\n"
    )
    assert nextpnr.parse_fmax(log) == {"clk": 61.74}


def test_pnr_command():
    cmd = nextpnr.pnr_command("t.json", "ice40-up5k", 48, "t.asc", "r.json")
    assert cmd[:4] == ["--up5k", "--package", "sg48", "--pcf-allow-unconstrained"]
    assert cmd[-2:] == ["--asc", "t.asc"] and "--freq" in cmd and "48" in cmd
    ecp = nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json", out_of_context=True)
    assert "--25k" in ecp and "CABGA381" in ecp and "--out-of-context" in ecp and "--textcfg" not in ecp
    with pytest.raises(ValueError):
        nextpnr.pnr_command("t.json", "xc7a100t", 100, "o", "r")
    lpf = nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json", lpf="clock.lpf")
    assert lpf[lpf.index("--lpf") + 1] == "clock.lpf"
    with pytest.raises(ValueError, match="lpf"):
        nextpnr.pnr_command("t.json", "ice40-up5k", 48, "t.asc", "r.json", lpf="clock.lpf")


def test_pnr_command_seed_and_seed_lists():
    """The placement seed reaches nextpnr's --seed (default 1: every figure before --pnr-seed); seed lists parse
    as commas or a range, and a bad one is a ValueError naming it."""
    def seed(cmd):
        return cmd[cmd.index("--seed") + 1]

    assert seed(nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json")) == "1" == str(nextpnr.DEFAULT_SEED)
    assert seed(nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json", seed=7)) == "7"
    assert nextpnr.parse_seeds("3") == [3]
    assert nextpnr.parse_seeds("1, 5,2") == [1, 5, 2]
    assert nextpnr.parse_seeds("2-4,9") == [2, 3, 4, 9]
    assert nextpnr.parse_seeds(str(nextpnr.SEED_MAX)) == [nextpnr.SEED_MAX]
    for bad, msg in [("", "integers separated by commas"), ("1,,2", "integers"), ("-1", "integers"), ("1.5", "integers"),
                     ("2-1", "run upwards"), ("1-5000", "at most 1000"), ("1,2,1", "seed 1 given twice"),
                     ("2-3,3", "seed 3 given twice"), (str(2**31), "0 .. 2147483647")]:
        with pytest.raises(ValueError, match=msg):
            nextpnr.parse_seeds(bad)
    for bad in ([], [True], [-1], [1.0], [2**31]):
        with pytest.raises(ValueError):
            nextpnr.check_seeds(bad)
    with pytest.raises(ValueError, match="placement seed"):
        nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json", seed=-2)


def test_seed_progress_line_and_sweep_note():
    from apotflow.hw.flows.build import seed_line, sweep_note

    a = {"seed": 4, "success": True, "fmax_mhz": 97.5}
    b = {"seed": 9, "success": False, "fmax_mhz": None, "errors": ["ERROR: Failed to route arc 0"]}
    assert seed_line(a, a, [4, 9]) == "placement seed 4 (1 of 2): Fmax 97.5 MHz; best so far 97.5 MHz (seed 4)"
    assert seed_line(b, a, [4, 9]) == ("placement seed 9 (2 of 2): failed: ERROR: Failed to route arc 0; best so "
                                       "far 97.5 MHz (seed 4)")
    assert seed_line(a, a, [4]) == "placement seed 4 (1 of 1): Fmax 97.5 MHz"
    sweep = [a, b, {"seed": 2, "success": True, "fmax_mhz": 101.2}]
    assert sweep_note(sweep, 2) == ("placement seeds swept (seed 4: 97.5 MHz, seed 9: failed, seed 2: 101.2 MHz); "
                                    "spread 97.5 .. 101.2 MHz; the result and bitstream are seed 2's")


class Accumulator(wiring.Component):
    """Adds ``x`` into an 8-bit register each cycle; ``y`` is the register (latency 1)."""

    def __init__(self):
        super().__init__({"x": In(8), "y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.y + self.x)
        return m


@pytest.mark.yosys
def test_synthesize_and_place_small_design(tmp_path):
    src = tmp_path / "acc.v"
    src.write_text(verilog.convert(Accumulator(), name="acc"))
    times = {}
    for target, lut_range in [("ice40-up5k", (8, 40)), ("ecp5-25k", (0, 40))]:  # ECP5 adds in CCU2C
        t0 = time.perf_counter()
        r = yosys.synthesize([src], "acc", target, tmp_path / target)
        times[target] = time.perf_counter() - t0
        assert r["ff"] == 8, r
        assert lut_range[0] <= r["lut"] <= lut_range[1], r
        assert r["carry"] > 0 and r["bram"] == r["dsp"] == 0, r
    p = nextpnr.pnr(r["netlist"], "ecp5-25k", tmp_path / "ecp5-25k", 50)
    assert p["success"] and p["fmax_mhz"] > 50, p
    # clk placed on the clock input pin (nextpnr.CLOCK_SITE), by the LPF written beside the run
    assert 'SITE "G2"' in (tmp_path / "ecp5-25k" / "clock.lpf").read_text()
    assert "--lpf clock.lpf" in " ".join(nextpnr.pnr_command("n", "ecp5-25k", 50, "o", "r", lpf="clock.lpf"))
    print("synthesis seconds:", times, "ecp5 pnr", p["seconds"])


def test_pnr_command_router_defaults_by_family():
    """router2 on ECP5 (router1 did not converge on the 64-lane ECP5-85k build), router1 on iCE40."""
    ecp = nextpnr.pnr_command("t.json", "ecp5-85k", 100, "t.config", "r.json")
    assert ecp[ecp.index("--router") + 1] == "router2"
    ice = nextpnr.pnr_command("t.json", "ice40-up5k", 24, "t.asc", "r.json")
    assert ice[ice.index("--router") + 1] == "router1"
    ecp1 = nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json", router="router1")
    assert ecp1[ecp1.index("--router") + 1] == "router1"
    with pytest.raises(ValueError, match="router must be one of"):
        nextpnr.pnr_command("t.json", "ecp5-25k", 100, "t.config", "r.json", router="router3")


def test_missed_constraint_names_best_fmax_shortfall_and_path():
    from apotflow.hw.flows.build import missed_constraint

    step = {"from": {"cell": "a"}, "to": {"cell": "b"}}
    clk = "posedge clk"
    io = {"from": "<async>", "to": clk, "path": [{**step, "type": "routing", "delay": 20.0, "net": "pin"}]}
    report = {"critical_paths": [io, {"from": clk, "to": clk, "path": [
        {**step, "type": "clk-to-q", "delay": 0.5}, {**step, "type": "routing", "delay": 6.0, "net": "s2_row"},
        {"from": {"cell": "b"}, "to": {"cell": "bank3"}, "type": "logic", "delay": 5.5}]}]}
    cp = nextpnr.critical_path(report)
    assert cp == {"from": "a", "to": "bank3", "delay_ns": 12.0, "routing_ns": 6.0, "nets": ["s2_row"]}
    msg = missed_constraint({"fmax_mhz": 83.33, "constraint_mhz": 100.0, "critical_path": cp})
    assert msg == ("timing constraint not met: Fmax 83.33 MHz < 100 MHz (16.67 MHz, 16.7% short); the bitstream "
                   "is valid up to 83.33 MHz; critical path 12.0 ns (6.0 ns routing) from a to bank3")
    assert "the placed design (no bitstream: an array build) is valid up to 83.33 MHz" in \
        missed_constraint({"fmax_mhz": 83.33, "constraint_mhz": 100.0}, bitstream=False)
    assert nextpnr.critical_path({"critical_paths": []}) is None
    assert nextpnr.critical_path({"critical_paths": [io]})["delay_ns"] == 20.0  # only an unconstrained pin's


class Copies(wiring.Component):
    """One register and four copies of it (the RTL's per-group copies, hw/actmem.keep_attrs), each
    feeding its own output."""

    d: In(8)
    o: Out(32)

    def __init__(self, keep: bool):
        self.keep = keep
        super().__init__()

    def elaborate(self, platform):
        from amaranth.hdl import Cat, Signal

        from apotflow.hw.actmem import keep_attrs

        m = Module()
        s = Signal(8)
        m.d.sync += s.eq(self.d)
        copies = [Signal(8, name=f"c{i}", attrs=keep_attrs() if self.keep else {}) for i in range(4)]
        m.d.sync += [c.eq(s) for c in copies]
        m.d.comb += self.o.eq(Cat(*copies))
        return m


@pytest.mark.yosys
def test_kept_register_copies_survive_synthesis(tmp_path):
    # opt_merge merges identical flip-flops; the script's setattr keeps those driving a `keep` wire
    ffs = {}
    for keep in (False, True):
        src = tmp_path / f"c{int(keep)}.v"
        src.write_text(verilog.convert(Copies(keep), name="cp"))
        ffs[keep] = yosys.synthesize([src], "cp", "ecp5-25k", tmp_path / f"k{int(keep)}")["ff"]
    assert ffs == {False: 16, True: 8 + 4 * 8}, ffs
