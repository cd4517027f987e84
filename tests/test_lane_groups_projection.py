"""bench/lane_groups_projection.py (a projection of lane groups, not hardware): its recurrences give
hw/cycles' exact figures for today's schedule, its stream counts on hand-made cases, and no grouped
layer it projects comes out below its share of the ideal bound or above today's cycles."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from apotflow.hw.compile import CompileError, compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import total_cycles
from apotflow.hw.fit import fit
from apotflow.sw import export
from apotflow.sw.convert import export_random

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lane_groups_projection", ROOT / "bench" / "lane_groups_projection.py")
lgp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lgp)


def test_union_count_by_hand():
    a = (np.array([0, 1, 2]), np.array([1, 1, 2]))  # position 2 needs two entries (an 8-bit weight)
    b = (np.array([1, 2, 3]), np.array([1, 1, 1]))
    assert lgp.union_count([a, b], 4) == 5  # positions 0, 1, 2 (twice), 3
    assert lgp.union_count([(np.array([40]), np.array([1]))], 4) == 2  # one filler of 2 x 16 first
    assert lgp.union_count([(np.array([300]), np.array([1]))], 4) == 3  # fillers of 15 x 16 and 3 x 16
    assert lgp.union_count([(np.zeros(0, int), np.zeros(0, int))], 4) == 1  # an empty channel: one entry


def test_projection_on_a_small_vgg16(tmp_path):
    path, _ = export_random("vgg16", tmp_path / "vgg16.apot", prune=0.3, seed=1, width_scale=0.0625)
    net = export.load(path)
    prog = fit(net, AcceleratorConfig(lanes=16))
    r = lgp.project(net, prog)  # asserts its recurrences equal hw/cycles.layer_cycles on today's schedule
    assert r["cycles"]["today"] == r["cycles_model_today"] == total_cycles(prog.config, prog.images)
    grouped = [row for row in r["layers"] if row.get("groups")]
    assert {row["pixels"] for row in grouped} >= {1, 4}
    for row in grouped:
        for s in ("oc", "ic", "best"):
            assert row["ideal"] <= row[s] <= row["today"], (row["layer"], s)
    assert r["cycles"]["best"] < r["cycles"]["today"]
    capped = lgp.project(net, prog, max_groups=2)
    assert r["cycles"]["best"] <= capped["cycles"]["best"] < r["cycles"]["today"]


def test_input_channel_groups_compute_the_golden_accumulators(tmp_path):
    """The design's addressing (today's L-word read at tap.off + b*L, lane l = group l >> log2 P on pixel
    l mod P, the padding test on that pixel, the fold of the groups) in numpy equals the golden
    accumulators on a small VGG-16 (4x4, 2x2 convs, the one-pixel max pool, fc) and random networks
    (1- and 2-source convs, fc, sum and max pools to one pixel); its grouped entries are the projection's."""
    from apotflow.sim.differential import probe_images, random_config
    from apotflow.sw.randnet import random_net

    path, _ = export_random("vgg16", tmp_path / "vgg16.apot", prune=0.3, seed=1, width_scale=0.0625)
    net = export.load(path)
    prog = fit(net, AcceleratorConfig(lanes=64))
    x = np.random.default_rng(0).integers(0, net.tensors[net.input].max_value + 1, net.tensors[net.input].shape)
    got = lgp.ic_functional(net, prog, x)
    assert {(r["layer"], r["groups"]) for r in got} >= {("conv7", 4), ("conv10", 16), ("pool4", 64), ("fc", 64)}
    assert all(r["equal"] for r in got), [r for r in got if not r["equal"]]
    projected = {row["layer"]: row["ic_entries"] for row in lgp.project(net, prog)["layers"] if "ic_entries" in row}
    assert {r["layer"]: r["grouped_entries"] for r in got} == projected
    assert all(r["equal"] for r in lgp.ic_functional(net, prog, x, max_groups=2))
    layers = 0
    for seed in range(60):
        rnet = random_net(seed)
        try:
            rprog = compile_net(rnet, random_config(rnet, seed))
        except CompileError:
            continue
        for img in probe_images(rnet, seed):
            res = lgp.ic_functional(rnet, rprog, img)
            assert all(r["equal"] for r in res), (seed, [r for r in res if not r["equal"]])
            layers += len(res)
    assert layers >= 100
