"""The synthesis flow on a tiny design with the real yowasp tools (marked ``yosys``; ~20 s)."""

import json

import pytest

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.flows.asic import asic_estimate
from apotflow.hw.flows.build import build
from apotflow.hw.flows.nextpnr import DEFAULT_TIMEOUT

pytestmark = [pytest.mark.yosys, pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]

CFG = AcceleratorConfig(lanes=2, act_bits=6, acc_bits=16, shift_bits=3)


def test_tiny_lane_arrays_shift_beats_mul_on_ecp5_without_dsp(tmp_path):
    got = {}
    for kind in ("shift", "mul"):
        r = build(CFG, "ecp5-25k", tmp_path / kind, kind="array", lane_kind=kind, pnr=False, extra_synth_args="-nodsp")
        saved = json.loads((tmp_path / kind / "synth.json").read_text())
        for k in ("lut", "ff", "bram", "dsp", "fmax_mhz", "fits", "bitstream", "estimate"):
            assert k in saved
        # flip-flops of the three-stage lanes: shift, per lane the two shifted terms (2 x 13), the
        # product (16) and acc (16), plus one copy of the controls that follow the entry (valid, first,
        # rmax, bias to S3 twice, sign to S2: 39; Yosys merges the lanes' identical copies) = 155;
        # mul, per lane operand (6), product (17) and acc, the shared weight (10) and controls = 126
        assert r["ff"] == {"shift": 155, "mul": 126}[kind] and r["dsp"] == 0 and r["fits"]
        got[kind] = r["lut"]
    assert got["shift"] < got["mul"]


def test_tiny_asic_estimate(tmp_path):
    r = asic_estimate(AcceleratorConfig(lanes=1, act_bits=4, acc_bits=12, shift_bits=2), tmp_path)
    assert r["gates"] > 0 and r["transistors"] > 0 and r["transistors_exclude_ff"]
    # acc (12), the two shifted terms (2 x 7), the product (10, one bit trimmed), the controls to S3
    # (2 x 15) and the sign to S2
    assert r["ff"] == 12 + 14 + 9 + 30 + 1


@pytest.mark.slow
def test_board_build_reports_speed_in_synth_json_and_manifest(tmp_path):
    """A placed and routed board build of the digits program: synth.json and the bitstream's manifest
    carry the exact cycles per image, latency and images/s at the Fmax reached (hw/cycles.timing)."""
    from pathlib import Path

    from apotflow.hw.cycles import timing, total_cycles
    from apotflow.hw.fit import fit
    from apotflow.sw import export

    net = export.load(Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot")
    prog = fit(net, AcceleratorConfig(lanes=2))
    cycles = total_cycles(prog.config, prog.images)
    r = build(prog.config, "ecp5-25k", tmp_path / "out", prog.images, design="digits-l2", freq_mhz=50,
              bitstream_root=tmp_path / "bits", cycles=cycles)
    saved = json.loads((tmp_path / "out" / "synth.json").read_text())
    manifest = json.loads((tmp_path / "bits" / "ecp5-25k" / "digits-l2" / "manifest.json").read_text())
    want = timing(cycles, r["fmax_mhz"])
    assert r["fmax_mhz"] > 0 and want["images_per_s"] > 0
    assert {k: saved[k] for k in want} == want
    assert {k: manifest["performance"][k] for k in want} == want and "latency" in manifest["performance"]["rules"]


def test_placement_seed_sweep_keeps_the_best_and_reproduces(tmp_path):
    """--pnr-seeds: one synthesis, place and route once per seed (each in its own folder), every seed's Fmax in
    synth.json, the highest kept; a single-seed run of the kept seed reproduces its Fmax (nextpnr is
    deterministic per seed), and the seeds differ (placement noise is what the sweep is for)."""
    r = build(CFG, "ecp5-25k", tmp_path / "sweep", kind="array", seeds=[1, 2, 3], freq_mhz=200)
    saved = json.loads((tmp_path / "sweep" / "synth.json").read_text())
    sweep = saved["pnr_seeds"]
    assert [s["seed"] for s in sweep] == [1, 2, 3] and all(s["success"] and not s["timed_out"] for s in sweep)
    assert saved["pnr"]["timeout_s"] == DEFAULT_TIMEOUT and saved["pnr"]["timed_out"] is False  # the default limit
    fmax = {s["seed"]: s["fmax_mhz"] for s in sweep}
    best = max(fmax, key=lambda s: (fmax[s], -s))
    assert saved["pnr_seed"] == saved["pnr"]["seed"] == best and saved["fmax_mhz"] == fmax[best] == r["fmax_mhz"]
    assert len(set(fmax.values())) > 1, fmax
    for s in (1, 2, 3):
        assert (tmp_path / "sweep" / "synth-ecp5-25k" / f"seed-{s}" / "nextpnr.log").is_file()
    assert any("placement seeds swept" in n and f"bitstream are seed {best}'s" in n for n in saved["notes"])
    one = build(CFG, "ecp5-25k", tmp_path / "one", kind="array", seeds=[best], freq_mhz=200)
    assert one["pnr_seed"] == best and one["fmax_mhz"] == fmax[best]
    assert [s["seed"] for s in one["pnr_seeds"]] == [best]
