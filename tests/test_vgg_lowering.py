"""CIFAR VGG-16 (widths / 16): exact slicing, max pooling of codes, golden == fake-quant, compiled program,
export --random round trip; the full-width export compiles (slow)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from apotflow.hw.compile import compile_net, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sim.cli import main
from apotflow.sw import export
from apotflow.sw.golden import run_integer
from apotflow.sw.lower import lower
from apotflow.sw.models import CifarVGG16
from apotflow.sw.prune import slice_pruned
from apotflow.sw.randmodel import random_images, random_model


@pytest.fixture(scope="module")
def vgg():
    m = random_model("vgg16", 0.3, seed=0, width_scale=1 / 16, batches=1, batch_size=8)
    return m, slice_pruned(m), lower(m), random_images(16, seed=7)


def test_structure():
    m = CifarVGG16(1 / 16)
    assert [c.out_channels for c in m.convs] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert m.convs[0].w_bits == 8 and m.convs[0].aq is None and m.convs[1].aq is not None
    assert len(m.prune_groups()) == 13


def test_slicing_gives_equal_logits(vgg):
    m, s, _, x = vgg
    with torch.no_grad():
        assert torch.equal(m(x), s(x))
    assert [r["total"] - r["kept"] for r in m.prune_report()] == [int(c * 0.3) for c in (4, 4, 8, 8) + (16,) * 3 + (32,) * 6]


def test_names_and_max_pool_ops(vgg):
    net = vgg[2]
    assert [o.name for o in net.ops][:4] == ["conv0", "conv1", "pool0", "conv2"] and net.ops[-1].name == "fc"
    pools = [o for o in net.ops if o.kind == "pool"]
    assert len(pools) == 5 and all(o.reduce == "max" and o.mode == "shift" and o.shift == 0 for o in pools)
    assert net.tensors["p4"].shape[1:] == (1, 1) and net.meta["fp32_shapes"]["conv12"] == [32, 32, 3, 3]


def test_golden_equals_fake_quant(vgg):
    """No residual add: every code of every layer is exact; top-1 may differ only by the fc bias rounding."""
    _, s, net, x = vgg
    vals = run_integer(net, x.long().numpy())
    codes, h, i = {}, x / 255, 0
    with torch.no_grad():
        for v in s.cfg:
            if v == "M":
                h = torch.nn.functional.max_pool2d(h, 2)
                continue
            y = s.convs[0](h, x, torch.tensor(1 / 255)) if i == 0 else s.convs[i](h)
            h = torch.relu(s.bns[i](y))
            nxt = s.convs[i + 1].aq if i + 1 < len(s.convs) else s.qfc
            codes[f"h{i}"] = nxt.int_codes(h)
            i += 1
        pf = s(x).argmax(1).numpy()
    for name, c in codes.items():
        assert torch.equal(vals[name], c), name
    pi = vals["logits"].reshape(len(x), -1).argmax(1).numpy()
    assert (pf == pi).mean() >= 0.9


def test_compiled_program_equals_golden(vgg):
    net, x = vgg[2], vgg[3]
    prog = compile_net(net, fitted_config(net, AcceleratorConfig(lanes=16)))
    assert prog.placements["h1"].phase and not prog.placements["p0"].phase
    exp = {k: v[0].numpy() for k, v in run_integer(net, x[:1].long().numpy()).items()}
    assert first_mismatch(exp, run_functional(prog, x[0].long().numpy()), list(prog.placements)) is None


def test_export_random_round_trip(tmp_path):
    out = tmp_path / "vgg.apot"
    assert main(["export", "--random", "--arch", "vgg16", "--width-scale", "0.0625", "--seed", "1", "-o", str(out)]) == 0
    net = export.load(out)
    assert net.meta["model"] == "vgg16" and len(net.ops) == 13 + 5 + 1
    x = random_images(4, seed=3).long().numpy()
    logits = run_integer(net, x)["logits"].reshape(4, -1).numpy()
    assert len(np.unique(logits.argmax(1))) >= 1


@pytest.mark.slow
def test_vgg16_full_width_export_compiles(tmp_path):
    out = tmp_path / "vgg16.apot"
    t0 = time.perf_counter()
    assert main(["export", "--random", "--arch", "vgg16", "-o", str(out)]) == 0
    t1 = time.perf_counter()
    net = export.load(out)
    assert net.meta["fp32_shapes"]["conv12"] == [512, 512, 3, 3]
    big = AcceleratorConfig(wgt_depth=1 << 23)  # ~7 M non-zero weights: more than fitted_config's 2**20 probe
    prog = compile_net(net, fitted_config(net, big, keep={"wgt_depth"}))
    print(f"vgg16: export {t1 - t0:.1f} s, fit+compile {time.perf_counter() - t1:.1f} s, "
          f"{len(prog.images.wgt)} weight entries")
