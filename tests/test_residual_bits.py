"""residual_bits (sw/models/resnet.py): the residual stream at N uniform bits or in float, trained on the CPU
(eager steps); N bits lower and export (tests/test_residual_stream.py), a float stream is refused by the
lowering and the export; the default (None) is today's model exactly."""

import json

import pytest
import torch
from conftest import random_resnet20

from apotflow.sw.fastkernels import fast_kernels
from apotflow.sw.models.resnet import CifarResNet
from apotflow.sw.quant import ActQuantizer, exact_copy, set_quantize, uniform_act_quant

# the logits of the fixed model below (train mode: batch statistics; eval mode: the integer model's shortcut
# gain), computed by the code before residual_bits existed (commit caee40d), in float64
TODAY_TRAIN = [4.065077504, 2.046191396, 1.463788885, -1.854618349, 1.299388209, -1.308114644, 0.786940396,
               0.011253138, -4.069871002, 0.179677079, 3.431711365, 2.271585096, 1.278749515, -1.013082919,
               1.507557499, -1.21485677, 0.622324255, -0.763599221, -4.67346352, 0.101182985]
TODAY_EVAL = [-3.688121286, 6.57424256, 0.77653495, -1.246596698, 2.092695292, 0.323529051, 0.63339709,
              3.072030685, -5.340294226, 4.259401473, -3.303278768, 6.124685475, 0.728306604, -1.315494335,
              1.70342364, -0.03596898, 1.365680552, 2.493782656, -4.814457614, 3.876773522]


def _fixed(**kw):
    m = random_resnet20(0, **kw)
    x = torch.randint(0, 256, (2, 3, 32, 32)).double()
    return set_quantize(exact_copy(m), True), x


def test_default_model_is_todays():
    """No residual_bits: the same logits as before the option existed (fake-quant, train and eval mode), the
    same architecture keys and state dict keys."""
    m, x = _fixed()
    with torch.no_grad():
        tr, ev = m.train()(x).flatten(), m.eval()(x).flatten()
    assert torch.allclose(tr, torch.tensor(TODAY_TRAIN, dtype=tr.dtype), rtol=0, atol=1e-8)
    assert torch.allclose(ev, torch.tensor(TODAY_EVAL, dtype=ev.dtype), rtol=0, atol=1e-8)
    assert "residual_bits" not in m.arch_config()
    assert set(CifarResNet(20, residual_bits=8).state_dict()) == set(CifarResNet(20).state_dict())


def test_uniform_quantizer_is_the_8_bit_activation_quantizer():
    """uniform_act_quant at 8 bits: the values and gradients (x and alpha) of the unsigned 8-bit quantizer
    (uniform levels 0..255 / 255, the same tie rule), in float32 whatever the input's dtype."""
    q = ActQuantizer(8)
    q.alpha.data.fill_(1.5)
    x = torch.cat([torch.linspace(-1, 2, 3001), (torch.arange(255) + 0.5) / 255 * 1.5])
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = q(xa)
    ref.sum().backward()
    ga = q.alpha.grad.clone()
    q.alpha.grad = None
    out = uniform_act_quant(xb, q.alpha, 8)
    out.sum().backward()
    assert torch.allclose(out, ref, rtol=0, atol=1e-6) and torch.equal(xb.grad, xa.grad)
    assert torch.allclose(q.alpha.grad, ga, rtol=1e-4)
    assert uniform_act_quant(x.bfloat16(), q.alpha, 8).dtype == torch.float32


@pytest.mark.parametrize("bits", [8, 0])
def test_residual_bits_change_the_quantized_shortcut_only(bits):
    """Float mode: the same model as the default's; fake-quant: another shortcut (0: the block input itself)."""
    ref, x = _fixed()
    m, _ = _fixed(residual_bits=bits)
    m.load_state_dict(ref.state_dict())
    with torch.no_grad():
        assert torch.equal(set_quantize(m, False).eval()(x), set_quantize(ref, False).eval()(x))
        set_quantize(m, True), set_quantize(ref, True)
        assert not torch.allclose(m.train()(x), ref.train()(x))
        blk, h = m.blocks[1], torch.rand(2, 8, 8, 8, dtype=torch.float64) * 3
        r = blk.residual_stream(h)
        if bits == 0:
            assert r is h
        else:  # 2**8 levels clipped at conv_a's alpha (2.0)
            assert torch.equal(r, torch.floor(h.clamp(0, 2) / 2 * 255 + 0.5) / 255 * 2)


def test_residual_bits_compile_in_one_graph():
    """The training kernels (fast_kernels, as the graphed GPU step runs them) trace into one graph with the
    uniform shortcut quantizer: no graph break (backend eager: the CPU has no CUDA graph)."""
    torch.manual_seed(0)
    m = set_quantize(CifarResNet(8, widths=(8, 16, 32), residual_bits=8), True).train()
    x = torch.randint(0, 256, (2, 3, 32, 32)).float()
    torch._dynamo.reset()
    with fast_kernels(m):
        ref = m(x)
        y = torch.compile(m, backend="eager", fullgraph=True)(x)
        y.sum().backward()
    assert torch.allclose(y, ref) and m.blocks[1].conv_a.aq.alpha.grad is not None


@pytest.mark.parametrize("bits", [8, 0])
def test_one_qat_step_with_residual_bits(bits):
    """One eager training step (sw/step.Stepper with the training kernels, as on the CPU) of a width-scaled
    resnet20 in QAT: finite loss, the weights and the clipping alphas move, pruned filters stay zero."""
    from apotflow.sw.fastkernels import GraphSGD
    from apotflow.sw.fasttrain import FastConfig, Phase, Stepper, calibrate_for_qat, param_groups
    from apotflow.sw.prune import compute_masks

    torch.manual_seed(0)
    m = CifarResNet(20, widths=(8, 16, 32), residual_bits=bits)
    compute_masks(m, 0.3)
    x, y = torch.randint(0, 256, (8, 3, 32, 32)).to(torch.uint8), torch.arange(8)
    calibrate_for_qat(m, x)
    set_quantize(m, True).train()
    cfg = FastConfig(batch_size=8, step_mode="eager", bf16=False, channels_last=False, residual_bits=bits)
    opt = GraphSGD(param_groups(m, cfg, True))
    opt.set_lr(0.1)
    conv = m.blocks[1].conv_a
    w0, a0 = conv.weight.detach().clone(), conv.aq.alpha.detach().clone()
    with fast_kernels(m):
        step = Stepper(m, cfg, Phase("qat", 1, 0.1, True, frozen=True), opt, print)
        step(x, y)
    assert step.mode == "eager" and torch.isfinite(step.loss_sum)
    assert not torch.equal(conv.weight, w0) and not torch.equal(conv.aq.alpha, a0)
    assert (conv.weight[~conv.filter_mask] == 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("bits", [8, 0])
def test_graph_step_with_residual_bits_on_gpu(bits):
    """The graphed step (torch.compile + one CUDA graph, bf16, channels_last) captures with residual_bits and
    stays graphed over its replays (a failed capture falls back to "compile", which this would show)."""
    from apotflow.sw.fastkernels import GraphSGD
    from apotflow.sw.fasttrain import FastConfig, Phase, Stepper, calibrate_for_qat, param_groups
    from apotflow.sw.prune import compute_masks

    torch.manual_seed(0)
    cfg = FastConfig(batch_size=128, step_mode="graph", residual_bits=bits)
    m = CifarResNet(20, residual_bits=bits).cuda().to(memory_format=torch.channels_last)
    compute_masks(m, 0.3)
    x = torch.randint(0, 256, (128, 3, 32, 32), device="cuda", dtype=torch.uint8)
    y = torch.randint(0, 10, (128,), device="cuda")
    calibrate_for_qat(m, x)
    set_quantize(m, True).train()
    opt = GraphSGD(param_groups(m, cfg, True), 0.9)
    opt.set_lr(0.01)
    w0 = m.blocks[1].conv_a.weight.detach().clone()
    with fast_kernels(m):
        st = Stepper(m, cfg, Phase("qat", 1, 0.01, True, frozen=True), opt, print)
        for _ in range(6):
            st(x, y)
        torch.cuda.synchronize()
    assert st.mode == "graph" and st.graph is not None and torch.isfinite(st.loss_sum)
    assert not torch.equal(m.blocks[1].conv_a.weight, w0)


def test_bad_residual_bits_are_refused():
    for bits in (4, 3, 17, -1, 1.5):
        with pytest.raises(ValueError, match="residual_bits must be 0"):
            CifarResNet(20, residual_bits=bits)
    for kw in ({"shortcut": "B", "conv_bias": True}, {"shortcut": "BN"}):
        with pytest.raises(ValueError, match="needs option-A shortcuts"):
            CifarResNet(8 if kw["shortcut"] == "B" else 20, residual_bits=8, **kw)
    from apotflow.sw.recipe import FastConfig

    with pytest.raises(ValueError, match=r"\(5, 16\]"):
        FastConfig(a_bits=5, residual_bits=5)
    from apotflow.sw.recipe import DigitsConfig

    with pytest.raises(ValueError, match="no shortcut"):
        DigitsConfig(residual_bits=8)


def test_cli_qat_with_residual_bits_then_export(tmp_path, capsys):
    """`apotflow train --residual-bits N` (ppq's QAT phase from a float resnet20, one step on 8 fake images,
    CPU eager). N = 8: the run has an integer model (the 8-bit stream, tests/test_residual_stream.py) equal
    to the fake-quant model on every image, its model.apot, and `apotflow export` of its model.pt works.
    N = 0 (a float stream): the fake-quant accuracy, accuracy_int null and the one-line reason, no model.apot;
    its model.pt rebuilds with residual_bits, and `apotflow export` of it is a one-line error naming
    residual_bits (exit 2, nothing written). A projection net or too few bits: one-line errors before any work."""
    from test_cifar_data import _batches_folder

    from apotflow.sim.cli import main
    from apotflow.sw.checkpoint import load_checkpoint, save_checkpoint

    data = _batches_folder(tmp_path / "cifar-10-batches-py", n=8)
    common = ["--data", str(data), "--cache", str(tmp_path / "cache"), "--batch-size", "8", "--step-mode", "eager",
              "--no-bf16", "--no-channels-last", "--train-subset", "8", "--prune-stages", "0", "--qat-epochs", "1"]
    torch.manual_seed(0)
    f20 = save_checkpoint(CifarResNet(20), tmp_path / "f20.pt")
    for bits in (8, 0):
        out = tmp_path / f"res{bits}"
        assert main(["train", "--model", "resnet20", "--method", "ppq", "--float-init", str(f20),
                     "--residual-bits", str(bits), "--out", str(out), *common]) == 0
        res = json.loads((out / "result.json").read_text())
        assert res["config"]["residual_bits"] == bits
        assert isinstance(res["accuracy"], float) and isinstance(res["accuracy_fp32"], float)
        model, _ = load_checkpoint(out / "model.pt")
        assert model.residual_bits == bits and model.blocks[0].residual_bits == bits
        capsys.readouterr()
        apot = tmp_path / f"res{bits}.apot"
        if bits:
            assert res["accuracy_int"] == res["accuracy"] and res["agreement"] == 1.0 and (out / "model.apot").exists()
            assert main(["export", str(out / "model.pt"), "-o", str(apot)]) == 0 and apot.exists()
            continue
        assert res["accuracy_int"] is None and "integer_error" not in res and not (out / "model.apot").exists()
        assert res["integer_note"].startswith("residual_bits=0 (a float residual stream) is a training experiment")
        assert main(["export", str(out / "model.pt"), "-o", str(apot)]) == 2
        err = [e for e in capsys.readouterr().err.splitlines() if e.startswith("apotflow: error")]
        assert len(err) == 1 and "residual_bits=0 (a float residual stream)" in err[0] and not apot.exists()

    for model, bits, words in (("resnet20bn", "8", "needs option-A shortcuts"), ("resnet20", "4", "residual_bits must")):
        capsys.readouterr()
        assert main(["train", "--model", model, "--residual-bits", bits, "--out", str(tmp_path / "x"), *common]) == 2
        assert words in capsys.readouterr().err and not (tmp_path / "x" / "result.json").exists()
    assert main(["train", "--model", "digits", "--residual-bits", "8", "--out", str(tmp_path / "d")]) == 2
    assert "--residual-bits" in capsys.readouterr().err


def test_results_table_skips_a_run_without_integer_accuracy(tmp_path, monkeypatch, capsys):
    """bench/results_table.py: a --residual-bits 0 run (accuracy_int null, its integer_note) given as a row is
    skipped with a message; as a variant it is listed (integer "—") and kept out of the seed table."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "bench"))
    try:
        import results_table
    finally:
        sys.path.pop(0)
    good = json.loads((root / "docs/cifar-runs/resnet20-ppq-jpeg.json").read_text())
    note = "residual_bits=0 (a float residual stream) is a training experiment; the integer model stores the stream"
    exp = {**good, "accuracy_int": None, "agreement": None, "integer_note": note,
           "command": good["command"] + " --residual-bits 0"}
    (tmp_path / "docs").mkdir()
    files = {}
    for name, run in (("good", good), ("res8", exp), ("res8-seed1", {**exp, "command": exp["command"] + " --seed 1"})):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(run))
    monkeypatch.chdir(tmp_path)
    results_table.main([str(files["good"]), str(files["res8"]), "--variants", str(files["res8"]), str(files["res8-seed1"])])
    assert f"{files['res8']} skipped: no integer accuracy ({note})" in capsys.readouterr().err
    res = json.loads((tmp_path / "docs/results.json").read_text())
    assert [r["source"] for r in res["rows"] if not r.get("status")] == [str(files["good"])]
    assert len(res["variants"]) == 2 and "seeds" not in (tmp_path / "docs/results.md").read_text()
