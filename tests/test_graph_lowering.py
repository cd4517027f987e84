"""One lowering from the traced graph (sw/graph_lower.py), for every model: a zoo model's names (its
int_names()) change nothing but the names; a user's model outside the zoo lowers, exports and generates
RTL; one outside the op set is refused with its nodes listed. (That the graph lowering gives the zoo's
models the integer networks of the hand-written lowerings it replaced: tests/test_lowering_reference.py
and bench/lowering_equivalence.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from apotflow.sw.graph_lower import lower_graph
from apotflow.sw.intnet import IntNet
from apotflow.sw.lower import lower
from apotflow.sw.prune import slice_pruned
from apotflow.sw.quant import ActQuantizer, QConv2d, QLinear, set_quantize
from apotflow.sw.randmodel import random_images, random_model
from apotflow.sw.zoo import MODELS, ZOO, build


def same_net(a: IntNet, b: IntNet) -> None:
    """Equal integer networks up to names: ops in order with equal arrays, tensors equal by position."""
    names = {a.input: b.input}
    assert len(a.ops) == len(b.ops)
    for oa, ob in zip(a.ops, b.ops):
        names[oa.out] = ob.out
        for k in ("kind", "mode", "shift", "reduce"):
            assert getattr(oa, k) == getattr(ob, k), (oa.name, k)
        for k in ("bias", "thresholds", "levels_out"):
            va, vb = getattr(oa, k), getattr(ob, k)
            assert (va is None) == (vb is None) and (va is None or np.array_equal(va, vb)), (oa.name, k)
        assert len(oa.sources) == len(ob.sources), oa.name
        for sa, sb in zip(oa.sources, ob.sources):
            assert names[sa.tensor] == sb.tensor, oa.name
            for k in ("stride", "pad", "encoding", "w_bits", "role"):
                assert getattr(sa, k) == getattr(sb, k), (oa.name, k)
            for k in ("codes", "levels", "ch_shift", "ch_sign"):
                va, vb = getattr(sa, k), getattr(sb, k)
                assert (va is None) == (vb is None) and (va is None or np.array_equal(va, vb)), (oa.name, k)
        ta, tb = a.tensors[oa.out], b.tensors[ob.out]
        assert (ta.shape, ta.max_value, ta.scale, ta.signed, ta.bits) == (tb.shape, tb.max_value, tb.scale,
                                                                            tb.signed, tb.bits), oa.name
    ta, tb = a.tensors[a.input], b.tensors[b.input]
    assert (ta.shape, ta.max_value, ta.scale, ta.bits) == (tb.shape, tb.max_value, tb.scale, tb.bits)
    op_names = {oa.name: ob.name for oa, ob in zip(a.ops, b.ops)}
    fa, fb = a.meta.pop("fp32_shapes"), b.meta.pop("fp32_shapes")
    ren = {op_names[k.split(".")[0]] + k[len(k.split(".")[0]):]: v for k, v in fa.items()}
    assert ren == fb and a.meta == b.meta


DEEP = ("resnet32", "resnet56", "resnet110")  # resnet20's graph with more blocks: minutes on 2 cores


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in MODELS])
def test_zoo_names_change_only_the_names(name, monkeypatch):
    """A zoo model lowered with its int_names() and with the graph's node names: the same network."""
    scale = 1 if name == "digits" else (1 / 16 if ZOO[name].scaled == "scale" else 0.25)
    model = build(name, scale) if name != "digits" else build(name)
    m = random_model(model, 0.3, seed=1, batches=1, batch_size=8)
    named = lower(m)
    assert named.ops[0].name in ("conv1", "stem", "conv0") and named.ops[-2:][1].name == "fc"
    monkeypatch.delattr(type(m), "int_names")
    nameless = lower_graph(slice_pruned(m), ZOO[name].input_shape)
    assert [(o.name, o.out) for o in nameless.ops] != [(o.name, o.out) for o in named.ops]
    same_net(nameless, named)


class TinyNet(nn.Module):
    """A user's CNN outside the zoo, from sw/quant.py's layers: an 8-bit conv on the pixels, two W4/A4
    convs, max pooling to 1x1, flatten and an 8-bit fc on the codes of its own quantizer."""

    def __init__(self) -> None:
        super().__init__()
        self.quantize = False
        self.conv1 = QConv2d(3, 8, 3, padding=1, bias=False, w_bits=8, a_bits=None)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = QConv2d(8, 8, 3, padding=1, bias=True, w_bits=4, a_bits=4)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = QConv2d(8, 16, 3, padding=1, bias=False, w_bits=4, a_bits=4)
        self.bn3 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.qfc = ActQuantizer(4)
        self.fc = QLinear(16, 10, bias=True, w_bits=8, a_bits=None)

    def forward(self, X):
        x = X / 255
        y = self.conv1(x, X, torch.tensor(1 / 255, dtype=X.dtype)) if self.quantize else self.conv1(x)
        h = self.pool(F.relu(self.bn1(y)))
        h = self.pool(F.relu(self.bn2(self.conv2(h))))
        h = torch.flatten(self.pool(F.relu(self.bn3(self.conv3(h)))), 1)
        if not self.quantize:
            return self.fc(h)
        hq, codes = self.qfc.quantize(h)
        return self.fc(hq, codes, self.qfc.scale())


def test_a_user_model_lowers_exports_and_generates_rtl(tmp_path):
    """TinyNet (not in the zoo): calibrate -> lower (its integer model equals the float64 fake-quant model
    on every image, api.lower's check) -> export -> `apotflow rtl`."""
    from apotflow.sim.cli import main
    from apotflow.sw import api
    from apotflow.sw.golden import run_integer
    from apotflow.sw.quant import exact_copy, set_quantize

    torch.manual_seed(0)
    m = set_quantize(TinyNet(), True)
    images = random_images(32, seed=2, shape=(3, 8, 8))
    api.calibrate(m, images)
    net = api.lower(m, example=images)
    assert [o.name for o in net.ops] == ["conv1", "pool0", "conv2", "pool1", "conv3", "pool2", "fc"]
    assert net.meta["model"] == "TinyNet" and net.meta["fp32_shapes"]["conv2"] == [8, 8, 3, 3]
    with torch.no_grad():
        fq = exact_copy(m).eval()(images.double())
    logits = run_integer(net, images.long().numpy())["logits"].reshape(len(images), -1)
    assert torch.equal(logits.argmax(1), fq.argmax(1))
    path = api.export(net, tmp_path / "tiny.apot")
    assert main(["rtl", "--model", str(path), "--out", str(tmp_path / "rtl")]) == 0
    assert any((tmp_path / "rtl").iterdir())


class Unsupported(TinyNet):
    def forward(self, X):
        return torch.sigmoid(super().forward(X))


def test_a_user_model_outside_the_op_set_lists_its_nodes():
    from apotflow.sw import api
    from apotflow.sw.frontend import UnsupportedModel

    m = set_quantize(Unsupported(), True)
    with pytest.raises(UnsupportedModel, match="sigmoid") as e:
        api.lower(m, example=torch.zeros(1, 3, 8, 8))
    assert len(e.value.nodes) == 1 and e.value.nodes[0]["instead"].startswith("only ReLU")
    with pytest.raises(api.ApiError, match="needs example images"):
        api.lower(set_quantize(TinyNet(), True))
