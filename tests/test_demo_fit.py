"""`make demo` synthesises, for each target, the largest configuration that fits (sim/demo.synth_fitting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit
from apotflow.hw.flows import devices
from apotflow.sim.demo import lane_candidates, synth_fitting
from apotflow.sim.report import _target
from apotflow.sw import export

DIGITS = Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot"


def test_lane_candidates():
    assert lane_candidates(16) == [16, 8, 4, 2]
    assert lane_candidates(12) == [12, 8, 4, 2]
    assert lane_candidates(2) == [2]


def test_a_target_nothing_fits_is_skipped_and_says_why(tmp_path, monkeypatch):
    """A UP5K with 3,000 logic cells: the digits net fits it at no lane count, its weights in ROM or in
    SPRAM (by the estimate): no Yosys run, and the result names the smallest configuration's excess."""
    monkeypatch.setitem(devices.DEVICES, "ice40-up5k", {**devices.DEVICES["ice40-up5k"], "lut": 3000, "lc": 3000})
    net = export.load(DIGITS)
    res = synth_fitting(net, fit(net, AcceleratorConfig(lanes=16)), tmp_path, "ice40-up5k", log=lambda m: None)
    assert res["skipped"] and res["fits"] is False and res["config"] == {"lanes": 2, "wgt_ram": 1}
    assert res["over"] and all(o["need"] > o["have"] for o in res["over"].values())
    assert res["choice"].startswith("none fits (16, 8, 4, 2 lanes tried (weights in ROM or SPRAM)); at 2 lanes "
                                    "with the weights in SPRAM the estimate does not fit")
    assert not (tmp_path / "synth-ice40-up5k").exists()
    row = _target(res, 1000)
    assert row["skipped"] and row["lanes"] == 2 and row["notes"][0].startswith("configuration: none fits")


@pytest.mark.yosys
def test_a_smaller_configuration_is_synthesised_when_the_cosimulated_one_does_not_fit(tmp_path, monkeypatch):
    """A part with 3,500 LUTs (the ECP5-25k's other resources): 16 lanes do not fit by the estimate, 8 do,
    and Yosys confirms; the result is that configuration's, with its own cycles."""
    monkeypatch.setitem(devices.DEVICES, "ecp5-25k", {**devices.DEVICES["ecp5-25k"], "lut": 3500})
    net = export.load(DIGITS)
    prog = fit(net, AcceleratorConfig(lanes=16))
    res = synth_fitting(net, prog, tmp_path, "ecp5-25k", log=lambda m: None)
    assert res["fits"] and res["config"]["lanes"] == 8
    assert res["choice"].startswith("8 lanes, the largest that fits (the co-simulated 16 lanes do not, by the estimate")
    small = fit(net, AcceleratorConfig(lanes=8))
    from apotflow.hw.cycles import layer_cycles

    assert res["cycles_per_image"] == sum(layer_cycles(small.config, small.images))


@pytest.mark.yosys
def test_the_up5k_gets_the_weights_in_spram_where_no_rom_configuration_fits(tmp_path):
    """The real UP5K: the digits net fits at no lane count with its weights in a ROM (the estimate), and at
    2 lanes with them in SPRAM (Yosys confirms): that configuration is synthesised, with its own cycles."""
    net = export.load(DIGITS)
    res = synth_fitting(net, fit(net, AcceleratorConfig(lanes=16)), tmp_path, "ice40-up5k", log=lambda m: None)
    assert res["fits"] and res["config"]["lanes"] == 2 and res["config"]["wgt_ram"] == 1
    assert res["choice"].startswith("2 lanes with the weights in SPRAM, the largest that fits (the co-simulated "
                                    "16 lanes do not, by the estimate")
    small = fit(net, AcceleratorConfig(lanes=2, wgt_ram=1))
    from apotflow.hw.cycles import layer_cycles

    assert res["cycles_per_image"] == sum(layer_cycles(small.config, small.images))


@pytest.mark.yosys
def test_the_generic_target_synthesises_the_cosimulated_configuration(tmp_path):
    """"generic" (the ASIC estimate) has no device capacity to fit: the co-simulated configuration is built."""
    net = export.load(DIGITS)
    res = synth_fitting(net, fit(net, AcceleratorConfig(lanes=4)), tmp_path, "generic", log=lambda m: None)
    assert res["choice"] == "4 lanes: the co-simulated configuration (no device to fit)"
