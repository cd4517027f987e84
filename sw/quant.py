"""APoT quantization: exact level sets, quantizers and drop-in quantized Conv2d / Linear.

Level sets (DESIGN §2): integer numerators over a common denominator D, largest level = D. Weights
use a sign bit + the (bits-1)-bit magnitude set, activations the bits-bit set; 8 bits are uniform.

Tie rule (ours; training, golden model and RTL share it): clamp, take |x|, and pick the level by
threshold search against the midpoints of consecutive levels; a value exactly on a midpoint goes to
the LARGER magnitude, i.e. ``index = #(midpoints <= |x|)``. Midpoints are float64 (the input is
float32, so the comparison equals the exact rational one). Never round() on a non-uniform grid; the
uniform 8-bit sets use the same rule (= round half away from zero in magnitude).

Exactness contract: a quantized weight is ``code * (alpha / D)`` and a quantized activation
``alpha * code / D``, both in float32 (the export reads these), and the quantized layers evaluate ``(sum of integer products) * (s_in * s_w)`` so the fake-quant output does
not depend on summation order (what makes physical slicing and the integer model bit-exact).
"""

from __future__ import annotations

import contextlib
import copy
import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED_BITS = (2, 3, 4, 5, 8)

# Magnitude sets of the APoT reference ``build_power_value(B)``: numerators, denominator.
_MAGNITUDES: dict[int, tuple[list[int], int]] = {
    1: ([0, 1], 1),
    2: ([0, 1, 2, 4], 4),
    3: ([0, 1, 2, 3, 4, 6, 8, 10], 10),
    4: ([0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48], 48),
    5: (sorted({a + b + c for a in (0, 64, 16, 2) for b in (0, 32, 8, 1) for c in (0, 4)}), 100),
}


def apot_levels(bits: int, signed: bool) -> tuple[list[int], int]:
    """Sorted non-negative magnitude numerators and their denominator D (largest level = D)."""
    if not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        kind = "weight" if signed else "activation"
        raise ValueError(f"{kind} bits must be one of {SUPPORTED_BITS}, not {bits!r}")
    if bits == 8:
        d = 127 if signed else 255
        return list(range(d + 1)), d
    nums, d = _MAGNITUDES[bits - 1 if signed else bits]
    return list(nums), d


def midpoints(bits: int, signed: bool) -> Tensor:
    """Normalised decision points between consecutive magnitude levels (float64)."""
    nums, d = apot_levels(bits, signed)
    return torch.tensor([(a + b) / (2 * d) for a, b in itertools.pairwise(nums)], dtype=torch.float64)


def _codes(xn: Tensor, nums: Tensor, mids: Tensor, signed: bool) -> Tensor:
    """Signed integer numerators (as float) of normalised values xn (ties to the larger level)."""
    xc = xn.clamp(-1.0 if signed else 0.0, 1.0)
    idx = torch.bucketize(xc.abs().double(), mids, right=True)  # = #(mids <= |x|)
    mag = nums[idx]
    return mag * torch.sign(xc) if signed else mag


class _APoTQuant(torch.autograd.Function):
    """out = codes(v/alpha) scaled back by alpha/D. Grad: STE to v (weights unclipped, activations only inside
    the range); d/d alpha = sign(x) outside the range, (q(x) - x) inside (normalised domain)."""

    @staticmethod
    def forward(ctx, v, alpha, nums, mids, d: int, signed: bool):  # type: ignore[override]
        xn = v / alpha
        codes = _codes(xn, nums, mids, signed)
        ctx.save_for_backward(xn, codes)
        ctx.d, ctx.signed = d, signed
        ctx.mark_non_differentiable(codes)
        # Weights: scale * w_int with scale = alpha/D; activations: alpha * code / D (the two contracts).
        out = codes * (alpha / d) if signed else (alpha * codes) / d
        return out, codes

    @staticmethod
    def backward(ctx, g, _g_codes):  # type: ignore[override]
        xn, codes = ctx.saved_tensors
        q = codes / ctx.d
        if ctx.signed:
            outside = xn.abs() > 1
            g_v = g
        else:
            outside = xn > 1
            g_v = g * ((xn >= 0) & ~outside)
        d_alpha = torch.where(outside, torch.sign(xn), q - xn)
        if not ctx.signed:
            d_alpha = d_alpha * (xn >= 0)
        return g_v, (g * d_alpha).sum().reshape(()), None, None, None, None


class _QuantizerBase(nn.Module):
    def __init__(self, bits: int, signed: bool, alpha_init: float) -> None:
        super().__init__()
        nums, d = apot_levels(bits, signed)
        self.bits, self.signed, self.denominator = bits, signed, d
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.register_buffer("_nums", torch.tensor(nums, dtype=torch.float32), persistent=False)
        self.register_buffer("_mids", midpoints(bits, signed), persistent=False)

    def levels_int(self) -> list[int]:
        return apot_levels(self.bits, self.signed)[0]

    def midpoints(self) -> Tensor:
        return self._mids.clone()

    def _quant(self, v: Tensor, alpha: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return _APoTQuant.apply(v, self.alpha if alpha is None else alpha, self._nums, self._mids,
                                self.denominator, self.signed)

    def scale(self) -> Tensor:
        """alpha / D as a detached float32 scalar tensor (the value every code is multiplied by)."""
        return (self.alpha / self.denominator).detach()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, D={self.denominator}"


def weight_stats(kept: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std of the kept weights: summed in float64, rounded once to their dtype.

    A float32 reduction is rounded differently by each device (its summation order), and a weight
    within one ulp of a decision point then takes another code on the GPU than in the export on the
    CPU: measured on a trained ResNet-20 (docs/cifar-runs), one layer's codes flipped, 1.1% of the next
    activation codes moved and 2.4% of the GPU's top-1 predictions differed from the integer model's.
    Rounded from float64 the statistics are the same on every device (unless the float64 value lies
    within ~1e-16 of a float32 rounding boundary)."""
    k = kept.double()
    return k.mean().to(kept.dtype), k.std().to(kept.dtype)


class WeightQuantizer(_QuantizerBase):
    """Signed APoT weights, normalised per layer over kept filters (and kept input channels)."""

    def __init__(self, bits: int, alpha_init: float = 3.0) -> None:
        super().__init__(bits, signed=True, alpha_init=alpha_init)
        # center=False (post-training quantization, sw/api.py): the weights are divided by their std but
        # their mean is not subtracted, so a quantized layer computes conv(x, w) / std, which the
        # BatchNorm after it absorbs exactly (subtracting the mean would drop mean/std * sum(x))
        self.center = True

    @staticmethod
    def _masks(w: Tensor, mask: Tensor | None, in_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        om = torch.ones(w.shape[0], dtype=torch.bool, device=w.device) if mask is None else mask
        im = torch.ones(w.shape[1], dtype=torch.bool, device=w.device) if in_mask is None else in_mask
        return om, im

    def quantize(self, w: Tensor, mask: Tensor | None = None, in_mask: Tensor | None = None):
        """(float quantized weight, signed integer codes as float). Stats: detached, unbiased, no eps.

        The codes are defined in float32 (what the export reads): a float64 model (``exact_copy``)
        computes them from its weights cast back to float32, then returns float64 tensors."""
        if w.dtype == torch.float64:
            wq, codes = self._quantize(w.float(), mask, in_mask, self.alpha.float())
            return wq.double(), codes.double()
        return self._quantize(w, mask, in_mask, self.alpha)

    def _quantize(self, w: Tensor, mask: Tensor | None, in_mask: Tensor | None, alpha: Tensor):
        om, im = self._masks(w, mask, in_mask)
        mean, std = weight_stats(w.detach()[om][:, im])
        wq, codes = self._quant((w - mean if self.center else w) / std, alpha)
        keep = (om.view(-1, *[1] * (w.dim() - 1)) & im.view(1, -1, *[1] * (w.dim() - 2))).to(w.dtype)
        return wq * keep, codes * keep

    def forward(self, w: Tensor, mask: Tensor | None = None, in_mask: Tensor | None = None) -> Tensor:
        return self.quantize(w, mask, in_mask)[0]

    @torch.no_grad()
    def std(self, w: Tensor, mask: Tensor | None = None, in_mask: Tensor | None = None) -> Tensor:
        """The std by which ``quantize`` normalises w, in float32 (what the export reads), in w's dtype."""
        om, im = self._masks(w, mask, in_mask)
        return weight_stats(w.detach().float()[om][:, im])[1].to(w.dtype)

    def scale(self) -> Tensor:
        """alpha / D rounded to float32 (the quantum the export reads), in alpha's dtype."""
        return (self.alpha.detach().float() / self.denominator).to(self.alpha.dtype)

    @torch.no_grad()
    def int_weight(self, w: Tensor, mask: Tensor | None = None, in_mask: Tensor | None = None):
        """(w_int LongTensor, scale float) with forward(w, mask) == scale * w_int exactly."""
        codes = self.quantize(w, mask, in_mask)[1]
        return codes.long(), float(self.scale())


class ActQuantizer(_QuantizerBase):
    """Unsigned APoT activations (inputs are post-ReLU; clamped to [0, alpha])."""

    def __init__(self, bits: int, alpha_init: float = 8.0) -> None:
        super().__init__(bits, signed=False, alpha_init=alpha_init)

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._quant(x)

    def forward(self, x: Tensor) -> Tensor:
        return self._quant(x)[0]

    @torch.no_grad()
    def int_codes(self, x: Tensor) -> Tensor:
        """Integer numerators: forward(x) == alpha * int_codes(x) / D (computed as code * (alpha/D))."""
        return self._quant(x)[1].long()


def uniform_act_quant(x: Tensor, alpha: Tensor, bits: int) -> Tensor:
    """x clipped to [0, alpha] on 2**bits uniform levels: alpha * floor(x/alpha * D + 1/2) / D, D = 2**bits - 1
    (a value half-way between two levels goes up, the tie rule above: the rounding is done in float64, where
    x/alpha * D + 1/2 of a float32 x/alpha is exact, so the level is the 8-bit ActQuantizer's). The residual
    stream's quantizer of a ResNet trained with ``residual_bits`` (sw/models/resnet.py); the lowering sees it
    as ``UniformLevels`` (its levels and decision points).

    The gradients are the APoT activation quantizer's (``_APoTQuant``): straight through inside [0, alpha],
    zero outside; d/d alpha = q - x/alpha inside, 1 above, 0 below. Plain tensor ops (no autograd Function,
    no bucketize), so torch.compile and the CUDA-graph step take it as they are. Computed in float32 at
    least (bf16 autocast activations are cast up: a bf16 mantissa cannot hold 256 levels; float64 stays)."""
    dt = torch.promote_types(x.dtype, torch.float32)
    a = alpha.to(dt)
    xc = (x.to(dt) / a).clamp(0.0, 1.0)
    d = (1 << bits) - 1
    level = torch.floor(xc.detach().double() * d + 0.5).to(dt)
    return a * (level / d) + a * (xc - xc.detach())


class UniformLevels:
    """``uniform_act_quant``'s quantizer as the lowering reads a quantizer (sw/lower.py: ``alpha``, ``bits``,
    ``denominator``, ``levels_int()``, ``midpoints()``): codes 0..D, D = 2**bits - 1, value alpha * code / D,
    code k+1 reached at x/alpha >= (k + 1/2) / D (floor(x/alpha * D + 1/2) >= k + 1, ties up)."""

    def __init__(self, alpha: Tensor, bits: int) -> None:
        self.alpha, self.bits, self.denominator = alpha.detach(), bits, (1 << bits) - 1

    def levels_int(self) -> list[int]:
        return list(range(self.denominator + 1))

    def midpoints(self) -> Tensor:
        return (torch.arange(self.denominator, dtype=torch.float64) + 0.5) / self.denominator


_EXACT_ACCUM = [False]


@contextlib.contextmanager
def exact_accumulation():
    """Integer accumulations in float64 while inside (evaluation: the fake-quant model vs the integer model).

    The integer-valued conv/linear of the codes is exact in float32 only if the backend sums products
    exactly; cuDNN's Winograd and FFT algorithms for 3x3 float32 convolutions transform the operands
    into non-integers, so an accumulator that sits exactly on a requantization threshold can come out
    a hair below it and cross it. In float64 every algorithm returns the integer within far less than
    0.5 (|acc| < 2**24 by far); the result is rounded to the nearest integer, because a float64
    model's cast to its own dtype would not round it (a guard: no such error was seen)."""
    saved = _EXACT_ACCUM[0]
    _EXACT_ACCUM[0] = True
    try:
        yield
    finally:
        _EXACT_ACCUM[0] = saved


class _IntAccum(torch.autograd.Function):
    """Forward: (integer-valued conv/linear of the codes) * scale, exact whatever the summation order
    (inside ``exact_accumulation``: whatever the backend's algorithm too).
    Backward: as if the op ran on the float fake-quant tensors xq, wq."""

    @staticmethod
    def forward(ctx, xq, wq, x_int, w_int, scale, conv_args):  # type: ignore[override]
        ctx.save_for_backward(xq, wq)
        ctx.conv_args = conv_args
        xi, wi = (x_int.double(), w_int.double()) if _EXACT_ACCUM[0] else (x_int, w_int)
        if conv_args is None:
            acc = F.linear(xi, wi)
        else:
            acc = F.conv2d(xi, wi, None, *conv_args)
        if _EXACT_ACCUM[0]:
            acc = acc.round()
        return acc.to(x_int.dtype) * scale

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        xq, wq = ctx.saved_tensors
        if ctx.conv_args is None:
            gx = g @ wq
            gw = g.reshape(-1, g.shape[-1]).t() @ xq.reshape(-1, xq.shape[-1])
        else:
            s, p, dl, gr = ctx.conv_args
            gx = torch.nn.grad.conv2d_input(xq.shape, wq, g, s, p, dl, gr)
            gw = torch.nn.grad.conv2d_weight(xq, wq.shape, g, s, p, dl, gr)
        return gx, gw, None, None, None, None


class _QLayer:
    """Shared forward of QConv2d / QLinear. ``quantize`` toggles fake-quant; masks always apply."""

    def _init_q(self, w_bits: int, a_bits: int | None, n_out: int, n_in: int, denorm: bool = False) -> None:
        self.w_bits, self.a_bits, self.quantize, self.denorm = w_bits, a_bits, False, denorm
        self.wq = WeightQuantizer(w_bits)
        self.aq = ActQuantizer(a_bits) if a_bits is not None else None
        self.register_buffer("filter_mask", torch.ones(n_out, dtype=torch.bool))
        self.register_buffer("in_mask", torch.ones(n_in, dtype=torch.bool))

    def _keep(self) -> Tensor:
        w = self.weight
        om = self.filter_mask.view(-1, *[1] * (w.dim() - 1))
        im = self.in_mask.view(1, -1, *[1] * (w.dim() - 2))
        return (om & im).to(w.dtype)

    def weight_quantum(self) -> Tensor:
        """The real value of one integer weight unit: alpha / D (float32), times the std if denorm."""
        q = self.wq.scale()
        return q * self.wq.std(self.weight, self.filter_mask, self.in_mask).to(q.dtype) if self.denorm else q

    def _forward(self, x: Tensor, x_int: Tensor | None, x_scale: Tensor | None, conv_args) -> Tensor:
        """x_int/x_scale: the input's integer codes and quantum when a_bits is None (e.g. pixels)."""
        if not self.quantize:
            w = self.weight * self._keep()
            y = F.linear(x, w) if conv_args is None else F.conv2d(x, w, None, *conv_args)
        else:
            wq, w_int = self.wq.quantize(self.weight, self.filter_mask, self.in_mask)
            if self.aq is not None:
                xq, x_int = self.aq.quantize(x)
                x_scale = self.aq.scale()
            else:
                xq = x
            if self.denorm:  # no BatchNorm follows: the weights keep their float scale (x their std)
                wq = wq * self.wq.std(self.weight, self.filter_mask, self.in_mask)
            if x_int is None:
                y = F.linear(xq, wq) if conv_args is None else F.conv2d(xq, wq, None, *conv_args)
            else:
                scale = x_scale.detach() * self.weight_quantum()
                y = _IntAccum.apply(xq, wq, x_int.to(xq.dtype), w_int, scale, conv_args)
        if self.bias is not None:
            y = y + (self.bias if conv_args is None else self.bias.view(1, -1, 1, 1))
        return y


class QConv2d(_QLayer, nn.Conv2d):
    """nn.Conv2d with APoT weights (w_bits) and, if a_bits is set, its own input quantizer.

    ``denorm=True`` (a conv that no BatchNorm follows, e.g. a projection shortcut): the quantized weight
    is ``std * code * alpha / D`` with ``std`` the normalising std of the kept float32 weights, so the
    output keeps the float layer's scale from float training to QAT (the mean is not added back)."""

    def __init__(self, *args, w_bits: int = 4, a_bits: int | None = 4, denorm: bool = False, **kwargs) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros":
            raise ValueError("QConv2d supports groups=1 and zero padding only")
        self._init_q(w_bits, a_bits, self.out_channels, self.in_channels, denorm)

    def forward(self, x: Tensor, x_int: Tensor | None = None, x_scale: Tensor | None = None) -> Tensor:
        return self._forward(x, x_int, x_scale, (self.stride, self.padding, self.dilation, self.groups))


class QLinear(_QLayer, nn.Linear):
    """nn.Linear with APoT weights; the bias stays float (added after the integer accumulation)."""

    def __init__(self, *args, w_bits: int = 8, a_bits: int | None = None, **kwargs) -> None:
        nn.Linear.__init__(self, *args, **kwargs)
        self._init_q(w_bits, a_bits, self.out_features, self.in_features)

    def forward(self, x: Tensor, x_int: Tensor | None = None, x_scale: Tensor | None = None) -> Tensor:
        return self._forward(x, x_int, x_scale, None)


def exact_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of a fake-quant model, for checking it against the integer model.

    In float32 the fake-quant model rounds its BN affine, residual add and quantizer inputs, so an
    activation whose exact value lies within ~1e-7 of a decision point can land on the other code
    (measured: about 2 in 100,000 activations of a ResNet-20; deep nets amplify them). The copy computes
    the same function in float64, with the weight codes and weight quanta still taken in float32 (what
    the export reads), so it differs from the integer model only by the integer model's one documented
    rounding (docs/contract.md) and by exact ties."""
    return copy.deepcopy(model).double()


def set_quantize(model: nn.Module, on: bool) -> nn.Module:
    """Switch fake-quant on/off on every module with a ``quantize`` flag (layers and nets)."""
    for m in model.modules():
        if isinstance(getattr(m, "quantize", None), bool):
            m.quantize = on
    return model
