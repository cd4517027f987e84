"""Bit-exact co-simulation of the generated RTL on Verilator, and proof that the checker can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from apotflow.hw import isa
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import total_cycles
from apotflow.hw.fit import fitted_config
from apotflow.sim.cosim import execute, flip_hex_bit, prepare

pytestmark = pytest.mark.verilator


@pytest.fixture(scope="module")
def setup(small_net, digits_images, tmp_path_factory):
    x, _ = digits_images
    cfg = fitted_config(small_net, AcceleratorConfig(lanes=8))
    return prepare(small_net, cfg, x[:4], tmp_path_factory.mktemp("cosim"), log=lambda m: None)


def test_rtl_equals_golden_in_every_layer(setup):
    s = execute(setup, log=lambda m: None)
    assert s["images"] == 4 and s["mismatches"] == 0 and s["first_mismatch"] is None
    assert s["cycles_total"] == total_cycles(setup.program.config, setup.program.images) == s["cycles_model"]
    assert sum(pl["cycles"] for pl in s["per_layer"]) == s["cycles_total"]
    assert s["cycles_total"] <= 1.5 * s["cycles_ideal"]


def test_flipped_weight_bit_is_caught_and_named(setup):
    prog = setup.program
    layer = 1  # conv2: flip a bit of the code of its first stream entry in the $readmemh image the RTL loads
    w_start = isa.desc_layout(prog.config).unpack(prog.images.prog[layer])["w_start"]
    hexfile = setup.sim_dir / "wgt.hex"
    original = hexfile.read_text()
    try:
        flip_hex_bit(hexfile, w_start, isa.entry_layout(prog.config).offsets["code"])
        s = execute(setup, log=lambda m: None)
    finally:
        hexfile.write_text(original)
    assert s["mismatches"] > 0
    fm = s["first_mismatch"]
    assert fm["layer"] == prog.layers[layer].op and fm["tensor"] == prog.layers[layer].out
    assert len(fm["index"]) == 3 and fm["expected"] != fm["got"]
    assert s["waveform"].endswith((".vcd", ".fst")) and Path(s["waveform"]).stat().st_size > 1000
