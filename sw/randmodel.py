"""Random (untrained) but well-conditioned quantized models, for hardware work without training.

``random_model(arch, prune, seed)``: kaiming-normal conv weights, mildly random BN gamma/beta, GM
masks at rate ``prune``, then two rounds of calibration on random integer images (``random_images``:
coarse random colour fields plus noise, pixels 0..255) in fake-quant
mode: BN running statistics by forward passes in train mode (cumulative average, momentum=None),
then every activation quantizer's clipping threshold alpha set to the 99.9th percentile of its input
(quantizers in network order during one eval pass, so each sees already-calibrated inputs); finally
the fc bias is shifted so that the mean logit over the calibration images is zero.
"""

from __future__ import annotations

import torch
from torch import nn

from .evaluation import calibrate_alphas
from .models import DigitsNet
from .prune import apply_masks, compute_masks
from .quant import QConv2d, QLinear, set_quantize
from .zoo import CIFAR_MODELS, DATASETS

ARCHS = CIFAR_MODELS  # the zoo's CIFAR models (sw/zoo.py)


def build(arch: str, width_scale: float = 1.0) -> nn.Module:
    """An untrained model by CLI name; width_scale shrinks channel counts (tests, small hardware)."""
    from . import zoo

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return zoo.build(arch, width_scale)


def random_images(n: int, seed: int = 0, shape=(3, 32, 32), top: int = 255) -> torch.Tensor:
    """n integer images 0..top (float): per image a random coarse colour grid (2x2 .. 8x8 cells,
    bilinearly upsampled) plus pixel noise, so a random net's predictions differ between images."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    out = []
    for _ in range(n):
        cells = 2 ** int(torch.randint(1, 4, (1,), generator=g))
        coarse = torch.rand(1, c, cells, cells, generator=g) * top
        img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
        img = img + torch.randn(c, h, w, generator=g) * top * 0.08
        out.append(img.round().clamp(0, top))
    return torch.stack(out)


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Running statistics = cumulative averages over the batches (train-mode forward passes)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for x in batches:
        model(x)
    for bn, mom in zip(bns, saved):
        bn.momentum = mom
    model.eval()


def random_model(arch: str | nn.Module, prune: float = 0.3, seed: int = 0, width_scale: float = 1.0,
                 batches: int = 2, batch_size: int = 8, rounds: int = 2) -> nn.Module:
    """A masked (unsliced), calibrated, fake-quant model in eval mode (see the module doc)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build(arch, width_scale) if isinstance(arch, str) else arch
    for m in model.modules():
        if isinstance(m, (QConv2d, QLinear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
            if m.bias is not None:
                m.bias.data.uniform_(-0.1, 0.1, generator=g)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.7, 1.3, generator=g)
            m.bias.data.uniform_(-0.1, 0.3, generator=g)
    if prune:
        compute_masks(model, prune)
    apply_masks(model)
    set_quantize(model, True)
    shape, top = DATASETS["digits" if isinstance(model, DigitsNet) else "cifar10"]
    data = [random_images(batch_size, seed * 1000 + i, shape, top) for i in range(batches)]
    for _ in range(rounds):
        calibrate_bn(model, data)
        calibrate_alphas(model, torch.cat(data))  # (sw/evaluation.py: the one activation calibration)
    center_logits(model, torch.cat(data))
    apply_masks(model)
    return model.eval()


@torch.no_grad()
def center_logits(model: nn.Module, x: torch.Tensor) -> None:
    """fc bias -= mean logits over x: a random net's pooled features share a large common part that
    would otherwise pick the same class for every image."""
    fc = [m for m in model.modules() if isinstance(m, QLinear)][-1]
    seen = []
    handle = fc.register_forward_hook(lambda mod, inp, out: seen.append(out))
    try:
        model.eval()
        model(x)
    finally:
        handle.remove()
    fc.bias -= seen[0].mean(0)
