"""Instruction and memory formats of the sparse shift-add array, and their exact integer semantics.

docs/hardware.md describes the machine; this module is its executable definition. The RTL
(``apotflow.hw.top``), the compiler (``apotflow.hw.compile``) and the co-simulation checker all use
these layouts, so a field is defined once. Every record is a little-endian bit string: fields are
packed LSB-first in the order listed (the same order as an ``amaranth.lib.data.StructLayout``).

Memories (all word-addressed):

* WGT  -- the compact weight stream, one *entry* per cycle of work: a non-zero weight (or one pass of
  it) as a ``code`` (its row in the layer's value table; code 0: a filler, no weight) and a position
  ``delta`` against the previous entry of the same output channel (``decode_stream``). Decoded, an
  entry is ``acc += (-1)**sign * sum_t en_t * (a << s_t)``, ``a`` = ACT[(off + p) mod act_depth] for the
  lane's output pixel ``p`` when the input pixel lies inside the image, else 0. In a layer with lane
  groups (descriptor ``grp_log2`` > 0, config ``lane_groups`` > 1) an entry is ``G = 2**grp_log2`` words,
  one per group (docs/hardware.md, "Lane groups").
* VAL  -- value tables, ``2**code_bits`` rows per layer descriptor: (sign, en_t, s_t) of a code.
* TAP  -- tap tables, ``2**tap_log2`` rows per layer: a position's input offset, channel stride, dy/dx.
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
TAP_LOG2_BITS = 3  # descriptor's tap_log2 (config.TAP_LOG2_MAX = 7)


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

    def unpack_array(self, words) -> dict[str, np.ndarray]:
        """Vectorised unpack of many words into int64 arrays."""
        if self.width <= 62:
            arr = np.asarray(words, dtype=np.int64).reshape(-1)
            cols = {}
            for f in self.fields:
                v = (arr >> self.offsets[f.name]) & ((1 << f.width) - 1)
                if f.signed:
                    v = np.where(v >> (f.width - 1), v - (1 << f.width), v)
                cols[f.name] = v
            return cols
        cols = {f.name: np.empty(len(words), dtype=np.int64) for f in self.fields}
        for i, w in enumerate(words):
            for k, v in self.unpack(w).items():
                cols[k][i] = v
        return cols

    def to_dict(self) -> list[dict]:
        return [{"name": f.name, "lsb": self.offsets[f.name], "width": f.width, "signed": f.signed} for f in self.fields]


def entry_layout(cfg: AcceleratorConfig) -> Layout:
    """One stored weight entry: the row of its layer's value table, and its position delta."""
    return Layout("entry", [Field("code", cfg.code_bits), Field("delta", cfg.pos_bits)])


def val_layout(cfg: AcceleratorConfig) -> Layout:
    """A value-table row: the entry's power-of-two terms, ``(-1)**sign * sum_t en_t * 2**s_t``."""
    fs = [Field("sign", 1)]
    for t in range(cfg.terms):
        fs += [Field(f"en{t}", 1), Field(f"s{t}", cfg.shift_bits)]
    return Layout("val", fs)


def decoded_layout(cfg: AcceleratorConfig) -> Layout:
    """An entry as the lanes see it after decoding (``decode_stream``'s columns): its value-table row,
    its tap row's dy/dx and the input offset of its position."""
    return Layout("decoded", list(val_layout(cfg).fields) + [
        Field("dy", cfg.delta_bits, True), Field("dx", cfg.delta_bits, True), Field("off", cfg.addr_bits),
        Field("real", 1)])  # 0: a filler, which leaves the accumulator as it is (also under max)


CH_SHIFT_BITS = 5  # a tap row's input-channel stride, log2 (pixels of the source tensor)


def tap_layout(cfg: AcceleratorConfig) -> Layout:
    """A tap row: the input address of a position's channel 0 (``off``), the log2 stride between input
    channels, and the padding check (dy, dx). ``valid``: the row is part of the table (checked on load;
    the RTL does not read it)."""
    return Layout("tap", [Field("dy", cfg.delta_bits, True), Field("dx", cfg.delta_bits, True),
                          Field("off", cfg.addr_bits), Field("ch_shift", CH_SHIFT_BITS), Field("valid", 1)])


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
        Field("val_base", cfg.prog_addr_bits),  # value table (rows val_base << code_bits ...)
        Field("tap_base", cfg.tap_addr_bits),  # tap table, aligned to its 2**tap_log2 rows
        Field("tap_log2", TAP_LOG2_BITS),
        Field("pos_end", cfg.pos_width),  # positions of every entry of the layer lie below it (load check)
        Field("diag", 1),  # channel c's positions start at c << diag_log2 instead of 0 (depthwise layers)
        Field("diag_log2", CH_SHIFT_BITS),
    ]
    fs += [Field(f"lv{j}", cfg.act_bits) for j in range(cfg.max_levels)]
    if cfg.grp_bits:  # lane groups (config lane_groups > 1; no field otherwise, unpack's .get: 0): 2**grp_log2 groups
        fs += [Field("grp_log2", cfg.grp_bits)]
    return Layout("desc", fs)


@dataclass
class MemoryImages:
    """Initial contents of the read-only memories: what $readmemh loads."""

    config: AcceleratorConfig
    wgt: list[int] = field(default_factory=list)
    rq: list[int] = field(default_factory=list)
    prog: list[int] = field(default_factory=list)
    val: list[int] = field(default_factory=list)
    tap: list[int] = field(default_factory=list)

    def check(self) -> None:
        """Depths, and the weight stream (``decode_stream``): a bad image raises a one-line ValueError."""
        c = self.config
        for name, flag, words, depth in (("weight", "wgt-depth", self.wgt, c.wgt_depth),
                                         ("requant", "rq-depth", self.rq, c.rq_depth),
                                         ("program", "prog-depth", self.prog, c.prog_depth),
                                         ("value-table", "prog-depth", self.val, c.val_depth),
                                         ("tap-table", "tap-depth", self.tap, c.tap_depth)):
            if len(words) > depth:
                raise ValueError(f"{name} memory needs {len(words)} words but the config has {depth} (raise --{flag})")
        if not self.prog:
            raise ValueError("program memory is empty")
        decode_stream(c, self)


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


def filler_step(cfg: AcceleratorConfig) -> int:
    """How far a filler's delta unit moves the position (an ordinary entry's unit is 1)."""
    return 1 << cfg.pos_bits


def decode_stream(cfg: AcceleratorConfig, images: MemoryImages) -> dict[str, np.ndarray]:
    """The weight stream decoded into one row per WGT word (``decoded_layout``): ``sign``, ``en<t>``, ``s<t>``
    (the value-table row; all zero for a filler), ``dy``, ``dx`` and ``off`` (the tap row and the channel
    stride), ``real`` (0 for a filler: it adds nothing, and a max layer keeps its accumulator).

    The position of an entry is the running sum of the steps of its output channel's entries, from 0 (or,
    in a ``diag`` layer, from ``c << diag_log2`` for channel c) at the channel's first entry (a filler,
    code 0, steps ``delta << pos_bits``, any other entry ``delta``); ``tap = pos mod 2**tap_log2``, ``ic = pos >> tap_log2``, ``off = (TAP.off + (ic << TAP.ch_shift))
    mod act_depth``. In a layer with lane groups an entry is G words (slot j: group j's code; slot 0's
    delta is the step, a filler has code 0 in every slot, the other slots' deltas must be 0), each word
    decoded with its own code and the entry's position. Checks, each failure a one-line ValueError naming layer, channel and entry: every
    code names a non-empty value-table row, every position lies below the layer's ``pos_end``, every
    weight's (not a filler's) on a valid tap row, and each layer's counts cover exactly the words up to the next layer's ``w_start``."""
    el, vl, tl, dl, rl = entry_layout(cfg), val_layout(cfg), tap_layout(cfg), desc_layout(cfg), rq_layout(cfg)
    n = len(images.wgt)
    ent = el.unpack_array(images.wgt) if n else {f.name: np.zeros(0, np.int64) for f in el.fields}
    vals = vl.unpack_array(images.val) if images.val else {f.name: np.zeros(0, np.int64) for f in vl.fields}
    taps = tl.unpack_array(images.tap) if images.tap else {f.name: np.zeros(0, np.int64) for f in tl.fields}
    out = {f.name: np.zeros(n, np.int64) for f in vl.fields}
    out.update(dy=np.zeros(n, np.int64), dx=np.zeros(n, np.int64), off=np.zeros(n, np.int64),
               real=np.zeros(n, np.int64))
    nonempty = np.zeros(len(images.val), bool)
    for t in range(cfg.terms):
        nonempty |= vals[f"en{t}"] != 0
    descs = []
    for dword in images.prog:
        descs.append(dl.unpack(dword))
        if descs[-1]["last"]:
            break
    else:
        raise ValueError("program has no descriptor with last=1")
    spans, prev_end = [], None  # per layer (counts, w0, w1, G); (layer, word after its stream)
    for li, d in enumerate(descs):
        if d["rq_start"] + d["n_ch"] > len(images.rq):
            raise ValueError(f"layer {li}: requant rows {d['rq_start']}..{d['rq_start'] + d['n_ch']} run past the "
                             f"requant image ({len(images.rq)} rows)")
        G = layer_groups(cfg, d, li)
        if not wb_pairs_fit(cfg, d):
            raise ValueError(f"layer {li}: a two-word writeback (wb_words 2) cannot write a phase-split output of 2 "
                             f"columns and {1 << d['ho_log2']} rows")
        counts = [rl.unpack(images.rq[d["rq_start"] + c])["count"] for c in range(d["n_ch"])]
        w0, w1 = d["w_start"], d["w_start"] + G * sum(counts)
        spans.append((counts, w0, w1, G))
        if w1 > n:
            raise ValueError(f"weight stream: layer {li}: its counts add up to {sum(counts)} entries "
                             f"{f'of {G} words ' if G > 1 else ''}from word {w0}, past the end of the stream ({n} words)")
        if not d["n_ch"]:
            continue
        if w0 % G:
            raise ValueError(f"weight stream: layer {li}: its entries of {G} words start at word {w0}, not a multiple of {G}")
        if prev_end is not None:
            gap = ent["code"][prev_end[1]:w0].any() or ent["delta"][prev_end[1]:w0].any()
            if w0 != -(-prev_end[1] // G) * G or gap:
                raise ValueError(f"weight stream: layer {prev_end[0]}: its counts end its stream at word {prev_end[1]}, "
                                 f"but layer {li}'s stream starts at word {w0}")
        prev_end = (li, w1)
    for li, (d, (counts, w0, w1, G)) in enumerate(zip(descs, spans)):
        if w1 == w0:
            continue
        E = sum(counts)
        code, delta = ent["code"][w0:w1].reshape(E, G), ent["delta"][w0:w1].reshape(E, G)
        filler = ~code.any(axis=1)  # an entry whose slots all have code 0
        step = np.where(filler, delta[:, 0] << cfg.pos_bits, delta[:, 0])
        chan = np.repeat(np.arange(len(counts)), counts)
        starts = np.cumsum([0] + counts[:-1])
        cs = np.concatenate([[0], np.cumsum(step)])
        pos = cs[1:] - np.repeat(cs[starts], counts)
        if d["diag"]:
            pos = pos + (chan << d["diag_log2"])
        tmask = (1 << d["tap_log2"]) - 1
        vrow = (d["val_base"] << cfg.code_bits) + code  # (E, G)
        trow = d["tap_base"] + (pos & tmask)

        def where(k, what, chan=chan, w0=w0, li=li, counts=counts, G=G, j=None):
            c = int(chan[k])
            e = k - int(sum(counts[:c]))
            slot = f" slot {j}" if G > 1 and j is not None else ""
            return ValueError(f"weight stream: layer {li} channel {c} entry {e}{slot} "
                              f"(word {w0 + k * G + (j or 0)}): {what}")
        if G > 1:
            bad = np.argwhere(delta[:, 1:] != 0)
            if bad.size:
                k, j = int(bad[0][0]), int(bad[0][1]) + 1
                raise where(k, f"delta {int(delta[k, j])} in a slot past the first of a grouped entry (must be 0)", j=j)
        bad = np.flatnonzero(pos >= d["pos_end"])
        if bad.size:
            k = int(bad[0])
            raise where(k, f"position {int(pos[k])} is past the layer's end ({d['pos_end']})")
        vok = np.zeros(vrow.shape, bool)
        inside = vrow < len(images.val)
        vok[inside] = nonempty[vrow[inside]]
        bad = np.argwhere((code != 0) & ~vok)
        if bad.size:
            k, j = int(bad[0][0]), int(bad[0][1])
            raise where(k, f"code {int(code[k, j])} names an empty row of value table {d['val_base']}", j=j)
        tvalid = np.zeros(len(trow), bool)
        inside = trow < len(images.tap)
        tvalid[inside] = taps["valid"][trow[inside]] != 0
        bad = np.flatnonzero(~tvalid & ~filler)  # a filler may pass over rows outside the table
        if bad.size:
            k = int(bad[0])
            raise where(k, f"position {int(pos[k])} lands on tap row {int(trow[k])}, which is not in the layer's table")
        sl = slice(w0, w1)
        real = (code != 0).reshape(-1)
        vflat = vrow.reshape(-1)
        for f in vl.fields:
            out[f.name][sl] = np.where(real, vals[f.name][np.where(real, vflat, 0)] if len(images.val) else 0, 0)
        out["real"][sl] = real
        ic = pos >> d["tap_log2"]
        out["dy"][sl], out["dx"][sl] = np.repeat(taps["dy"][trow], G), np.repeat(taps["dx"][trow], G)
        out["off"][sl] = np.repeat((taps["off"][trow] + (ic << taps["ch_shift"][trow])) & (cfg.act_depth - 1), G)
    return out


def wb_pairs_fit(cfg: AcceleratorConfig, d: dict) -> bool:
    """Whether the writeback can write a layer's output (descriptor d): always with one word a cycle; with two
    (``wb_words`` 2, hw/top.py) each pair of lanes must write two ACT addresses of different parity (the two
    write ports serve the even and the odd banks, and of OUT the even and the odd words), which no pairing of
    lanes k, k + 1 or k, k + 2 gives on a phase-split output of 2 columns and more than 2 rows."""
    return cfg.wb_words == 1 or not d["out_phase"] or d["wo_log2"] != 1 or d["ho_log2"] <= 1


def layer_groups(cfg: AcceleratorConfig, d: dict, li: int) -> int:
    """G = 2**grp_log2, the lane groups of a layer's descriptor, checked: G <= the config's lane_groups, the
    groups' ``lanes / G`` lanes hold the layer's pixels, and no max reduction (a one-line ValueError)."""
    g = d.get("grp_log2", 0)
    if not g:
        return 1
    G, npix = 1 << g, 1 << (d["ho_log2"] + d["wo_log2"])
    if G > cfg.lane_groups:
        raise ValueError(f"layer {li}: {G} lane groups, but the config has lane_groups = {cfg.lane_groups}")
    if npix * G > cfg.lanes:
        raise ValueError(f"layer {li}: {G} lane groups of {npix} pixels need more than the {cfg.lanes} lanes")
    if d["rmax"]:
        raise ValueError(f"layer {li}: a max reduction cannot take lane groups")
    return G


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
    and write. With G = 2**grp_log2 lane groups (B = lanes / G lanes each), slot j of an entry works on
    ACT[off + j*B + p] (the padding test of pixel p) into group j's accumulator, group 0 starting from the
    bias and the others from 0; the groups are then summed a level at a time (group j + G/2 into j: the
    RTL's fold tree), every partial in the acc_bits range. A layer never reads what it writes (the compiler guarantees it), so the order of
    writes inside a layer does not matter.
    """
    images.check()  # (decodes the stream once more; cheap next to the run)
    L = cfg.lanes
    amask = cfg.act_depth - 1
    act = np.array(act, dtype=np.int64).copy()
    if act.shape != (cfg.act_depth,):
        raise ValueError(f"activation memory must have {cfg.act_depth} words, not {act.shape}")
    out = np.zeros(cfg.out_depth, dtype=np.int64)
    rl, dl = rq_layout(cfg), desc_layout(cfg)
    ents = decode_stream(cfg, images)
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
        G = layer_groups(cfg, d, li)
        B = L // G  # lanes of a group: lane j*B + i is pixel i (i < npix) of group j
        for c in range(d["n_ch"]):
            if d["rq_start"] + c >= len(images.rq):
                raise ValueError(f"layer {li} channel {c}: requant row {d['rq_start'] + c} is outside the image")
            row = rl.unpack(images.rq[d["rq_start"] + c])
            cnt = row["count"]
            if w + G * cnt > len(images.wgt):
                raise ValueError(f"layer {li} channel {c}: entries {w}..{w + G * cnt} run past the weight image")
            acc = np.zeros((G, npix), dtype=np.int64)  # group 0 from the bias, the others from 0
            acc[0] = row["bias"]
            rmax = bool(d["rmax"])
            for e in range(w, w + G * cnt):
                if not ents["real"][e]:
                    continue  # a filler (or an empty slot): no term at all (a max keeps its value)
                j = (e - w) % G
                iy, ix = oy + ents["dy"][e], ox + ents["dx"][e]
                valid = (iy >= 0) & (iy < ho) & (ix >= 0) & (ix < wo)
                a = np.where(valid, act[(ents["off"][e] + j * B + p) & amask], 0)
                contrib = np.zeros(npix, dtype=np.int64)
                for t in range(cfg.terms):
                    if ents[f"en{t}"][e]:
                        contrib += a << ents[f"s{t}"][e]
                term = -contrib if ents["sign"][e] else contrib
                acc[j] = np.maximum(acc[j], term) if rmax else acc[j] + term
            while True:  # the fold tree: group j + G/2 into group j, a level at a time (sums)
                if acc.min(initial=0) < acc_lo or acc.max(initial=0) > acc_hi:
                    raise OverflowError(f"layer {li} channel {c}: accumulator leaves the {cfg.acc_bits}-bit range")
                if len(acc) == 1:
                    break
                acc = acc[:len(acc) // 2] + acc[len(acc) // 2:]
            acc = acc[0]
            w += G * cnt
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
