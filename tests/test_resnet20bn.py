"""ResNet-20 with the APoT authors' projection shortcuts (zoo: resnet20bn): a 1x1 stride-2 QConv2d + BatchNorm
on the quantized block input; the lowering folds the BatchNorm into the projection's residual scale (one
signed K per output channel) and its offset into the thresholds, through the one graph lowering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import quantizer_codes_and_integer_run

from apotflow.sw.checkpoint import load_checkpoint, save_checkpoint
from apotflow.sw.lower import lower
from apotflow.sw.prune import slice_pruned
from apotflow.sw.randmodel import random_images, random_model
from apotflow.sw.zoo import build


@pytest.fixture(scope="module")
def r20bn():
    """(masked model, IntNet, images): at widths (8, 16, 32), 30% GM, one projection BN scale negative."""
    m = build("resnet20bn", 0.5)
    with torch.no_grad():
        m.blocks[3].proj_bn.weight[:2] *= -1  # a negative BatchNorm scale: K takes the sign
    m = random_model(m, 0.3, seed=0, batches=1, batch_size=8)
    return m, lower(m), random_images(16, seed=3)


def test_topology_and_checkpoint(tmp_path, r20bn):
    m = build("resnet20bn")
    assert m.name == "resnet20bn" and len(m.blocks) == 9
    for i in (3, 6):
        p, bn = m.blocks[i].proj, m.blocks[i].proj_bn
        assert (p.kernel_size, p.stride, p.bias, p.denorm) == ((1, 1), (2, 2), None, False)
        assert bn.num_features == p.out_channels
    assert sum(b.proj is not None for b in m.blocks) == 2
    save_checkpoint(r20bn[0], tmp_path / "m.pt")
    m2, _ = load_checkpoint(tmp_path / "m.pt")
    x = r20bn[2][:4]
    with torch.no_grad():
        assert m2.arch_config()["shortcut"] == "BN" and torch.equal(m2(x), r20bn[0](x))


def test_integer_model_equals_fake_quant(r20bn):
    """Slicing keeps the logits; the float64 fake-quant model computes every activation code of the integer
    model (the projection's BatchNorm included) and its top-1."""
    m, net, x = r20bn
    with torch.no_grad():
        assert torch.equal(m(x), slice_pruned(m)(x))
    op = net.op_producing("s2b0")
    proj = [s for s in op.sources if s.role == "projection"]
    assert len(proj) == 1 and proj[0].stride == 2 and net.meta["model"] == "resnet20bn"
    assert (proj[0].weight < 0).any() and (proj[0].weight > 0).any()
    seen, vals = quantizer_codes_and_integer_run(m, net, x)
    reads = []  # the codes each quantizer computes: conv_a's input (twice before a projection: the
    for o in net.ops:  # block quantizes it for the projection, then conv_a), conv_b's input
        if o.kind == "conv" and o.name != "stem":
            has_proj = o.name.endswith("a") and any(s.role == "projection" for s in net.ops[net.ops.index(o) + 1].sources)
            reads += [o.sources[0].tensor] * (2 if has_proj else 1)
    assert len(seen) == len(reads) == 18 + 2
    for name, codes in zip(reads, seen):
        assert np.array_equal(codes.long().numpy(), vals[name].numpy()), name
