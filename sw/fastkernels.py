"""Training-only kernels for the GPU trainer (sw/fasttrain.py): compile- and CUDA-graph-friendly.

``fast_kernels(model)`` swaps, per instance and only while training, the pieces of the fake-quant
model that stop torch.compile / CUDA graphs (boolean-mask indexing, custom autograd Functions, float64
bucketize, a conv of integer codes) for equivalent dense forms:

* the APoT quantizer keeps the exact threshold search: ``bucketize`` in float32 against the float64
  midpoints rounded UP to float32 (for a float32 x, x >= m  <=>  x >= roundup32(m)), ties to the larger
  level as in sw/quant.py; the straight-through / alpha gradients of sw/quant.py are written as
  ``alpha*q + alpha*(xc - xc.detach())`` (+ ``v - v.detach()`` for weights): same values, same grads;
* weight statistics over kept filters / inputs are masked sums instead of boolean indexing;
* quantized layers convolve the fake-quant float tensors (no integer-code conv);
* option-A shortcuts are a gather with a static index.

Only float rounding differs (reduction order; bf16 under autocast). Evaluation, export and the golden
model always run the original exact code: leaving the context restores every method.
"""

from __future__ import annotations

import contextlib
import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .quant import ActQuantizer, WeightQuantizer, _QLayer, _QuantizerBase


def roundup_f32(m: Tensor) -> Tensor:
    """Smallest float32 >= each float64 value."""
    t = m.to(torch.float32)
    return torch.where(t.double() < m, torch.nextafter(t, torch.full_like(t, float("inf"))), t)


def _fast_quant(self: _QuantizerBase, v: Tensor) -> tuple[Tensor, Tensor]:
    alpha = self.alpha
    vs = v.detach() if self.signed else v
    xc = (vs / alpha).clamp(-1.0 if self.signed else 0.0, 1.0)
    idx = torch.bucketize(xc.detach().abs().float().contiguous(), self._mids32, right=True)
    codes = self._nums[idx]
    if self.signed:
        codes = codes * torch.sign(xc.detach())
    out = alpha * (codes / self.denominator) + alpha * (xc - xc.detach())
    if self.signed:
        out = out + (v - v.detach())
    return out, codes


def _fast_stats(w: Tensor, mask: Tensor | None, in_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(keep, mean, std) of the kept weights as dense masked sums (quant.weight_stats without indexing)."""
    shape = (-1,) + (1,) * (w.dim() - 1)
    om = torch.ones(w.shape[0], device=w.device) if mask is None else mask.to(w.dtype)
    im = torch.ones(w.shape[1], device=w.device) if in_mask is None else in_mask.to(w.dtype)
    keep = om.view(shape) * im.view((1, -1) + (1,) * (w.dim() - 2))
    wd = w.detach().double()  # float64 sums rounded once, as quant.weight_stats: the evaluation's codes
    n = keep.sum() * w[0, 0].numel()
    mean = (wd * keep).sum() / n
    std = ((((wd - mean) * keep) ** 2).sum() / (n - 1)).sqrt().to(w.dtype)
    return keep, mean.to(w.dtype), std


def _fast_wquantize(self: WeightQuantizer, w: Tensor, mask: Tensor | None = None, in_mask: Tensor | None = None):
    keep, mean, std = _fast_stats(w, mask, in_mask)
    wq, codes = self._quant((w - mean if getattr(self, "center", True) else w) / std)
    return wq * keep, codes * keep


def _fast_layer_forward(self: _QLayer, x: Tensor, x_int=None, x_scale=None, conv_args=None) -> Tensor:
    if not self.quantize:
        w = self.weight * self._keep()
        xq = x
    else:
        w = self.wq.quantize(self.weight, self.filter_mask, self.in_mask)[0]
        if getattr(self, "denorm", False):  # QConv2d(denorm=True): the weights keep their float scale
            w = w * _fast_stats(self.weight, self.filter_mask, self.in_mask)[2]
        xq = self.aq.quantize(x)[0] if self.aq is not None else x
    y = F.linear(xq, w) if conv_args is None else F.conv2d(xq, w, None, *conv_args)
    if self.bias is not None:
        y = y + (self.bias if conv_args is None else self.bias.view(1, -1, 1, 1))
    return y


def _fast_shortcut(self, r: Tensor, r_codes: Tensor | None = None) -> Tensor:
    if not self.downsample:
        return r
    idx = self.sc_index
    out = r[:, :, ::2, ::2].index_select(1, idx.clamp(min=0))
    return out * (idx >= 0).to(out.dtype).view(1, -1, 1, 1)


class _Patches:
    """The installed methods; ``suspended()`` runs the original (exact) code and reinstalls the SAME
    method objects afterwards (so compiled code's guards still hold)."""

    def __init__(self) -> None:
        self.items: list[tuple[nn.Module, str, object]] = []

    @contextlib.contextmanager
    def suspended(self):
        for m, name, _ in self.items:
            m.__dict__.pop(name, None)
        try:
            yield
        finally:
            for m, name, fn in self.items:
                m.__dict__[name] = fn


@contextlib.contextmanager
def fast_kernels(model: nn.Module):
    """Install the training kernels on every module of `model`; restore the originals on exit."""
    patches = _Patches()

    def put(m: nn.Module, name: str, fn) -> None:
        bound = types.MethodType(fn, m)
        m.__dict__[name] = bound
        patches.items.append((m, name, bound))

    for m in model.modules():
        if isinstance(m, _QuantizerBase):
            if getattr(m, "_mids32", None) is None or m._mids32.device != m._mids.device:
                m._mids32 = roundup_f32(m._mids)
            put(m, "_quant", _fast_quant)
            if isinstance(m, WeightQuantizer):
                put(m, "quantize", _fast_wquantize)
            elif isinstance(m, ActQuantizer):
                put(m, "quantize", lambda self, x: self._quant(x))
        if isinstance(m, _QLayer):
            put(m, "_forward", _fast_layer_forward)
        if hasattr(m, "sc_index") and hasattr(m, "shortcut"):
            put(m, "shortcut", _fast_shortcut)
    try:
        yield patches
    finally:
        for m, name, _ in patches.items:
            m.__dict__.pop(name, None)


# ----------------------------------------------------------------------------- data on the GPU
def augment_epoch(x: Tensor, gen: torch.Generator, pad: int = 4, cutout: int = 0) -> Tensor:
    """Random crop (zero padding `pad`) and horizontal flip of every image, as one gather (uint8 in/out).

    ``cutout=s`` (off at 0) then zeroes one s x s square per image, its centre uniform over the image and
    the square clipped at the border (DeVries & Taylor's Cutout; zero is the padding's black). Its random
    numbers are drawn after the crop's and the flip's, so ``cutout=0`` gives the same images as before."""
    return augment_apply(x, augment_draws(x, gen, pad, cutout))


def augment_draws(x: Tensor, gen: torch.Generator, pad: int = 4, cutout: int = 0) -> dict:
    """augment_epoch's random numbers for every image of `x` (the crop offsets, the flips, the Cutout centres)."""
    n, _, h, w = x.shape
    dev = x.device
    d = {"pad": pad, "cutout": cutout,
         "oy": torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=gen),
         "ox": torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=gen),
         "flip": torch.rand(n, device=dev, generator=gen) < 0.5}
    if cutout:
        d["cy"] = torch.randint(0, h, (n,), device=dev, generator=gen)
        d["cx"] = torch.randint(0, w, (n,), device=dev, generator=gen)
    return d


def augment_apply(x: Tensor, d: dict, idx: Tensor | None = None) -> Tensor:
    """The augmentation `d` (augment_draws) of every image of `x`, or (``idx``: a data-parallel rank's
    share, sw/distributed.py) of the images ``x[idx]`` only, in that order: rows ``idx`` of the whole."""
    pad, cutout = d["pad"], d["cutout"]
    oy, ox, flip, cy, cx = (d.get(k) for k in ("oy", "ox", "flip", "cy", "cx"))
    if idx is not None:
        x, oy, ox, flip = x[idx], oy[idx], ox[idx], flip[idx]
        if cutout:
            cy, cx = cy[idx], cx[idx]
    n, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (pad, pad, pad, pad))
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], ar_w.flip(0)[None], ar_w[None]) + ox[:, None]  # (n, w)
    rows = ar_h[None] + oy[:, None]  # (n, h)
    flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    out = xp.view(n, c, -1).gather(2, flat).view(n, c, h, w)
    if cutout:
        y0, x0 = cy - cutout // 2, cx - cutout // 2
        in_y = (ar_h[None] >= y0[:, None]) & (ar_h[None] < y0[:, None] + cutout)  # (n, h)
        in_x = (ar_w[None] >= x0[:, None]) & (ar_w[None] < x0[:, None] + cutout)  # (n, w)
        out = out.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0)
    return out


# ----------------------------------------------------------------------------- capturable SGD
class GraphSGD:
    """SGD (momentum, optional Nesterov, coupled weight decay) with the lr in a device tensor, so the
    whole step can sit in a CUDA graph; the lr is set with ``set_lr`` between replays.

    Same update as torch.optim.SGD (dampening 0): buf = m*buf + (g + wd*p); p -= lr * (buf or g + m*buf).
    """

    def __init__(self, groups: list[dict], momentum: float = 0.9, nesterov: bool = False) -> None:
        self.groups = [dict(g) for g in groups if g["params"]]
        dev = self.groups[0]["params"][0].device
        self.momentum, self.nesterov = momentum, nesterov
        self.lr = torch.zeros((), device=dev)
        for g in self.groups:
            g["bufs"] = [torch.zeros_like(p) for p in g["params"]]
            g["lr_t"] = torch.zeros((), device=dev)

    def set_lr(self, lr: float) -> None:
        for g in self.groups:
            g["lr_t"].fill_(lr * g.get("lr_mult", 1.0))

    @torch.no_grad()
    def step(self) -> None:
        for g in self.groups:
            ps = [p for p in g["params"]]
            gs = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
            if g["wd"]:
                gs = torch._foreach_add(gs, ps, alpha=g["wd"])
            torch._foreach_mul_(g["bufs"], self.momentum)
            torch._foreach_add_(g["bufs"], gs)
            upd = torch._foreach_add(gs, g["bufs"], alpha=self.momentum) if self.nesterov else g["bufs"]
            torch._foreach_sub_(ps, torch._foreach_mul(upd, g["lr_t"]))

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    def state_dict(self) -> list[list[Tensor]]:
        return [[b.detach().cpu() for b in g["bufs"]] for g in self.groups]

    def load_state_dict(self, state: list[list[Tensor]]) -> None:
        for g, bufs in zip(self.groups, state):
            for b, s in zip(g["bufs"], bufs):
                b.copy_(s)
