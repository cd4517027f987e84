"""The measurements of a model: the exact fp32 fake-quant (or float) test accuracy, the integer check (the
fake-quant model's float64 copy against the integer network), and the one calibration of the activation
clipping thresholds (alphas) from what each quantizer sees.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import nn

from .quant import ActQuantizer, exact_accumulation, set_quantize


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


def exact_predictions(model: nn.Module, x, device: str = "cpu", batch: int = 1000) -> np.ndarray:
    """Top-1 classes of the fake-quant model's float64 copy (``sw.quant.exact_copy``, fp32 kernels without
    TF32) on integer images ``x`` (N, C, H, W; tensor or array): the fake-quant side of ``integer_check``."""
    from .quant import exact_copy

    dev = torch.device(device)
    exact = exact_copy(model).to(dev).eval()
    xt = torch.from_numpy(np.asarray(x).astype(np.int64))
    with torch.no_grad(), exact_fp32():
        return torch.cat([exact(xt[i:i + batch].to(dev).double()).argmax(1).cpu()
                          for i in range(0, len(xt), batch)]).numpy()


def integer_check(model: nn.Module, net, x, y, device: str = "cpu", backend: str | None = None,
                  batch: int = 1000) -> dict:
    """The fake-quant model's float64 copy (``sw.quant.exact_copy``, fp32 kernels without TF32) against the
    integer network ``net`` (the golden model, exact) on integer images ``x`` (N, C, H, W; tensor or array)
    with labels ``y``: both top-1 accuracies and their agreement (1.0: the integer model equals the fake-quant
    model on every image). backend: the golden model's (default float64 on a GPU, int64 on the CPU; both
    exact). The one integer check of every training run, import and post-training quantization."""
    from .golden import predict_batched

    backend = backend or ("float64" if str(device).startswith("cuda") else "int64")
    xi = np.asarray(x).astype(np.int64)
    t0 = time.perf_counter()
    pi = predict_batched(net, xi, backend, device)
    golden_s = time.perf_counter() - t0
    pf = exact_predictions(model, xi, device, batch)
    yn = np.asarray(y)
    return {"images": int(len(yn)), "accuracy_fakequant": float((pf == yn).mean()),
            "accuracy_int": float((pi == yn).mean()), "agreement": float((pf == pi).mean()),
            "golden_backend": backend, "golden_seconds": golden_s}


CALIB_IMAGES = 1024  # training images the activation alphas are calibrated on


def calibration_images(x: torch.Tensor, n: int = CALIB_IMAGES) -> torch.Tensor:
    """``n`` training images spread evenly over the set (every (len // n)-th, from the first): the CIFAR-10
    JPEG copy is ordered by class, and its first 1,024 images are all airplanes. A set of fewer than 2n
    images (digits: 1,347) gives its first n, as before the spread."""
    return x[::max(1, len(x) // n)][:n]


PERCENTILE = 0.999  # the activation clipping quantile
_MAX_VALUES = 1 << 22  # values a quantile is taken over (a uniform sample beyond: torch.quantile's size limit)


@torch.no_grad()
def calibrate_alphas(model: nn.Module, x: torch.Tensor, q: float = PERCENTILE, passes: int = 1,
                     batch_stats: bool = False) -> None:
    """Each activation quantizer's alpha := the q-quantile of its input in fake-quant mode, set at the
    quantizer's first call of a pass, before it quantizes: every quantizer sees its input quantized with the
    thresholds already calibrated upstream, as it will in QAT and on the hardware. A quantizer that stores
    several tensors (the branches of a concatenation) takes the largest of their quantiles. A second pass
    (``passes=2``) re-calibrates each on inputs whose every upstream quantizer was set (a residual stream
    quantized before its block's first conv ran, for one). BatchNorm runs on its running statistics, or
    with ``batch_stats`` on the statistics of ``x`` (running statistics kept): a quantizing phase of the
    trainer starts from a float model whose running statistics do not fit its quantized weights (normalised
    by their std), and its first QAT step normalises by the batch too. The one calibration of the trainer
    (``batch_stats=True``), post-training quantization (sw/api.calibrate) and random models
    (sw/randmodel.py). The model is left in eval mode with fake-quant on."""
    quants = [m for m in model.modules() if isinstance(m, ActQuantizer)]
    done: set[int] = set()  # the quantizers set in this pass

    def wrap(aq: ActQuantizer):
        orig = aq.quantize

        def quantize(v):
            flat = v.detach().flatten()
            if flat.numel() > _MAX_VALUES:
                pick = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:_MAX_VALUES]
                flat = flat[pick.to(flat.device)]
            alpha = max(float(torch.quantile(flat.double(), q)), 1e-3)
            if id(aq) in done:  # a second tensor of one quantizer (the branches of a concatenation)
                alpha = max(alpha, float(aq.alpha))
            aq.alpha.fill_(alpha)
            done.add(id(aq))
            return orig(v)
        return quantize

    set_quantize(model, True)
    model.train(batch_stats)
    kept = {n: b.clone() for n, b in model.named_buffers()} if batch_stats else {}
    for aq in quants:
        aq.quantize = wrap(aq)  # an instance attribute shadows the method during the passes
    try:
        for _ in range(passes):
            done.clear()  # every quantizer is set again, at its first call of the pass
            model(x.float())
    finally:
        for aq in quants:
            del aq.quantize
        for n, b in model.named_buffers():
            if n in kept:
                b.copy_(kept[n])  # the running statistics (and batch counts) as before the passes
        model.eval()
