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
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from .intnet import IntNet, IntNetError, Op, Source, TensorSpec

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
    need = (count * bits + 7) // 8
    if len(data) != need:
        raise ExportError(f"packed codes have {len(data)} bytes, expected {need}")
    bitarr = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    weights = (1 << np.arange(bits, dtype=np.uint64))
    return (bitarr.reshape(count, bits).astype(np.uint64) * weights).sum(axis=1).astype(np.int64)


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
    """Write atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(net)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- reader
def _get(d: dict, key: str, kind, where: str):
    if key not in d:
        raise ExportError(f"{where}: missing field {key!r}")
    v = d[key]
    if kind is not None and not isinstance(v, kind):
        raise ExportError(f"{where}: field {key!r} has the wrong type")
    return v


def _slice(payload: bytes, ref: dict, where: str) -> bytes:
    off, n = _get(ref, "offset", int, where), _get(ref, "nbytes", int, where)
    if off < 0 or n < 0 or off + n > len(payload):
        raise ExportError(f"{where}: array reference outside the payload")
    return payload[off:off + n]


def _array(payload: bytes, ref: dict, where: str) -> np.ndarray:
    dt = _get(ref, "dtype", str, where)
    if dt not in _DTYPES:
        raise ExportError(f"{where}: unsupported dtype {dt!r}")
    shape = tuple(_get(ref, "shape", list, where))
    data = _slice(payload, ref, where)
    if len(data) != int(np.prod(shape)) * np.dtype(_DTYPES[dt]).itemsize:
        raise ExportError(f"{where}: array size does not match its shape")
    return np.frombuffer(data, dtype=_DTYPES[dt]).reshape(shape).astype(np.int64)


def from_bytes(data: bytes, name: str = "model") -> IntNet:
    if len(data) < _PRE.size:
        raise ExportError(f"{name}: truncated ({len(data)} bytes; not an apotflow model)")
    magic, version, _flags, hlen, plen, digest = _PRE.unpack_from(data)
    if magic != MAGIC:
        raise ExportError(f"{name}: not an apotflow model (bad magic)")
    if version != VERSION:
        raise ExportError(f"{name}: format version {version} is not supported (this reader reads {VERSION})")
    if len(data) != _PRE.size + hlen + plen:
        raise ExportError(f"{name}: truncated or padded ({len(data)} bytes, header says {_PRE.size + hlen + plen})")
    header, payload = data[_PRE.size:_PRE.size + hlen], data[_PRE.size + hlen:]
    if hashlib.sha256(header + payload).digest() != digest:
        raise ExportError(f"{name}: checksum mismatch (the file is corrupted)")
    try:
        h = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{name}: header is not valid JSON ({e})") from None
    try:
        tensors = {}
        for t in _get(h, "tensors", list, "header"):
            shape = tuple(int(v) for v in _get(t, "shape", list, "tensor"))
            if len(shape) != 3 or min(shape) <= 0:
                raise ExportError(f"{name}: tensor {t.get('name')!r} has a bad shape {shape}")
            tensors[t["name"]] = TensorSpec(t["name"], shape, int(t["max_value"]), float(t["scale"]),
                                            bool(t["signed"]), int(t["bits"]))
        ops = []
        for o in _get(h, "ops", list, "header"):
            where = f"op {o.get('name')!r}"
            srcs = []
            for s in _get(o, "sources", list, where):
                shape = tuple(int(v) for v in _get(s, "shape", list, where))
                size = int(np.prod(shape))
                nnz, bits = _get(s, "nnz", int, where), _get(s, "code_bits", int, where)
                idx = _array(payload, _get(s, "index", dict, where), where)
                if idx.shape != (nnz,) or (nnz and (idx[0] < 0 or idx[-1] >= size or np.any(np.diff(idx) <= 0))):
                    raise ExportError(f"{name}: {where}: weight indices are out of range or not increasing")
                raw = unpack_bits(_slice(payload, _get(s, "codes", dict, where), where), bits, nnz)
                vals = _decode_codes(raw, bits, s["encoding"])
                if nnz and np.any(vals == 0):
                    raise ExportError(f"{name}: {where}: a stored non-zero weight decodes to zero")
                codes = np.zeros(size, dtype=np.int64)
                codes[idx] = vals
                def arr(k, s=s):
                    return None if s.get(k) is None else np.asarray(s[k], dtype=np.int64)

                srcs.append(Source(s["tensor"], codes.reshape(shape), int(s["stride"]), int(s["pad"]),
                                   s["encoding"], arr("levels"), arr("ch_shift"), arr("ch_sign"),
                                   int(s["w_bits"]), s.get("role", "main")))
            thr = o.get("thresholds")
            ops.append(Op(o["name"], o["kind"], o["out"], srcs, _array(payload, o["bias"], where), o["mode"],
                          None if thr is None else _array(payload, thr, where),
                          None if o.get("levels_out") is None else np.asarray(o["levels_out"], dtype=np.int64),
                          int(o.get("shift", 0)), o.get("reduce", "sum")))
        net = IntNet(tensors, ops, h["input"], h["output"], h.get("meta", {}))
        return net.validate()
    except IntNetError as e:
        raise ExportError(f"{name}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ExportError):
            raise
        raise ExportError(f"{name}: malformed header ({type(e).__name__}: {e})") from None


def load(path: str | os.PathLike) -> IntNet:
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such model file")
    if path.is_dir():
        raise ExportError(f"{path}: is a folder, not a model file")
    return from_bytes(path.read_bytes(), str(path))
