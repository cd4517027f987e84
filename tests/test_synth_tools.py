"""The synthesis flow on a tiny design with the real yowasp tools (marked ``yosys``; ~20 s)."""

import json

import pytest

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.flows.asic import asic_estimate
from apotflow.hw.flows.build import build

pytestmark = [pytest.mark.yosys, pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]

CFG = AcceleratorConfig(lanes=2, act_bits=6, acc_bits=16, shift_bits=3)


def test_tiny_lane_arrays_shift_beats_mul_on_ecp5_without_dsp(tmp_path):
    got = {}
    for kind in ("shift", "mul"):
        r = build(CFG, "ecp5-25k", tmp_path / kind, kind="array", lane_kind=kind, pnr=False, extra_synth_args="-nodsp")
        saved = json.loads((tmp_path / kind / "synth.json").read_text())
        for k in ("lut", "ff", "bram", "dsp", "fmax_mhz", "fits", "bitstream", "estimate"):
            assert k in saved
        assert r["ff"] == 2 * 16 and r["dsp"] == 0 and r["fits"]
        got[kind] = r["lut"]
    assert got["shift"] < got["mul"]


def test_tiny_asic_estimate(tmp_path):
    r = asic_estimate(AcceleratorConfig(lanes=1, act_bits=4, acc_bits=12, shift_bits=2), tmp_path)
    assert r["gates"] > 0 and r["transistors"] > 0 and r["transistors_exclude_ff"] and r["ff"] == 12
