"""GPU trainer pieces on the CPU: exact fast quantizer, augmentation, one eager step, float64 golden."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import random_resnet20

from apotflow.sw.fastkernels import augment_epoch, fast_kernels, roundup_f32
from apotflow.sw.models.resnet import CifarResNet
from apotflow.sw.quant import ActQuantizer, WeightQuantizer, set_quantize


@pytest.mark.parametrize("q", [ActQuantizer(4), WeightQuantizer(4), WeightQuantizer(8), ActQuantizer(3)])
def test_fast_quantizer_is_exact(q):
    """Same codes and values as sw/quant.py, midpoints and their float32 neighbours included."""
    q.alpha.data.fill_(1.0)
    mids = q.midpoints().float()
    x = torch.cat([torch.randn(4000) * 0.7, mids, torch.nextafter(mids, torch.zeros_like(mids)), -mids])
    if not q.signed:
        x = x.abs()
    ref_out, ref_codes = q._quant(x)
    m = torch.nn.Sequential(q)
    with fast_kernels(m):
        out, codes = q._quant(x)
    assert torch.equal(codes, ref_codes) and torch.allclose(out, ref_out, rtol=0, atol=1e-6)
    assert (roundup_f32(q.midpoints()).double() >= q.midpoints()).all()


def test_fast_gradients_match():
    q = ActQuantizer(4)
    x = torch.linspace(-1, 10, 301, requires_grad=True)
    q(x).sum().backward()
    gx, ga = x.grad.clone(), q.alpha.grad.clone()
    x.grad, q.alpha.grad = None, None
    with fast_kernels(torch.nn.Sequential(q)):
        q(x).sum().backward()
    assert torch.allclose(x.grad, gx) and torch.allclose(q.alpha.grad, ga, atol=1e-4)


def test_augment_is_crop_and_flip():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).view(2, 3, 32, 32).to(torch.uint8)
    out = augment_epoch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        ok = any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1))
                 for oy in range(9) for ox in range(9) for c in [xp[i, :, oy:oy + 32, ox:ox + 32]])
        assert ok


def test_cutout_zeroes_one_clipped_square_of_the_cropped_image():
    """cutout=s: the crop + flip of cutout=0 (same generator), with one s x s square (clipped at the
    border) zeroed; nothing else changes."""
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    plain = augment_epoch(x, torch.Generator().manual_seed(3), pad=0)  # no padding: no zero pixel before cutout
    cut = augment_epoch(x, torch.Generator().manual_seed(3), pad=0, cutout=8)
    zeroed = cut != plain
    assert torch.equal(cut[~zeroed], plain[~zeroed]) and (cut[zeroed] == 0).all()
    assert torch.equal(zeroed, zeroed[:, :1].expand_as(zeroed))  # every channel alike
    sides = set()
    for z in zeroed[:, 0]:
        rows, cols = z.any(1).nonzero()[:, 0], z.any(0).nonzero()[:, 0]
        assert z.sum() == len(rows) * len(cols) and z[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        sides |= {len(rows), len(cols)}
    assert max(sides) == 8 and min(sides) < 8  # full squares and clipped ones


def test_one_eager_step_and_masks():
    from apotflow.sw.fastkernels import GraphSGD
    from apotflow.sw.fasttrain import FastConfig, Phase, Stepper, calibrate_for_qat, param_groups
    from apotflow.sw.prune import compute_masks

    torch.manual_seed(0)
    m = CifarResNet(20)
    compute_masks(m, 0.3)
    x = torch.randint(0, 256, (8, 3, 32, 32)).to(torch.uint8)
    y = torch.arange(8)
    calibrate_for_qat(m, x)
    set_quantize(m, True)
    cfg = FastConfig(batch_size=8, step_mode="eager", bf16=False, channels_last=False)
    opt = GraphSGD(param_groups(m, cfg, True))
    opt.set_lr(0.1)
    before = m.blocks[0].conv_a.weight.detach().clone()
    with fast_kernels(m):
        Stepper(m, cfg, Phase("t", 1, 0.1, True, frozen=True), opt, print)(x, y)
    w = m.blocks[0].conv_a.weight
    assert not torch.equal(w, before) and (w[~m.blocks[0].conv_a.filter_mask] == 0).all()


def test_float64_golden_equals_int64():
    from apotflow.sw.golden import run_float64, run_integer
    from apotflow.sw.lower import lower

    m = random_resnet20(1)
    set_quantize(m, True)
    net = lower(m.eval())
    x = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32))
    a, b = run_integer(net, x), run_float64(net, x)
    for k in a:
        assert torch.equal(a[k].double(), b[k]), k


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_step_on_gpu():
    from bench.train_speed import bench

    assert bench("graph", 5, 128)["mode"] == "graph"


def test_cli_ppq_distill_then_spq_from_its_teacher(tmp_path, capsys):
    """`apotflow train` on a tiny fake CIFAR folder (CPU, eager): ppq distils from its own float phase
    and leaves float.pt; spq distils from that file; --distill without a teacher is a one-line error."""
    import json

    from test_cifar_data import _batches_folder

    from apotflow.sim.cli import main
    from apotflow.sw.checkpoint import load_checkpoint

    data = _batches_folder(tmp_path / "cifar-10-batches-py", n=8)
    common = ["--data", str(data), "--cache", str(tmp_path / "cache"), "--batch-size", "8", "--step-mode", "eager",
              "--no-bf16", "--no-channels-last", "--distill", "0.5"]
    ppq = tmp_path / "ppq"
    assert main(["train", "--model", "resnet20", "--method", "ppq", "--epochs", "1", "--stage-epochs", "1",
                 "--qat-epochs", "1", "--out", str(ppq), *common]) == 0
    res = json.loads((ppq / "result.json").read_text())
    assert res["config"]["distill"] == 0.5 and res["accuracy_int"] is not None
    teacher, meta = load_checkpoint(ppq / "float.pt")
    assert meta["phase"] == "float" and not teacher.quantize
    blob = torch.load(ppq / "train.ckpt", weights_only=False)
    assert blob["teacher"] is not None and set(blob["teacher"]) == set(teacher.state_dict())
    load_checkpoint(ppq / "model.pt")  # the run's model is a loadable checkpoint too

    spq = tmp_path / "spq"
    assert main(["train", "--model", "resnet20", "--method", "spq", "--epochs", "1", "--out", str(spq),
                 "--teacher", str(ppq / "float.pt"), *common]) == 0
    assert json.loads((spq / "result.json").read_text())["teacher"] == str(ppq / "float.pt")

    capsys.readouterr()
    assert main(["train", "--model", "resnet20", "--method", "spq", "--epochs", "1", "--out", str(tmp_path / "x"),
                 *common]) == 2
    assert "needs --teacher" in capsys.readouterr().err
    assert main(["train", "--model", "resnet20", "--method", "spq", "--epochs", "1", "--out", str(tmp_path / "y"),
                 "--teacher", str(tmp_path / "nope.pt"), *common]) == 2
    assert "teacher checkpoint" in capsys.readouterr().err


def test_cli_float_init_skips_the_float_phase(tmp_path, capsys):
    """--float-init: ppq starts from a float checkpoint (no float epochs in its history); a checkpoint of
    another architecture or a non-ppq method is a one-line error."""
    import json

    from test_cifar_data import _batches_folder

    from apotflow.sim.cli import main
    from apotflow.sw.checkpoint import save_checkpoint

    data = _batches_folder(tmp_path / "cifar-10-batches-py", n=8)
    common = ["--data", str(data), "--cache", str(tmp_path / "cache"), "--batch-size", "8", "--step-mode", "eager",
              "--no-bf16", "--no-channels-last", "--stage-epochs", "1", "--qat-epochs", "1"]
    torch.manual_seed(0)
    f20 = save_checkpoint(CifarResNet(20), tmp_path / "f20.pt")
    out = tmp_path / "ppq"
    assert main(["train", "--model", "resnet20", "--method", "ppq", "--float-init", str(f20), "--distill", "0.5",
                 "--ema", "0.5", "--out", str(out), *common]) == 0
    res = json.loads((out / "result.json").read_text())
    assert [h["phase"] for h in res["history"]] == ["prune1", "prune2", "qat"] and res["float_init"] == str(f20)
    # --ema: the live model is lowered and checked as the average is (float64 fake-quant vs integer)
    assert res["accuracy_live"] == res["accuracy_live_fp32"] and res["agreement_live"] == 1.0
    assert res["accuracy_live_int"] == res["accuracy_live"]

    capsys.readouterr()
    f32 = save_checkpoint(CifarResNet(32), tmp_path / "f32.pt")
    assert main(["train", "--model", "resnet20", "--method", "ppq", "--float-init", str(f32),
                 "--out", str(tmp_path / "x"), *common]) == 2
    assert "not a float resnet20" in capsys.readouterr().err
    assert main(["train", "--model", "resnet20", "--method", "spq", "--float-init", str(f20),
                 "--out", str(tmp_path / "y"), *common]) == 2
    assert "replaces the float phase" in capsys.readouterr().err


class _Stop(Exception):
    pass


def _stop_at(phase: str, epoch: int):
    """A progress callback that stops a run as epoch ``epoch`` of ``phase`` ends (before its checkpoint)."""
    def stop(rec):
        if rec["phase"] == phase and rec["epoch"] == epoch:
            raise _Stop
    return stop


def _interrupted_ppq(tmp_path, cfg, phase: str, epoch: int):
    """(the never-stopped run's model, its result, the checkpoint of the same run stopped as epoch ``epoch`` of
    ``phase`` ended, the model factory, the data): 16 random training images, 8 test images, ResNet-20s seeded
    alike."""
    from types import SimpleNamespace

    from apotflow.sw.fasttrain import train_fast

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randint(0, 256, (16, 3, 32, 32), generator=g).to(torch.uint8),
                           y_train=torch.arange(16) % 10, x_test=torch.randint(0, 256, (8, 3, 32, 32), generator=g)
                           .to(torch.uint8), y_test=torch.arange(8))

    def net():
        torch.manual_seed(0)
        return CifarResNet(20)

    whole = net()
    ref = train_fast(whole, data, cfg, ckpt=str(tmp_path / "a" / "train.ckpt"), log=lambda *a: None)
    ck = tmp_path / "b" / "train.ckpt"
    ck.parent.mkdir()
    with pytest.raises(_Stop):
        train_fast(net(), data, cfg, ckpt=str(ck), progress=_stop_at(phase, epoch), log=lambda *a: None)
    return whole, ref, ck, net, data


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_interrupted_ppq_resumes_to_the_same_model(tmp_path, ema):
    """A ppq run stopped in the middle of its QAT phase and started again on the same checkpoint (model,
    optimizer state, teacher, weight average, history, pre-QAT accuracy) ends with the model and figures
    of the run that was never stopped (CPU, eager)."""
    from apotflow.sw.fasttrain import FastConfig, train_fast

    cfg = FastConfig(method="ppq", epochs=1, stage_epochs=1, qat_epochs=3, batch_size=8, step_mode="eager",
                     bf16=False, channels_last=False, distill=0.5, ema=ema)
    # stopped before QAT epoch 2's checkpoint: the run resumes from QAT epoch 1
    whole, ref, ck, net, data = _interrupted_ppq(tmp_path, cfg, "qat", 2)
    resumed = net()
    got = train_fast(resumed, data, cfg, ckpt=str(ck), log=lambda *a: None)
    assert ref["resumes"] == 0 and got["resumes"] == 1
    assert [r["phase"] for r in got["history"]] == ["float", "prune1", "prune2", "qat", "qat", "qat"]
    assert [r["loss"] for r in got["history"]] == [r["loss"] for r in ref["history"]]
    assert got["accuracy_live"] == ref["accuracy_live"] and (got["accuracy_live"] is None) == (ema == 0)
    assert got["pre_qat_float_acc"] == ref["pre_qat_float_acc"] is not None  # measured before the stop
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ppq_without_its_checkpoint_resumes_after_the_float_phase(tmp_path):
    """A ppq run stopped in its first pruning stage whose train.ckpt is then gone (too large to keep) starts
    again from the float.pt its float phase wrote: it ends with the model of the run that was never stopped,
    its history keeps the float phase's test accuracy (resumed_from float.pt); a float.pt of another
    configuration is refused in one line (CPU, eager)."""
    from apotflow.sw.fasttrain import FastConfig, train_fast

    cfg = FastConfig(method="ppq", epochs=1, stage_epochs=2, qat_epochs=1, batch_size=8, step_mode="eager",
                     bf16=False, channels_last=False, distill=0.5)
    whole, ref, ck, net, data = _interrupted_ppq(tmp_path, cfg, "prune1", 2)
    ck.unlink()
    resumed = net()
    got = train_fast(resumed, data, cfg, ckpt=str(ck), log=lambda *a: None)
    assert [r["phase"] for r in got["history"]] == ["float", "prune1", "prune1", "prune2", "prune2", "qat"]
    assert got["history"][0] == {"phase": "float", "test_acc": ref["history"][0]["test_acc"], "resumed_from": "float.pt"}
    assert [r["loss"] for r in got["history"][1:]] == [r["loss"] for r in ref["history"][1:]]
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ck.unlink()
    with pytest.raises(ValueError, match="float model of another configuration"):
        train_fast(net(), data, dataclasses.replace(cfg, seed=1), ckpt=str(ck), log=lambda *a: None)


def test_float_phase_of_a_run_differing_only_in_residual_bits_is_this_runs(tmp_path):
    """residual_bits acts only in fake-quant mode: a ppq run with an 8-bit residual stream whose run folder
    holds the float.pt of the same recipe with the A4 stream (and no train.ckpt) resumes after the float phase
    from it and ends with the model of the res8 run that trained its own float phase; any other difference
    is still refused (CPU, eager)."""
    import shutil

    from apotflow.sw.fasttrain import FastConfig, train_fast

    cfg = FastConfig(method="ppq", epochs=1, stage_epochs=1, qat_epochs=1, batch_size=8, step_mode="eager",
                     bf16=False, channels_last=False, distill=0.5)
    _, _, _, _, data = _interrupted_ppq(tmp_path, cfg, "prune1", 1)  # tmp_path/a: the A4 run, float.pt
    res8 = dataclasses.replace(cfg, residual_bits=8)

    def net():
        torch.manual_seed(0)
        return CifarResNet(20, residual_bits=8)

    whole = net()
    ref = train_fast(whole, data, res8, ckpt=str(tmp_path / "r" / "train.ckpt"), log=lambda *a: None)
    (tmp_path / "c").mkdir()
    shutil.copy(tmp_path / "a" / "float.pt", tmp_path / "c" / "float.pt")
    resumed = net()
    got = train_fast(resumed, data, res8, ckpt=str(tmp_path / "c" / "train.ckpt"), log=lambda *a: None)
    assert got["history"][0] == {"phase": "float", "test_acc": ref["history"][0]["test_acc"], "resumed_from": "float.pt"}
    assert [r["loss"] for r in got["history"][1:]] == [r["loss"] for r in ref["history"][1:]]
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "c" / "train.ckpt").unlink()
    with pytest.raises(ValueError, match="float model of another configuration"):
        train_fast(net(), data, dataclasses.replace(res8, stage_epochs=2), ckpt=str(tmp_path / "c" / "train.ckpt"),
                   log=lambda *a: None)


def test_prune_stages_reach_the_rate_in_equal_steps():
    """--prune-stages K: K pruning stages at rate r*i/K (the default 2 is the paper's 15% then 30%)."""
    from apotflow.sw.fasttrain import FastConfig, phases

    two = [(p.name, p.prune_before) for p in phases(FastConfig()) if p.prune_before is not None]
    assert two == [("prune1", 0.15), ("prune2", 0.3)]
    three = [p for p in phases(FastConfig(prune_stages=3)) if p.prune_before is not None]
    assert [(p.name, p.prune_before) for p in three] == [("prune1", 0.1), ("prune2", 0.2), ("prune3", 0.3)]
    assert [p.name for p in phases(FastConfig(prune_stages=1))] == ["float", "prune1", "qat"]
    assert [p.name for p in phases(FastConfig(prune_stages=0))] == ["float", "qat"]  # a fine-tune keeps its masks
    for bad in ({"prune_stages": -1}, {"qat_teacher": "best"}, {"qat_teacher": "pruned"},  # distill 0
                {"qat_teacher": "pruned", "distill": 0.5, "method": "spq"}):
        with pytest.raises(ValueError):
            FastConfig(**bad)


def test_weight_average_update_swap_install():
    """WeightAverage: avg <- d avg + (1-d) live on every floating tensor (BatchNorm statistics too), none
    of the integer ones; swapped() lends the average to the model and gives its own state back."""
    from apotflow.sw.fasttrain import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    avg = WeightAverage(net, 0.75)
    assert "1.num_batches_tracked" not in avg.names and "1.running_var" in avg.names
    with torch.no_grad():
        for t in avg.live:
            t.add_(4.0)
    avg.update()
    assert all(torch.equal(a, start[k] + 1.0) for k, a in zip(avg.names, avg.avg))
    with avg.swapped():
        assert torch.equal(net[0].weight, start["0.weight"] + 1.0)
    assert torch.equal(net[0].weight, start["0.weight"] + 4.0)
    resumed = WeightAverage(net, 0.75, avg.state())
    assert all(torch.equal(a, b) for a, b in zip(resumed.avg, avg.avg))
    net[1].num_batches_tracked.add_(3)
    avg.install()
    assert torch.equal(net[1].running_mean, start["1.running_mean"] + 1.0)
    assert int(net[1].num_batches_tracked) == 3  # the model's own, not averaged


def test_ema_qat_wd_and_cutout_change_only_what_they_name(tmp_path):
    """ema: training (the loss history) is the run without it, whose final model is the live one
    (accuracy_live); the final model is the average, pruned filters still zero; with a decay so small that
    1 - d rounds to 1 the average is the live model, bit for bit (the update runs at every step, on the
    model's own tensors). qat_wd: the phases before QAT train as without it, QAT does not. cutout: every
    phase trains on other images."""
    from types import SimpleNamespace

    from apotflow.sw.fasttrain import FastConfig, param_groups, phases, train_fast

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randint(0, 256, (16, 3, 32, 32), generator=g).to(torch.uint8),
                           y_train=torch.arange(16) % 10, x_test=torch.randint(0, 256, (8, 3, 32, 32), generator=g)
                           .to(torch.uint8), y_test=torch.arange(8))
    runs = {}
    for name, extra in (("plain", {}), ("ema", {"ema": 0.5}), ("tiny", {"ema": 1e-30}), ("wd", {"qat_wd": 0.05}),
                        ("cut", {"cutout": 8})):
        cfg = FastConfig(method="ppq", epochs=1, stage_epochs=1, qat_epochs=2, batch_size=8, step_mode="eager",
                         bf16=False, channels_last=False, eval_every=1, **extra)
        torch.manual_seed(0)
        model = CifarResNet(20)
        runs[name] = (train_fast(model, data, cfg, log=lambda *a: None), model)
    loss = {k: [h["loss"] for h in r[0]["history"]] for k, r in runs.items()}
    assert loss["ema"] == loss["plain"]
    assert loss["wd"][:3] == loss["plain"][:3] and loss["wd"][3:] != loss["plain"][3:]
    assert all(c != p for c, p in zip(loss["cut"], loss["plain"]))
    (plain, pm), (ema, em) = runs["plain"], runs["ema"]
    assert ema["accuracy_live"] == plain["accuracy"] and plain["accuracy_live"] is None
    assert all(torch.equal(v, pm.state_dict()[k]) for k, v in ema["live_state"].items())  # the live model is the plain one
    assert plain["live_state"] is None
    assert [h["test_acc_live"] for h in ema["history"] if h["phase"] == "qat"] == \
        [h["test_acc"] for h in plain["history"] if h["phase"] == "qat"]
    assert not torch.equal(em.stem.weight, pm.stem.weight)
    tiny, tm = runs["tiny"]
    assert tiny["accuracy"] == plain["accuracy"]
    assert all(torch.equal(v, pm.state_dict()[k]) for k, v in tm.state_dict().items())
    for conv in (m for m in em.modules() if hasattr(m, "filter_mask")):
        assert not conv.weight[~conv.filter_mask].any()
    assert phases(FastConfig(qat_wd=1e-4))[-1].wd == 1e-4 and phases(FastConfig())[-1].wd is None
    assert param_groups(pm, FastConfig(), False, 1e-4)[0]["wd"] == 1e-4
    for bad in ({"ema": 1.0}, {"ema": -0.1}, {"cutout": 33}, {"cutout": 2.5}, {"qat_wd": -1.0}, {"qat_wd": 1e-4, "method": "spq"}):
        with pytest.raises(ValueError):
            FastConfig(**bad)


def test_checkpoint_without_a_newer_knob_still_resumes():
    """A checkpoint written before a config key existed matches a config that leaves that key at its default."""
    from apotflow.sw.fasttrain import FastConfig, _same_run

    old = FastConfig().to_dict()
    del old["prune_stages"], old["qat_teacher"], old["qat_wd"], old["ema"], old["cutout"]
    assert _same_run(old, FastConfig().to_dict())
    assert not _same_run(old, FastConfig(prune_stages=3).to_dict())


def test_qat_teacher_pruned_distils_from_the_last_stage(tmp_path):
    """qat_teacher="pruned": the QAT phase's teacher is the last pruning stage's end state (its filters
    removed as in the student), not the float phase (float.pt, every filter kept); the stages before QAT
    train exactly as with the float teacher, QAT differently."""
    from types import SimpleNamespace

    from apotflow.sw.checkpoint import load_checkpoint
    from apotflow.sw.fasttrain import FastConfig, train_fast

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randint(0, 256, (16, 3, 32, 32), generator=g).to(torch.uint8),
                           y_train=torch.arange(16) % 10, x_test=torch.randint(0, 256, (8, 3, 32, 32), generator=g)
                           .to(torch.uint8), y_test=torch.arange(8))
    runs = {}
    for qt in ("float", "pruned"):
        cfg = FastConfig(method="ppq", epochs=1, stage_epochs=1, qat_epochs=1, prune_stages=3, batch_size=8,
                         step_mode="eager", bf16=False, channels_last=False, distill=0.5, qat_teacher=qt)
        torch.manual_seed(0)
        model = CifarResNet(20)
        ck = tmp_path / qt / "train.ckpt"
        ck.parent.mkdir()
        runs[qt] = (train_fast(model, data, cfg, ckpt=str(ck), log=lambda *a: None), model, ck)
    res, model, ck = runs["pruned"]
    assert [h["phase"] for h in res["history"]] == ["float", "prune1", "prune2", "prune3", "qat"]
    teacher = torch.load(ck, map_location="cpu", weights_only=False)["teacher"]
    float_model, _ = load_checkpoint(ck.parent / "float.pt")
    masks = [k for k in teacher if k.endswith("filter_mask")]
    assert masks and all(torch.equal(teacher[k], model.state_dict()[k]) for k in masks)
    assert not all(torch.equal(teacher[k], float_model.state_dict()[k]) for k in masks)
    assert all(bool(float_model.state_dict()[k].all()) for k in masks)
    loss = {qt: [h["loss"] for h in r[0]["history"]] for qt, r in runs.items()}
    assert loss["float"][:4] == loss["pruned"][:4] and loss["float"][4] != loss["pruned"][4]


def test_cli_impossible_training_option_is_one_line(tmp_path, capsys):
    from apotflow.sim.cli import main

    for flags, words in ((["--qat-teacher", "pruned"], "needs method ppq and distill > 0"),
                         (["--prune-stages", "-1"], "prune_stages must be an integer >= 0"),
                         (["--ema", "1"], "ema must be in [0, 1)"),
                         (["--epochs", "0"], "epochs must be a positive integer")):
        assert main(["train", "--model", "resnet20", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                     *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("apotflow: error: train: ") and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_integer_check_fakequant_side_equals_the_integer_model():
    """integer_check's fake-quant side (sw.evaluation.exact_predictions, also the accuracy of a run without an
    integer model) predicts what the integer network predicts on every image."""
    from apotflow.sw.cifar_run import fakequant_accuracy
    from apotflow.sw.evaluation import integer_check
    from apotflow.sw.lower import lower

    m = random_resnet20(1)
    set_quantize(m, True)
    m.eval()
    net = lower(m)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (6, 3, 32, 32)), rng.integers(0, 10, 6)
    r = integer_check(m, net, x, y)
    assert r["agreement"] == 1.0
    assert fakequant_accuracy(m, torch.from_numpy(x), y, "cpu") == r["accuracy_fakequant"]
