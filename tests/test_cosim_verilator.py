"""Bit-exact co-simulation of the generated RTL on Verilator, and proof that the checker can fail:
wrong values, wrong cycle counts (total and per layer) and a hang are each caught and named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from apotflow.hw import cycles, isa
from apotflow.hw.compile import compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import total_cycles
from apotflow.hw.fit import fitted_config
from apotflow.sim.cosim import execute, flip_hex_bit, prepare

pytestmark = pytest.mark.verilator

QUIET = {"log": lambda m: None}


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory):
    """One Verilator build per config for the whole session (the Verilog depends on the config alone)."""
    return tmp_path_factory.mktemp("verilator-builds")


@pytest.fixture(scope="module")
def setup(small_net, digits_images, tmp_path_factory, build_cache):
    x, _ = digits_images
    cfg = fitted_config(small_net, AcceleratorConfig(lanes=8))
    return prepare(small_net, cfg, x[:4], tmp_path_factory.mktemp("cosim"), build_cache=build_cache, **QUIET)


def test_rtl_equals_golden_in_every_layer(setup):
    s = execute(setup, **QUIET)
    assert s["images"] == 4 and s["mismatches"] == 0 and s["first_mismatch"] is None and s["passed"]
    assert s["cycles_total"] == total_cycles(setup.program.config, setup.program.images) == s["cycles_model"]
    assert s["cycle_mismatches"] == 0 and s["hang"] is None
    assert sum(pl["cycles"] for pl in s["per_layer"]) == s["cycles_total"]
    assert all(pl["cycles"] == pl["cycles_rtl_counter"] == pl["cycles_model"] for pl in s["per_layer"])
    assert s["cycles_total"] <= 1.5 * s["cycles_ideal"]
    # cosim.json, written once by execute, carries the config that `apotflow report --cosim` compiles for
    assert json.loads((setup.out_dir / "cosim.json").read_text())["config"] == setup.program.config.to_dict()


def test_flipped_weight_bit_is_caught_and_named(setup):
    prog = setup.program
    layer = 1  # conv2: flip a bit of the code of its first stream entry in the $readmemh image the RTL loads
    w_start = isa.desc_layout(prog.config).unpack(prog.images.prog[layer])["w_start"]
    hexfile = setup.sim_dir / "wgt.hex"
    original = hexfile.read_text()
    try:
        flip_hex_bit(hexfile, w_start, isa.entry_layout(prog.config).offsets["code"])
        s = execute(setup, **QUIET)
    finally:
        hexfile.write_text(original)
    assert s["mismatches"] > 0 and not s["passed"]
    fm = s["first_mismatch"]
    assert fm["layer"] == prog.layers[layer].op and fm["tensor"] == prog.layers[layer].out
    assert len(fm["index"]) == 3 and fm["expected"] != fm["got"]
    assert s["waveform"].endswith((".vcd", ".fst")) and Path(s["waveform"]).stat().st_size > 1000


@pytest.mark.parametrize("layer", [0, 3, -1])
def test_a_layer_one_cycle_off_the_model_fails_and_is_named(setup, monkeypatch, layer):
    """The RTL (measured by the bench, and by its own counters) against a cycle model that is one
    cycle off in one layer: the run fails, naming that layer. (The same comparison fails for an RTL
    one cycle off the true model.)"""
    exact = cycles.layer_cycles

    def off_by_one(cfg, images):
        c = exact(cfg, images)
        c[layer] += 1
        return c

    monkeypatch.setattr(cycles, "layer_cycles", off_by_one)
    s = execute(setup, waves_on_mismatch=False, **QUIET)
    assert s["mismatches"] == 0 and s["cycle_mismatches"] == 4 and not s["passed"]
    fc = s["first_cycle_mismatch"]
    assert fc["image"] == 0 and fc["measured"] + 1 == fc["model"]
    if "layer" in fc:
        assert fc["layer"] == setup.program.layers[layer].op
    named = {(c["layer"], c["cycles"], c["cycles_model"]) for c in s["per_layer"] if c["cycles"] != c["cycles_model"]}
    assert named == {(setup.program.layers[layer].op, exact(setup.program.config, setup.program.images)[layer],
                      exact(setup.program.config, setup.program.images)[layer] + 1)}


def test_hang_names_the_running_layer(setup):
    """Without a last descriptor the sequencer never finishes: the bench stops at the time limit and
    names the layer that was running."""
    prog = setup.program
    dl = isa.desc_layout(prog.config)
    hexfile = setup.sim_dir / "prog.hex"
    original = hexfile.read_text()
    try:
        flip_hex_bit(hexfile, len(prog.layers) - 1, dl.offsets["last"])
        s = execute(setup, waves_on_mismatch=False, **QUIET)
    finally:
        hexfile.write_text(original)
    h = s["hang"]
    assert h is not None and h["image"] == 0 and not s["passed"] and s["mismatches"] == 4
    assert h["cycles"] >= h["timeout_cycles"] - 10
    assert 0 <= h["layer_index"] < prog.config.prog_depth
    assert h["layer"] == (prog.layers[h["layer_index"]].op if h["layer_index"] < len(prog.layers) else None)


def _power_of_two_entries(net, cfg):
    """Zero weights of the later layers until the program has exactly a power-of-two number of
    weight entries (the fitted depth: the weight pointer wraps to entry 0 after the last one). The
    stream's entry count (fillers, value tables) is recounted by compiling after each zeroed weight."""
    fitted = fitted_config(net, cfg)  # depths that hold the net; zeroing weights only shrinks it

    def entries() -> int:
        return len(compile_net(net, fitted).images.wgt)

    n = entries()
    target = 1 << (n.bit_length() - 1)
    for op in reversed(net.ops[1:]):
        for s in op.sources:
            if s.encoding != "levels":
                continue
            for idx in zip(*np.nonzero(s.codes)):
                old = s.codes[idx]
                s.codes[idx] = 0
                m = entries()
                if m < target:
                    s.codes[idx] = old
                    continue
                n = m
                if n == target:
                    return net
    raise AssertionError(f"could not reach {target} entries")


def test_power_of_two_weight_entries_read_back_only_when_idle(tmp_path, build_cache):
    """A program whose entry count equals the weight memory depth: after its last entry the pipeline
    addresses entry 0 again, so a bench reading ACT while ``busy`` is still high got the wrong word
    (input x(0,0,0): expected 14, got 0 before the fix). Random pixels: every input word non-zero."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import random_digits_net

    base = AcceleratorConfig(lanes=8)
    net = _power_of_two_entries(random_digits_net(1, widths=(8, 16, 16), prune=0.3)[0], base)
    cfg = fitted_config(net, base)  # the config of ``setup`` (one build for both)
    prog = compile_net(net, cfg)
    assert len(prog.images.wgt) == cfg.wgt_depth == 2048
    spec = net.tensors[net.input]
    x = np.random.default_rng(0).integers(1, spec.max_value + 1, size=(2, *spec.shape))
    s = execute(prepare(net, cfg, x, tmp_path, build_cache=build_cache, **QUIET), waves_on_mismatch=False, **QUIET)
    assert s["mismatches"] == 0 and s["cycle_mismatches"] == 0 and s["passed"], s["first_mismatch"]


def test_jobs_split_images_and_merge(setup):
    """Two simulator processes, two images each: the same verdicts and cycles as one process."""
    one = execute(setup, **QUIET)
    two = execute(setup, jobs=2, shard_images=2, **QUIET)
    assert two["simulator_runs"] == 2 and two["passed"] and two["images"] == 4
    assert two["cycles_per_image"] == one["cycles_per_image"] and two["per_layer"] == one["per_layer"]


@pytest.mark.slow  # two Verilator builds and a training run: 192 s on the loaded 2-core machine
def test_profile_guided_build_is_bit_exact_and_reused(small_net, digits_images, tmp_path):
    """prepare(pgo=True): an instrumented build runs one image, the model is rebuilt with gcc's profile
    (the same Verilog: only the compiled code's layout changes) and co-simulates bit-exactly; a second
    prepare reuses the finished build instead of training again."""
    from apotflow.sim.cosim import PGO_DONE

    x, _ = digits_images
    cfg = fitted_config(small_net, AcceleratorConfig(lanes=8))
    said: list[str] = []
    setup = prepare(small_net, cfg, x[:2], tmp_path / "a", build_cache=tmp_path / "builds", pgo=True, log=said.append)
    assert sum("instrumented" in m for m in said) == 1
    done = list((tmp_path / "builds").glob(f"*/{PGO_DONE}"))
    assert len(done) == 1 and ".gcda" in done[0].read_text()  # the rebuild had a profile to use
    s = execute(setup, waves_on_mismatch=False, **QUIET)
    assert s["passed"] and s["mismatches"] == 0 and s["cycle_mismatches"] == 0
    said.clear()
    prepare(small_net, cfg, x[:2], tmp_path / "b", build_cache=tmp_path / "builds", pgo=True, log=said.append)
    assert not any("instrumented" in m for m in said)


@pytest.fixture(scope="module")
def wgt_ram_setup(small_net, digits_images, tmp_path_factory, build_cache):
    """``wgt_ram``: WGT without contents, the UP5K's SB_SPRAM256KA instances simulated by Yosys' model of
    the cell (hw/ice40_spram_sim.v); the bench writes wgt.hex through the WGT port before image 0."""
    x, _ = digits_images
    cfg = fitted_config(small_net, AcceleratorConfig(lanes=2, wgt_ram=1))  # 2 lanes: the quickest build
    return prepare(small_net, cfg, x[:2], tmp_path_factory.mktemp("cosim-wgt-ram"), build_cache=build_cache, **QUIET)


@pytest.mark.slow  # a Verilator build of its own (~60 s CPU here): the fast suite has the Amaranth one
def test_weights_loaded_through_the_host_port(wgt_ram_setup):  # (tests/test_hw_top.py, weight_ram)
    """Bit-exact, and cycle-exact as the ROM build's model (the load is before the first start);
    a host stream that skips one weight word (the words after it land one address early) fails, naming
    the layer that reads it first."""
    s = execute(wgt_ram_setup, **QUIET)
    assert s["images"] == 2 and s["mismatches"] == 0 and s["passed"] and s["cycle_mismatches"] == 0
    prog = wgt_ram_setup.program
    assert s["cycles_total"] == s["cycles_model"] == total_cycles(replace(prog.config, wgt_ram=0), prog.images)
    layer = 1
    w_start = isa.desc_layout(prog.config).unpack(prog.images.prog[layer])["w_start"]
    hexfile = wgt_ram_setup.sim_dir / "wgt.hex"
    original = hexfile.read_text()
    try:
        lines = original.splitlines(keepends=True)
        hexfile.write_text("".join(lines[:w_start] + lines[w_start + 1:]))
        s = execute(wgt_ram_setup, waves_on_mismatch=False, **QUIET)
    finally:
        hexfile.write_text(original)
    assert s["mismatches"] > 0 and not s["passed"]
    assert s["first_mismatch"]["layer"] == prog.layers[layer].op


@pytest.mark.parametrize("seed, groups", [(0, 16), (17, 16)])
def test_lane_groups_bit_exact(seed, groups, tmp_path, build_cache):
    """Lane groups on Verilator (docs/hardware.md, "Lane groups"): a random net whose layers of fewer
    pixels than lanes are grouped (convs, one-pixel layers) runs bit-exact on every tensor, and its
    cycles, total and per layer, equal the cycle model (which has the fold tree's levels)."""
    from apotflow.sim.differential import probe_images, random_config
    from apotflow.sw.randnet import random_net

    net = random_net(seed, max_ops=4, max_ch=8, max_hw=4)
    cfg = random_config(net, seed, groups)
    prog = compile_net(net, cfg)
    dl = isa.desc_layout(cfg)
    assert cfg.lane_groups == groups and sum(dl.unpack(w).get("grp_log2", 0) > 0 for w in prog.images.prog) >= 3
    s = execute(prepare(net, cfg, probe_images(net, seed), tmp_path, build_cache=build_cache, **QUIET), **QUIET)
    assert s["passed"] and s["mismatches"] == 0 and s["cycle_mismatches"] == 0, s["first_mismatch"]
    assert s["cycles_total"] == total_cycles(cfg, prog.images) == s["cycles_model"]
    assert all(pl["cycles"] == pl["cycles_rtl_counter"] == pl["cycles_model"] for pl in s["per_layer"])
