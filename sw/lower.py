"""Lowering a trained fake-quant model to the integer network (the golden model's definition).

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
* fc: acc = 2**f * sum(W*u) + round(2**f * bias / S); logits = acc * S / 2**f (argmax is what matters).
"""

from __future__ import annotations

import math

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
    g, beta = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    mu, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
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


def _fold_thresholds(src: Source, s_acc: float, bn, next_aq, residual: tuple[str, int, float] | None,
                     in_max: int) -> tuple[list[Source], np.ndarray]:
    """Fill src.ch_sign/ch_shift, build the optional residual source; return (sources, thresholds)."""
    a, b = _bn_affine(bn)
    a = a * s_acc
    alpha = _float(next_aq.alpha)
    mids = next_aq.midpoints().double().numpy() if hasattr(next_aq.midpoints(), "numpy") else np.asarray(next_aq.midpoints())
    t = alpha * mids  # (nlev-1,)
    cout = len(a)
    main_bound = np.abs(src.weight).reshape(cout, -1).sum(axis=1) * in_max
    thr = np.zeros((cout, len(t)), dtype=np.int64)
    res_w = None
    if residual is not None:
        r_tensor, r_ch, s_r = residual
        res_w = np.zeros((cout, r_ch, 1, 1), dtype=np.int64)
    for c in range(cout):
        if abs(a[c]) < 1e-30:  # BN scale 0: the output does not depend on the conv
            src.codes[c] = 0
            if residual is None:
                thr[c] = np.where(b[c] >= t, -BIG, BIG)
            else:
                res_w[c, c, 0, 0] = 1
                thr[c] = np.clip(np.ceil((t - b[c]) / s_r), -BIG, BIG).astype(np.int64)
            continue
        src.ch_sign[c] = 1 if a[c] > 0 else -1
        f = 0
        if residual is not None:
            ratio = s_r / abs(a[c])
            want = max(0, math.ceil(math.log2(128 / ratio))) if ratio > 0 else 0
            room = ACC_TARGET_BITS - max(1, int(main_bound[c]).bit_length())
            f = max(0, min(want, room, 8))
            res_w[c, c, 0, 0] = nearest_few_digits(ratio * 2**f)
        src.ch_shift[c] = f
        thr[c] = np.clip(np.ceil((t - b[c]) * 2**f / abs(a[c])), -BIG, BIG).astype(np.int64)
    sources = [src]
    if residual is not None:
        sources.append(Source(residual[0], res_w, 1, 0, "int", w_bits=0, role="residual"))
    return sources, thr


def lower_digits(model) -> IntNet:
    """DigitsNet (sliced or masked, eval mode) -> IntNet. Tensors: x, h1, h2, h3, h4, u, logits."""
    m = model.eval()
    aq2, aq3, aq4, aqp = m.conv2.aq, m.conv3.aq, m.conv4.aq, m.qpool
    lv = np.asarray(aq2.levels_int(), dtype=np.int64)
    D = aq2.denominator
    c1, _, h, w = m.conv1.out_channels, 1, 8, 8
    c2, c4 = m.conv2.out_channels, m.conv4.out_channels
    s = {n: _float(q.alpha) / q.denominator for n, q in (("h1", aq2), ("h2", aq3), ("h3", aq4), ("h4", aqp))}
    tensors = {
        "x": TensorSpec("x", (1, h, w), 16, 1 / 16, bits=5),
        "h1": TensorSpec("h1", (c1, h, w), int(lv[-1]), s["h1"], bits=4),
        "h2": TensorSpec("h2", (c2, h, w), int(lv[-1]), s["h2"], bits=4),
        "h3": TensorSpec("h3", (c1, h, w), int(lv[-1]), s["h3"], bits=4),
        "h4": TensorSpec("h4", (c4, h // 2, w // 2), int(lv[-1]), s["h4"], bits=4),
    }
    npix = (h // 2) * (w // 2)
    pool_shift = npix.bit_length() - 1 - 2
    tensors["u"] = TensorSpec("u", (c4, 1, 1), (int(lv[-1]) * npix) >> pool_shift, s["h4"] / 4, bits=8)
    ops = []
    specs = [("conv1", m.conv1, m.bn1, "x", "h1", aq2, 1, None),
             ("conv2", m.conv2, m.bn2, "h1", "h2", aq3, 1, None),
             ("conv3", m.conv3, m.bn3, "h2", "h3", aq4, 1, ("h1", c1, s["h1"])),
             ("conv4", m.conv4, m.bn4, "h3", "h4", aqp, 2, None)]
    for name, conv, bn, src_t, out_t, nxt, stride, res in specs:
        src, w_scale = _levels_source(conv, src_t, stride, 1)
        in_spec = tensors[src_t]
        sources, thr = _fold_thresholds(src, w_scale * in_spec.scale, bn, nxt, res, in_spec.max_value)
        ops.append(Op(name, "conv", out_t, sources, np.zeros(conv.out_channels, np.int64), "thresh", thr, lv.copy()))
    eye = np.zeros((c4, c4, h // 2, w // 2), dtype=np.int64)
    eye[np.arange(c4), np.arange(c4)] = 1
    ops.append(Op("pool", "pool", "u", [Source("h4", eye, h // 2, 0, "int", w_bits=0, role="pool")],
                  np.zeros(c4, np.int64), "shift", shift=pool_shift))
    fsrc, w_scale = _levels_source(m.fc, "u", 1, 0)
    s_fc = w_scale * tensors["u"].scale
    bound = int(np.abs(fsrc.weight).sum(axis=(1, 2, 3)).max()) * tensors["u"].max_value
    f = max(0, min(4, ACC_TARGET_BITS - bound.bit_length()))
    fsrc.ch_shift[:] = f
    bias = np.round(m.fc.bias.detach().double().numpy() * 2**f / s_fc).astype(np.int64)
    ncls = m.fc.out_features
    logit_bound = int(np.abs(fsrc.weight).sum(axis=(1, 2, 3)).max()) * tensors["u"].max_value + int(np.abs(bias).max())
    tensors["logits"] = TensorSpec("logits", (ncls, 1, 1), logit_bound, s_fc / 2**f, signed=True, bits=32)
    ops.append(Op("fc", "fc", "logits", [fsrc], bias, "raw"))
    meta = {"model": "digits", "widths": [c1, c2, c4], "classes": ncls,
            "input_format": "pixels 0..16 (scale 1/16), 1x8x8"}
    return IntNet(tensors, ops, "x", "logits", meta).validate()
