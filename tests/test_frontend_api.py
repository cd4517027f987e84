"""sw/frontend.py (every unsupported node listed) and sw/api.py (prepare, calibrate, prune_, lower, export)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from apotflow.sw import export as export_mod
from apotflow.sw.api import ApiError, QuantConfig, calibrate, export, lower, prepare, prune_
from apotflow.sw.frontend import UnsupportedModel, check_model, unsupported_nodes
from apotflow.sw.randmodel import random_images
from apotflow.sw.zoo import build


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 5), nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.c1(x / 255)))
        x = F.pad(x, (0, 1, 0, 1))
        x = self.pool(F.relu(self.c2(x)))
        return self.fc(torch.flatten(x, 1))


class Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, groups=8)
        self.act = nn.SiLU()
        self.c = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        h = self.act(self.dw(self.c(x)))
        return torch.cat([h, torch.sigmoid(h)], 2).softmax(1)  # along rows: not channels


def test_supported_model_passes():
    assert unsupported_nodes(LeNet()) == []
    check_model(LeNet())


def test_every_unsupported_node_is_listed():
    with pytest.raises(UnsupportedModel) as e:
        check_model(Odd())
    got = {(n["op"], n["target"]) for n in e.value.nodes}
    assert got == {("call_module", "dw"), ("call_module", "act"), ("call_function", "cat"),
                   ("call_function", "sigmoid"), ("call_method", "softmax")}
    msg = str(e.value).splitlines()
    assert msg[0] == "Odd: 5 unsupported node(s); the integer network cannot express them" and len(msg) == 6
    assert any("groups=1" in line and "module dw" in line for line in msg)
    assert any("test_frontend_api.py" in line for line in msg if "cat" in line)  # the source line
    assert any("along channels only" in line for line in msg if "(call_function cat)" in line)


def test_untraceable_model_is_one_node():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedModel, match="cannot trace"):
        check_model(Branchy())


def test_prepare_lists_unsupported_nodes_and_lower_refuses_a_flattened_map():
    with pytest.raises(UnsupportedModel, match="cat"):
        prepare(Odd())
    from apotflow.sw.graph_lower import GraphLoweringError

    with pytest.raises(GraphLoweringError, match="1x1 map"):  # prepared; a flatten of a 7x7 map cannot lower
        lower(calibrate(prepare(LeNet()), random_images(4, shape=(3, 32, 32))), random_images(4, shape=(3, 32, 32)))
    with pytest.raises(ApiError, match="w_bits"):
        QuantConfig(w_bits=6)


def test_ptq_pipeline_integer_equals_fake_quant(tmp_path):
    """prepare -> prune_ -> calibrate -> lower (checked on the example images) -> export, on a float
    ResNet-8 with BatchNorm statistics from data: the W8/A8 fake-quant model stays close to the float one
    (the 1/std fold into BatchNorm), and the integer model equals it."""
    from apotflow.sw.randmodel import calibrate_bn

    torch.manual_seed(0)
    fm = build("resnet8", 0.25)
    x = random_images(32, seed=2)
    calibrate_bn(fm, [x])
    q = prepare(fm, QuantConfig(8, 8))
    with pytest.raises(ApiError, match="float model"):
        prepare(q)
    calibrate(q, x)
    with torch.no_grad():
        pf, pq = fm(x), q(x)
    assert (pf.argmax(1) == pq.argmax(1)).float().mean() >= 0.9
    prune_(q, 0.25)
    calibrate(q, x)
    net = lower(q, x[:16])
    assert net.meta["model"] == "resnet8" and net.tensors["s3b0"].shape[0] < 16
    path = export(net, tmp_path / "r8.apot")
    assert export_mod.load(path).meta["model"] == "resnet8"


def test_golden_binary_search_equals_the_count():
    """sw/golden.requantize counts thresholds by binary search above 16 levels: the same k as the
    definition's comparison count, int64 and float64 (8-bit activations have 255 thresholds)."""
    import numpy as np

    from apotflow.sw.golden import requantize
    from apotflow.sw.intnet import Op

    rng = np.random.default_rng(0)
    for t in (15, 255):
        thr = np.sort(rng.integers(-50, 50, (6, t)), axis=1)
        op = Op("t", "conv", "o", [], np.zeros(6, np.int64), "thresh", thr, np.arange(t + 1) * 3)
        acc = torch.from_numpy(rng.integers(-60, 60, (3, 6, 5, 4)))
        ref = 3 * (acc.unsqueeze(-1) >= torch.from_numpy(thr).view(1, 6, 1, 1, -1)).sum(-1)
        for a in (acc, acc.double()):
            assert torch.equal(requantize(op, a).long(), ref), t


def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys):
    """export of a truncated file, a bare state_dict, or a checkpoint whose weights are another
    architecture's: one line, exit 2, no output file."""
    from apotflow.sim.cli import main
    from apotflow.sw.checkpoint import save_checkpoint

    good = save_checkpoint(build("resnet8", 0.25), tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:500])
    torch.save(build("resnet8", 0.25).state_dict(), tmp_path / "bare.pt")
    blob = torch.load(good, weights_only=True)
    blob["arch"] = {**blob["arch"], "name": "resnet20", "depth": 20, "shortcut": "A", "conv_bias": False}
    torch.save(blob, tmp_path / "other.pt")
    for name, words in (("cut", "not a readable checkpoint"), ("bare", "not an apotflow checkpoint"),
                        ("other", "do not fit the resnet20")):
        capsys.readouterr()
        assert main(["export", str(tmp_path / f"{name}.pt"), "-o", str(tmp_path / "m.apot")]) == 2, name
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.endswith("...")]  # progress
        assert len(err) == 1 and err[0].startswith("apotflow: error:") and words in err[0], err
    assert not (tmp_path / "m.apot").exists()


def test_zoo_is_the_one_list():
    """Every zoo name builds a model that calls itself by that name and that a checkpoint rebuilds; the
    CLI offers exactly the zoo (train) and its CIFAR models (export --random)."""
    from apotflow.sim.cli import build_parser
    from apotflow.sw.checkpoint import arch_class
    from apotflow.sw.zoo import CIFAR_MODELS, MODELS

    for name in MODELS:
        m = build(name)
        assert m.arch_config()["name"] == name and arch_class(name) is type(m)
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert tuple(next(a for a in sub["train"]._actions if a.dest == "model").choices) == MODELS
    assert tuple(next(a for a in sub["export"]._actions if a.dest == "arch").choices) == CIFAR_MODELS
    assert "resnet8" in CIFAR_MODELS
