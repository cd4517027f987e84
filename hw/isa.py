"""Instruction and memory formats of the sparse shift-add array, and their exact integer semantics.

docs/hardware.md describes the machine; this module is its executable definition. The RTL
(``apotflow.hw.top``), the compiler (``apotflow.hw.compile``) and the co-simulation checker all use
these layouts, so a field is defined once. Every record is a little-endian bit string: fields are
packed LSB-first in the order listed (the same order as an ``amaranth.lib.data.StructLayout``).

Memories (all word-addressed):

* WGT  -- one *entry* per cycle of work: a non-zero weight (or one pass of it) with its input address
  offset. ``acc += (-1)**sign * sum_t en_t * (a << s_t)``, ``a`` = ACT[(off + p) mod act_depth] for the
  lane's output pixel ``p`` when the input pixel lies inside the image, else 0.
* RQ   -- one row per output channel: entry count, accumulator initial value (bias), thresholds.
* PROG -- one descriptor per layer.
* ACT  -- activations, ``act_bits`` unsigned, split over ``lanes`` banks (bank = address mod lanes).
* OUT  -- raw accumulators of RAW-mode layers (logits), ``acc_bits`` signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .config import AcceleratorConfig

MODE_THRESH = 0  # out = lv[#(acc >= thr_j)]  (BN, ReLU and the next layer's APoT quantizer, folded)
MODE_SHIFT = 1  # out = (acc >> shift) mod 2**act_bits  (average pooling over 2**k pixels)
MODE_RAW = 2  # OUT[...] = acc  (logits)
# Descriptor bit rmax: the entries are reduced by max instead of sum (acc = max(bias, terms...)); a
# padded input pixel contributes a zero term. With the 2x2 phase-split reads this is max pooling.
MODE_NAMES = {MODE_THRESH: "thresh", MODE_SHIFT: "shift", MODE_RAW: "raw"}

DIM_BITS = 4  # ho_log2 / wo_log2 fields
SHIFT_FIELD_BITS = 6  # descriptor's right shift for MODE_SHIFT


@dataclass(frozen=True)
class Field:
    name: str
    width: int
    signed: bool = False


class Layout:
    """An ordered, LSB-first record of integer fields."""

    def __init__(self, name: str, fields: Iterable[Field]):
        self.name = name
        self.fields = tuple(fields)
        self.width = sum(f.width for f in self.fields)
        offs, o = {}, 0
        for f in self.fields:
            offs[f.name] = o
            o += f.width
        self.offsets = offs
        self.by_name = {f.name: f for f in self.fields}

    def pack(self, **values: int) -> int:
        word = 0
        for f in self.fields:
            v = int(values.get(f.name, 0))
            lo, hi = (-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) if f.signed else (0, (1 << f.width) - 1)
            if not lo <= v <= hi:
                raise ValueError(f"{self.name}.{f.name} = {v} does not fit {f.width} {'signed' if f.signed else 'unsigned'} bits")
            word |= (v & ((1 << f.width) - 1)) << self.offsets[f.name]
        return word

    def unpack(self, word: int) -> dict[str, int]:
        out = {}
        for f in self.fields:
            v = (word >> self.offsets[f.name]) & ((1 << f.width) - 1)
            if f.signed and v >> (f.width - 1):
                v -= 1 << f.width
            out[f.name] = v
        return out

    def unpack_array(self, words: list[int]) -> dict[str, np.ndarray]:
        """Vectorised unpack of many words into int64 arrays (fields up to 62 bits wide)."""
        cols = {f.name: np.empty(len(words), dtype=np.int64) for f in self.fields}
        for i, w in enumerate(words):
            for k, v in self.unpack(w).items():
                cols[k][i] = v
        return cols

    def to_dict(self) -> list[dict]:
        return [{"name": f.name, "lsb": self.offsets[f.name], "width": f.width, "signed": f.signed} for f in self.fields]


def entry_layout(cfg: AcceleratorConfig) -> Layout:
    fs = [Field("sign", 1)]
    for t in range(cfg.terms):
        fs += [Field(f"en{t}", 1), Field(f"s{t}", cfg.shift_bits)]
    fs += [Field("dy", cfg.delta_bits, True), Field("dx", cfg.delta_bits, True), Field("off", cfg.addr_bits)]
    return Layout("entry", fs)


def rq_layout(cfg: AcceleratorConfig) -> Layout:
    fs = [Field("count", cfg.count_bits), Field("bias", cfg.acc_bits, True)]
    fs += [Field(f"thr{j}", cfg.acc_bits, True) for j in range(cfg.max_levels - 1)]
    return Layout("rq", fs)


def desc_layout(cfg: AcceleratorConfig) -> Layout:
    fs = [
        Field("mode", 2),
        Field("last", 1),
        Field("n_ch", cfg.ch_bits),
        Field("ho_log2", DIM_BITS),
        Field("wo_log2", DIM_BITS),
        Field("w_start", cfg.wgt_addr_bits),
        Field("rq_start", cfg.rq_addr_bits),
        Field("out_base", cfg.addr_bits),
        Field("out_phase", 1),
        Field("shift", SHIFT_FIELD_BITS),
        Field("rmax", 1),  # reduce by max instead of sum: acc = max(bias, entries' terms) (max pooling)
    ]
    fs += [Field(f"lv{j}", cfg.act_bits) for j in range(cfg.max_levels)]
    return Layout("desc", fs)


@dataclass
class MemoryImages:
    """Initial contents of the read-only memories: what $readmemh loads."""

    config: AcceleratorConfig
    wgt: list[int] = field(default_factory=list)
    rq: list[int] = field(default_factory=list)
    prog: list[int] = field(default_factory=list)

    def check(self) -> None:
        c = self.config
        for name, words, depth in (("weight", self.wgt, c.wgt_depth), ("requant", self.rq, c.rq_depth),
                                   ("program", self.prog, c.prog_depth)):
            if len(words) > depth:
                raise ValueError(f"{name} memory needs {len(words)} words but the config has {depth} "
                                 f"(raise --{name[:3] if name != 'requant' else 'rq'}-depth)")
        if not self.prog:
            raise ValueError("program memory is empty")


def hex_lines(words: list[int], width: int, depth: int | None = None) -> str:
    """$readmemh text: one word per line, zero-padded to the word width; padded with zeros to depth."""
    digits = max(1, (width + 3) // 4)
    words = list(words) + [0] * ((depth or len(words)) - len(words))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def write_hex(path, words: list[int], width: int, depth: int | None = None) -> None:
    from pathlib import Path

    Path(path).write_text(hex_lines(words, width, depth))


def read_hex(path) -> list[int]:
    from pathlib import Path

    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if line:
            out.append(int(line, 16))
    return out


# ---------------------------------------------------------------------------------------------
# Functional interpreter: the integer semantics of a program, independent of timing.
# ---------------------------------------------------------------------------------------------


@dataclass
class LayerTrace:
    index: int
    mode: int
    n_ch: int
    npix: int
    entries: int  # sum over channels of count
    work: int  # sum over channels and pixel groups of count (= busy accumulation cycles)
    writes: list[tuple[int, int]] = field(default_factory=list)  # (address, value) in write order


def run_program(cfg: AcceleratorConfig, images: MemoryImages, act: np.ndarray,
                trace: bool = False) -> tuple[np.ndarray, np.ndarray, list[LayerTrace]]:
    """Execute the program on a copy of the activation memory.

    Returns (ACT after the run, OUT, per-layer traces). The semantics, per layer:
    for each channel c, for each output pixel p: acc = bias_c + sum of its entries; then requantize
    and write. A layer never reads what it writes (the compiler guarantees it), so the order of
    writes inside a layer does not matter.
    """
    images.check()
    L = cfg.lanes
    amask = cfg.act_depth - 1
    act = np.array(act, dtype=np.int64).copy()
    if act.shape != (cfg.act_depth,):
        raise ValueError(f"activation memory must have {cfg.act_depth} words, not {act.shape}")
    out = np.zeros(cfg.out_depth, dtype=np.int64)
    el, rl, dl = entry_layout(cfg), rq_layout(cfg), desc_layout(cfg)
    ents = el.unpack_array(images.wgt) if images.wgt else {f.name: np.zeros(0, np.int64) for f in el.fields}
    acc_lo, acc_hi = cfg.acc_range
    traces = []
    for li, dword in enumerate(images.prog):
        d = dl.unpack(dword)
        ho, wo = 1 << d["ho_log2"], 1 << d["wo_log2"]
        npix = ho * wo
        p = np.arange(npix)
        oy, ox = p >> d["wo_log2"], p & (wo - 1)
        lv = np.array([d[f"lv{j}"] for j in range(cfg.max_levels)], dtype=np.int64)
        ngroups = -(-npix // L)
        w = d["w_start"]
        tr = LayerTrace(li, d["mode"], d["n_ch"], npix, 0, 0)
        results = []
        for c in range(d["n_ch"]):
            if d["rq_start"] + c >= len(images.rq):
                raise ValueError(f"layer {li} channel {c}: requant row {d['rq_start'] + c} is outside the image")
            row = rl.unpack(images.rq[d["rq_start"] + c])
            cnt = row["count"]
            if w + cnt > len(images.wgt):
                raise ValueError(f"layer {li} channel {c}: entries {w}..{w + cnt} run past the weight image")
            acc = np.full(npix, row["bias"], dtype=np.int64)
            rmax = bool(d["rmax"])
            for e in range(w, w + cnt):
                iy, ix = oy + ents["dy"][e], ox + ents["dx"][e]
                valid = (iy >= 0) & (iy < ho) & (ix >= 0) & (ix < wo)
                a = np.where(valid, act[(ents["off"][e] + p) & amask], 0)
                contrib = np.zeros(npix, dtype=np.int64)
                for t in range(cfg.terms):
                    if ents[f"en{t}"][e]:
                        contrib += a << ents[f"s{t}"][e]
                term = -contrib if ents["sign"][e] else contrib
                acc = np.maximum(acc, term) if rmax else acc + term
            if acc.min(initial=0) < acc_lo or acc.max(initial=0) > acc_hi:
                raise OverflowError(f"layer {li} channel {c}: accumulator leaves the {cfg.acc_bits}-bit range")
            w += cnt
            tr.entries += cnt
            tr.work += cnt * ngroups
            if d["mode"] == MODE_THRESH:
                thr = np.array([row[f"thr{j}"] for j in range(cfg.max_levels - 1)], dtype=np.int64)
                k = (acc[:, None] >= thr[None, :]).sum(axis=1)
                val = lv[k] & ((1 << cfg.act_bits) - 1)
            elif d["mode"] == MODE_SHIFT:
                val = (acc >> d["shift"]) & ((1 << cfg.act_bits) - 1)
            elif d["mode"] == MODE_RAW:
                val = acc
            else:
                raise ValueError(f"layer {li}: unknown mode {d['mode']}")
            addr = out_address(d, c, p, cfg)
            results.append((addr, val))
        for addr, val in results:
            if d["mode"] == MODE_RAW:
                out[addr & (cfg.out_depth - 1)] = val
            else:
                act[addr & amask] = val
            if trace:
                tr.writes.extend(zip(addr.tolist(), val.tolist()))
        traces.append(tr)
        if d["last"]:
            break
    else:
        raise ValueError("program has no descriptor with last=1")
    return act, out, traces


def out_address(d: dict, c: int, p: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    """Write address of channel c, output pixels p (linear or 2x2 phase-split layout)."""
    hl, wl = d["ho_log2"], d["wo_log2"]
    base = d["out_base"] + (c << (hl + wl))
    if not d["out_phase"]:
        return base + p
    y, x = p >> wl, p & ((1 << wl) - 1)
    phase = ((y & 1) << 1) | (x & 1)
    return base + (phase << (hl + wl - 2)) + ((y >> 1) << (wl - 1)) + (x >> 1)
