"""The trainer's measurements: the exact fp32 fake-quant (or float) test accuracy, and the calibration of
the activation clipping thresholds (alphas) from what each quantizer sees.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .quant import _QLayer, exact_accumulation, set_quantize


@contextlib.contextmanager
def exact_fp32():
    """fp32 convolutions and matmuls without TF32 (cuDNN allows TF32 convolutions by default, whose 10-bit
    mantissa moves activations across quantizer thresholds: the fake-quant model would drift from the
    integer model), and the integer accumulations of the quantized layers in float64
    (``quant.exact_accumulation``: cuDNN's Winograd algorithms are not exact on integers)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with exact_accumulation():
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quant: bool, bs: int = 1000) -> float:
    """Exact fake-quant (or float) test accuracy: original kernels, fp32 without TF32, eval mode."""
    was_train = model.training
    set_quantize(model, quant)
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    with exact_fp32():
        for i in range(0, len(x), bs):
            xb = x[i:i + bs].to(dev).float()
            correct += int((model(xb).argmax(1) == y[i:i + bs].to(dev)).sum())
    model.train(was_train)
    return correct / len(x)


CALIB_IMAGES = 1024  # training images the activation alphas are calibrated on


def calibration_images(x: torch.Tensor, n: int = CALIB_IMAGES) -> torch.Tensor:
    """``n`` training images spread evenly over the set (every (len // n)-th, from the first): the CIFAR-10
    JPEG copy is ordered by class, and its first 1,024 images are all airplanes. A set of fewer than 2n
    images (digits: 1,347) gives its first n, as before the spread."""
    return x[::max(1, len(x) // n)][:n]


@torch.no_grad()
def calibrate_alphas(model: nn.Module, x: torch.Tensor, q: float = 0.999) -> None:
    """Each ActQuantizer's alpha := q-quantile of what it sees (float mode, BN batch statistics).
    The pooled quantizer (qpool) sees the last block's output."""
    seen: dict[nn.Module, torch.Tensor] = {}

    def record(q: nn.Module, v: torch.Tensor) -> None:  # hooks must return None (else they replace)
        seen.setdefault(q, v.detach().flatten())

    hooks = [m.register_forward_pre_hook(lambda m, a: record(m.aq, a[0]))
             for m in model.modules() if isinstance(m, _QLayer) and m.aq is not None]
    qpool = getattr(model, "qpool", None)  # ResNet: sees the last block's output; DigitsNet: relu(bn4(conv4(.)))
    if qpool is not None and hasattr(model, "blocks"):
        hooks.append(model.blocks[-1].register_forward_hook(lambda m, a, out: record(qpool, out)))
    elif qpool is not None and hasattr(model, "bn4"):
        hooks.append(model.bn4.register_forward_hook(lambda m, a, out: record(qpool, F.relu(out))))
    qfc = getattr(model, "qfc", None)  # VGG: sees the fc's input
    if qfc is not None:
        hooks.append(model.fc.register_forward_pre_hook(lambda m, a: record(qfc, a[0])))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    set_quantize(model, False)
    model.train()
    model(x.float())
    for h in hooks:
        h.remove()
    model.load_state_dict(state)
    gen = torch.Generator(device=x.device).manual_seed(0)  # its own draws: a resumed run calibrates the same
    for m, v in seen.items():
        v = v[torch.randperm(len(v), device=v.device, generator=gen)[:1_000_000]] if len(v) > 1_000_000 else v
        m.alpha.fill_(max(float(torch.quantile(v.float(), q)), 1e-2))
