"""bench/lane_groups_projection.py (a projection of lane groups, not hardware): its recurrences give
hw/cycles' exact figures for today's schedule, its stream counts on hand-made cases, and no grouped
layer it projects comes out below its share of the ideal bound or above today's cycles."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

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
