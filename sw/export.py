"""The packed model format (docs/format.md): writer and validating reader. Numpy only.

Layout of a ``.apot`` file::

    0   8 bytes  magic b"APOTFLOW"
    8   u16      format version (1)
    10  u16      flags (0)
    12  u32      header length H
    16  u64      payload length P
    24  32 bytes sha256 of header + payload
    56  H bytes  header: UTF-8 JSON (tensors, ops, array references, meta)
    56+H P bytes payload: the arrays, each referenced from the header by offset and length

Weights are stored sparsely: the non-zero codes, bit-packed, with their flat indices. Every check
the reader makes raises ExportError with a one-line message; a file is written to a temporary name
and renamed, so a failed write never leaves a valid-looking file behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .intnet import (
    ENCODINGS,
    LIMITS,
    MODES,
    OP_KINDS,
    REDUCES,
    ROLES,
    IntNet,
    IntNetError,
    Op,
    Source,
    TensorSpec,
)

MAGIC = b"APOTFLOW"
VERSION = 1
_PRE = struct.Struct("<8sHHIQ32s")  # 56 bytes
_DTYPES = {"<i8": np.int64, "<u4": np.uint32, "u1": np.uint8, "<i4": np.int32}


class ExportError(ValueError):
    """A missing, truncated, corrupted or inconsistent model file."""


# ----------------------------------------------------------------------------- bit packing
def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned values < 2**bits into a little-endian bit stream (value i at bit i*bits)."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size and int(values.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    bitarr = ((values[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bitarr, bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits for bits <= 57; works in chunks, so memory stays a few bytes per code."""
    need = (count * bits + 7) // 8
    if len(data) != need:
        raise ExportError(f"packed codes have {len(data)} bytes, expected {need}")
    buf = np.frombuffer(bytes(data) + bytes(8), dtype=np.uint8)
    out = np.empty(count, dtype=np.int64)
    mask = np.uint64((1 << bits) - 1)
    for lo in range(0, count, 1 << 20):
        start = np.arange(lo, min(count, lo + (1 << 20)), dtype=np.int64) * bits
        word = np.zeros(len(start), dtype=np.uint64)
        for k in range((bits + 14) // 8):  # the bytes a code starting anywhere in a byte touches
            word |= buf[(start >> 3) + k].astype(np.uint64) << np.uint64(8 * k)
        out[lo:lo + len(start)] = (word >> (start & 7).astype(np.uint64)) & mask
    return out


def _code_bits(src: Source) -> int:
    if src.encoding == "levels":
        return max(1, (len(src.levels) - 1).bit_length()) + 1  # sign + magnitude index
    m = int(np.abs(src.codes).max(initial=0))
    return m.bit_length() + 1  # two's complement


def _encode_codes(codes: np.ndarray, bits: int, encoding: str) -> np.ndarray:
    if encoding == "levels":
        return (np.abs(codes) | ((codes < 0).astype(np.int64) << (bits - 1))).astype(np.uint64)
    return (codes & ((1 << bits) - 1)).astype(np.uint64)


def _decode_codes(raw: np.ndarray, bits: int, encoding: str) -> np.ndarray:
    if encoding == "levels":
        mag = raw & ((1 << (bits - 1)) - 1)
        return np.where(raw >> (bits - 1), -mag, mag)
    return np.where(raw >> (bits - 1), raw - (1 << bits), raw)


# ----------------------------------------------------------------------------- writer
class _Payload:
    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> dict:
        ref = {"offset": self.size, "nbytes": len(data)}
        self.chunks.append(data)
        self.size += len(data)
        return ref

    def array(self, a: np.ndarray, dtype: str) -> dict:
        a = np.ascontiguousarray(np.asarray(a).astype(_DTYPES[dtype]))
        return {"dtype": dtype, "shape": list(a.shape), **self.add(a.tobytes())}


def to_bytes(net: IntNet) -> bytes:
    net.validate()
    pay = _Payload()
    tensors = [
        {"name": t.name, "shape": list(t.shape), "max_value": int(t.max_value), "scale": float(t.scale),
         "signed": bool(t.signed), "bits": int(t.bits)}
        for t in net.tensors.values()
    ]
    ops = []
    for op in net.ops:
        srcs = []
        for s in op.sources:
            flat = np.asarray(s.codes, dtype=np.int64).reshape(-1)
            idx = np.flatnonzero(flat)
            bits = _code_bits(s)
            srcs.append({
                "tensor": s.tensor, "shape": list(s.codes.shape), "stride": s.stride, "pad": s.pad,
                "encoding": s.encoding, "w_bits": s.w_bits, "role": s.role,
                "levels": None if s.levels is None else [int(v) for v in s.levels],
                "ch_shift": None if s.ch_shift is None else [int(v) for v in s.ch_shift],
                "ch_sign": None if s.ch_sign is None else [int(v) for v in s.ch_sign],
                "nnz": int(idx.size), "code_bits": bits,
                "codes": pay.add(pack_bits(_encode_codes(flat[idx], bits, s.encoding), bits)),
                "index": pay.array(idx, "<u4"),
            })
        ops.append({
            "name": op.name, "kind": op.kind, "out": op.out, "mode": op.mode, "shift": int(op.shift),
            "reduce": op.reduce,
            "sources": srcs, "bias": pay.array(op.bias, "<i8"),
            "thresholds": None if op.thresholds is None else pay.array(op.thresholds, "<i8"),
            "levels_out": None if op.levels_out is None else [int(v) for v in op.levels_out],
        })
    header = json.dumps({"format": "apotflow-model", "version": VERSION, "input": net.input, "output": net.output,
                         "tensors": tensors, "ops": ops, "meta": net.meta}, sort_keys=True).encode()
    payload = b"".join(pay.chunks)
    digest = hashlib.sha256(header + payload).digest()
    return _PRE.pack(MAGIC, VERSION, 0, len(header), len(payload), digest) + header + payload


def save(net: IntNet, path: str | os.PathLike) -> Path:
    """Write atomically (sw/atomic.py: a temporary file in the same folder, then rename)."""
    return write_atomic(path, to_bytes(net))


# ----------------------------------------------------------------------------- reader
# Reader limits (docs/format.md): every size is bounded before anything is allocated.
MAX_FILE_BYTES = 1 << 28  # 256 MiB (a VGG-16 export is ~50 MB)
MAX_HEADER_BYTES = 1 << 24  # 16 MiB of JSON (ResNet-20: 24 KB)
MAX_JSON_DEPTH = 32  # nesting of the header's arrays and objects (the format needs 5; meta may add some)
MAX_INT_DIGITS = 40  # a JSON integer with more digits is refused before it is converted
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


class _Bad(Exception):
    """A reader check failed; from_bytes adds the file name."""


def _text(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _int(d: dict, key: str, where: str, lo: int, hi: int, default=None) -> int:
    v = d.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise _Bad(f"{where}: {key!r} must be an integer {lo}..{hi}, not {_text(v)}")
    return v


def _field(d: dict, key: str, kind: type | tuple, where: str, default=...):
    if key not in d:
        if default is not ...:
            return default
        raise _Bad(f"{where}: missing field {key!r}")
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise _Bad(f"{where}: field {key!r} has the wrong type ({type(v).__name__})")
    return v


def _name(d: dict, key: str, where: str) -> str:
    v = _field(d, key, str, where)
    if not 1 <= len(v) <= 200 or not v.isprintable():
        raise _Bad(f"{where}: {key!r} must be 1..200 printable characters, not {_text(v)}")
    return v


def _choice(d: dict, key: str, where: str, choices: tuple, default=...) -> str:
    v = _field(d, key, str, where, default)
    if v not in choices:
        raise _Bad(f"{where}: {key!r} must be one of {', '.join(choices)}, not {_text(v)}")
    return v


def _int_list(d: dict, key: str, where: str, lo: int, hi: int, length: int | None = None, nullable=False):
    v = d.get(key)
    if v is None and nullable:
        return None
    if not isinstance(v, list) or (length is not None and len(v) != length) or not all(
            type(x) is int and lo <= x <= hi for x in v):
        n = "" if length is None else f"{length} "
        raise _Bad(f"{where}: {key!r} must be a list of {n}integers {lo}..{hi}")
    return v


class _Arrays:
    """The payload's array references: each inside the payload, sized by its shape, none shared or
    overlapping, and together covering the payload exactly (checked by ``check_covered``)."""

    def __init__(self, payload: memoryview):
        self.payload = payload
        self.spans: list[tuple[int, int, str]] = []

    def _span(self, ref, where: str) -> tuple[int, int]:
        if not isinstance(ref, dict):
            raise _Bad(f"{where}: an array reference must be an object")
        off = _int(ref, "offset", where, 0, len(self.payload))
        n = _int(ref, "nbytes", where, 0, len(self.payload) - off)
        self.spans.append((off, n, where))
        return off, n

    def raw(self, ref, where: str, nbytes: int) -> bytes:
        off, n = self._span(ref, where)
        if n != nbytes:
            raise _Bad(f"{where}: array holds {n} bytes, its contents need {nbytes}")
        return bytes(self.payload[off:off + n])

    def array(self, ref, where: str, shape: tuple[int, ...] | None = None, dtype: str = "<i8") -> np.ndarray:
        if not isinstance(ref, dict):
            raise _Bad(f"{where}: an array reference must be an object")
        if ref.get("dtype") != dtype:
            raise _Bad(f"{where}: array dtype must be {dtype!r}, not {_text(ref.get('dtype'))}")
        got = _int_list(ref, "shape", where, 0, len(self.payload))
        if shape is not None and tuple(got) != shape:
            raise _Bad(f"{where}: array shape {tuple(got)} != {shape}")
        size = 1
        for v in got:
            size *= v
        data = self.raw(ref, where, size * np.dtype(_DTYPES[dtype]).itemsize)
        return np.frombuffer(data, dtype=_DTYPES[dtype]).reshape(got).astype(np.int64)

    def check_covered(self) -> None:
        end = 0
        for off, n, where in sorted((s for s in self.spans if s[1]), key=lambda s: s[0]):
            if off < end:
                raise _Bad(f"{where}: array overlaps another array")
            if off > end:
                raise _Bad(f"payload bytes {end}..{off - 1} belong to no array")
            end = off + n
        if end != len(self.payload):
            raise _Bad(f"payload bytes {end}..{len(self.payload) - 1} belong to no array")


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Bad(f"header has an integer of {len(text)} digits")
    return int(text)


def _json_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _Bad(f"header has a non-finite number {_text(text)}")
    return v


def _json_constant(text: str):
    raise _Bad(f"header has {text}, which is not JSON")


def _parse_header(header: bytes) -> dict:
    stripped = np.frombuffer(_STRING.sub(b'""', header), dtype=np.uint8)
    step = np.isin(stripped, (ord("["), ord("{"))).astype(np.int64) - np.isin(stripped, (ord("]"), ord("}")))
    if step.size and int(np.cumsum(step).max()) > MAX_JSON_DEPTH:
        raise _Bad(f"header JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        h = json.loads(header.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                       parse_constant=_json_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _Bad(f"header is not valid JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(h, dict):
        raise _Bad("header is not a JSON object")
    return h


def _tensor(t, i: int) -> TensorSpec:
    where = f"tensor #{i}"
    if not isinstance(t, dict):
        raise _Bad(f"{where} is not an object")
    name = _name(t, "name", where)
    where = f"tensor {_text(name)}"
    shape = _int_list(t, "shape", where, 1, LIMITS["tensor_elements"], 3)
    scale = _field(t, "scale", (int, float), where)
    return TensorSpec(name, tuple(shape), _int(t, "max_value", where, 0, LIMITS["max_value"] - 1), float(scale),
                      _field(t, "signed", bool, where), _int(t, "bits", where, 1, 64))


def _source(s, where: str, tensors: dict, cout: int, arrays: _Arrays, budget: list[int]) -> Source:
    if not isinstance(s, dict):
        raise _Bad(f"{where}: a source is not an object")
    tensor = _field(s, "tensor", str, where)
    if tensor not in tensors:
        raise _Bad(f"{where}: source tensor {_text(tensor)} is not declared")
    where = f"{where}: source {_text(tensor)}"
    shape = tuple(_int_list(s, "shape", where, 1, LIMITS["weights"], 4))
    if shape != (cout, tensors[tensor].shape[0], shape[2], shape[2]):
        raise _Bad(f"{where}: weights {shape} do not match ({cout}, {tensors[tensor].shape[0]}, k, k)")
    size = shape[0] * shape[1] * shape[2] * shape[3]
    budget[0] -= size
    if budget[0] < 0:
        raise _Bad(f"weights exceed {LIMITS['weights']} elements in all (zeros included)")
    encoding = _choice(s, "encoding", where, ENCODINGS)
    levels = _int_list(s, "levels", where, 0, LIMITS["level"] - 1, nullable=True)
    ch_shift = _int_list(s, "ch_shift", where, 0, LIMITS["ch_shift"], cout, nullable=True)
    ch_sign = _int_list(s, "ch_sign", where, -1, 1, cout, nullable=True)
    if encoding == "levels":
        if levels is None or ch_shift is None or ch_sign is None:
            raise _Bad(f"{where}: levels encoding needs levels, ch_shift and ch_sign")
        if len(levels) < 2:
            raise _Bad(f"{where}: a level table needs at least 2 entries")
        bits_lo, bits_hi = max(1, (len(levels) - 1).bit_length()) + 1, 17
    else:
        bits_lo, bits_hi = 1, 32
    nnz = _int(s, "nnz", where, 0, size)
    bits = _int(s, "code_bits", where, bits_lo, bits_hi)
    idx = arrays.array(s.get("index"), f"{where}: index", (nnz,), "<u4")
    if nnz and (idx[-1] >= size or np.any(np.diff(idx) <= 0)):
        raise _Bad(f"{where}: weight indices are out of range or not increasing")
    raw = unpack_bits(arrays.raw(s.get("codes"), f"{where}: codes", (nnz * bits + 7) // 8), bits, nnz)
    vals = _decode_codes(raw, bits, encoding)
    if nnz and np.any(vals == 0):
        raise _Bad(f"{where}: a stored non-zero weight decodes to zero")
    codes = np.zeros(size, dtype=np.int64)
    codes[idx] = vals
    return Source(tensor, codes.reshape(shape), _int(s, "stride", where, 1, LIMITS["stride"]),
                  _int(s, "pad", where, 0, shape[2] - 1), encoding,
                  None if levels is None else np.asarray(levels, dtype=np.int64),
                  None if ch_shift is None else np.asarray(ch_shift, dtype=np.int64),
                  None if ch_sign is None else np.asarray(ch_sign, dtype=np.int64),
                  _int(s, "w_bits", where, 0, 64), _choice(s, "role", where, ROLES, "main"))


def _op(o, i: int, tensors: dict, arrays: _Arrays, budget: list[int]) -> Op:
    if not isinstance(o, dict):
        raise _Bad(f"op #{i} is not an object")
    name = _name(o, "name", f"op #{i}")
    where = f"op {_text(name)}"
    out = _field(o, "out", str, where)
    if out not in tensors:
        raise _Bad(f"{where}: output tensor {_text(out)} is not declared")
    cout = tensors[out].shape[0]
    mode = _choice(o, "mode", where, MODES)
    srcs = _field(o, "sources", list, where)
    if not srcs:
        raise _Bad(f"{where}: no sources")
    sources = [_source(s, where, tensors, cout, arrays, budget) for s in srcs]
    levels_out = _int_list(o, "levels_out", where, 0, LIMITS["max_value"] - 1, nullable=True)
    thr = o.get("thresholds")
    thresholds = None
    if thr is not None:
        if levels_out is None:
            raise _Bad(f"{where}: thresholds without levels_out")
        thresholds = arrays.array(thr, f"{where}: thresholds", (cout, len(levels_out) - 1))
    return Op(name, _choice(o, "kind", where, OP_KINDS), out, sources,
              arrays.array(o.get("bias"), f"{where}: bias", (cout,)), mode, thresholds,
              None if levels_out is None else np.asarray(levels_out, dtype=np.int64),
              _int(o, "shift", where, 0, LIMITS["shift"], 0), _choice(o, "reduce", where, REDUCES, "sum"))


def _check_prefix(data, size: int) -> tuple[int, int, bytes]:
    """The 56-byte prefix of a file of `size` bytes: (header length, payload length, digest)."""
    if size < _PRE.size:
        raise _Bad(f"truncated ({size} bytes; not an apotflow model)")
    magic, version, flags, hlen, plen, digest = _PRE.unpack_from(data)
    if magic != MAGIC:
        raise _Bad("not an apotflow model (bad magic)")
    if version != VERSION:
        raise _Bad(f"format version {version} is not supported (this reader reads {VERSION})")
    if flags != 0:
        raise _Bad(f"flags are {flags:#x}; version {VERSION} defines none (0)")
    if hlen > MAX_HEADER_BYTES:
        raise _Bad(f"header length {hlen} exceeds the reader's limit of {MAX_HEADER_BYTES} bytes")
    if size != _PRE.size + hlen + plen:
        raise _Bad(f"truncated or padded ({size} bytes, header says {_PRE.size + hlen + plen})")
    if size > MAX_FILE_BYTES:
        raise _Bad(f"{size} bytes exceed the reader's limit of {MAX_FILE_BYTES}")
    return hlen, plen, digest


def _from_bytes(data) -> IntNet:
    view = memoryview(data)
    hlen, plen, digest = _check_prefix(view, len(view))
    header, payload = view[_PRE.size:_PRE.size + hlen], view[_PRE.size + hlen:]
    sha = hashlib.sha256(header)
    sha.update(payload)
    if sha.digest() != digest:
        raise _Bad("checksum mismatch (the file is corrupted)")
    h = _parse_header(bytes(header))
    if h.get("format") != "apotflow-model" or h.get("version") != VERSION:
        raise _Bad(f"header says format {_text(h.get('format'))} version {_text(h.get('version'))}; "
                   f"the container is apotflow-model version {VERSION}")
    tensors = {}
    for i, t in enumerate(_field(h, "tensors", list, "header")):
        spec = _tensor(t, i)
        if spec.name in tensors:
            raise _Bad(f"tensor {_text(spec.name)} is declared twice")
        tensors[spec.name] = spec
    arrays, budget = _Arrays(payload), [LIMITS["weights"]]
    ops = [_op(o, i, tensors, arrays, budget) for i, o in enumerate(_field(h, "ops", list, "header"))]
    arrays.check_covered()
    net = IntNet(tensors, ops, _field(h, "input", str, "header"), _field(h, "output", str, "header"),
                 _field(h, "meta", dict, "header", {}))
    try:
        return net.validate()
    except IntNetError as e:
        raise _Bad(str(e)) from None


def from_bytes(data: bytes, name: str = "model") -> IntNet:
    """Decode a model file's bytes; any fault is an ExportError with one line naming it."""
    try:
        return _from_bytes(data)
    except _Bad as e:
        raise ExportError(f"{name}: {e}") from None


def load(path: str | os.PathLike) -> IntNet:
    """Read a model file: stat and the 56-byte prefix are checked before the rest is read."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ExportError(f"{path}: no such model file") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ExportError(f"{path}: is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ExportError(f"{path}: not a regular file (a device, FIFO or socket is not a model file)")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_PRE.size)
            _check_prefix(head, size if len(head) == _PRE.size else len(head))
            data = head + f.read(size - _PRE.size + 1)  # one byte more reveals a file that grew
    except _Bad as e:
        raise ExportError(f"{path}: {e}") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror or e})") from None
    return from_bytes(data, str(path))
