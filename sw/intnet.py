"""The integer network: what the golden model computes, what the export stores, what the compiler maps.

Numpy only (no torch), so the hardware side can read an export without the training stack.

A network is a list of ops over named integer tensors (C, H, W). Every op has the same shape:

    acc[c, p] = bias[c] + sum over sources s of conv(X_s, W_s, stride_s, pad_s)[c, p]

(or, for ``reduce="max"``, the maximum of bias[c] and of every product W*X the sum would add, zero
padding included: max pooling on the same datapath)

followed by one requantization:

* ``thresh``: out = levels_out[#{j : acc >= thresholds[c, j]}]  (BN + ReLU + next APoT quantizer)
* ``shift``:  out = acc >> shift  (floor; an average over 2**k pixels)
* ``raw``:    out = acc           (logits)

Weights are integers. A source stored with ``levels`` encoding has
``W[c] = ch_sign[c] * sign(code) * levels[|code|] << ch_shift[c]`` (sign-magnitude codes into the
layer's APoT magnitude table); ``int`` encoding stores the integers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OP_KINDS = ("conv", "pool", "fc")
MODES = ("thresh", "shift", "raw")
MAC_ROLES = ("main", "projection")  # sources whose products are MACs and whose weights are model size


def fp32_key(op: Op, s: Source) -> str:
    """The key of a source's unpruned shape in meta["fp32_shapes"]: the op's name, or "<op>.<role>"."""
    return op.name if s.role == "main" else f"{op.name}.{s.role}"


class IntNetError(ValueError):
    """An integer network that breaks the contract above."""


@dataclass
class TensorSpec:
    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    max_value: int  # largest value the tensor can hold (tensors are non-negative, except logits)
    scale: float = 1.0  # real value = scale * integer (informative, not used by the integer math)
    signed: bool = False
    bits: int = 8  # bits of the integer format (BOPs)


@dataclass
class Source:
    tensor: str
    codes: np.ndarray  # int64 (Cout, Cin, k, k): signed codes (levels) or the integers (int)
    stride: int = 1
    pad: int = 0
    encoding: str = "int"  # "levels" | "int"
    levels: np.ndarray | None = None  # magnitude numerators, ascending, levels[0] == 0
    ch_shift: np.ndarray | None = None  # (Cout,) left shift per output channel
    ch_sign: np.ndarray | None = None  # (Cout,) +1 / -1 per output channel
    w_bits: int = 8  # weight bits (sign included) for size and BOPs
    role: str = "main"  # "main" (MACs), "residual" (the shortcut add: not MACs), "pool", or "projection"
    # (a 1x1 projection shortcut folded into the add: MACs and weights, counted as the op's "<op>.projection")

    @property
    def weight(self) -> np.ndarray:
        """Effective integer weights, int64 (Cout, Cin, k, k)."""
        codes = np.asarray(self.codes, dtype=np.int64)
        if self.encoding == "int":
            return codes
        mag = np.asarray(self.levels, dtype=np.int64)[np.abs(codes)]
        w = np.sign(codes) * mag
        shift = np.asarray(self.ch_shift, dtype=np.int64).reshape(-1, 1, 1, 1)
        sign = np.asarray(self.ch_sign, dtype=np.int64).reshape(-1, 1, 1, 1)
        return sign * (w << shift)

    @property
    def kernel(self) -> int:
        return int(self.codes.shape[2])


@dataclass
class Op:
    name: str
    kind: str  # conv | pool | fc
    out: str
    sources: list[Source]
    bias: np.ndarray  # int64 (Cout,)
    mode: str  # thresh | shift | raw
    thresholds: np.ndarray | None = None  # int64 (Cout, nlev-1), non-decreasing along axis 1
    levels_out: np.ndarray | None = None  # int64 (nlev,)
    shift: int = 0
    reduce: str = "sum"  # "sum", or "max": acc = max(bias, max over non-zero weights of W * X) (max pooling)


@dataclass
class IntNet:
    tensors: dict[str, TensorSpec]
    ops: list[Op]
    input: str
    output: str
    meta: dict = field(default_factory=dict)

    def validate(self) -> IntNet:
        """Check the structural contract; raise IntNetError naming what is wrong."""
        if self.input not in self.tensors:
            raise IntNetError(f"input tensor {self.input!r} is not declared")
        known = {self.input}
        for op in self.ops:
            if op.kind not in OP_KINDS:
                raise IntNetError(f"op {op.name}: unknown kind {op.kind!r}")
            if op.reduce not in ("sum", "max"):
                raise IntNetError(f"op {op.name}: unknown reduction {op.reduce!r}")
            if op.mode not in MODES:
                raise IntNetError(f"op {op.name}: unknown mode {op.mode!r}")
            if op.out not in self.tensors:
                raise IntNetError(f"op {op.name}: output tensor {op.out!r} is not declared")
            cout, ho, wo = self.tensors[op.out].shape
            if np.asarray(op.bias).shape != (cout,):
                raise IntNetError(f"op {op.name}: bias shape {np.asarray(op.bias).shape} != ({cout},)")
            if not op.sources:
                raise IntNetError(f"op {op.name}: no sources")
            for s in op.sources:
                if s.tensor not in known:
                    raise IntNetError(f"op {op.name}: source {s.tensor!r} is not computed before it")
                cin, h, w = self.tensors[s.tensor].shape
                k = s.kernel
                if s.codes.shape != (cout, cin, k, k):
                    raise IntNetError(f"op {op.name}: weights {s.codes.shape} do not match "
                                      f"({cout}, {cin}, {k}, {k}) from tensors {s.tensor}->{op.out}")
                eh, ew = (h + 2 * s.pad - k) // s.stride + 1, (w + 2 * s.pad - k) // s.stride + 1
                if (eh, ew) != (ho, wo):
                    raise IntNetError(f"op {op.name}: source {s.tensor} gives {eh}x{ew} pixels, output is {ho}x{wo}")
                if s.encoding == "levels":
                    if s.levels is None or s.ch_shift is None or s.ch_sign is None:
                        raise IntNetError(f"op {op.name}: levels encoding needs levels, ch_shift, ch_sign")
                    if np.abs(s.codes).max(initial=0) >= len(s.levels):
                        raise IntNetError(f"op {op.name}: a weight code is outside its level table")
                elif s.encoding != "int":
                    raise IntNetError(f"op {op.name}: unknown weight encoding {s.encoding!r}")
            if op.mode == "thresh":
                if op.thresholds is None or op.levels_out is None:
                    raise IntNetError(f"op {op.name}: thresh mode needs thresholds and levels_out")
                if op.thresholds.shape != (cout, len(op.levels_out) - 1):
                    raise IntNetError(f"op {op.name}: thresholds shape {op.thresholds.shape} != "
                                      f"({cout}, {len(op.levels_out) - 1})")
                if np.any(np.diff(op.thresholds, axis=1) < 0):
                    raise IntNetError(f"op {op.name}: thresholds are not non-decreasing")
            known.add(op.out)
        if self.output not in known:
            raise IntNetError(f"output tensor {self.output!r} is never computed")
        return self

    def op_producing(self, tensor: str) -> Op:
        for op in self.ops:
            if op.out == tensor:
                return op
        raise KeyError(tensor)

    def acc_bound(self, op: Op) -> int:
        """Worst-case |accumulator| of an op over all inputs (partial sums included)."""
        total = np.abs(np.asarray(op.bias, dtype=np.int64)).astype(object)
        for s in op.sources:
            w = np.abs(s.weight).reshape(s.codes.shape[0], -1).sum(axis=1).astype(object)
            total = total + w * int(self.tensors[s.tensor].max_value)
        return int(max(total)) if len(total) else 0


def macs(net: IntNet) -> dict:
    """MAC counts of the main sources of conv and fc ops (pooling and the residual add are not MACs).

    Rule: MACs = Cout * Cin * k * k * Ho * Wo (zero-padded positions included); ``macs_nonzero`` counts
    only the MACs whose integer weight is non-zero.
    """
    total = nonzero = 0
    per_op = {}
    for op in net.ops:
        if op.kind == "pool":
            continue
        _, ho, wo = net.tensors[op.out].shape
        m = nz = 0
        for s in op.sources:
            if s.role not in MAC_ROLES:
                continue
            m += int(np.prod(s.codes.shape)) * ho * wo
            nz += int(np.count_nonzero(s.codes)) * ho * wo
        per_op[op.name] = {"macs": m, "macs_nonzero": nz}
        total += m
        nonzero += nz
    return {"macs": total, "macs_nonzero": nonzero, "per_op": per_op}


COUNTING_RULES = (
    "size = sum over conv/fc layers of (weights kept after pruning) x (weight bits); BOPs = sum of MACs x "
    "weight bits x input-activation bits (the input tensor's integer width: 5 bits for 0..16 pixels, 4 for "
    "APoT A4 codes, 8 for the pooled fc input). The reference is the unpruned model in FP32 (32-bit weights "
    "and activations). Biases, BatchNorm, pooling and the residual add are not counted."
)


def count_totals(layers: list[dict]) -> dict:
    """Size and BOPs from per-layer counts (keys weights, weights_fp32, macs, macs_fp32, w_bits, a_bits):
    the one place where COUNTING_RULES are applied, for the integer network and the torch model alike."""
    size = sum(r["weights"] * r["w_bits"] for r in layers)
    size_fp = sum(r["weights_fp32"] * 32 for r in layers)
    bops = sum(r["macs"] * r["w_bits"] * r["a_bits"] for r in layers)
    bops_fp = sum(r["macs_fp32"] * 32 * 32 for r in layers)
    return {"model_size_bits": size, "size_fp32_bits": size_fp, "size_reduction": size_fp / size if size else None,
            "bops": bops, "bops_fp32": bops_fp, "bops_reduction": bops_fp / bops if bops else None,
            "counting_rules": COUNTING_RULES}


def size_and_bops(net: IntNet) -> dict:
    """Model size and BOPs of the integer network against its unpruned FP32 original (COUNTING_RULES;
    the FP32 shapes come from ``meta["fp32_shapes"]``, {op: [Cout, Cin, k, k]})."""
    ref = net.meta.get("fp32_shapes", {})
    layers = []
    for op in net.ops:
        if op.kind == "pool":
            continue
        _, ho, wo = net.tensors[op.out].shape
        for s in op.sources:
            if s.role not in MAC_ROLES:
                continue
            n = int(np.prod(s.codes.shape))
            n_fp = int(np.prod(ref.get(fp32_key(op, s), list(s.codes.shape))))
            layers.append({"weights": n, "weights_fp32": n_fp, "macs": n * ho * wo, "macs_fp32": n_fp * ho * wo,
                           "w_bits": s.w_bits, "a_bits": net.tensors[s.tensor].bits})
    return count_totals(layers)
