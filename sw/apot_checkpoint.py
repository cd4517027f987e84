"""Checkpoints of the APoT authors' CIFAR-10 code (github.com/yhhhli/APoT_Quantization, CIFAR10/) into the
zoo's ``resnet20bn``.

Their layout (read from their code; their released ``res20_4bit`` checkpoint reads, docs/frontend.md):

* ``main.py`` saves ``torch.save({"epoch", "state_dict", "best_prec", "optimizer"})`` of an
  ``nn.DataParallel`` model, so every key of ``state_dict`` starts with ``module.``;
* ``resnet20_cifar()``: ``conv1`` (3 -> 16, 3x3, no bias; their ``first_conv``, 8-bit in QAT), ``bn1``;
  ``layer1``..``layer3`` of 3 BasicBlocks each (``conv1``, ``bn1``, ``conv2``, ``bn2``, 3x3 convs without
  bias, 16 / 32 / 64 channels); the first block of ``layer2`` and ``layer3`` has ``downsample.0`` (1x1
  stride-2 conv, no bias) and ``downsample.1`` (BatchNorm); ``avgpool`` (8x8, no parameters); ``fc``
  (64 -> 10 with bias, their ``last_fc``). A block computes ``relu(bn2(conv2(relu(bn1(conv1(x))))) +
  downsample(x))``: the zoo's ``CifarResNet(20, shortcut="BN")`` in float mode;
* every ``QuantConv2d`` (all convs but the first, ``downsample.0`` included) has ``act_alpha`` (the
  clipping threshold of its own input) and ``weight_quant.wgt_alpha`` (of its weights standardised per
  layer, ``(w - mean) / std``, which is also the scale it convolves with: the stored weights are latent,
  their scale is not the network's, and the clipping matters: their released res20_4bit scores 11% on
  CIFAR-10 with standardised but unclipped weights, bench/apot_weights.py); a float run (``--bit 32``) has plain convs without
  them. The bits are not in the file;
* their images are ``transforms.Normalize(mean=APOT_MEAN, std=APOT_STD)`` of ``X / 255``.

What carries over: every weight as their layers compute with it before rounding to their grid (a
QuantConv2d's standardised and clipped at wgt_alpha, the first conv's and the fc's as stored) and every
BatchNorm parameter and statistic, exactly; the input
normalisation is folded into the stem (weights scaled per input channel, the mean moved into ``bn``'s
running mean), exact except at the zero-padded image border when the mean is not 0 (their stem pads the
normalised image with 0, ours pixels with 0). What does not: their activation clipping thresholds.
Their residual stream is not quantized (ours carries the quantized block input), and ``conv1`` and
``downsample.0`` of a block quantize the same tensor with two thresholds (ours: one quantizer per stored
tensor): ``act_alpha`` is dropped and the thresholds are calibrated from data (sw/api.py), as are the
weight thresholds of our grid; the result says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import read_torch_file
from .zoo import APOT_CHECKPOINT_ARCHS, ZOO

APOT_MEAN = (0.491, 0.482, 0.447)  # their main.py's transforms.Normalize
APOT_STD = (0.247, 0.243, 0.262)
PREFIX = "module."  # nn.DataParallel's
ARCHS = {a: ZOO[a].kwargs["depth"] for a in APOT_CHECKPOINT_ARCHS}  # zoo model -> their resnet{depth}_cifar
WIDTHS = (16, 32, 64)
ALPHAS = ("act_alpha", "weight_quant.wgt_alpha")
NOTE = ("their activation clipping thresholds (act_alpha) are not kept: their residual stream is not quantized "
        "and each conv clips its own input (ours: one quantizer per stored tensor, the residual stream quantized); "
        "ours are calibrated from data. Their weights are taken as their layers use them (standardised, clipped "
        "at wgt_alpha) and quantized again on our grid")


class ApotCheckpointError(ValueError):
    """A file that is not an APoT-authors checkpoint of the architecture asked for (one line)."""


def _bn(name: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}


def _conv(name: str, cout: int, cin: int, k: int, quantized: bool) -> dict[str, tuple[int, ...]]:
    out = {f"{name}.weight": (cout, cin, k, k)}
    if quantized:
        out.update({f"{name}.{a}": () for a in ALPHAS})
    return out


def their_blocks(depth: int) -> list[tuple[str, int, int, int]]:
    """(their block prefix ``layer{s}.{b}``, in channels, out channels, stride), in network order."""
    n, cin, out = (depth - 2) // 6, WIDTHS[0], []
    for s, w in enumerate(WIDTHS):
        for b in range(n):
            out.append((f"layer{s + 1}.{b}", cin, w, 2 if s > 0 and b == 0 else 1))
            cin = w
    return out


def layout(depth: int = 20, quantized: bool = True, num_classes: int = 10) -> dict[str, tuple[int, ...]]:
    """Every key of their ResNet-``depth`` state dict (without ``module.``) and its shape, in their order;
    ``quantized``: with the QuantConv2d thresholds. BatchNorm's ``num_batches_tracked`` is optional."""
    out = {**_conv("conv1", WIDTHS[0], 3, 3, False), **_bn("bn1", WIDTHS[0])}
    for p, cin, w, stride in their_blocks(depth):
        out.update(_conv(f"{p}.conv1", w, cin, 3, quantized))
        out.update(_bn(f"{p}.bn1", w))
        out.update(_conv(f"{p}.conv2", w, w, 3, quantized))
        out.update(_bn(f"{p}.bn2", w))
        if stride != 1 or cin != w:
            out.update(_conv(f"{p}.downsample.0", w, cin, 1, quantized))
            out.update(_bn(f"{p}.downsample.1", w))
    out.update({"fc.weight": (num_classes, WIDTHS[-1]), "fc.bias": (num_classes,)})
    return out


def name_map(depth: int = 20) -> dict[str, str]:
    """Their module -> the zoo model's module (``CifarResNet(depth, shortcut="BN")``)."""
    out = {"conv1": "stem", "bn1": "bn", "fc": "fc"}
    for i, (p, cin, w, stride) in enumerate(their_blocks(depth)):
        out.update({f"{p}.conv1": f"blocks.{i}.conv_a", f"{p}.bn1": f"blocks.{i}.bn_a",
                    f"{p}.conv2": f"blocks.{i}.conv_b", f"{p}.bn2": f"blocks.{i}.bn_b"})
        if stride != 1 or cin != w:
            out.update({f"{p}.downsample.0": f"blocks.{i}.proj", f"{p}.downsample.1": f"blocks.{i}.proj_bn"})
    return out


def read(path: str | os.PathLike, arch: str = "resnet20bn") -> tuple[dict[str, Tensor], dict]:
    """(their network's float state without ``module.``, info: epoch, best_prec, quantized, dropped thresholds)
    of a checkpoint in their layout. A QuantConv2d computes with its weights standardised, ``(w - mean(w)) /
    std(w)`` over the layer (unbiased std, as their ``weight_quantize_fn``), clipped at +-wgt_alpha and put
    on their grid: the state holds the standardised, clipped weights (the first conv and the fc use theirs
    as stored). Raises FileNotFoundError or ApotCheckpointError naming the first key that
    does not fit (an unexpected key of the file, then a missing one, then a shape)."""
    if arch not in ARCHS:
        raise ApotCheckpointError(f"--arch {arch!r}: checkpoints of the APoT authors' code import into "
                                  f"{', '.join(ARCHS)} only")
    path = Path(path)
    blob = read_torch_file(path, ApotCheckpointError, "PyTorch checkpoint")
    if not isinstance(blob, dict):
        raise ApotCheckpointError(f"{path}: a {type(blob).__name__}, not a checkpoint dict")
    state = blob.get("state_dict", blob)  # their torch.save({... "state_dict" ...}), or a bare state dict
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ApotCheckpointError(f"{path}: no state dict of tensors (keys: {', '.join(map(str, list(blob)[:6]))})")
    if all(str(k).startswith(PREFIX) for k in state):
        state = {k[len(PREFIX):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    depth = ARCHS[arch]
    quantized = any(k.endswith(".act_alpha") for k in state)
    want = layout(depth, quantized)
    where = f"{path}: not their ResNet-{depth} ({arch})"
    extra = next((k for k in state if k not in want), None)
    if extra is not None:
        raise ApotCheckpointError(f"{where}: unexpected key {extra!r} (another depth or architecture?)")
    missing = next((k for k in want if k not in state), None)
    if missing is not None:
        raise ApotCheckpointError(f"{where}: missing key {missing!r}")
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise ApotCheckpointError(f"{where}: {k!r} has shape {tuple(state[k].shape)}, not {shape}")
        if not state[k].is_floating_point() or not torch.isfinite(state[k]).all():
            raise ApotCheckpointError(f"{where}: {k!r} is not finite floating-point numbers")
    info = {"format": "APoT authors' CIFAR-10 checkpoint (yhhhli/APoT_Quantization)", "arch": arch,
            "quantized": quantized, "dropped": {"act_alpha": sum(k.endswith(".act_alpha") for k in state)},
            "weights_clipped_at_wgt_alpha": sum(k.endswith(".wgt_alpha") for k in state)}
    for k in ("epoch", "best_prec", "best_prec1"):
        if isinstance(blob.get(k), (int, float)) and not isinstance(blob.get(k), bool):
            info[k] = blob[k]
    if quantized:
        info["note"] = NOTE
    out = {k: state[k].float() for k in want}
    if quantized:  # the weights their QuantConv2d computes with: standardised per layer, clipped at wgt_alpha
        for k in (k[:-len("act_alpha")] + "weight" for k in want if k.endswith(".act_alpha")):
            w, a = out[k].double(), float(out[k[:-len("weight")] + "weight_quant.wgt_alpha"])
            out[k] = ((w - w.mean()) / w.std()).clamp(-a, a).float()
    return out, info


@torch.no_grad()
def to_zoo(state: dict[str, Tensor], arch: str = "resnet20bn", preprocess=None) -> nn.Module:
    """The zoo model ``arch`` (float mode, eval) with their weights (``read``'s state): every weight and
    BatchNorm tensor copied; the input normalisation ``preprocess`` (a ``graph_prepare.Preprocess``; default
    theirs: X / 255 normalised by APOT_MEAN, APOT_STD) folded into the stem: they see t = (X * S - m) / d,
    the zoo model x = X / 255, so t = (255 S x - m) / d: stem weights times 255 S / d per input channel, and
    the constant -sum(W m / d) moved into the stem BatchNorm's running mean."""
    from .graph_prepare import Preprocess
    from .zoo import build

    pre = preprocess or Preprocess(255, None, APOT_MEAN, APOT_STD)
    model = build(arch).eval()
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    for theirs, ours in name_map(ARCHS[arch]).items():
        for k in ("weight", "bias", "running_mean", "running_var"):
            if f"{theirs}.{k}" in state:
                dst = params[f"{ours}.{k}"]
                if dst.shape != state[f"{theirs}.{k}"].shape:
                    raise ApotCheckpointError(f"{theirs}.{k} -> {ours}.{k}: shape {tuple(state[f'{theirs}.{k}'].shape)}"
                                              f" but the zoo's {arch} has {tuple(dst.shape)}")
                dst.copy_(state[f"{theirs}.{k}"])
    s = pre.scale if pre.scale is not None else 1 / pre.pixel_max
    m, d = pre.channel("mean", 3), pre.channel("std", 3)
    w = state["conv1.weight"].double()
    model.stem.weight.copy_(w * (255 * s / d).view(1, -1, 1, 1))
    model.bn.running_mean.copy_(state["bn1.running_mean"].double() + (w * (m / d).view(1, -1, 1, 1)).sum((1, 2, 3)))
    return model


@torch.no_grad()
def source_forward(state: dict[str, Tensor], t: Tensor, depth: int = 20) -> Tensor:
    """Their network in float (latent weights, no quantization, BatchNorm in eval) on normalised images t:
    their forward, written from their model definition (the float accuracy of the checkpoint as they would
    measure it with quantization off)."""

    def bn(name: str, h: Tensor) -> Tensor:
        return F.batch_norm(h, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], False, 0.0, 1e-5)

    h = F.relu(bn("bn1", F.conv2d(t.float(), state["conv1.weight"], padding=1)))
    for p, _, _, stride in their_blocks(depth):
        o = F.relu(bn(f"{p}.bn1", F.conv2d(h, state[f"{p}.conv1.weight"], stride=stride, padding=1)))
        o = bn(f"{p}.bn2", F.conv2d(o, state[f"{p}.conv2.weight"], padding=1))
        r = h if f"{p}.downsample.0.weight" not in state else \
            bn(f"{p}.downsample.1", F.conv2d(h, state[f"{p}.downsample.0.weight"], stride=stride))
        h = F.relu(o + r)
    return F.linear(F.avg_pool2d(h, 8).flatten(1), state["fc.weight"], state["fc.bias"])
