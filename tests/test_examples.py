"""docs/examples: four user models outside the zoo go prepare -> calibrate -> lower, and the integer
network equals the fake-quant model (float64 check, agreement 1.0) on the digits test images; the third
is exported to ONNX inside the test and imported with `apotflow import`, the fourth concatenates branches. Untrained weights with BatchNorm
statistics from the digits images keep the tests fast (the examples' own main() trains them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from apotflow.sw import api
from apotflow.sw.data import load_digits_split
from apotflow.sw.golden import run_integer
from apotflow.sw.graph_prepare import Preprocess, build_prepared
from apotflow.sw.quant import exact_copy
from apotflow.sw.randmodel import calibrate_bn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))
import inception  # noqa: E402
import keras_style_onnx  # noqa: E402
import lenet  # noqa: E402
import small_resnet  # noqa: E402

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def _float_model(cls, digits, pre: Preprocess, seed: int = 0):
    torch.manual_seed(seed)
    m = cls()
    calibrate_bn(m, [pre.apply(digits.x_train[:512])])
    return m.eval()


def _integer_equals_fake_quant(q, net, x) -> None:
    with torch.no_grad():
        fq = exact_copy(q).eval()(x.double()).argmax(1)
    logits = run_integer(net, x.long().numpy())["logits"].reshape(len(x), -1)
    assert torch.equal(logits.argmax(1), fq)


@pytest.mark.parametrize("cls, pre, bits, prune", [
    (lambda: lenet.LeNet(8), Preprocess(16), (4, 4), 0.0),
    (lambda: small_resnet.SmallResNet((8, 16, 16)), Preprocess(16, mean=(0.3,), std=(0.4,)), (4, 4), 0.3),
    (lambda: small_resnet.SmallResNet((8, 8, 16)), Preprocess(16), (8, 8), 0.0),
    (lambda: inception.Inception(8), Preprocess(16), (4, 4), 0.5),
], ids=["lenet-w4a4", "resnet-w4a4-mean-std-pruned", "resnet-w8a8", "inception-concat-w4a4-pruned"])
def test_a_user_model_lowers_to_an_integer_network_equal_to_its_fake_quant_model(digits, cls, pre, bits, prune):
    m = _float_model(cls, digits, pre)
    if pre.mean == (0.0,):  # the float graph of the prepared model is the float model (no mean at the borders)
        with torch.no_grad():
            x = digits.x_test[:64]
            torch.testing.assert_close(build_prepared(m, *bits, pre)(x), m(pre.apply(x)))
    q = api.prepare(m, api.QuantConfig(*bits), pre)
    if prune:
        api.prune_(q, prune)
    api.calibrate(q, digits.x_train[:64])
    x = digits.x_test[:200]
    net = api.lower(q, example=x)  # raises unless the integer model agrees with the float64 fake-quant model
    _integer_equals_fake_quant(q, net, x)
    assert net.ops[0].sources[0].w_bits == 8 and net.ops[-1].name == "fc"
    assert net.tensors["x"].max_value == 16  # the first layer sees integer pixels


def test_projection_shortcuts_and_identity_batchnorms(digits):
    m = _float_model(lambda: small_resnet.SmallResNet((8, 8, 16)), digits, Preprocess(16))
    q = api.calibrate(api.prepare(m, api.QuantConfig(4, 4)), digits.x_train[:64])
    roles = {s.name: s.role for s in q.plan if s.kind == "conv"}
    assert [k for k, r in roles.items() if r == "proj"] == ["layer2_down_0", "layer3_down_0"]
    net = api.lower(q, example=digits.x_test[:64])
    projections = [s for o in net.ops for s in o.sources if s.role == "projection"]
    assert len(projections) == 2
    groups = q.prune_groups()  # the stem, the identity block's conv2 and layer2's stream meet at adds
    assert len(groups) == 3 + 3
    assert sum(len(g) for g in groups) == 9


def test_a_concatenation_is_one_source_per_branch(digits):
    """The conv after torch.cat reads each branch as one source (its weights split by channel range); the
    branches share their readers' one quantizer; the groups that feed the concatenation keep every
    channel while the others are pruned; the FP32 reference counts the conv's weights once."""
    from apotflow.sw.intnet import size_and_bops

    m = _float_model(lambda: inception.Inception(8), digits, Preprocess(16))
    q = api.prepare(m, api.QuantConfig(4, 4), Preprocess(16))
    assert q.b1_0.aq is q.b2_0.aq is q.mix_0.aq
    api.prune_(q, 0.5)
    assert [int(g[0][0].filter_mask.sum()) for g in q.prune_groups()] == [8, 8, 8, 8]  # stem, b1, b2; mix 16 -> 8
    api.calibrate(q, digits.x_train[:64])
    net = api.lower(q, example=digits.x_test[:100])
    mix = next(o for o in net.ops if o.name == "mix_0")
    assert [(s.tensor, s.codes.shape[1]) for s in mix.sources] == [("b1_0", 8), ("b2_0", 8), ("p0", 8)]
    w = q.mix_0.wq.int_weight(q.mix_0.weight, q.mix_0.filter_mask, q.mix_0.in_mask)[0]
    assert sum(int((s.weight != 0).sum()) for s in mix.sources) == int((w != 0).sum()) > 0
    weights = sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight") and p.dim() > 1)
    assert size_and_bops(net)["size_fp32_bits"] == 32 * weights


def test_one_quantizer_for_the_branches_of_a_concatenation_covers_each(digits):
    """Calibration sets a quantizer that stores several tensors (the branches of a concatenation) to cover
    the largest: a branch 20x larger than the others is not clipped to their range."""
    m = _float_model(lambda: inception.Inception(8), digits, Preprocess(16))
    with torch.no_grad():
        m.b2[1].weight *= 20
        m.b2[1].bias *= 20
    q = api.prepare(m, api.QuantConfig(8, 8), Preprocess(16))
    seen = []
    q.b2_1.register_forward_hook(lambda mod, i, o: seen.append(torch.relu(o).flatten().double()))
    api.calibrate(q, digits.x_train[:64])
    big = float(torch.quantile(seen[-1], 0.999))
    assert float(q.mix_0.aq.alpha) > 0.5 * big


def test_a_concatenation_outside_what_lowers_is_one_line():
    from torch import nn

    from apotflow.sw.graph_prepare import PrepareError

    class Pooled(inception.Inception):  # a max pool reads the concatenation
        def forward(self, x):
            p = self.pool(self.stem(x))
            return self.fc(torch.flatten(self.pool(torch.cat([self.b1(p), self.b2(p)], 1)).mean((2, 3)), 1))

    class Raw(inception.Inception):  # a branch without ReLU
        def __init__(self):
            super().__init__(8)
            self.lin = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            p = self.pool(self.stem(x))
            return self.fc(torch.flatten(self.mix(torch.cat([self.b1(p), self.lin(p), p], 1)).mean((2, 3)), 1))

    with pytest.raises(PrepareError, match="read by convolutions only, not by"):
        api.prepare(Pooled(8).eval(), api.QuantConfig(4, 4), Preprocess(16))
    with pytest.raises(PrepareError, match="joins ReLU outputs"):
        api.prepare(Raw().eval(), api.QuantConfig(4, 4), Preprocess(16))


def test_an_onnx_model_exported_from_pytorch_imports_with_the_cli(digits, tmp_path):
    from apotflow.sim.cli import main
    from apotflow.sw import export

    m = _float_model(lambda: keras_style_onnx.KerasStyleResNet(widths=(8, 16, 16)), digits, Preprocess(16, scale=1.0))
    onnx_path = keras_style_onnx.export_onnx(m, tmp_path / "k.onnx")
    out = tmp_path / "out"
    assert main(["import", str(onnx_path), "--out", str(out), "--input-scale", "1", "--w-bits", "4", "--a-bits", "4",
                 "--calib", "32", "--images", "120"]) == 0
    r = json.loads((out / "result.json").read_text())
    assert r["agreement"] == 1.0 and r["images"] == 120 and r["preprocess"]["scale"] == 1.0
    assert r["accuracy_int"] == r["accuracy_fakequant"]
    net = export.load(out / "model.apot")
    assert net.tensors["x"].max_value == 16 and net.ops[-1].name == "fc"
    assert sorted(p.name for p in out.iterdir()) == ["model.apot", "result.json"]


def test_import_finetune_recovers_what_post_training_quantization_lost(digits, tmp_path):
    """`apotflow import --finetune E`: QAT from the imported weights (the one trainer), pruned filters kept at
    zero, the identity BatchNorm of a conv without one kept an affine map; W2/A2 with 30% pruning loses most
    of a trained LeNet's accuracy after calibration alone and gets much of it back in 4 epochs."""
    from apotflow.sim.cli import main
    from apotflow.sw import export

    torch.manual_seed(0)
    pre = Preprocess(16)
    m = lenet.train(lenet.LeNet(8), pre.apply(digits.x_train), digits.y_train, epochs=15)
    path = tmp_path / "lenet.onnx"
    torch.onnx.export(m, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    out = tmp_path / "out"
    assert main(["import", str(path), "--out", str(out), "--w-bits", "2", "--a-bits", "2", "--prune", "0.3",
                 "--calib", "256", "--finetune", "4"]) == 0
    r = json.loads((out / "result.json").read_text())
    assert r["finetune"]["epochs"] == 4 and r["agreement"] == 1.0 and r["accuracy_int"] == r["accuracy_fakequant"]
    assert r["accuracy_int"] > r["post_training"]["accuracy_int"] + 0.2, r
    net = export.load(out / "model.apot")
    assert net.ops[1].sources[0].codes.shape[0] < 16  # conv2's 16 filters pruned by 30%: sliced away


def test_a_fixed_batchnorm_stays_an_affine_map_in_training():
    from apotflow.sw.graph_prepare import _identity_bn

    bn = _identity_bn(3, 4).train()
    x = torch.randn(8, 3, 4, 4) * 5 + 2
    torch.testing.assert_close(bn(x), x)  # a BatchNorm2d in training would normalise by the batch
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))


def test_import_errors_are_one_line_and_write_nothing(digits, tmp_path, capsys):
    from torch import nn

    from apotflow.sim.cli import main

    class Sig(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 10)

        def forward(self, x):
            return torch.softmax(self.fc(torch.sigmoid(self.c(x)).mean((2, 3))), 1)

    bad = tmp_path / "sig.onnx"
    torch.onnx.export(Sig().eval(), torch.zeros(1, 1, 8, 8), str(bad), dynamo=False)
    dyn = tmp_path / "dyn.onnx"
    torch.onnx.export(lenet.LeNet().eval(), torch.zeros(1, 1, 8, 8), str(dyn), input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    ok = tmp_path / "ok.onnx"
    torch.onnx.export(lenet.LeNet().eval(), torch.zeros(1, 1, 8, 8), str(ok), dynamo=False)
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    out = tmp_path / "out"
    cases = [([str(bad)], "3 unsupported node(s)"), ([str(dyn)], "dynamic sizes"),
             ([str(tmp_path / "none.onnx")], "no such ONNX file"), ([str(tmp_path / "corrupt.onnx")], "not a readable"),
             ([str(ok), "--input-mean", "0.1", "0.2"], "has 2 values"), ([str(ok), "--w-bits", "6"], "w_bits"),
             ([str(ok), "--prune", "1.5"], "--prune"), ([str(ok), "--data", "nowhere.tar.xz"], "no such file"),
             ([str(ok), "--data", "digits", "--input-std", "0"], "std"), ([str(ok), "--finetune", "-1"], "--finetune")]
    for argv, msg in cases:
        capsys.readouterr()
        assert main(["import", *argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("apotflow: error: ") and msg in err.splitlines()[0], (argv, err)
        assert not out.exists()
    capsys.readouterr()
    main(["import", str(bad), "--out", str(out)])
    lines = capsys.readouterr().err.splitlines()
    assert any("Sigmoid" in ln and "only ReLU" in ln for ln in lines) and any("Softmax" in ln for ln in lines)


@pytest.mark.verilator
def test_the_imported_onnx_model_co_simulates_bit_exactly(digits, tmp_path):
    """The Keras-style ONNX import (asymmetric pads as zero-extended 4x4 kernels, 1x1 projections) through
    the generated RTL on Verilator at 8 lanes, every layer bit-exact."""
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sim.flow import cosim_model
    from apotflow.sw.onnx_in import load_onnx

    m = _float_model(lambda: keras_style_onnx.KerasStyleResNet(widths=(8, 8, 16)), digits, Preprocess(16, scale=1.0))
    gm = load_onnx(keras_style_onnx.export_onnx(m, tmp_path / "k.onnx"))
    net, r = api.import_float_model(gm, digits.x_train[:32], digits.x_test[:32], digits.y_test[:32],
                                    api.QuantConfig(4, 4), Preprocess(16, scale=1.0))
    assert r["agreement"] == 1.0
    assert {o.sources[0].weight.shape[-1] for o in net.ops if o.kind == "conv"} >= {3, 4}
    s = cosim_model(net, fit(net, AcceleratorConfig(lanes=8)), tmp_path / "cosim", 2, seed=2, log=lambda m: None)
    assert s["images"] == 2 and s["mismatches"] == 0, s["first_mismatch"]
    assert s["cycles_total"] == s["cycles_model"]


@pytest.mark.verilator
def test_an_onnx_concatenation_co_simulates_bit_exactly(digits, tmp_path):
    """The Inception example exported to ONNX (Concat along channels) and imported: the conv after the
    concatenation reads three sources, on Verilator at 8 lanes, every layer bit-exact."""
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sim.flow import cosim_model
    from apotflow.sw.onnx_in import load_onnx

    m = _float_model(lambda: inception.Inception(4), digits, Preprocess(16))
    path = tmp_path / "i.onnx"
    torch.onnx.export(m, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    gm = load_onnx(path)
    assert any(n.target is torch.cat for n in gm.graph.nodes)
    net, r = api.import_float_model(gm, digits.x_train[:32], digits.x_test[:32], digits.y_test[:32],
                                    api.QuantConfig(4, 4), Preprocess(16))
    assert r["agreement"] == 1.0
    assert max(len(o.sources) for o in net.ops) == 3
    s = cosim_model(net, fit(net, AcceleratorConfig(lanes=8)), tmp_path / "cosim", 2, seed=2, log=lambda m: None)
    assert s["images"] == 2 and s["mismatches"] == 0, s["first_mismatch"]
    assert s["cycles_total"] == s["cycles_model"]


def test_batchnorms_for_training_keep_the_eval_function(digits):
    """The fixed BatchNorms of an ONNX-imported (BatchNorm-folded) model become trainable ones that compute
    the same in eval mode."""
    m = _float_model(lambda: lenet.LeNet(8), digits, Preprocess(16))
    q = api.calibrate(api.prepare(m, api.QuantConfig(4, 4), Preprocess(16)), digits.x_train[:64])
    x = digits.x_test[:100]
    with torch.no_grad():
        before = q(x)
    assert api.batchnorms_for_training(q, digits.x_train[:256]) == 2  # conv2 and fc1 have no BatchNorm
    assert not any("Fixed" in type(b).__name__ for b in q.modules())
    with torch.no_grad():
        torch.testing.assert_close(q.eval()(x), before, rtol=1e-4, atol=1e-4)
