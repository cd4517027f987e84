"""Differential testing: the golden model (sw/golden.py) against the ISA interpreter (hw/isa.py), on
every tensor, for random networks (sw/randnet.py) on random accelerator configs."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np

from apotflow.hw.compile import CompileError, acc_bits_needed, compile_net, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sw.intnet import IntNet


def random_config(net: IntNet, seed: int, lane_groups: int = 1) -> AcceleratorConfig:
    """A config that should hold net: lanes 2..64, terms 1..4, acc_bits exactly what the worst case
    needs or wider, act_bits just enough or wider, memories fitted (sometimes twice that)."""
    rng = random.Random(seed)
    raw = {op.out for op in net.ops if op.mode == "raw"}
    top = max(t.max_value for n, t in net.tensors.items() if n not in raw)
    need_acc = max(acc_bits_needed(*net.acc_range(op)) for op in net.ops)
    nlev = max([len(op.levels_out) for op in net.ops if op.mode == "thresh"], default=2)
    cfg = AcceleratorConfig(
        lanes=rng.choice((2, 4, 8, 16, 32, 64)), terms=rng.randint(1, 4),
        act_bits=min(16, max(2, top.bit_length() + rng.choice((0, 0, 1, 3)))),
        acc_bits=min(48, max(8, need_acc + rng.choice((0, 0, 1, 5)))),
        shift_bits=rng.choice((4, 5)), delta_bits=rng.choice((3, 4)),
        max_levels=max(2, nlev + rng.choice((0, 0, 1, 7))),
        act_depth=1 << 20, wgt_depth=1 << 20, rq_depth=1 << 12, prog_depth=1 << 6, out_depth=1 << 12)
    cfg = fitted_config(net, replace(cfg, lane_groups=min(lane_groups, cfg.lanes)))
    grow = {k: getattr(cfg, k) << rng.choice((0, 0, 1)) for k in ("act_depth", "wgt_depth", "rq_depth", "out_depth")}
    return replace(cfg, **grow)


def probe_images(net: IntNet, seed: int, n: int = 2) -> np.ndarray:
    """n images: all max_value (the worst case of non-negative weights), then uniform random ones."""
    spec = net.tensors[net.input]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, spec.max_value + 1, size=(n, *spec.shape))
    x[0] = spec.max_value
    return x


def compare(net: IntNet, cfg: AcceleratorConfig, x: np.ndarray) -> str | None:
    """None when the ISA interpreter equals the golden model on every tensor of every image; else the
    first difference, in layer order."""
    from apotflow.sw.golden import run_integer  # torch: only the golden side needs it

    prog = compile_net(net, cfg)
    gold = {k: v.numpy() for k, v in run_integer(net, x).items()}
    order = [net.input] + [op.out for op in net.ops]
    for i in range(len(x)):
        got = run_functional(prog, x[i])
        bad = first_mismatch({k: gold[k][i] for k in order}, got, order)
        if bad:
            name, idx, e, g = bad
            return f"image {i}: tensor {name} at {idx}: golden {e}, ISA {g}"
    return None


def run_one(seed: int, lane_groups: int = 1, **net_args) -> tuple[str, str | None]:
    """('equal' | 'mismatch' | 'refused', detail) for the random network and config of this seed (the
    config's lane_groups: at most ``lane_groups``, at most its lanes)."""
    from apotflow.sw.randnet import random_net

    net = random_net(seed, **net_args)
    try:
        cfg = random_config(net, seed, lane_groups)
        bad = compare(net, cfg, probe_images(net, seed))
    except CompileError as e:
        return "refused", str(e)
    return ("mismatch", bad) if bad else ("equal", None)
