"""hw/ecp5.py: the DP16KD ROM with its output register against Yosys' own mapping of the same memory."""

import json
import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from apotflow.hw import ecp5, isa
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.flows.build import act_outreg
from apotflow.hw.flows.tools import find_tool, run_tool
from apotflow.hw.ioshell import SerialShell
from apotflow.hw.randprog import random_program

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


class Rom(wiring.Component):
    """A 2,048 x 9 (or 1,024 x 18) ROM of read latency 2: an inferred read port and a register, or
    ``dp16kd_rom``."""

    def __init__(self, words, instance: bool, width: int = 9):
        self.words, self.instance, self.width = words, instance, width
        super().__init__({"addr": In(11 if width == 9 else 10), "data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if self.instance:
            m.d.comb += self.data.eq(ecp5.dp16kd_rom(m, "rom", self.addr, self.words, self.width))
            return m
        m.submodules.mem = mem = Memory(shape=self.width, depth=len(self.words), init=self.words)
        rp = mem.read_port(domain="sync")
        m.d.comb += rp.addr.eq(self.addr)
        m.d.sync += self.data.eq(rp.data)
        return m


def _dp16kd(tmp_path, words, instance, width=9):
    """Synthesise ``Rom`` with synth_ecp5; returns (the DP16KD's parameters, its ADA/DOA pins as port bits)."""
    (tmp_path / "r.v").write_text(verilog.convert(Rom(words, instance, width), name="r", emit_src=False))
    run_tool([find_tool("yosys"), "-q", "-p", "read_verilog r.v; synth_ecp5 -top r; write_json r.json"], tmp_path,
             tmp_path / "yosys.log")
    mod = json.loads((tmp_path / "r.json").read_text())["modules"]["r"]
    (cell,) = [c for c in mod["cells"].values() if c["type"] == "DP16KD"]
    port_bit = {b: (name, i) for name, p in mod["ports"].items() for i, b in enumerate(p["bits"])}
    ffs = {c["connections"]["DI"][0]: c["connections"]["Q"][0] for c in mod["cells"].values()
           if c["type"] == "TRELLIS_FF"}
    pins = {}
    for pin, (b,) in cell["connections"].items():
        if pin.startswith("ADA") or pin.startswith("DOA"):
            pins[pin] = port_bit.get(ffs.get(b, b), b if b in ("0", "1") else None)
    return cell["parameters"], pins, len(ffs)


@pytest.mark.yosys
@pytest.mark.parametrize("width", [9, 18])
def test_dp16kd_rom_matches_yosys_mapping(tmp_path, width):
    """2,048 x 9 (the WGT banks) and 1,024 x 18 (the RQ thresholds from 64 lanes on, hw/top.rq_rom)."""
    rng = random.Random(7)
    words = [rng.getrandbits(width) for _ in range(2048 * 9 // width)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref, ref_pins, ref_ffs = _dp16kd(tmp_path / "a", words, False, width)
    got, got_pins, got_ffs = _dp16kd(tmp_path / "b", words, True, width)
    assert ref_ffs == width and got_ffs == 0  # the word register: fabric flip-flops, or the block's own
    assert ref["REGMODE_A"] == "NOREG" and got["REGMODE_A"] == "OUTREG"
    assert int(got["DATA_WIDTH_A"], 2) == int(ref["DATA_WIDTH_A"], 2) == width
    for k in range(ecp5.N_INITVAL):  # the contents where Yosys puts them
        assert got[f"INITVAL_{k:02X}"] == ref[f"INITVAL_{k:02X}"], k
    assert {p: v for p, v in got_pins.items() if v is not None} == {p: v for p, v in ref_pins.items() if v is not None}
    lsb = 3 if width == 9 else 4
    assert [got_pins[f"ADA{i}"] for i in range(lsb, 14)] == [("addr", i) for i in range(14 - lsb)]
    assert [got_pins[f"DOA{i}"] for i in range(width)] == [("data", i) for i in range(width)]


def test_initvals_layout_and_bad_words():
    vals = ecp5.initvals([0x1FF, 0, 0x0AB] + [0] * 29 + [0x155])
    assert vals[0] == 0x1FF | 0x0AB << 20 and vals[1] == 0x155  # word 32: row 16, slot 0 of INITVAL_01
    assert len(vals) == 64 and not any(vals[2:])
    with pytest.raises(ValueError, match="2048 words of 9 bits"):
        ecp5.initvals([512])


def test_ecp5_board_wgt_and_act_banks_are_dp16kd_with_output_registers():
    cfg = AcceleratorConfig(lanes=2, act_depth=256, wgt_depth=8192, rq_depth=16, prog_depth=8)
    images, _ = random_program(cfg, random.Random(3), n_layers=2, max_ch=2)
    width = isa.entry_layout(cfg).width
    rng = random.Random(4)
    images.wgt += [0] * (2048 - len(images.wgt)) + [rng.getrandbits(width) for _ in range(2048)]  # banks 0, 1
    want = sum(any((w >> s) & 511 for w in images.wgt[g * 2048:(g + 1) * 2048])
               for g in range(4) for s in range(0, width, 9))
    assert act_outreg(cfg, "ecp5") is None  # 128 rows a bank: LUT RAM; the DP16KD form forced here
    text = verilog.convert(SerialShell(cfg, images, wgt_banked=True, dp16kd=True, act_outreg="dp16kd"), name="top",
                           emit_src=False)
    assert want >= 2 and text.count('.REGMODE_A("OUTREG")') == want  # the WGT ROM's banks (read on port A)
    assert text.count('.REGMODE_B("OUTREG")') == cfg.lanes  # the ACT banks (written on A, read on B)
    assert text.count("DP16KD #(") == want + cfg.lanes
    assert "DP16KD" not in verilog.convert(SerialShell(cfg, images, wgt_banked=True), name="top", emit_src=False)


def test_act_outreg_only_where_act_is_block_ram():
    """The digits net's 144-row banks are LUT RAM by Yosys' cost rule: no DP16KD forced on them (a forced
    one took 16 blocks more, 33 instead of 17); ResNet-8's 2,048-row block parts and the 64-lane builds'
    576 rows are block RAM."""
    digits = AcceleratorConfig(lanes=16, act_depth=4096, act_rows=144, wgt_depth=8192, rq_depth=128, prog_depth=8)
    assert act_outreg(digits, "ecp5") is None
    r8 = AcceleratorConfig(lanes=16, act_depth=65536, act_rows=2304, wgt_depth=65536, rq_depth=256, prog_depth=16)
    assert act_outreg(r8, "ecp5") == "dp16kd"
    assert act_outreg(AcceleratorConfig(lanes=64, act_depth=65536, act_rows=576), "ecp5") == "dp16kd"
