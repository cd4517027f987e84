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
REDUCES = ("sum", "max")
# residual: the shortcut add; pool: a pooling window (neither is MACs); projection: a 1x1 projection shortcut
ROLES = ("main", "residual", "pool", "projection")
MAC_ROLES = ("main", "projection")  # sources whose products are MACs and whose weights are model size
ENCODINGS = ("levels", "int")
# Bounds of the contract (docs/format.md): integer weights stay below 2**31 (levels < 2**16 shifted by
# at most 15, int weights of at most 32 bits), so int64 sums of a network within the element limits
# cannot wrap, and every accumulator stays within +/-(2**53 - 1), where int64 and float64 are both exact.
ACC_LIMIT = 1 << 53
LIMITS = {"max_value": 1 << 31, "level": 1 << 16, "ch_shift": 15, "int_code": 1 << 31, "shift": 63,
          "stride": 1 << 16, "tensor_elements": 1 << 22, "weights": 1 << 24}


def fp32_key(op: Op, s: Source) -> str:
    """The key of a source's unpruned shape in meta["fp32_shapes"]: the op's name, or "<op>.<role>"."""
    return op.name if s.role == "main" else f"{op.name}.{s.role}"


class IntNetError(ValueError):
    """An integer network that breaks the contract above."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _in_range(a, lo: int, hi: int, what: str) -> None:
    a = np.asarray(a)
    if a.size and (a.dtype.kind not in "iu" or int(a.min()) < lo or int(a.max()) > hi):
        raise IntNetError(f"{what} must be integers {lo}..{hi}")


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
        """Check the contract (module doc and LIMITS); raise IntNetError naming the first thing wrong."""
        t_in = self.tensors.get(self.input) if isinstance(self.input, str) else None
        if t_in is None:
            raise IntNetError(f"input tensor {self.input!r} is not declared")
        if t_in.signed:
            raise IntNetError(f"input tensor {self.input!r} is signed; inputs are integers 0..max_value")
        elements = 0
        for name, t in self.tensors.items():
            if name != t.name:
                raise IntNetError(f"tensor {name!r} is declared under the name {t.name!r}")
            if len(t.shape) != 3 or any(not _is_int(v) or v <= 0 for v in t.shape):
                raise IntNetError(f"tensor {name!r} has a bad shape {tuple(t.shape)} (three positive integers)")
            if not _is_int(t.max_value) or not 0 <= t.max_value < LIMITS["max_value"]:
                raise IntNetError(f"tensor {name!r}: max_value must be an integer 0..2**31-1")
            elements += t.shape[0] * t.shape[1] * t.shape[2]
        if elements > LIMITS["tensor_elements"]:
            raise IntNetError(f"tensors hold {elements} elements in all; the limit is {LIMITS['tensor_elements']}")
        known, names, raw = {self.input}, set(), set()
        weights = 0
        for op in self.ops:
            if not isinstance(op.name, str) or op.name in names:
                raise IntNetError(f"op name {op.name!r} is not a unique string")
            names.add(op.name)
            if op.kind not in OP_KINDS:
                raise IntNetError(f"op {op.name}: unknown kind {op.kind!r}")
            if op.reduce not in REDUCES:
                raise IntNetError(f"op {op.name}: unknown reduction {op.reduce!r}")
            if op.mode not in MODES:
                raise IntNetError(f"op {op.name}: unknown mode {op.mode!r}")
            if op.out not in self.tensors:
                raise IntNetError(f"op {op.name}: output tensor {op.out!r} is not declared")
            if op.out in known:
                raise IntNetError(f"op {op.name}: tensor {op.out!r} is already written (by the input or an earlier op)")
            out = self.tensors[op.out]
            cout, ho, wo = out.shape
            if np.asarray(op.bias).shape != (cout,):
                raise IntNetError(f"op {op.name}: bias shape {np.asarray(op.bias).shape} != ({cout},)")
            _in_range(op.bias, -ACC_LIMIT + 1, ACC_LIMIT - 1, f"op {op.name}: bias")
            if not op.sources:
                raise IntNetError(f"op {op.name}: no sources")
            for s in op.sources:
                self._check_source(op, s, cout, ho, wo, known, raw)
                weights += int(np.prod(s.codes.shape))
            if weights > LIMITS["weights"]:
                raise IntNetError(f"weights hold {weights} elements in all (zeros included); the limit is "
                                  f"{LIMITS['weights']}")
            self._check_requant(op, out, cout)
            known.add(op.out)
            if op.mode == "raw":
                raw.add(op.out)
        if self.output not in known or self.output == self.input:
            raise IntNetError(f"output tensor {self.output!r} is never computed")
        unused = sorted(set(self.tensors) - known)
        if unused:
            raise IntNetError(f"tensor {unused[0]!r} is declared but neither the input nor computed by an op")
        return self

    def _check_source(self, op: Op, s: Source, cout: int, ho: int, wo: int, known: set, raw: set) -> None:
        where = f"op {op.name}: source {s.tensor!r}"
        if s.tensor not in known:
            raise IntNetError(f"op {op.name}: source {s.tensor!r} is not computed before it")
        if s.tensor in raw:
            raise IntNetError(f"{where} is a raw-mode (signed) output; ops read only unsigned tensors")
        if s.role not in ROLES:
            raise IntNetError(f"{where}: unknown role {s.role!r}")
        if not _is_int(s.stride) or not 1 <= s.stride <= LIMITS["stride"]:
            raise IntNetError(f"{where}: stride must be 1..{LIMITS['stride']}, not {s.stride!r}")
        codes = np.asarray(s.codes)
        if codes.ndim != 4 or codes.dtype.kind not in "iu":
            raise IntNetError(f"{where}: weights must be a 4-d integer array")
        cin, h, w = self.tensors[s.tensor].shape
        k = int(codes.shape[2])
        if codes.shape != (cout, cin, k, k) or k < 1:
            raise IntNetError(f"op {op.name}: weights {codes.shape} do not match "
                              f"({cout}, {cin}, {k}, {k}) from tensors {s.tensor}->{op.out}")
        if not _is_int(s.pad) or not 0 <= s.pad < k:
            raise IntNetError(f"{where}: padding must be 0..{k - 1} (kernel {k}), not {s.pad!r}")
        eh, ew = (h + 2 * s.pad - k) // s.stride + 1, (w + 2 * s.pad - k) // s.stride + 1
        if (eh, ew) != (ho, wo):
            raise IntNetError(f"op {op.name}: source {s.tensor} gives {eh}x{ew} pixels, output is {ho}x{wo}")
        if not _is_int(s.w_bits) or not 0 <= s.w_bits <= 64:
            raise IntNetError(f"{where}: w_bits must be 0..64")
        if s.encoding == "levels":
            if s.levels is None or s.ch_shift is None or s.ch_sign is None:
                raise IntNetError(f"op {op.name}: levels encoding needs levels, ch_shift, ch_sign")
            lv = np.asarray(s.levels)
            if lv.ndim != 1 or len(lv) < 2 or lv[0] != 0 or np.any(np.diff(lv) <= 0):
                raise IntNetError(f"{where}: levels must start at 0 and increase strictly")
            _in_range(lv, 0, LIMITS["level"] - 1, f"{where}: levels")
            for key, arr in (("ch_shift", s.ch_shift), ("ch_sign", s.ch_sign)):
                if np.asarray(arr).shape != (cout,):
                    raise IntNetError(f"{where}: {key} has shape {np.asarray(arr).shape}, not ({cout},)")
            _in_range(s.ch_shift, 0, LIMITS["ch_shift"], f"{where}: ch_shift")
            if not np.all(np.isin(s.ch_sign, (-1, 1))):
                raise IntNetError(f"{where}: ch_sign must be -1 or +1")
            if np.abs(codes).max(initial=0) >= len(lv):
                raise IntNetError(f"op {op.name}: a weight code is outside its level table")
        elif s.encoding == "int":
            if s.levels is not None or s.ch_shift is not None or s.ch_sign is not None:
                raise IntNetError(f"{where}: int encoding has no levels, ch_shift or ch_sign")
            _in_range(codes, -LIMITS["int_code"], LIMITS["int_code"] - 1, f"{where}: int weights")
        else:
            raise IntNetError(f"op {op.name}: unknown weight encoding {s.encoding!r}")

    def _check_requant(self, op: Op, out: TensorSpec, cout: int) -> None:
        lo, hi = self.acc_range(op)
        if lo <= -ACC_LIMIT or hi >= ACC_LIMIT:
            raise IntNetError(f"op {op.name}: the accumulator can reach {hi if hi >= ACC_LIMIT else lo}; "
                              f"the limit is +/-(2**53-1)")
        if not _is_int(op.shift) or not 0 <= op.shift <= LIMITS["shift"] or (op.shift and op.mode != "shift"):
            raise IntNetError(f"op {op.name}: shift must be 0..{LIMITS['shift']} (and 0 unless mode is shift)")
        if op.mode != "thresh" and (op.thresholds is not None or op.levels_out is not None):
            raise IntNetError(f"op {op.name}: thresholds and levels_out belong to thresh mode only")
        if op.mode == "thresh":
            if op.thresholds is None or op.levels_out is None:
                raise IntNetError(f"op {op.name}: thresh mode needs thresholds and levels_out")
            lv = np.asarray(op.levels_out)
            if lv.ndim != 1 or len(lv) < 1 or lv[0] != 0 or np.any(np.diff(lv) <= 0):
                raise IntNetError(f"op {op.name}: levels_out must start at 0 and increase strictly")
            if lv[-1] > out.max_value:
                raise IntNetError(f"op {op.name}: output level {lv[-1]} exceeds {op.out}'s max_value {out.max_value}")
            if np.asarray(op.thresholds).shape != (cout, len(lv) - 1):
                raise IntNetError(f"op {op.name}: thresholds shape {np.asarray(op.thresholds).shape} != "
                                  f"({cout}, {len(lv) - 1})")
            _in_range(op.thresholds, -ACC_LIMIT + 1, ACC_LIMIT - 1, f"op {op.name}: thresholds")
            if np.any(np.diff(op.thresholds, axis=1) < 0):
                raise IntNetError(f"op {op.name}: thresholds are not non-decreasing")
        elif op.mode == "shift":
            low = min(self.result_low(op))
            if low < 0 or (hi >> op.shift) > out.max_value:
                raise IntNetError(f"op {op.name}: shifted sums span {low >> op.shift}..{hi >> op.shift}, outside "
                                  f"{op.out}'s 0..{out.max_value}")

    def op_producing(self, tensor: str) -> Op:
        for op in self.ops:
            if op.out == tensor:
                return op
        raise KeyError(tensor)

    def acc_bound(self, op: Op) -> int:
        """Worst-case |accumulator| of an op over all inputs (partial sums included): from acc_range."""
        lo, hi = self.acc_range(op)
        return max(-lo, hi, 0)

    def _channel_ranges(self, op: Op) -> tuple[list[int], list[int]]:
        """Per output channel, (lowest, highest) value the accumulator or, for reduce="max", any term takes,
        over all inputs 0..max_value of the source tensors (sums in any order: partial sums included)."""
        bias = [int(b) for b in np.asarray(op.bias).reshape(-1)]
        lo, hi = list(bias), list(bias)
        for s in op.sources:
            w = s.weight.reshape(s.codes.shape[0], -1)
            m = int(self.tensors[s.tensor].max_value)
            if op.reduce == "max":  # a term w * x, x in 0..m (padding gives 0 terms too)
                neg = np.minimum(w.min(axis=1, initial=0), 0).tolist()
                pos = np.maximum(w.max(axis=1, initial=0), 0).tolist()
                lo = [min(a, n * m) for a, n in zip(lo, neg)]
                hi = [max(a, p * m) for a, p in zip(hi, pos)]
            else:
                neg = np.where(w < 0, w, 0).sum(axis=1).tolist()
                pos = np.where(w > 0, w, 0).sum(axis=1).tolist()
                lo = [a + n * m for a, n in zip(lo, neg)]
                hi = [a + p * m for a, p in zip(hi, pos)]
        return lo, hi

    def acc_range(self, op: Op) -> tuple[int, int]:
        """(lowest, highest) value an op's accumulator (or a max-reduced term) takes over all inputs:
        bias plus the negative and the positive weights times the source's max_value. Exact Python ints."""
        lo, hi = self._channel_ranges(op)
        return min(lo, default=0), max(hi, default=0)

    def result_low(self, op: Op) -> list[int]:
        """Per channel, the lowest final accumulator (a max reduction never ends below its bias)."""
        if op.reduce == "max":
            return [int(b) for b in np.asarray(op.bias).reshape(-1)]
        return self._channel_ranges(op)[0]


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
        counted = set()  # an op reading a concatenation has one main source per branch, one FP32 shape
        for s in op.sources:
            if s.role not in MAC_ROLES:
                continue
            n = int(np.prod(s.codes.shape))
            key = fp32_key(op, s)
            n_fp = n if key not in ref else 0 if key in counted else int(np.prod(ref[key]))
            counted.add(key)
            layers.append({"weights": n, "weights_fp32": n_fp, "macs": n * ho * wo, "macs_fp32": n_fp * ho * wo,
                           "w_bits": s.w_bits, "a_bits": net.tensors[s.tensor].bits})
    return count_totals(layers)
