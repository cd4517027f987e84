"""CIFAR VGG-16 (widths / 16) with the FPGM classifier (fc 512 + BatchNorm1d + ReLU, fc 10) and the one-fc
variant of the earlier runs: exact slicing, max pooling of codes, the hidden fc's BatchNorm1d folded into
thresholds, golden == fake-quant in every layer, compiled program, export --random round trip, old
checkpoints rebuild the one-fc model; the full-width export compiles (slow)."""

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
from apotflow.sw.prune import slice_pruned
from apotflow.sw.randmodel import random_images, random_model
from apotflow.sw.zoo import build


@pytest.fixture(scope="module")
def vgg():
    m = random_model("vgg16", 0.3, seed=0, width_scale=1 / 16, batches=1, batch_size=8)
    return m, slice_pruned(m), lower(m), random_images(16, seed=7)


def test_structure():
    m = build("vgg16", 1 / 16)
    assert [c.out_channels for c in m.convs] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert m.convs[0].w_bits == 8 and m.convs[0].aq is None and m.convs[1].aq is not None
    assert (m.fc1.in_features, m.fc1.out_features, m.fc1.w_bits, m.fc1.aq.bits) == (32, 32, 8, 4)
    assert isinstance(m.bn_fc1, torch.nn.BatchNorm1d) and m.fc.in_features == 32 and m.fc.w_bits == 8
    assert len(m.prune_groups()) == 14 and m.prune_groups()[-1] == [(m.fc1, m.bn_fc1)]
    assert m.group_consumers()[-2:] == [[m.fc1], [m.fc]]
    assert m.arch_config()["name"] == "vgg16" and build("vgg16-1fc").arch_config()["name"] == "vgg16-1fc"
    assert not hasattr(build("vgg16-1fc"), "fc1") and build("vgg16").fc1.in_features == 512


def test_checkpoint_without_hidden_is_the_one_fc_model(tmp_path):
    """A checkpoint written before the FPGM classifier (arch "vgg16", no "hidden") rebuilds vgg16-1fc."""
    from apotflow.sw.checkpoint import load_checkpoint, save_checkpoint

    old = build("vgg16-1fc", 1 / 16)
    path = save_checkpoint(old, tmp_path / "old.pt")
    blob = torch.load(path, weights_only=True)
    blob["arch"] = {k: v for k, v in blob["arch"].items() if k != "hidden"} | {"name": "vgg16"}
    torch.save(blob, path)
    m, _ = load_checkpoint(path)
    assert m.arch_config()["name"] == "vgg16-1fc" and m.hidden == 0


def test_slicing_gives_equal_logits(vgg):
    m, s, _, x = vgg
    with torch.no_grad():
        assert torch.equal(m(x), s(x))
    assert [r["total"] - r["kept"] for r in m.prune_report()] == [int(c * 0.3) for c in (4, 4, 8, 8) + (16,) * 3 + (32,) * 7]
    assert m.prune_report()[-1]["group"] == "fc1" and s.fc1.out_features == 32 - 9 == s.fc.in_features


def test_size_and_bops_of_the_torch_model_are_the_integer_network_s(vgg):
    """sw/metrics.py on the masked model (pixels 8 bits, later inputs A4: bench/vgg_classifier_counts.py)
    counts what sw.intnet.size_and_bops counts on the lowered network."""
    from apotflow.sw.intnet import size_and_bops
    from apotflow.sw.metrics import bops_metrics, size_metrics

    m, _, net, _ = vgg
    t = size_and_bops(net)
    assert size_metrics(m, (3, 32, 32))["size_reduction"] == t["size_reduction"]
    assert bops_metrics(m, (3, 32, 32), first_a_bits=8, other_a_bits=4)["bops_reduction"] == t["bops_reduction"]


def test_names_and_max_pool_ops(vgg):
    net = vgg[2]
    assert [o.name for o in net.ops][:4] == ["conv0", "conv1", "pool0", "conv2"]
    assert [o.name for o in net.ops][-2:] == ["fc1", "fc"] and net.ops[-2].mode == "thresh"
    assert net.ops[-2].kind == "fc" and net.tensors["f1"].shape == (32 - 9, 1, 1) and net.tensors["f1"].bits == 4
    pools = [o for o in net.ops if o.kind == "pool"]
    assert len(pools) == 5 and all(o.reduce == "max" and o.mode == "shift" and o.shift == 0 for o in pools)
    assert net.tensors["p4"].shape[1:] == (1, 1) and net.meta["fp32_shapes"]["conv12"] == [32, 32, 3, 3]
    assert net.meta["fp32_shapes"]["fc1"] == [32, 32, 1, 1] and net.meta["model"] == "vgg16"


def fake_quant_codes(s, x) -> tuple[dict, torch.Tensor]:
    """Every layer's output codes of the (sliced) fake-quant model, by the integer network's tensor names,
    and its logits."""
    codes, h, i = {}, x / 255, 0
    with torch.no_grad():
        for v in s.cfg:
            if v == "M":
                h = torch.nn.functional.max_pool2d(h, 2)
                continue
            y = s.convs[0](h, x, torch.tensor(1 / 255, dtype=x.dtype)) if i == 0 else s.convs[i](h)
            h = torch.relu(s.bns[i](y))
            nxt = s.convs[i + 1].aq if i + 1 < len(s.convs) else (s.fc1.aq if s.hidden else s.qfc)
            codes[f"h{i}"] = nxt.int_codes(h)
            i += 1
        if s.hidden:
            codes["f1"] = s.qfc.int_codes(torch.relu(s.bn_fc1(s.fc1(h.flatten(1))))).reshape(len(x), -1, 1, 1)
        return codes, s(x)


@pytest.mark.parametrize("name", ["vgg16", "vgg16-1fc"])
def test_golden_equals_fake_quant(vgg, name):
    """No residual add: every code of every layer is exact (the float64 copy); top-1 may differ only by the
    fc bias rounding."""
    from apotflow.sw.quant import exact_copy

    _, s, net, x = vgg if name == "vgg16" else (None, *(lambda m: (slice_pruned(m), lower(m)))(
        random_model(name, 0.3, seed=0, width_scale=1 / 16, batches=1, batch_size=8)), vgg[3])
    vals = run_integer(net, x.long().numpy())
    codes, logits = fake_quant_codes(exact_copy(s).eval(), x.double())
    assert ("f1" in codes) == (name == "vgg16") and len(codes) == 13 + (name == "vgg16")
    for t, c in codes.items():
        assert torch.equal(vals[t], c), t
    pf, pi = logits.argmax(1).numpy(), vals["logits"].reshape(len(x), -1).argmax(1).numpy()
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
    assert net.meta["model"] == "vgg16" and len(net.ops) == 13 + 5 + 2
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


@pytest.mark.slow  # 13 to 20 min on the loaded 2-core machine (full width: the CLI has no width option)
def test_cli_trains_vgg16_on_the_cpu(tmp_path):
    """`apotflow train --model vgg16` (the FPGM classifier) on a tiny fake CIFAR folder, CPU, eager: a ppq
    run through float, pruning and QAT to an exported integer model that equals its fake-quant model."""
    from test_cifar_data import tiny_cpu_ppq

    from apotflow.sw.checkpoint import load_checkpoint

    res, out = tiny_cpu_ppq("vgg16", tmp_path)
    assert res["model"] == "vgg16" and res["agreement"] == 1.0
    m, _ = load_checkpoint(out / "model.pt")
    assert m.arch_config()["name"] == "vgg16" and m.fc1.out_features == 512 and m.fc1.w_bits == 8
    assert [o.name for o in export.load(out / "model.apot").ops][-2:] == ["fc1", "fc"]
