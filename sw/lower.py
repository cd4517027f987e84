"""Lowering a trained fake-quant model to the integer network (the golden model's definition).

``lower(model)`` is the one entry: every model, the zoo's included, is lowered from its traced graph by
sw/graph_lower.py, which calls the per-op builders below (``_conv_op``, ``_linear_op``, ``_max_pool_op``,
``_avg_pool_op``, ``_fc_op``, ``_projection``); they hold the arithmetic.

Folding rules (float64 once, at export; the integer math afterwards is exact):

* conv + BN + ReLU + the next APoT quantizer -> integer thresholds. With the conv's accumulator
  scale S (= weight quantum x input quantum) and BN as y = A*v + B, the pre-activation is
  z = a*acc + b with a = A*S, b = B. Code j is reached when z >= alpha_next * mid_j, i.e.
  sigma*acc >= ceil((alpha_next*mid_j - b) / |a|) with sigma = sign(a) folded into the weights.
  The tie rule is the quantizer's: a value on a decision point goes up.
* the residual add z = a*acc + b + s_r*R (R: the shortcut's integer codes, s_r their quantum) is an
  extra 1x1 source of the same op: acc' = 2**f * sigma*acc + K*R with K = 2**f * s_r/|a| rounded to the
  nearest integer with at most 4 signed power-of-two digits (so the lanes add it in <= 2 passes), f
  per output channel chosen for ~7 significant bits of K while the accumulator stays within 22 bits.
  This is the one approximation of the integer model with respect to the float model.
* global average pooling over 2**k pixels: sum, then >> (k - 2) (2 fractional bits kept: the fc's
  input format, exactly as the fake-quant model floors it).
* a 1x1 projection shortcut P (option B: z = a*acc + b + b_p + s_p*(W_p conv R), s_p = its weight
  quantum x s_r, no BatchNorm) is the same extra source with integer weights K*W_p (K from s_p as above,
  role "projection": its MACs and weights are counted); its bias b_p joins b. A projection followed by a
  BatchNorm A_p*y + B_p: s_p becomes A_p*s_p per output channel (signed: K takes its sign), A_p*b_p + B_p
  joins b.
* a conv's own bias c (before its BatchNorm) joins b: b = B + A*c.
* a ResNet's option-A (downsampling) shortcut is the residual source with stride 2 and a 1x1 kernel
  whose K sits at the selected input channel (a 0/1 channel selection scaled by K per output channel).
* VGG max pooling: the conv's thresholds already give the next consumer's codes (the quantizer is
  monotonic, so quantize-then-max == max-then-quantize); a reduce="max" op (2x2 window, stride 2,
  identity depthwise weights, mode shift 0) pools the codes.
* a hidden linear layer (VGG-16's FPGM classifier: Linear + BatchNorm1d + ReLU) is the conv rule with a
  1x1 kernel on a 1x1 map: its input is its own quantizer's codes, BatchNorm1d and its bias fold into
  the thresholds of the next quantizer (qfc).
* fc: acc = 2**f * sum(W*u) + round(2**f * bias / S); logits = acc * S / 2**f (argmax is what matters).
* an N-bit residual stream (a CIFAR ResNet's ``residual_bits`` N > a_bits): a block input is stored as the
  stream's N-bit uniform codes q (the conv rule with the stream's quantizer, ``quant.UniformLevels``, clipped
  at conv_a's alpha: 2**N - 1 thresholds); the shortcut adds q (K from the quantum alpha / (2**N - 1)); conv_a
  reads its A{a_bits} codes from a 1x1 depthwise thresh op on q (``_stream_codes_op``: code j from
  q >= ceil(mid_j * (2**N - 1)), mid_j conv_a's decision points, exact in rationals), which is what the
  fake-quant model computes when conv_a quantizes the stream's value alpha * q / (2**N - 1).
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import pairwise

import numpy as np
import torch

from .intnet import IntNet, Op, Source, TensorSpec

BIG = 1 << 40  # stands for +/- infinity in thresholds (the compiler clamps to the accumulator range)
ACC_TARGET_BITS = 22  # keep worst-case accumulators below 2**22 when choosing residual/fc scalings


def naf_weight(v: int) -> int:
    """Number of non-zero digits of v's non-adjacent form (its minimal signed-digit count)."""
    v, n = abs(int(v)), 0
    while v:
        if v & 1:
            n += 1
            v -= 2 - (v & 3)  # digit +1 if v mod 4 == 1, -1 if v mod 4 == 3
        v >>= 1
    return n


def nearest_few_digits(x: float, digits: int = 4) -> int:
    """The integer nearest to x whose signed-digit form has at most `digits` non-zero digits."""
    base = int(round(x))
    for d in range(0, 1 << 20):
        for cand in (base - d, base + d) if abs(base - d - x) <= abs(base + d - x) else (base + d, base - d):
            if naf_weight(cand) <= digits:
                return cand
    raise ValueError(f"no few-digit integer near {x}")


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    g, beta = bn.weight.detach().cpu().double().numpy(), bn.bias.detach().cpu().double().numpy()
    mu, var = bn.running_mean.cpu().double().numpy(), bn.running_var.cpu().double().numpy()
    inv = 1.0 / np.sqrt(var + bn.eps)
    return g * inv, beta - g * mu * inv


def _levels_source(layer, tensor: str, stride: int, pad: int) -> tuple[Source, float]:
    """Sign-magnitude codes into the layer's magnitude table; returns (source, weight quantum)."""
    w_int, w_scale = layer.wq.int_weight(layer.weight, layer.filter_mask, layer.in_mask)
    w_int = w_int.numpy().astype(np.int64)
    if w_int.ndim == 2:
        w_int = w_int[:, :, None, None]
    levels = np.asarray(layer.wq.levels_int(), dtype=np.int64)
    idx = np.searchsorted(levels, np.abs(w_int))
    if np.any(levels[np.minimum(idx, len(levels) - 1)] != np.abs(w_int)):
        raise ValueError(f"a weight of {type(layer).__name__} is not in its level table")
    cout = w_int.shape[0]
    src = Source(tensor, np.sign(w_int) * idx, stride, pad, "levels", levels, np.zeros(cout, np.int64),
                 np.ones(cout, np.int64), layer.w_bits)
    return src, w_scale


def _float(t) -> float:
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def residual_fk(a: float, s_r: float, main_bound: int) -> tuple[int, int]:
    """(f, K) of one output channel: acc' = 2**f * sigma * acc + K * R approximates (a*acc + s_r*R)/|a|.

    K = 2**f * s_r / |a| rounded to at most 4 signed power-of-two digits; f (<= 8) gives K about 7
    significant bits while the accumulator bound stays under 2**ACC_TARGET_BITS.
    """
    ratio = s_r / abs(a)  # negative for a projection whose BatchNorm scale is: K takes its sign
    want = max(0, math.ceil(math.log2(128 / abs(ratio)))) if ratio else 0
    room = ACC_TARGET_BITS - max(1, int(main_bound).bit_length())
    f = max(0, min(want, room, 8))
    return f, nearest_few_digits(ratio * 2**f)


def act_quantum(aq) -> float:
    """alpha / D of an activation quantizer in float64 from its float32 alpha (what the lowering uses)."""
    return _float(aq.alpha) / aq.denominator


@torch.no_grad()
def residual_gain(conv, bn, s_r) -> torch.Tensor:
    """Per-channel factor g = K*|a| / (2**f * s_r) (about 1) by which the fake-quant model scales its
    quantized shortcut in eval mode, so that it adds exactly what the integer model adds (K*R in the
    accumulator domain). s_r: the shortcut's quantum (a float; an array: one per output channel, signed;
    an activation quantizer: its codes' quantum). One definition with the lowering: both call residual_fk."""
    s_in = act_quantum(conv.aq)  # the same floats the lowering uses
    s_r = s_r if isinstance(s_r, (float, np.ndarray)) else act_quantum(s_r)
    w_int, w_scale = conv.wq.int_weight(conv.weight, conv.filter_mask, conv.in_mask)
    bound = (w_int.abs().reshape(w_int.shape[0], -1).sum(dim=1).cpu().double() * float(conv.aq.levels_int()[-1])).tolist()
    a, _ = _bn_affine(bn)
    a = a * (w_scale * s_in)
    g = np.ones(len(a))
    for c in range(len(a)):
        s_c = s_r[c] if np.ndim(s_r) else s_r
        if abs(a[c]) >= 1e-30 and s_c != 0:
            f, k = residual_fk(a[c], s_c, int(bound[c]))
            g[c] = k * abs(a[c]) / (2**f * s_c)
    return torch.from_numpy(g)  # float64; the caller casts to its activations' dtype


def _fold_thresholds(src: Source, s_acc: float, bn, next_aq, residual: Residual | None,
                     in_max: int, extra_bias: np.ndarray | None = None) -> tuple[list[Source], np.ndarray]:
    """Fill src.ch_sign/ch_shift, build the optional residual source; return (sources, thresholds).

    residual = (tensor, select, s_r, stride[, role]): select is an integer (Cout, Cr) matrix: 0/1 naming
    the shortcut's input channel of each output channel (identity, or option A's strided channel
    selection; a row of zeros = no shortcut), or a projection's integer weights; s_r the quantum of one
    unit of select @ R (an array: one per output channel, signed: a projection's BatchNorm scale in it). extra_bias: real values added before the threshold (conv bias through BN,
    a projection's bias)."""
    a, b = _bn_affine(bn)
    a = a * s_acc
    if extra_bias is not None:
        b = b + extra_bias
    alpha = _float(next_aq.alpha)
    t = alpha * next_aq.midpoints().double().numpy()  # (nlev-1,)
    cout = len(a)
    main_bound = np.abs(src.weight).reshape(cout, -1).sum(axis=1) * in_max
    thr = np.zeros((cout, len(t)), dtype=np.int64)
    res_w = None
    if residual is not None:
        r_tensor, select, s_r, r_stride = residual[:4]
        role = residual[4] if len(residual) > 4 else "residual"
        select = np.asarray(select, dtype=np.int64)
        res_w = np.zeros((cout, select.shape[1], 1, 1), dtype=np.int64)
    for c in range(cout):
        s_c = (s_r[c] if np.ndim(s_r) else s_r) if residual is not None else 0
        has_res = residual is not None and bool(select[c].any()) and s_c != 0
        if abs(a[c]) < 1e-30:  # BN scale 0: the output does not depend on the conv
            src.codes[c] = 0
            if not has_res:
                thr[c] = np.where(b[c] >= t, -BIG, BIG)
            else:
                res_w[c, :, 0, 0] = select[c] * (1 if s_c > 0 else -1)
                thr[c] = np.clip(np.ceil((t - b[c]) / abs(s_c)), -BIG, BIG).astype(np.int64)
            continue
        src.ch_sign[c] = 1 if a[c] > 0 else -1
        f = 0
        if has_res:
            f, k = residual_fk(a[c], s_c, int(main_bound[c]))
            res_w[c, :, 0, 0] = select[c] * k
        src.ch_shift[c] = f
        thr[c] = np.clip(np.ceil((t - b[c]) * 2**f / abs(a[c])), -BIG, BIG).astype(np.int64)
    sources = [src]
    if residual is not None:
        sources.append(Source(r_tensor, res_w, r_stride, 0, "int", w_bits=residual[5] if role != "residual" else 0,
                              role=role))
    return sources, thr


Residual = tuple  # (tensor, select, s_r, stride) or (tensor, weights, s_p, stride, "projection", w_bits)


def _code_tensor(name: str, shape: tuple[int, int, int], aq) -> TensorSpec:
    """A tensor of APoT activation codes of quantizer aq (the consumer's quantizer)."""
    return TensorSpec(name, shape, int(aq.levels_int()[-1]), _float(aq.alpha) / aq.denominator, bits=aq.bits)


def _conv_bias(conv, bn) -> np.ndarray | None:
    """A conv's own bias seen after its BatchNorm (A * c), or None without one."""
    if conv.bias is None:
        return None
    return _bn_affine(bn)[0] * conv.bias.detach().cpu().double().numpy()


def _projection(proj, src_t: str, tensors: dict, bn=None) -> tuple[Residual, np.ndarray]:
    """A 1x1 projection shortcut (QConv2d, then optionally a BatchNorm bn) of tensor src_t -> (residual,
    its bias). With bn = A*y + B: the quantum A*s_p per output channel (signed), the bias A*b_p + B."""
    w_int, _ = proj.wq.int_weight(proj.weight, proj.filter_mask, proj.in_mask)
    w_scale = float(proj.weight_quantum())  # alpha / D, times the weights' std (denorm)
    if proj.kernel_size != (1, 1) or proj.padding != (0, 0):
        raise ValueError("a projection shortcut must be a 1x1 conv without padding")
    res = (src_t, w_int.numpy().astype(np.int64)[:, :, 0, 0], w_scale * tensors[src_t].scale, proj.stride[0],
           "projection", proj.w_bits)
    bias = proj.bias.detach().cpu().double().numpy() if proj.bias is not None else np.zeros(proj.out_channels)
    if bn is not None:
        a_p, b_p = _bn_affine(bn)
        res = res[:2] + (res[2] * a_p,) + res[3:]
        bias = a_p * bias + b_p
    return res, bias


def _conv_op(name: str, conv, bn, src_t: str, out_t: str, next_aq, tensors: dict,
             residual: Residual | None = None, extra_bias: np.ndarray | None = None) -> Op:
    """conv + BN (+ shortcut) + ReLU + next_aq -> one thresh op; declares the output tensor."""
    src, w_scale = _levels_source(conv, src_t, conv.stride[0], conv.padding[0])
    spec = tensors[src_t]
    stride, k, pad = conv.stride[0], conv.kernel_size[0], conv.padding[0]
    ho, wo = (spec.shape[1] + 2 * pad - k) // stride + 1, (spec.shape[2] + 2 * pad - k) // stride + 1
    tensors[out_t] = _code_tensor(out_t, (conv.out_channels, ho, wo), next_aq)
    cb = _conv_bias(conv, bn)
    if cb is not None:
        extra_bias = cb if extra_bias is None else extra_bias + cb
    sources, thr = _fold_thresholds(src, w_scale * spec.scale, bn, next_aq, residual, spec.max_value, extra_bias)
    lv = np.asarray(next_aq.levels_int(), dtype=np.int64)
    return Op(name, "conv", out_t, sources, np.zeros(conv.out_channels, np.int64), "thresh", thr, lv)


def _linear_op(name: str, fc, bn, src_t: str, out_t: str, next_aq, tensors: dict) -> Op:
    """A hidden linear layer + BatchNorm1d + ReLU + next_aq on a 1x1 map: the conv rule with a 1x1 kernel
    (its bias through the BN joins b, the BN folds into the thresholds); kind "fc"."""
    if tensors[src_t].shape[1:] != (1, 1):
        raise ValueError(f"a hidden linear layer expects a 1x1 map, not {tensors[src_t].shape}")
    src, w_scale = _levels_source(fc, src_t, 1, 0)
    spec = tensors[src_t]
    tensors[out_t] = _code_tensor(out_t, (fc.out_features, 1, 1), next_aq)
    sources, thr = _fold_thresholds(src, w_scale * spec.scale, bn, next_aq, None, spec.max_value,
                                    _conv_bias(fc, bn))
    lv = np.asarray(next_aq.levels_int(), dtype=np.int64)
    return Op(name, "fc", out_t, sources, np.zeros(fc.out_features, np.int64), "thresh", thr, lv)


def _eye(c: int, k: int) -> np.ndarray:
    w = np.zeros((c, c, k, k), dtype=np.int64)
    w[np.arange(c), np.arange(c)] = 1
    return w


def _avg_pool_op(src_t: str, out_t: str, tensors: dict) -> Op:
    """Global average pooling over 2**k pixels: sum >> (k - 2), the fc's 2-fractional-bit format."""
    c, h, w = tensors[src_t].shape
    npix = h * w
    if npix & (npix - 1) or npix < 4:
        raise ValueError(f"global average pooling needs 2^k >= 4 pixels, not {npix}")
    shift = npix.bit_length() - 1 - 2
    spec = tensors[src_t]
    tensors[out_t] = TensorSpec(out_t, (c, 1, 1), (spec.max_value * npix) >> shift, spec.scale / 4, bits=8)
    return Op("pool", "pool", out_t, [Source(src_t, _eye(c, h), h, 0, "int", w_bits=0, role="pool")],
              np.zeros(c, np.int64), "shift", shift=shift)


def _stream_codes_op(name: str, src_t: str, out_t: str, aq, tensors: dict) -> Op:
    """The codes of quantizer aq (conv_a's) of the residual stream's uniform codes q in tensor src_t: a 1x1
    depthwise thresh op (identity weights, role pool: no MAC counted), code j+1 reached at q >= ceil(mid_j * D)
    with D = 2**N - 1 and mid_j = (l_j + l_{j+1}) / (2 * aq's D), in rationals; declares out_t. The fake-quant
    model compares the float32 value (alpha * q / D) / alpha with mid_j: that is the rational comparison when
    no q / D lies within 2**-20 of a decision point (true of the A4 set for every N <= 8), which is checked."""
    spec = tensors[src_t]
    d_stream, levels, d_aq = spec.max_value, aq.levels_int(), aq.denominator
    mids = [Fraction(a + b, 2 * d_aq) for a, b in pairwise(levels)]
    thr = [math.ceil(m * d_stream) for m in mids]
    near = min(min(abs(Fraction(t, d_stream) - m), abs(Fraction(t - 1, d_stream) - m)) for t, m in zip(thr, mids))
    if near <= Fraction(1, 1 << 20):
        raise ValueError(f"{name}: a {d_stream + 1}-level stream code lies within 2**-20 of a decision point of "
                         f"{src_t}'s consumer; its codes would depend on float rounding")
    c = spec.shape[0]
    tensors[out_t] = _code_tensor(out_t, spec.shape, aq)
    return Op(name, "pool", out_t, [Source(src_t, _eye(c, 1), 1, 0, "int", w_bits=0, role="pool")],
              np.zeros(c, np.int64), "thresh", np.tile(np.asarray(thr, np.int64), (c, 1)),
              np.asarray(levels, dtype=np.int64))


def _max_pool_op(name: str, src_t: str, out_t: str, tensors: dict) -> Op:
    """2x2 / stride 2 max pooling of codes (reduce=max over identity depthwise weights, shift 0)."""
    spec = tensors[src_t]
    c, h, w = spec.shape
    tensors[out_t] = TensorSpec(out_t, (c, h // 2, w // 2), spec.max_value, spec.scale, bits=spec.bits)
    return Op(name, "pool", out_t, [Source(src_t, _eye(c, 2), 2, 0, "int", w_bits=0, role="pool")],
              np.zeros(c, np.int64), "shift", shift=0, reduce="max")


def _fc_op(fc, src_t: str, tensors: dict) -> Op:
    """fc raw: acc = 2**f * sum(W*u) + round(2**f * bias / S); declares "logits"."""
    fsrc, w_scale = _levels_source(fc, src_t, 1, 0)
    s_fc = w_scale * tensors[src_t].scale
    wsum = int(np.abs(fsrc.weight).sum(axis=(1, 2, 3)).max()) * tensors[src_t].max_value
    f = max(0, min(4, ACC_TARGET_BITS - wsum.bit_length()))
    fsrc.ch_shift[:] = f
    bias = np.round(fc.bias.detach().double().numpy() * 2**f / s_fc).astype(np.int64)
    bound = int(np.abs(fsrc.weight).sum(axis=(1, 2, 3)).max()) * tensors[src_t].max_value + int(np.abs(bias).max())
    tensors["logits"] = TensorSpec("logits", (fc.out_features, 1, 1), bound, s_fc / 2**f, signed=True, bits=32)
    return Op("fc", "fc", "logits", [fsrc], bias, "raw")


def _fp32_shapes(model, layers: dict) -> dict:
    """{op: [Cout, Cin, k, k]} of the unpruned model (slice_pruned records them as unpruned_shapes)."""
    names = {id(mod): n for n, mod in model.named_modules()}
    ref = getattr(model, "unpruned_shapes", {})
    out = {}
    for op, layer in layers.items():
        shape = list(ref.get(names.get(id(layer)), list(layer.weight.shape)))
        out[op] = shape + [1, 1] if len(shape) == 2 else shape
    return out


STREAM_MAX_BITS = 8  # an N-bit residual stream lowers for a_bits < N <= this (its op has 2**N - 1 thresholds)


def integer_contract_refusal(model) -> str | None:
    """Why ``model`` has no integer network (one line), or None: a CIFAR ResNet trained with a float residual
    stream (``residual_bits`` 0, sw/models/resnet.py) or one wider than STREAM_MAX_BITS."""
    bits = getattr(model, "residual_bits", None)
    if bits is None or 0 < bits <= STREAM_MAX_BITS:
        return None
    if bits == 0:
        return ("residual_bits=0 (a float residual stream) is a training experiment; the integer model stores the "
                "stream in integer codes (the model cannot be lowered or exported)")
    return (f"residual_bits={bits}: the integer model stores a residual stream of at most {STREAM_MAX_BITS} bits "
            "(the model cannot be lowered or exported)")


def lower(model, input_shape: tuple[int, int, int] | None = None) -> IntNet:
    """A quantized model (masked or sliced) -> IntNet: slices pruned channels (a model with prune groups),
    then lowers its traced graph (sw/graph_lower.py), the zoo's models and every other one alike.
    input_shape (C, H, W): the zoo's models default to their data set's; any other model needs it.
    A model outside the integer contract (``integer_contract_refusal``) is a GraphLoweringError."""
    from .graph_lower import GraphLoweringError, lower_graph
    from .prune import slice_pruned

    refusal = integer_contract_refusal(model)
    if refusal:
        raise GraphLoweringError(refusal)
    from .zoo import input_shape_of

    shape = input_shape or input_shape_of(model)
    if shape is None:
        raise ValueError(f"{type(model).__name__} is not a zoo model: lowering its graph needs the input shape")
    sliced = slice_pruned(model) if hasattr(model, "prune_groups") else model  # a copy, or lowered from one
    return lower_graph(sliced.eval(), shape)
