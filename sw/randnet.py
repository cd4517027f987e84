"""Random integer networks within the IntNet contract, for differential testing (golden = ISA = RTL).

``random_net(seed)`` draws a chain with branches: stride-1 and stride-2 convolutions (kernels 1..5,
non-square tensors), 2x2 max pooling (reduce="max"), global average pooling (shift mode), fc layers,
residual sources from earlier tensors, levels- and int-encoded weights with random level tables,
channel shifts and signs, thresholds anywhere around (and outside) the accumulator range, shifts,
and a raw (logits) or requantized output. Every tensor's max_value is the exact bound its op can
reach, as the contract asks. ``random_config(net, seed)`` draws an accelerator that holds it:
lanes 2..64, terms 1..4, accumulator just wide enough or wider, memories fitted or larger.
Numpy only.
"""

from __future__ import annotations

import random

import numpy as np

from .intnet import IntNet, Op, Source, TensorSpec

MAX_VALUES = (1, 3, 7, 15, 16, 48, 100, 255)


def _levels(rng: random.Random, n: int) -> np.ndarray:
    out = [0]
    for _ in range(n - 1):
        out.append(out[-1] + rng.choice((1, 1, 2, 3, 4, 8)))
    return np.asarray(out, dtype=np.int64)


def _weights(rng: random.Random, shape: tuple, density: float, top: int, nonneg: bool = False) -> np.ndarray:
    n = int(np.prod(shape))
    vals = [0 if rng.random() > density else rng.randint(1, top) * (1 if nonneg or rng.random() < 0.6 else -1)
            for _ in range(n)]
    return np.asarray(vals, dtype=np.int64).reshape(shape)


def _source(rng: random.Random, tensor: str, cout: int, cin: int, k: int, stride: int, pad: int,
            role: str = "main", nonneg: bool = False, pow2: bool = False) -> Source:
    density = rng.choice((0.0, 0.3, 0.6, 1.0)) if rng.random() < 0.15 else rng.uniform(0.2, 0.9)
    shape = (cout, cin, k, k)
    if pow2:  # max reductions: every weight one power-of-two term
        w = _weights(rng, shape, density, 1, nonneg) << np.asarray(
            [rng.randint(0, 3) for _ in range(int(np.prod(shape)))], dtype=np.int64).reshape(shape)
        return Source(tensor, w, stride, pad, "int", w_bits=0, role=role)
    if role == "main" and rng.random() < 0.6:
        nlev = rng.choice((2, 3, 5, 8, 16))
        levels = _levels(rng, nlev)
        codes = _weights(rng, shape, density, nlev - 1, nonneg)
        ch_shift = np.asarray([rng.choice((0, 0, 1, 2, 3)) for _ in range(cout)], dtype=np.int64)
        ch_sign = np.asarray([1 if nonneg or rng.random() < 0.7 else -1 for _ in range(cout)], dtype=np.int64)
        return Source(tensor, codes, stride, pad, "levels", levels, ch_shift, ch_sign, w_bits=4, role=role)
    top = rng.choice((1, 3, 15, 100, 600))
    return Source(tensor, _weights(rng, shape, density, top, nonneg), stride, pad, "int",
                  w_bits=top.bit_length() + 1, role=role)


def _requant(rng: random.Random, net: IntNet, op: Op, last: bool) -> TensorSpec:
    """Choose op's mode, shift, thresholds and levels; return its output's TensorSpec (exact max_value)."""
    cout, ho, wo = net.tensors[op.out].shape
    lo_c, hi_c = net._channel_ranges(op)
    low = min(net.result_low(op))
    modes = ["thresh", "thresh"] + (["shift"] if low >= 0 else []) + (["raw"] if last else [])
    op.mode = rng.choice(modes)
    if op.mode == "raw":
        bound = max(abs(min(lo_c)), abs(max(hi_c)), 1)
        return TensorSpec(op.out, (cout, ho, wo), bound, signed=True, bits=32)
    if op.mode == "shift":
        hi = max(hi_c)
        op.shift = rng.randint(0, 4)
        while (hi >> op.shift) > 65535:
            op.shift += 1
        return TensorSpec(op.out, (cout, ho, wo), max(hi >> op.shift, 0), bits=16)
    nlev = rng.choice((1, 2, 4, 8, 16))
    op.levels_out = _levels(rng, nlev)
    while op.levels_out[-1] > 255:
        op.levels_out = _levels(rng, nlev)
    rows = []
    for c in range(cout):
        a, b = lo_c[c] - 2, hi_c[c] + 2
        if rng.random() < 0.1:
            a, b = a - 1000, b + 1000  # thresholds beyond the range: clamped by the compiler
        rows.append(sorted(rng.randint(a, b) for _ in range(nlev - 1)))
    op.thresholds = np.asarray(rows, dtype=np.int64).reshape(cout, nlev - 1)
    return TensorSpec(op.out, (cout, ho, wo), int(op.levels_out[-1]) + rng.choice((0, 0, 0, 1, 5)), bits=8)


def random_net(seed: int, max_ops: int = 6, max_ch: int = 5, max_hw: int = 8) -> IntNet:
    rng = random.Random(seed)
    sizes = [s for s in (1, 2, 4, 8, 16) if s <= max_hw]
    c, h, w = rng.randint(1, 3), rng.choice(sizes), rng.choice(sizes)
    net = IntNet({"x": TensorSpec("x", (c, h, w), rng.choice(MAX_VALUES), bits=8)}, [], "x", "x")
    reads: dict[str, int] = {}  # tensor -> the stride it is read with (1 or 2) where the output is > 1 pixel
    n_ops = rng.randint(1, max_ops)
    for i in range(n_ops):
        last = i == n_ops - 1
        cands = [t for t in net.tensors if not net.tensors[t].signed]
        src = cands[-1] if rng.random() < 0.6 else rng.choice(cands)
        cin, h, w = net.tensors[src].shape
        kinds = ["conv1", "conv1"] if reads.get(src, 1) == 1 or h * w == 1 else []
        if h >= 2 and w >= 2 and reads.get(src, 2) == 2:
            kinds += ["conv2", "maxpool"]
        if h == w or not kinds:
            kinds += ["global"] if h == w else ["conv2"]
        kind = rng.choice(kinds)
        name, out = f"op{i}", f"t{i}"
        reduce, nonneg, pow2, role = "sum", False, False, "main"
        if kind == "conv1":
            k = rng.choice((1, 3, 3, 5))
            stride, pad, ho, wo, cout = 1, k // 2, h, w, rng.randint(1, max_ch)
        elif kind == "conv2":
            k, pad = rng.choice(((1, 0), (2, 0), (3, 1), (3, 1), (4, 1), (5, 2)))
            stride, ho, wo, cout = 2, h // 2, w // 2, rng.randint(1, max_ch)
        elif kind == "maxpool":
            k, pad = rng.choice(((2, 0), (2, 0), (3, 1)))
            stride, ho, wo, cout = 2, h // 2, w // 2, rng.randint(1, max_ch)
            reduce, pow2, role, nonneg = "max", True, "pool", rng.random() < 0.7
        else:  # global window: average pooling (a sum, shifted) or an fc layer
            k, pad, stride, ho, wo = h, 0, rng.choice((1, h)), 1, 1
            cout = rng.randint(1, max_ch)
            if rng.random() < 0.4:
                role, nonneg = "pool", True
                if rng.random() < 0.3:
                    reduce, pow2 = "max", True
        if ho * wo > 1:
            reads[src] = stride
        net.tensors[out] = TensorSpec(out, (cout, ho, wo), 1)
        sources = [_source(rng, src, cout, cin, k, stride, pad, role, nonneg, pow2)]
        if reduce == "sum" and rng.random() < 0.35:  # a residual source from another tensor
            others = [t for t in cands if t != src]
            rng.shuffle(others)
            for t in others:
                rc, rh, rw = net.tensors[t].shape
                if (rh, rw) == (ho, wo) and (ho * wo == 1 or reads.get(t, 1) == 1):
                    r_k, r_s = 1, 1
                elif (rh, rw) == (2 * ho, 2 * wo) and reads.get(t, 2) == 2:
                    r_k, r_s = 1, 2
                else:
                    continue
                if ho * wo > 1:
                    reads[t] = r_s
                sources.append(_source(rng, t, cout, rc, r_k, r_s, 0, "residual", nonneg))
                break
        scale = max(1, max(net.tensors[s.tensor].max_value for s in sources))
        bias_top = rng.choice((0, 3, 50, 1000)) * scale
        bias = np.asarray([rng.randint(0 if nonneg else -bias_top, bias_top) for _ in range(cout)], dtype=np.int64)
        op = Op(name, "pool" if role == "pool" else ("fc" if kind == "global" else "conv"), out, sources, bias,
                "raw", reduce=reduce)
        net.ops.append(op)
        net.tensors[out] = _requant(rng, net, op, last)
        net.output = out
    return net.validate()
