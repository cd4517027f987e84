"""Synthesis flow pieces that need no tools: estimator, device fit, memory mapping, mul lane, CLI."""

import random

import pytest
from amaranth.sim import Simulator

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.estimate import bram_blocks, estimate, memory_map
from apotflow.hw.flows import devices
from apotflow.hw.flows.build import filled_images
from apotflow.hw.lane import LATENCY, lane_model
from apotflow.hw.mul_lane import LaneArray, MulLane, weight_int_bits

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

CFG = AcceleratorConfig(lanes=16, act_depth=4096, wgt_depth=8192, rq_depth=128, prog_depth=8)


@pytest.mark.parametrize("target", ["ice40-up5k", "ecp5-25k", "ecp5-85k", "xc7a100t"])
def test_estimate_keys_and_monotone(target):
    small, big = estimate(CFG, target), estimate(AcceleratorConfig(lanes=64, act_depth=4096, wgt_depth=8192), target)
    for k in ("lut", "ff", "bram", "dsp"):
        assert isinstance(small[k], int) and small[k] >= 0
    assert big["lut"] > small["lut"] and big["ff"] > small["ff"]
    arr = estimate(CFG, target, kind="array")
    assert arr["ff"] > 16 * CFG.acc_bits and arr["bram"] == 0


def test_estimate_array_flip_flops_three_stage_lanes():
    # the counts Yosys gives for the tiny ECP5 arrays of tests/test_synth_tools.py (155 shift, 126 mul)
    tiny = AcceleratorConfig(lanes=2, act_bits=6, acc_bits=16, shift_bits=3)
    assert estimate(tiny, "ecp5-25k", kind="array")["ff"] == 155
    assert estimate(tiny, "ecp5-25k", kind="array", lane_kind="mul")["ff"] == 126


def test_bram_blocks_shapes():
    assert bram_blocks(256, 16, "ice40") == 1
    assert bram_blocks(256, 17, "ice40") == 2
    # The figures below are Yosys' (synth_ice40 / synth_ecp5 of a bare $readmemh ROM, random words).
    assert bram_blocks(8192, 29, "ice40") == 58  # 2048x2 shape, 4 depth slices packed: 4 x 29 / 2
    assert bram_blocks(8192, 29, "ecp5") == 13  # 2048x9: 4 x 29 / 9
    assert bram_blocks(1024, 18, "ecp5") == 1 and bram_blocks(512, 36, "ecp5") == 1
    assert bram_blocks(512, 36, "ecp5", read_ports=2) == 2  # true dual port: <= 18 bits wide
    assert bram_blocks(256, 16, "ice40", read_ports=2) == 2  # 1R1W blocks: one copy per read port
    # two read ports reading different bits: each iCE40 copy keeps the blocks of its port's bits
    assert bram_blocks(256, 331, "ice40", 2, [[(0, 31)], [(31, 331)]]) == 22  # 2 + 20, not 2 x 21
    assert bram_blocks(512, 40, "ice40", 2, [[(0, 10)], [(10, 40)]]) == 6  # 512x8: 2 + 4
    assert bram_blocks(1024, 26, "ice40", 2, [[(0, 13)], [(13, 26)]]) == 8  # 1024x4: 4 + 4
    assert bram_blocks(256, 331, "ecp5", 2, [[(0, 31)], [(31, 331)]]) == 19  # one true-dual-port copy
    mm = memory_map(CFG, "ecp5")
    assert set(mm["blocks"]) >= {"wgt", "rq", "prog", "act"}


def test_fit_names_resource_and_excess():
    rep = devices.fit({"lut": 8785, "ff": 1864, "bram": 78, "dsp": 0}, "ice40-up5k")
    assert not rep["fits"]
    assert rep["over"]["lut"] == {"need": 8785, "have": 5280, "excess": 3505, "percent": 66.4}
    assert rep["over"]["bram"]["excess"] == 48 and "ff" not in rep["over"]
    msg = devices.fit_message(rep, "ice40-up5k")
    assert "lut: needs 8785, has 5280 (3505 over)" in msg
    assert devices.fit({"lut": 10, "bram": 1}, "ecp5-85k")["fits"]
    with pytest.raises(ValueError, match="Target must be one of"):
        devices.fit({}, "gowin")


def test_filled_images_fill_every_rom():
    cfg = AcceleratorConfig(lanes=4, act_depth=256, wgt_depth=256, rq_depth=32, prog_depth=8)
    img = filled_images(cfg, seed=1)
    assert (len(img.wgt), len(img.rq), len(img.prog)) == (256, 32, 8)
    img.check()


def test_mul_lane_matches_lane_model():
    cfg = AcceleratorConfig(lanes=4, terms=2, act_bits=6, acc_bits=20, shift_bits=3)
    assert weight_int_bits(cfg) == 10
    dut = MulLane(cfg)
    rng = random.Random(0)
    lo, hi = cfg.acc_range
    steps = [(rng.randrange(64), rng.randint(0, 1), [rng.randint(0, 1) for _ in range(2)],
              [rng.randint(0, 7) for _ in range(2)], rng.random() < 0.2, rng.randint(lo // 4, hi // 4),
              rng.random() < 0.3) for _ in range(200)]
    got = []

    async def bench(ctx):
        for a, sign, en, s, first, bias, rmax in steps:
            ctx.set(dut.a, a)
            ctx.set(dut.ctrl.valid, 1)
            ctx.set(dut.ctrl.first, first)
            ctx.set(dut.ctrl.sign, sign)
            ctx.set(dut.ctrl.bias, bias)
            ctx.set(dut.ctrl.rmax, rmax)
            for t in range(2):
                ctx.set(dut.ctrl.en[t], en[t])
                ctx.set(dut.ctrl.s[t], s[t])
            await ctx.tick()
            got.append(ctx.get(dut.acc))
        ctx.set(dut.ctrl.valid, 0)
        for _ in range(LATENCY - 1):  # the same latency as the shift-add lane
            await ctx.tick()
            got.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = got[LATENCY - 1:]
    acc = 0
    for i, (a, sign, en, s, first, bias, rmax) in enumerate(steps):
        acc = lane_model(cfg, acc, a, sign, en, s, first, bias, rmax=rmax)
        assert got[i] == acc, f"step {i}: inputs {steps[i]}, expected {acc}, got {got[i]}"


def test_lane_array_rejects_unknown_kind():
    with pytest.raises(ValueError, match="lane_kind must be one of"):
        LaneArray(CFG, "booth")


def test_synth_cli_parses_without_model():
    from apotflow.sim.cli import build_parser

    a = build_parser().parse_args(["synth", "--target", "ice40-up5k", "--lanes", "4", "--out", "x", "--no-pnr",
                                   "--lane-kind", "mul", "--nodsp"])
    assert a.model is None and a.lanes == 4 and a.lane_kind == "mul" and a.no_pnr and a.nodsp


def test_synth_cli_placement_seeds():
    from apotflow.sim.cli import build_parser
    from apotflow.sim.commands import check_pnr_seeds

    def seeds(*flags):
        return check_pnr_seeds(build_parser().parse_args(["synth", "--out", "x", *flags]))

    assert seeds() is None  # the flow's default seed (hw/flows/nextpnr.DEFAULT_SEED)
    assert seeds("--pnr-seed", "5") == [5]
    assert seeds("--pnr-seeds", "1,3-4") == [1, 3, 4]


def test_compile_reuse_shrinks_act_and_keeps_output():
    from pathlib import Path

    import numpy as np

    from apotflow.hw.compile import compile_net, live_ranges, run_functional
    from apotflow.sw import export

    net = export.load(Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot")
    cfg = AcceleratorConfig(lanes=16, act_depth=4096, wgt_depth=8192, rq_depth=128, prog_depth=8)
    a, b = compile_net(net, cfg), compile_net(net, cfg, reuse=True)
    assert b.act_words < a.act_words and b.stats["act_reuse"]
    ranges = live_ranges(net)
    for n1, p1 in b.placements.items():  # overlapping lifetimes never share words
        for n2, p2 in b.placements.items():
            if n1 < n2 and p1.memory == p2.memory == "act":
                (a1, z1), (a2, z2) = ranges[n1], ranges[n2]
                if not (z1 < a2 or z2 < a1):
                    assert p1.base + p1.size <= p2.base or p2.base + p2.size <= p1.base, (n1, n2)
    x = np.random.default_rng(0).integers(0, 16, size=net.tensors[net.input].shape)
    ya, yb = run_functional(a, x), run_functional(b, x)
    assert np.array_equal(ya[net.output], yb[net.output])


def _calib_rtl() -> list[dict]:
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "results" / "calib-rtl.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_estimator_against_recorded_synthesis():
    """hw/estimate.py against the Yosys syntheses of today's RTL it is calibrated on
    (bench/results/calib-rtl.jsonl, ``apotflow synth --no-pnr``; bench/calibrate_estimator.py): every row,
    the hold-out ones (never fitted) included, within 15% on LUT and FF, block RAM within 5% (+-1 block)
    and SPRAM exact; the ResNet-8 builds at 16 and 64 lanes among them."""
    rows = _calib_rtl()
    assert {(r["design"].split("-")[0], r["lanes"]) for r in rows} >= {("resnet8", 16), ("resnet8", 64)}
    assert any(r["holdout"] for r in rows)
    for row in rows:
        e = estimate(AcceleratorConfig.from_dict(row["config"]), row["target"], lane_kind=row["lane_kind"],
                     rom_used=row["rom_used"])
        for key, tol in (("lut", 0.15), ("ff", 0.15), ("bram", 0.05), ("spram", 0.0)):
            synth = row[key]
            assert abs(e[key] - synth) <= max(tol * synth, 1 if key == "bram" else 0), \
                (row["target"], row["design"], key, synth, e[key])


def test_committed_coefficients_are_the_committed_fit():
    """hw/estimate.py's COEF is what bench/calibrate_estimator.py fits on the committed syntheses (a new
    sweep row, a changed feature or a hand-edited coefficient fails here until the fit is rerun and
    pasted). Fails with one coefficient changed by 0.01 (tried)."""
    import sys
    from pathlib import Path

    pytest.importorskip("scipy")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    try:
        from calibrate_estimator import fitted_coef
    finally:
        sys.path.pop(0)
    from apotflow.hw.estimate import COEF

    fitted = fitted_coef()
    for fam in COEF:
        assert fitted[fam] == pytest.approx(COEF[fam], abs=1e-4), fam


def test_manifest_names_the_placement_seed(tmp_path):
    """build.publish: the manifest's pnr_seed and every swept seed's Fmax; a synth.json written before
    --pnr-seed (no pnr_seed) was placed with seed 1, the flow's only seed then."""
    import json

    from apotflow.hw.flows.build import publish

    (tmp_path / "apotflow_board.bit").write_bytes(b"\0")
    out = {"target": "ecp5-25k", "design": "d", "config": CFG.to_dict(), "fmax_mhz": 97.28, "synth_command": "s",
           "pnr": {"constraint_mhz": 100.0, "router": "router2"}}
    sweep = {**out, "pnr_seed": 3, "pnr_seeds": [{"seed": 2, "fmax_mhz": 94.97}, {"seed": 3, "fmax_mhz": 97.28}]}
    for o, seed, fmaxes in ((sweep, 3, {"2": 94.97, "3": 97.28}), (out, 1, {"1": 97.28})):
        publish(o, tmp_path, tmp_path / "bits", cycles=1000)
        m = json.loads((tmp_path / "bits" / "ecp5-25k" / "d" / "manifest.json").read_text())
        assert (m["pnr_seed"], m["pnr_seeds_fmax_mhz"]) == (seed, fmaxes)
