"""Lane groups (docs/hardware.md, "Lane groups"): the config field, the grouped weight stream
(hw/isa.py decode_stream / run_program, hw/compile.py) against the golden model, its one-line rejections,
and the cycle model's fold levels. lane_groups = 1 is today's machine (no descriptor field)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from apotflow.hw import isa
from apotflow.hw.compile import compile_net, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig, ConfigError
from apotflow.hw.cycles import layer_cycles, pipe
from apotflow.hw.fit import fitted_config
from apotflow.sim.differential import random_config, run_one
from apotflow.sw.randnet import random_net


def test_config_field():
    assert "lane_groups" not in AcceleratorConfig().to_dict()  # the default reads as before
    assert "grp_log2" not in {f.name for f in isa.desc_layout(AcceleratorConfig()).fields}
    cfg = AcceleratorConfig(lanes=64, lane_groups=16)
    assert AcceleratorConfig.from_dict(cfg.to_dict()) == cfg
    assert isa.desc_layout(cfg).by_name["grp_log2"].width == 3 and cfg.fold_levels == 4
    assert pipe(cfg) == pipe(AcceleratorConfig(lanes=64)) + 4
    for bad in (3, 128):
        with pytest.raises(ConfigError, match="lane_groups"):
            AcceleratorConfig(lanes=64, lane_groups=bad)


def _kinds(net, prog):
    """What the grouped layers of a program are: conv (P > 1), one-pixel with a group of 1 lane or of
    several (lanes / G > 1: the tap rows), diag (depthwise, one pixel)."""
    dl = isa.desc_layout(prog.config)
    out = collections.Counter()
    for dword in prog.images.prog:
        d = dl.unpack(dword)
        g = d.get("grp_log2", 0)
        if g:
            npix = 1 << (d["ho_log2"] + d["wo_log2"])
            out["conv" if npix > 1 else "one-pixel" if d["tap_log2"] == 0 else "one-pixel-capped"] += 1
            out["diag"] += d["diag"]
        if d["last"]:
            break
    return out


def test_random_networks_with_lane_groups_equal_the_golden_model():
    """The ISA interpreter runs the grouped streams the compiler writes equal to the golden model on
    every tensor (sim/differential.run_one: two images), for lane_groups 2, 4 and 64 (at most the
    config's lanes), and the seeds reach grouped convs and one-pixel layers with groups of one lane and
    of several (a depthwise one: the ResNet-20 below)."""
    kinds, outcomes = collections.Counter(), collections.Counter()
    for seed in range(24):
        for G in (2, 4, 64):
            outcome, detail = run_one(seed, lane_groups=G)
            assert outcome != "mismatch", (seed, G, detail)
            outcomes[outcome] += 1
            if outcome == "equal":
                net = random_net(seed)
                kinds += _kinds(net, compile_net(net, random_config(net, seed, G)))
    assert outcomes["equal"] >= 60, outcomes
    assert {"conv", "one-pixel", "one-pixel-capped"} <= set(kinds), kinds


def _export(tmp_path_factory, arch, width):
    from apotflow.sw import export
    from apotflow.sw.convert import export_random

    path, _ = export_random(arch, tmp_path_factory.mktemp(arch) / f"{arch}.apot", prune=0.3, seed=0,
                            width_scale=width)
    return export.load(path)


@pytest.mark.parametrize("arch, width, groups, want", [
    ("vgg16", 0.125, 16, {"conv": 6, "one-pixel-capped": 2}),  # 4x4 (G 4) and 2x2 (G 16) convs, fc
    ("resnet20", 0.25, 16, {"one-pixel-capped": 2, "diag": 1}),  # global pooling (depthwise) and fc
])
def test_small_zoo_nets_grouped(tmp_path_factory, arch, width, groups, want):
    """A VGG-16 of 1/8 width and a ResNet-20 of 1/4 width at 64 lanes, lane_groups 16: the layers of
    fewer than 64 pixels are grouped, the interpreter equals the golden model on every tensor, and the
    cycle model gives fewer cycles than without groups (VGG-16: less than half)."""
    from apotflow.sw.golden import run_integer

    net = _export(tmp_path_factory, arch, width)
    base = fitted_config(net, AcceleratorConfig(lanes=64))
    cfg = fitted_config(net, AcceleratorConfig(lanes=64, lane_groups=groups))
    prog, prog1 = compile_net(net, cfg), compile_net(net, base)
    kinds = _kinds(net, prog)
    assert all(kinds[k] >= n for k, n in want.items()), kinds
    spec = net.tensors[net.input]
    x = np.random.default_rng(0).integers(0, spec.max_value + 1, (1, *spec.shape))
    gold = {k: v.numpy()[0] for k, v in run_integer(net, x).items()}
    order = [net.input] + [op.out for op in net.ops]
    assert first_mismatch(gold, run_functional(prog, x[0]), order) is None
    ratio = sum(layer_cycles(cfg, prog.images)) / sum(layer_cycles(base, prog1.images))
    assert ratio < (0.5 if arch == "vgg16" else 1.0), ratio


@pytest.fixture(scope="module")
def grouped():
    """A random net's program with a grouped conv layer (seed 0, lane_groups 4) and that layer's index."""
    net = random_net(0)
    cfg = random_config(net, 0, 4)
    prog = compile_net(net, cfg)
    dl = isa.desc_layout(cfg)
    for li, w in enumerate(prog.images.prog):
        d = dl.unpack(w)
        if d.get("grp_log2", 0) and (1 << (d["ho_log2"] + d["wo_log2"])) > 1:
            return prog, li, d
    pytest.fail("seed 0 has no grouped conv layer")


def _images(program, **changes):
    im = program.images
    return isa.MemoryImages(program.config, **{k: list(changes.get(k, getattr(im, k)))
                                            for k in ("wgt", "rq", "prog", "val", "tap")})


def _reject(images, *words):
    with pytest.raises(ValueError) as e:
        images.check()
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_corrupt_grouped_entries_are_rejected_with_one_line(grouped):
    prog, li, d = grouped
    cfg = prog.config
    el, dl = isa.entry_layout(cfg), isa.desc_layout(cfg)
    G, w0 = 1 << d["grp_log2"], d["w_start"]
    prog.images.check()
    wgt = list(prog.images.wgt)
    wgt[w0 + 1] |= 1 << el.offsets["delta"]  # a step in slot 1
    _reject(_images(prog, wgt=wgt), f"layer {li}", "slot 1", "delta")
    wgt = list(prog.images.wgt)
    wgt[w0 + G - 1] = (wgt[w0 + G - 1] & ~((1 << cfg.code_bits) - 1)) | ((1 << cfg.code_bits) - 1)
    vrow = (d["val_base"] << cfg.code_bits) + (1 << cfg.code_bits) - 1
    assert prog.images.val[vrow] == 0  # (the small net's table has fewer than 2**code_bits - 1 rows)
    _reject(_images(prog, wgt=wgt), f"layer {li}", f"slot {G - 1}", "empty row")
    progw = list(prog.images.prog)
    progw[li] = dl.pack(**{**d, "w_start": w0 + 1})
    _reject(_images(prog, prog=progw), f"layer {li}")
    progw[li] = dl.pack(**{**d, "grp_log2": d["grp_log2"] + 1})
    _reject(_images(prog, prog=progw), f"layer {li}", "lane groups")
    progw[li] = dl.pack(**{**d, "rmax": 1})
    _reject(_images(prog, prog=progw), f"layer {li}", "max")

