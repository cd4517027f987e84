"""ResNet-8 (MLPerf Tiny IC01): projection shortcuts, conv biases, prune groups, lowering, training path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import quantizer_codes_and_integer_run

from apotflow.hw.compile import compile_net, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sw.checkpoint import load_checkpoint, save_checkpoint
from apotflow.sw.golden import run_integer
from apotflow.sw.intnet import macs, size_and_bops
from apotflow.sw.lower import lower
from apotflow.sw.prune import get_masks, slice_pruned
from apotflow.sw.quant import QConv2d
from apotflow.sw.randmodel import random_images, random_model
from apotflow.sw.zoo import build


@pytest.fixture(scope="module")
def r8():
    """(masked model, IntNet, images): ResNet-8 at widths (4, 8, 16), 30% GM."""
    m = random_model("resnet8", 0.3, seed=0, width_scale=0.25, batches=1, batch_size=8)
    return m, lower(m), random_images(16, seed=3)


def test_topology():
    m = build("resnet8")
    assert m.name == "resnet8" and len(m.blocks) == 3 and m.arch_config()["shortcut"] == "B"
    convs = [mod for mod in m.modules() if isinstance(mod, QConv2d)]
    assert len(convs) == 1 + 6 + 2 and all(c.bias is not None for c in convs)  # every conv has a bias
    b1, b2, b3 = m.blocks
    assert b1.proj is None and not b1.downsample  # stack 1: identity
    for b, (cin, cout) in ((b2, (16, 32)), (b3, (32, 64))):
        assert b.conv_a.stride == (2, 2) and b.conv_b.stride == (1, 1)
        p = b.proj
        assert (p.in_channels, p.out_channels, p.kernel_size, p.stride) == (cin, cout, (1, 1), (2, 2))
    assert not [n for n, _ in m.named_modules() if "proj" in n and "bn" in n]  # no BatchNorm on the projection
    assert m.fc.in_features == 64 and m.fc.out_features == 10
    n_params = sum(p.numel() for n, p in m.named_parameters() if "alpha" not in n)
    n_stats = sum(b.numel() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert (n_params, n_params + n_stats) == (78186, 78666)  # the Keras reference: trainable, total


def test_prune_groups_hold_the_projection(r8):
    m = r8[0]
    groups, masks = m.prune_groups(), get_masks(m)
    for s in (1, 2):
        blk = m.stage_blocks(s)[0]
        assert (blk.proj, None) in groups[s]
        assert torch.equal(blk.proj.filter_mask, blk.conv_b.filter_mask)  # the add's channels pruned together
        assert torch.equal(blk.proj.in_mask, masks[s - 1])  # it reads the previous stream
        assert (blk.proj.bias[~blk.proj.filter_mask] == 0).all()


def test_checkpoint_round_trip(tmp_path, r8):
    save_checkpoint(r8[0], tmp_path / "m.pt")
    m, _ = load_checkpoint(tmp_path / "m.pt")
    assert m.arch_config() == r8[0].arch_config() and m.blocks[1].proj is not None
    x = r8[2][:4]
    with torch.no_grad():
        assert torch.equal(m(x), r8[0](x))


def test_integer_model_equals_fake_quant(r8):
    """Slicing keeps the logits; the float64 fake-quant model computes every activation code of the
    integer model (projection, biases and the residual scale included) and its top-1."""
    m, net, x = r8
    with torch.no_grad():
        assert torch.equal(m(x), slice_pruned(m)(x))
    seen, vals = quantizer_codes_and_integer_run(m, net, x)
    # per block: (option B: the projection's input codes), conv_a's input (the same), conv_b's input
    first_reads = ["stem", "s1b0a", "s1b0", "s1b0", "s2b0a", "s2b0", "s2b0", "s3b0a"]
    assert len(seen) == len(first_reads)
    for name, codes in zip(first_reads, seen):
        assert torch.equal(codes.long(), vals[name]), name


def test_projection_source_and_counts(r8):
    net = r8[1]
    op = net.op_producing("s2b0")
    proj = [s for s in op.sources if s.role == "projection"]
    assert len(proj) == 1 and proj[0].stride == 2 and proj[0].kernel == 1 and proj[0].w_bits == 4
    assert net.meta["fp32_shapes"]["s2b0b.projection"] == [8, 4, 1, 1]
    m = macs(net)
    _, ho, wo = net.tensors["s2b0"].shape
    nz = sum(int(np.count_nonzero(s.codes)) * ho * wo for s in op.sources)  # both sources are MACs
    assert m["per_op"]["s2b0b"]["macs_nonzero"] == nz
    sb = size_and_bops(net)
    assert sb["size_fp32_bits"] == 32 * sum(int(np.prod(v)) for v in net.meta["fp32_shapes"].values())


def test_projection_keeps_its_float_scale():
    """The projection (no BatchNorm after it) is de-normalised: its fake-quant output is close to its float
    output, so QAT starts where float training ended (a normalised one would be 1/std times larger)."""
    torch.manual_seed(0)
    p = build("resnet8").blocks[1].proj
    x = torch.rand(4, 16, 8, 8)
    with torch.no_grad():
        ref = p(x)
        p.quantize = True
        q = p(x)
        p.denorm = False
        n = p(x)
    size = (ref - p.bias.detach().view(1, -1, 1, 1)).norm()
    rel, rel_normalised = float((q - ref).norm() / size), float((n - ref).norm() / size)
    assert rel < 0.3 and rel_normalised > 2, (rel, rel_normalised)  # 4-bit weights: ~0.2 off, not ~1/std


def test_compiled_program_equals_golden(r8):
    net, x = r8[1], r8[2]
    prog = compile_net(net, fitted_config(net, AcceleratorConfig(lanes=16)))
    exp = {k: v[0].numpy() for k, v in run_integer(net, x[:1].long().numpy()).items()}
    assert first_mismatch(exp, run_functional(prog, x[0].long().numpy()), list(prog.placements)) is None


def test_fast_kernels_step_keeps_pruned_channels_zero():
    """One eager training step through sw/fastkernels (the GPU path's kernels) on a pruned ResNet-8:
    the projection's pruned filters and biases stay zero, and its weights learn."""
    from apotflow.sw.fastkernels import GraphSGD, fast_kernels
    from apotflow.sw.fasttrain import FastConfig, Phase, Stepper, calibrate_for_qat, param_groups
    from apotflow.sw.prune import compute_masks
    from apotflow.sw.quant import set_quantize

    torch.manual_seed(0)
    m = build("resnet8", 0.5)
    compute_masks(m, 0.3)
    x, y = torch.randint(0, 256, (8, 3, 32, 32)).to(torch.uint8), torch.arange(8)
    calibrate_for_qat(m, x)
    set_quantize(m, True)
    cfg = FastConfig(batch_size=8, step_mode="eager", bf16=False, channels_last=False)
    opt = GraphSGD(param_groups(m, cfg, True))
    opt.set_lr(0.1)
    p = m.blocks[1].proj
    before = p.weight.detach().clone()
    with torch.no_grad():
        p.bias.fill_(0.5)  # nonzero everywhere: the step must zero the pruned channels' biases again
    with fast_kernels(m):
        Stepper(m, cfg, Phase("t", 1, 0.1, True, frozen=True), opt, print)(x, y)
    assert not torch.equal(p.weight, before)
    assert (p.weight[~p.filter_mask] == 0).all() and (p.bias[~p.filter_mask] == 0).all()


def test_cli_train_ppq_resnet8(tmp_path):
    """`apotflow train --model resnet8 --method ppq` (CPU, eager, tiny fake CIFAR folder): the run lowers and
    checks its model (integer = float64 fake-quant on every test image) and exports it."""
    from test_cifar_data import tiny_cpu_ppq

    from apotflow.sw import export

    res, out = tiny_cpu_ppq("resnet8", tmp_path)
    assert res["model"] == "resnet8" and res["agreement"] == 1.0 and res["accuracy_int"] is not None
    assert export.load(out / "model.apot").meta["model"] == "resnet8"
    m, _ = load_checkpoint(out / "model.pt")
    assert m.name == "resnet8" and m.quantize
