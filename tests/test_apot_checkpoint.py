"""Checkpoints of the APoT authors' CIFAR-10 code into the zoo's resnet20bn (sw/apot_checkpoint.py).

The checkpoint is written here, in their layout, from a zoo resnet20bn with random weights and BatchNorm
statistics (their parameter names, ``module.`` of nn.DataParallel, their thresholds, torch.save of the dict
their main.py writes): not their released file, which this machine does not download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apotflow.sw.apot_checkpoint import APOT_STD, ApotCheckpointError, read, source_forward, to_zoo
from apotflow.sw.graph_prepare import Preprocess
from apotflow.sw.randmodel import random_images
from apotflow.sw.zoo import build

_ROOT = Path(__file__).resolve().parents[1]  # the CIFAR-10 copy: data/ (git-ignored) or ../shared/data beside the checkout
CIFAR = next((p for p in (_ROOT / "data/cifar10-jpeg.tar.xz", _ROOT.parent / "shared/data/cifar10-jpeg.tar.xz")
              if p.exists()), None)


def their_names(depth: int = 20) -> dict[str, str]:
    """The zoo model's module -> theirs, written out here from their model definition (not the importer's map)."""
    out = {"stem": "conv1", "bn": "bn1", "fc": "fc"}
    n = (depth - 2) // 6
    for i in range(3 * n):
        p = f"layer{i // n + 1}.{i % n}"
        out.update({f"blocks.{i}.conv_a": f"{p}.conv1", f"blocks.{i}.bn_a": f"{p}.bn1",
                    f"blocks.{i}.conv_b": f"{p}.conv2", f"blocks.{i}.bn_b": f"{p}.bn2",
                    f"blocks.{i}.proj": f"{p}.downsample.0", f"blocks.{i}.proj_bn": f"{p}.downsample.1"})
    return out


WGT_ALPHA = 2.0  # the weight clipping threshold written into the checkpoint (about 5% of the weights clip)


def source_model(depth: int = 20, seed: int = 0, standardised: bool = True):
    """A float zoo ResNet with projection + BatchNorm shortcuts, random weights and BatchNorm statistics;
    ``standardised``: every conv but the stem computes with its latent weights (kept in ``m.latent``)
    standardised per layer (mean 0, unbiased std 1) and clipped at WGT_ALPHA, as their QuantConv2d does."""
    torch.manual_seed(seed)
    m = build("resnet20bn") if depth == 20 else build("resnet20bn", depth=depth)
    m.latent = {}
    with torch.no_grad():
        for name, mod in m.named_modules():
            if standardised and isinstance(mod, torch.nn.Conv2d) and name != "stem":
                m.latent[name] = w = 0.1 * torch.randn_like(mod.weight)  # normal: some beyond WGT_ALPHA
                mod.weight.copy_(((w - w.mean()) / w.std()).clamp(-WGT_ALPHA, WGT_ALPHA))
        bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # statistics of the images below (a trained network's scale)
        m.train()(random_images(32, seed=9))
        for bn in bns:
            bn.running_mean += 0.1 * torch.randn_like(bn.running_mean)
        m.fc.bias.uniform_(-0.5, 0.5)
    return m.eval()


def their_checkpoint(m, path, std=APOT_STD, quantized: bool = True, edit=None) -> Path:
    """torch.save of their main.py's dict for model m: {'epoch', 'state_dict' (module. prefix), 'best_prec',
    'optimizer'}; the stem's weights times std, so their normalised input (mean 0, this std) gives m's logits.
    ``quantized``: their thresholds, and each QuantConv2d's latent weights a * w + b (w: ``m.latent``; random
    a > 0 and b per layer: their layer standardises them away)."""
    names = their_names(m.depth)
    sd = {}
    g = torch.Generator().manual_seed(7)
    for ours, mod in m.named_modules():
        if ours not in names:
            continue
        theirs = names[ours]
        for k in ("weight", "bias", "running_mean", "running_var"):
            v = getattr(mod, k, None)
            if v is not None and not (k == "bias" and isinstance(mod, torch.nn.Conv2d)):
                sd[f"{theirs}.{k}"] = v.detach().clone()
        if isinstance(mod, torch.nn.BatchNorm2d):
            sd[f"{theirs}.num_batches_tracked"] = torch.tensor(64000)
        if quantized and isinstance(mod, torch.nn.Conv2d) and ours != "stem":
            a, b = 0.01 + 0.1 * torch.rand(2, generator=g)
            sd[f"{theirs}.weight"] = m.latent[ours] * a + b
            sd[f"{theirs}.act_alpha"] = torch.tensor(8.0)
            sd[f"{theirs}.weight_quant.wgt_alpha"] = torch.tensor(WGT_ALPHA)
    sd["conv1.weight"] = sd["conv1.weight"] * torch.tensor(std).view(1, -1, 1, 1)
    sd = {"module." + k: v for k, v in sd.items()}
    if edit:
        edit(sd)
    torch.save({"epoch": 300, "state_dict": sd, "best_prec": 92.45, "optimizer": {"state": {}, "param_groups": []}},
               path)
    return Path(path)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    src = source_model()
    path = their_checkpoint(src, tmp_path_factory.mktemp("apot") / "model_best.pth.tar")
    state, info = read(path)
    pre = Preprocess(255, None, (0.0,), APOT_STD)
    return src, state, info, to_zoo(state, "resnet20bn", pre), pre, random_images(12, seed=1)


def test_the_float_model_computes_the_source_logits(imported):
    src, state, info, m, pre, x = imported
    assert info["quantized"] and info["epoch"] == 300 and info["best_prec"] == 92.45
    assert info["dropped"] == {"act_alpha": 20} and info["weights_clipped_at_wgt_alpha"] == 20
    assert "not kept" in info["note"]
    assert m.name == "resnet20bn" and not m.quantize
    with torch.no_grad():
        want = src(x)
        torch.testing.assert_close(m(x), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(source_forward(state, pre.apply(x)), want, rtol=1e-4, atol=1e-4)
    assert want.std() > 0.1  # the logits are not all alike
    assert max(float(v.abs().max()) for k, v in state.items() if k.startswith("layer")
               and k.endswith("conv1.weight")) == WGT_ALPHA  # some weights were clipped


def test_their_mean_is_folded_into_the_stem_exactly_inside_the_border(imported):
    """With their mean, the stem computes their stem's output everywhere but at the zero-padded border."""
    _, state, _, _, _, x = imported
    m = to_zoo(state)
    pre = Preprocess(255, None, (0.491, 0.482, 0.447), APOT_STD)
    with torch.no_grad():
        ours = m.bn(m.stem(x / 255))
        theirs = torch.nn.functional.batch_norm(
            torch.nn.functional.conv2d(pre.apply(x), state["conv1.weight"], padding=1), state["bn1.running_mean"],
            state["bn1.running_var"], state["bn1.weight"], state["bn1.bias"], False, 0.0, 1e-5)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours[..., 0, :], theirs[..., 0, :], atol=1e-3)


def test_integer_model_equals_fake_quant(imported):
    """The post-training path of every imported model: W4/A4 prepared, calibrated, lowered, integer = fake-quant."""
    from apotflow.sw.api import QuantConfig, accuracy_report, calibrate, lower, prepare

    _, _, _, m, _, x = imported
    q = prepare(m, QuantConfig(4, 4))
    calibrate(q, random_images(32, seed=2))
    net = lower(q, example=x)  # raises unless every example's top-1 agrees
    r = accuracy_report(m, torch.Tensor.float, q, net, x, torch.zeros(len(x), dtype=torch.long))
    assert r["agreement"] == 1.0 and net.meta["model"] == "resnet20bn"
    assert sum(s.role == "projection" for o in net.ops for s in o.sources) == 2


def test_a_float_run_without_thresholds_imports_its_weights_as_stored(tmp_path):
    src = source_model(standardised=False)
    state, info = read(their_checkpoint(src, tmp_path / "f.pth", quantized=False))
    assert not info["quantized"] and "note" not in info and info["dropped"] == {"act_alpha": 0}
    x = random_images(4, seed=5)
    with torch.no_grad():
        m = to_zoo(state, "resnet20bn", Preprocess(255, None, (0.0,), APOT_STD))
        torch.testing.assert_close(m(x), src(x), rtol=1e-4, atol=1e-4)


def _drop(key):
    return lambda sd: sd.pop(key)


def _reshape_fc(sd):
    sd["module.fc.weight"] = torch.zeros(100, 64)


@pytest.mark.parametrize("case,msg", [
    ("depth32", "unexpected key 'layer1.3.conv1.weight'"),
    ("missing", "missing key 'layer2.0.downsample.1.running_var'"),
    ("alpha", "missing key 'layer3.2.conv2.weight_quant.wgt_alpha'"),
    ("shape", "'fc.weight' has shape (100, 64), not (10, 64)"),
    ("corrupt", "not a readable PyTorch checkpoint"),
    ("notdict", "not a checkpoint dict"),
    ("nofile", "no such checkpoint"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, case, msg):
    from apotflow.sim.cli import main

    path = tmp_path / "ckpt.pth.tar"
    if case == "depth32":
        their_checkpoint(source_model(32), path)
    elif case in ("missing", "alpha", "shape"):
        edit = {"missing": _drop("module.layer2.0.downsample.1.running_var"),
                "alpha": _drop("module.layer3.2.conv2.weight_quant.wgt_alpha"), "shape": _reshape_fc}[case]
        their_checkpoint(source_model(), path, edit=edit)
    elif case == "corrupt":
        path.write_bytes(b"PK\x03\x04 truncated")
    elif case == "notdict":
        torch.save([torch.zeros(1)], path)
    out = tmp_path / "out"
    assert main(["import", str(path), "--arch", "resnet20bn", "--data", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("apotflow: error: ") and msg in err[0], err
    assert not out.exists()


def test_the_option_needs_cifar_images(tmp_path, capsys):
    from apotflow.sim.cli import main

    path = their_checkpoint(source_model(), tmp_path / "c.pth.tar")
    assert main(["import", str(path), "--arch", "resnet20bn", "--out", str(tmp_path / "o")]) == 2
    assert "3x32x32" in capsys.readouterr().err


def test_load_error_is_apot_checkpoint_error(tmp_path):
    with pytest.raises(ApotCheckpointError):
        read(their_checkpoint(source_model(), tmp_path / "c.pth"), "resnet56")


@pytest.mark.skipif(CIFAR is None, reason="needs data/cifar10-jpeg.tar.xz")
def test_cli_imports_their_checkpoint_on_cifar_images(tmp_path, capsys):
    """`apotflow import CKPT --arch resnet20bn`: their default normalisation, W4/A4 post-training quantization on
    real CIFAR-10 images, integer = fake-quant, the dropped thresholds said in the result and on stderr."""
    from apotflow.sim.cli import main
    from apotflow.sw import export

    path = their_checkpoint(source_model(), tmp_path / "model_best.pth.tar")
    out = tmp_path / "out"
    assert main(["import", str(path), "--arch", "resnet20bn", "--data", str(CIFAR), "--out", str(out),
                 "--w-bits", "4", "--a-bits", "4", "--calib", "64", "--images", "48"]) == 0
    r = json.loads((out / "result.json").read_text())
    assert r["agreement"] == 1.0 and r["accuracy_int"] == r["accuracy_fakequant"] and r["images"] == 48
    assert r["source"]["arch"] == "resnet20bn" and r["source"]["dropped"]["act_alpha"] == 20
    assert r["preprocess"]["mean"] == [0.491, 0.482, 0.447] and 0 <= r["source"]["accuracy_float_source"] <= 1
    assert "not kept" in capsys.readouterr().err
    net = export.load(out / "model.apot")
    assert net.meta["model"] == "resnet20bn" and net.tensors["x"].max_value == 255
