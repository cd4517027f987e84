"""The shipped co-simulation checks (sim/cosim_suite.py) and RTL mutation testing (bench/mutants.py):
the suite's networks exercise every RTL path named by ``coverage`` (the lane-groups suite's every
path named by ``group_coverage``, the two-word writeback suite's by ``wb_coverage``); every mutation of the bench
applies exactly where it says; and a handful of mutants, each caught by a different check, are
caught -- a test that fails if the checks stop catching them."""

from __future__ import annotations

import pytest

from apotflow.sim.cosim_suite import (
    GROUPS_BASE,
    GROUPS_SUITE,
    SUITE,
    WB2_BASE,
    WB2_SUITE,
    coverage,
    group_coverage,
    load_suite,
    wb_coverage,
)

# The cheap part of the suite: the digits net and the random networks (the zoo nets need exports).
SMALL = tuple(s for s in SUITE if s.kind != "zoo")
QUIET = {"log": lambda m: None}


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    return load_suite(tmp_path_factory.mktemp("models"), SMALL, **QUIET)


@pytest.fixture(scope="module")
def groups_suite(tmp_path_factory):
    """The lane-groups suite (its ResNet-8 export: a few seconds)."""
    return load_suite(tmp_path_factory.mktemp("gmodels"), GROUPS_SUITE, GROUPS_BASE, **QUIET)


@pytest.fixture(scope="module")
def wb2_suite(tmp_path_factory):
    """The two-word writeback suite (its ResNet-8 export: a few seconds)."""
    return load_suite(tmp_path_factory.mktemp("wmodels"), WB2_SUITE, WB2_BASE, **QUIET)


def test_wb2_suite_exercises_every_two_word_path(wb2_suite):
    """Together the two-word writeback networks write pairs k, k + 1 from even and odd channel bases, pairs
    k, k + 2 (phase-split outputs), one-word groups and two RAW words a cycle; the base suite's have none."""
    assert wb2_suite[0].program.config.wb_words == 2
    covered = {k for ld in wb2_suite for k, v in wb_coverage(ld.program).items() if v}
    assert covered == set(wb_coverage(wb2_suite[0].program)), set(wb_coverage(wb2_suite[0].program)) - covered


def test_suite_exercises_every_path(small_suite):
    """Together the networks have empty and single-entry channels, writeback stalls, non-square
    tensors, partial lane groups, max pooling, all three requantizer modes, phase-split outputs and a
    depthwise (diag) layer."""
    covered = {k for ld in small_suite for k, v in coverage(ld.program).items() if v}
    assert covered == set(coverage(small_suite[0].program)), set(coverage(small_suite[0].program)) - covered


def test_groups_suite_exercises_every_lane_groups_path(groups_suite):
    """Together the lane-groups networks have layers of 2, 4 and 8 groups, grouped convs over several
    rows, grouped one-pixel and depthwise layers, grouped entries with an empty slot 0 and ungrouped
    layers; the base suite's programs have none of it."""
    assert groups_suite[0].program.config.lane_groups == GROUPS_BASE.lane_groups
    covered = {k for ld in groups_suite for k, v in group_coverage(ld.program).items() if v}
    assert covered == set(group_coverage(groups_suite[0].program)), set(group_coverage(groups_suite[0].program)) - covered


def test_every_mutation_applies_exactly_where_it_says(small_suite, groups_suite, wb2_suite):
    """Each Verilog (and process) mutant finds its hw/ line and changes exactly the statements it
    states, in the Verilog of its suite's config; a pattern that no longer matches is an error
    (BenchError), never a silent skip."""
    from dataclasses import replace

    from bench.mutants import VERILOG_MUTANTS, BenchError, generate, mutate

    assert {m.suite for m in VERILOG_MUTANTS} == {"base", "groups", "wb2"}
    for suite, name in ((small_suite, "base"), (groups_suite, "groups"), (wb2_suite, "wb2")):
        cfg = suite[0].program.config
        text = generate(cfg)
        for mu in (m for m in VERILOG_MUTANTS if m.suite == name):
            new, changed = mutate(text, mu, cfg)
            assert new != text and all(c["before"] != c["after"] for c in changed), mu.name
    cfg = small_suite[0].program.config
    text = generate(cfg)
    with pytest.raises(BenchError, match="expected 2"):
        mutate(text, replace(VERILOG_MUTANTS[0], count=2), cfg)
    with pytest.raises(BenchError, match="on 0 lines"):
        mutate(text, replace(VERILOG_MUTANTS[0], anchor="no such text in hw"), cfg)


@pytest.mark.verilator
@pytest.mark.slow
def test_the_whole_suite_is_bit_exact(tmp_path):
    """Every network of the shipped checks (the zoo nets included) on one Verilator build: every tensor
    bit-exact, every layer's cycles equal to the model, no hang."""
    from apotflow.sim.cosim_suite import run_suite

    suite = load_suite(tmp_path / "models", **QUIET)
    runs = run_suite(suite, tmp_path / "run", **QUIET)
    assert [r["network"] for r in runs] == [s.name for s in SUITE] and all(r["passed"] for r in runs), runs


@pytest.mark.verilator
def test_a_handful_of_mutants_are_caught(tmp_path):
    """A memory-image, a cycle-count, a hang and a writeback-stall mutant: each caught, by the check
    named, with the layer. (Tried: with the suite reduced to the digits net, seq-wb-stall survives.)"""
    from apotflow.sim.cosim_suite import run_suite
    from bench.mutants import MEMORY_MUTANTS, VERILOG_MUTANTS, generate, mutate

    # the digits net and the random network with writeback stalls (what these five need), one config
    suite = load_suite(tmp_path / "models", tuple(s for s in SUITE if s.name in ("digits", "rand-173")), **QUIET)
    cfg = suite[0].program.config
    base = generate(cfg)
    build = {"build_cache": tmp_path / "build", "build_in_place": True, **QUIET}  # one folder: rebuilds are quick
    assert all(r["passed"] for r in run_suite(suite, tmp_path / "base", verilog=base, **build))
    by_name = {m.name: m for m in VERILOG_MUTANTS + MEMORY_MUTANTS}
    expect = {"wgt-delta": "value", "seq-perf-counter": "cycles", "seq-wb-free": "hang", "seq-wb-stall": "value"}
    for name, check in expect.items():
        mu = by_name[name]
        if hasattr(mu, "apply"):
            runs = run_suite(suite, tmp_path / "mem", verilog=base, tamper=mu.apply, stop_at_first=True, **build)
        else:
            runs = run_suite(suite, tmp_path / "mut", verilog=mutate(base, mu, cfg)[0], stop_at_first=True, **build)
        caught = [r for r in runs if not r["passed"]]
        assert caught, f"mutant {name} survived: {runs}"
        assert caught[0]["check"] == check, (name, caught[0])
        assert caught[0]["layer"], (name, caught[0])


@pytest.mark.verilator
def test_a_lane_groups_mutant_is_caught(groups_suite, tmp_path):
    """Every group starting from the bias (bench/mutants.py grp-bias, a process mutant) is caught as a
    value of a grouped layer by the first lane-groups network (one Verilator build: the mutant's)."""
    from apotflow.hw import isa
    from apotflow.sim.cosim_suite import run_suite
    from bench.mutants import VERILOG_MUTANTS, generate, mutate

    ld = groups_suite[0]
    cfg = ld.program.config
    mu = next(m for m in VERILOG_MUTANTS if m.name == "grp-bias")
    runs = run_suite([ld], tmp_path, verilog=mutate(generate(cfg), mu, cfg)[0], build_cache=tmp_path / "build", **QUIET)
    assert not runs[0]["passed"] and runs[0]["check"] == "value", runs
    dl = isa.desc_layout(cfg)
    grouped = {li.op for li, w in zip(ld.program.layers, ld.program.images.prog) if dl.unpack(w)["grp_log2"]}
    assert runs[0]["layer"] in grouped, (runs[0], grouped)


def test_top_verilog_is_what_generate_verilog_writes(small_suite, tmp_path):
    """The shortcut the benches take (one Verilog text per config, no images) builds the same design."""
    from apotflow.hw.rtl import generate_verilog
    from apotflow.sim.cosim import top_verilog

    prog = small_suite[1].program
    generate_verilog(prog.config, prog.images, tmp_path)
    assert (tmp_path / "apotflow_top.v").read_text() == top_verilog(prog.config)
