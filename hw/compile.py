"""Compiler: an integer network (apotflow.sw.intnet) + an AcceleratorConfig -> memory images.

What it decides, and checks (a CompileError names the first thing that does not fit):

* Activation placement: every tensor gets its own ACT region (nothing is overwritten, so every
  layer's output can be read back and checked after a run). A tensor read by a stride-2 conv is
  stored 2x2 phase-split (``isa.out_address``), which turns the strided read into consecutive
  addresses: every bank is still read once per cycle.
* Weight entries: each non-zero integer weight becomes one or more entries of at most ``terms``
  same-sign power-of-two terms (APoT weights: one entry; 8-bit weights: their binary or signed-digit
  form, whichever needs fewer entries), with the address offset and the dy/dx padding check.
* Requant rows (count, bias, thresholds clamped to the accumulator range) and layer descriptors.
* Bounds: accumulator worst case, activation widths, memory depths, shift and delta ranges.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from apotflow.sw.intnet import IntNet, IntNetError, Op, macs

from . import isa
from .config import TAP_LOG2_MAX, AcceleratorConfig


class CompileError(ValueError):
    """The network does not fit the accelerator configuration (or uses something it cannot run)."""


def _log2(n: int, what: str) -> int:
    if n <= 0 or n & (n - 1):
        raise CompileError(f"{what} is {n}; the array needs powers of two")
    return n.bit_length() - 1


def weight_entries(v: int, terms: int, max_shift: int) -> list[tuple[int, list[int]]]:
    """Entries (sign, shifts) whose sum is v: binary or non-adjacent form, fewer entries wins."""
    if v == 0:
        return []
    mag, sgn = abs(int(v)), 1 if v < 0 else 0
    binary = [(sgn, [i for i in range(mag.bit_length()) if mag >> i & 1])]
    pos, neg, x, i = [], [], mag, 0
    while x:
        if x & 1:
            d = 2 - (x & 3)  # +1 or -1
            (pos if d > 0 else neg).append(i)
            x -= d
        x >>= 1
        i += 1
    naf = [(sgn, pos), (1 - sgn, neg)]

    def chunk(groups):
        return [(s, sh[k:k + terms]) for s, sh in groups for k in range(0, len(sh), terms)]

    best = min((chunk(binary), chunk(naf)), key=len)
    top = max(s for _, sh in best for s in sh)
    if top > max_shift:
        raise CompileError(f"weight {v} needs a shift of {top}; shift_bits allows up to {max_shift}")
    return best


def acc_bits_needed(lo: int, hi: int) -> int:
    """Smallest accumulator width holding lo..hi with hi below the top value: a threshold above the
    range is clamped to the top (and unused thresholds are the top), which acc must never reach."""
    return max(2, (-lo - 1).bit_length() + 1 if lo < 0 else 1, (hi + 1).bit_length() + 1 if hi >= 0 else 1)


def check_accumulator(net: IntNet, op: Op, cfg: AcceleratorConfig) -> int:
    """Refuse a config whose acc_bits cannot hold op's worst case (IntNet.acc_range: bias plus the
    negative and positive weights times the inputs' max_value; every partial sum and, for a max
    reduction, every term lies inside it). A max reduction compares whole products, so each of its
    weights must be one entry. Returns the highest accumulator value."""
    lo, hi = net.acc_range(op)
    need = acc_bits_needed(lo, hi)
    if need > cfg.acc_bits:
        raise CompileError(f"op {op.name}: the accumulator spans {lo}..{hi} and needs acc_bits >= {need}; "
                           f"acc_bits is {cfg.acc_bits} (raise --acc-bits)")
    if op.reduce == "max":
        for s in op.sources:
            for v in np.unique(s.weight):
                if v and len(weight_entries(int(v), cfg.terms, cfg.max_shift)) != 1:
                    raise CompileError(f"op {op.name}: max-reduced weight {int(v)} needs more than one entry "
                                       f"of {cfg.terms} terms (raise --terms)")
        _, ho, wo = net.tensors[op.out].shape
        for s in op.sources:  # a single output pixel: the stream skips taps on padding, a max must not
            _, h, w = net.tensors[s.tensor].shape
            for ky, kx in zip(*np.nonzero(np.any(np.asarray(s.codes) != 0, axis=(0, 1)))):
                ty, tx = int(ky) - s.pad, int(kx) - s.pad
                if ho * wo == 1 and not (0 <= ty < h and 0 <= tx < w):
                    raise CompileError(f"op {op.name}: a max reduction to one pixel with weights on its padding "
                                       "is not supported")
        empty = ~np.any([np.any(s.codes.reshape(len(op.bias), -1) != 0, axis=1) for s in op.sources], axis=0)
        if np.any(empty & (np.asarray(op.bias) < 0)):
            raise CompileError(f"op {op.name}: channel {int(np.argmax(empty & (np.asarray(op.bias) < 0)))} has no "
                               "weight and a negative bias; the array's max reduction starts from a zero term")
    return hi


def lane_groups_of(net: IntNet, op: Op, cfg: AcceleratorConfig) -> int:
    """The lane groups G the compiler gives op (1: none; docs/hardware.md, "Lane groups"): a sum-reduced
    layer of P output pixels, P < lanes, takes G = lanes / P groups over its input channels when its
    sources are stride 1 (of the output's size: a source channel stride of P, so lane j*P + i reads
    today's consecutive words) and G <= lane_groups, or, one output pixel (fc, global pooling), G =
    min(lanes, lane_groups) groups of consecutive addresses; and when every group's partial sum (the bias
    in group 0 only) fits acc_bits."""
    _, ho, wo = net.tensors[op.out].shape
    npix, L = ho * wo, cfg.lanes
    if cfg.lane_groups == 1 or npix >= L or op.reduce == "max":
        return 1
    if npix == 1:
        G = min(L, cfg.lane_groups)
    elif all(s.stride == 1 for s in op.sources) and L // npix <= cfg.lane_groups:
        G = L // npix
    else:
        return 1
    lo, hi = net._channel_ranges(op)
    bias = [int(b) for b in np.asarray(op.bias).reshape(-1)]
    glo = min((min(a, a - b) for a, b in zip(lo, bias)), default=0)  # a group without the bias, or with it
    ghi = max((max(a, a - b) for a, b in zip(hi, bias)), default=0)
    return G if acc_bits_needed(glo, ghi) <= cfg.acc_bits else 1


def jump_fillers(d: int, pos_bits: int) -> list[int]:
    """The filler entries a jump of ``d`` positions needs before its entry, each as its ``k`` (a filler
    advances ``k << pos_bits`` positions; what is left, at most ``2**pos_bits - 1``, is the entry's own delta)."""
    fill_max = (1 << pos_bits) - 1
    ks = []
    while d > fill_max:
        k = min(d >> pos_bits, fill_max)
        ks.append(k)
        d -= k << pos_bits
    return ks


def _slots(ents: list[tuple[int, int, int]], G: int) -> list[tuple[int, tuple[int, ...]]]:
    """(position, slot, code) sorted by position -> grouped entries (position, the G slots' codes): per
    position as many entries as the slot with the most codes there needs (code 0 where a slot has none)."""
    out, k = [], 0
    while k < len(ents):
        pos, by_slot = ents[k][0], [[] for _ in range(G)]
        while k < len(ents) and ents[k][0] == pos:
            by_slot[ents[k][1]].append(ents[k][2])
            k += 1
        for r in range(max(len(x) for x in by_slot)):
            out.append((pos, tuple(x[r] if r < len(x) else 0 for x in by_slot)))
    return out


def _signed_digits(v: int) -> list[list[tuple[int, tuple[int, ...]]]]:
    """The two single-term forms of v (binary, non-adjacent), each a list of same-sign digit groups."""
    mag, sgn = abs(int(v)), 1 if v < 0 else 0
    binary = [(sgn, tuple(i for i in range(mag.bit_length()) if mag >> i & 1))]
    pos, neg, x, i = [], [], mag, 0
    while x:
        if x & 1:
            d = 2 - (x & 3)
            (pos if d > 0 else neg).append(i)
            x -= d
        x >>= 1
        i += 1
    return [binary, [(sgn, tuple(pos)), (1 - sgn, tuple(neg))]]


def value_table(values: dict[int, int], cfg: AcceleratorConfig) -> tuple[list[tuple[int, tuple[int, ...]]],
                                                                      dict[int, list[int]]]:
    """A layer's value table and each weight value's codes (rows 1..; row 0 is the filler).

    ``values``: weight value -> how many weights hold it. A row is ``(sign, shifts)``: at most ``terms``
    same-sign powers of two. When the rows of every value's ``weight_entries`` fit the ``2**code_bits - 1``
    codes, those are the table. Otherwise the table holds every single signed power of two the values
    need, and then, greedily, the multi-term rows that save the most entries (weighted by how many
    weights hold each value); each value takes the cheaper of its binary and non-adjacent forms, a group
    of digits one row where the table has it, else one row per digit."""
    cap = (1 << cfg.code_bits) - 1
    T = cfg.terms
    rows_of = {v: [(sg, tuple(sh)) for sg, sh in weight_entries(v, T, cfg.max_shift)] for v in values}
    table: list[tuple[int, tuple[int, ...]]] = []
    for v in sorted(values, key=lambda v: (-values[v], v)):
        table += [r for r in rows_of[v] if r not in table]
    if len(table) > cap:
        forms = {v: [[(sg, sh[k:k + T]) for sg, sh in f for k in range(0, len(sh), T)] for f in _signed_digits(v)]
                 for v in values}
        for v in values:
            top = max(x for f in forms[v] for _, sh in f for x in sh)
            if top > cfg.max_shift:
                raise CompileError(f"weight {v} needs a shift of {top}; shift_bits allows up to {cfg.max_shift}")
        singles = sorted({(sg, (x,)) for fs in forms.values() for f in fs for sg, sh in f for x in sh})
        if len(singles) > cap:
            raise CompileError(f"{len(singles)} distinct powers of two do not fit the {cap} codes of "
                               f"code_bits={cfg.code_bits} (raise --code-bits)")
        table = list(singles)

        def cost(v, have):
            return min(sum(1 if len(ch[1]) == 1 or ch in have else len(ch[1]) for ch in f) for f in forms[v])
        have = set(table)
        cands = {ch for fs in forms.values() for f in fs for ch in f if len(ch[1]) > 1}
        cur = {v: cost(v, have) for v in values}
        while len(table) < cap and cands:
            gains = {}
            for ch in cands:
                have.add(ch)
                gains[ch] = sum(values[v] * (cur[v] - cost(v, have)) for v in values
                                if any(ch in f for f in forms[v]))
                have.discard(ch)
            best = max(sorted(gains), key=gains.get)
            if gains[best] <= 0:
                break
            table.append(best)
            have.add(best)
            cands.discard(best)
            cur = {v: cost(v, have) for v in values}
        rows_of = {}
        for v in values:
            f = min(forms[v], key=lambda f: sum(1 if len(ch[1]) == 1 or ch in have else len(ch[1]) for ch in f))
            rows_of[v] = [r for ch in f for r in ([ch] if len(ch[1]) == 1 or ch in have
                                                  else [(ch[0], (x,)) for x in ch[1]])]
    index = {r: i + 1 for i, r in enumerate(table)}
    return table, {v: [index[r] for r in rows] for v, rows in rows_of.items()}


@dataclass
class Placement:
    name: str
    shape: tuple[int, int, int]
    base: int
    phase: bool = False
    memory: str = "act"  # "act" or "out"

    @property
    def size(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def addresses(self) -> np.ndarray:
        """Address of every element, shape (C, H, W)."""
        c, h, w = self.shape
        cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
        if not self.phase:
            return self.base + (cc * h + yy) * w + xx
        ph = ((yy & 1) << 1) | (xx & 1)
        return self.base + cc * h * w + ph * (h * w // 4) + (yy >> 1) * (w // 2) + (xx >> 1)


@dataclass
class LayerInfo:
    op: str
    kind: str
    mode: str
    out: str
    n_ch: int
    npix: int
    entries: int
    counts: list[int]
    work: int  # sum over channels and pixel groups of the channel's entry count
    macs: int
    macs_nonzero: int


@dataclass
class Program:
    config: AcceleratorConfig
    images: isa.MemoryImages
    placements: dict[str, Placement]
    layers: list[LayerInfo]
    input: str
    output: str
    act_words: int
    stats: dict = field(default_factory=dict)

    def input_memory(self, x: np.ndarray) -> np.ndarray:
        """Initial ACT contents with one input image (C, H, W) written where the program reads it."""
        pl = self.placements[self.input]
        x = np.asarray(x, dtype=np.int64).reshape(pl.shape)
        act = np.zeros(self.config.act_depth, dtype=np.int64)
        act[pl.addresses().reshape(-1)] = x.reshape(-1)
        return act

    def read_tensor(self, name: str, act: np.ndarray, out: np.ndarray) -> np.ndarray:
        pl = self.placements[name]
        mem = out if pl.memory == "out" else act
        return np.asarray(mem, dtype=np.int64)[pl.addresses()]

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "tensors": {n: {"base": p.base, "shape": list(p.shape), "layout": "phase2x2" if p.phase else "linear",
                            "memory": p.memory} for n, p in self.placements.items()},
            "layers": [vars(li) for li in self.layers],
            "memory_words": {"act": self.act_words, "wgt": len(self.images.wgt), "rq": len(self.images.rq),
                             "prog": len(self.images.prog)},
            **self.stats,
        }


def _layouts(net: IntNet) -> tuple[dict[str, bool], set[str]]:
    """Which tensors must be phase-split (read with stride 2), checking no reader needs otherwise; and the
    ops run in stored order: a pointwise op (every source 1x1, stride 1, no padding) whose sources and
    output are all phase-split reads and writes word k of each at its word k (the same pixel, both tensors
    having its shape), so it writes its output linearly and its phase-split sources count as read in their
    own layout (an N-bit residual stream's codes op before a stride-2 block: sw/graph_lower.py)."""
    phase, reads = set(), []
    for op in net.ops:
        _, ho, wo = net.tensors[op.out].shape
        if ho * wo == 1:
            continue  # a global read addresses elements directly: any layout works
        for s in op.sources:
            if s.stride == 2:
                phase.add(s.tensor)
            else:
                reads.append((op, s.tensor))
    stored = {op.name for op in net.ops if op.out in phase and all(
        s.tensor in phase and s.stride == 1 and s.pad == 0 and s.weight.shape[2:] == (1, 1) for s in op.sources)}
    both = phase & {t for op, t in reads if op.name not in stored}
    if both:
        raise CompileError(f"tensor {sorted(both)[0]} is read both with stride 2 and stride 1; not supported")
    return {n: n in phase for n in net.tensors}, stored


def live_ranges(net: IntNet) -> dict[str, tuple[int, int]]:
    """Tensor -> (index of the op that writes it, or -1 for the input; index of its last reader).
    Tensors nobody reads (the outputs) stay live to the end, so the host can read them."""
    n = len(net.ops)
    first = {op.out: i for i, op in enumerate(net.ops)}
    last: dict[str, int] = {}
    for i, op in enumerate(net.ops):
        for s in op.sources:
            last[s.tensor] = i
    return {name: (first.get(name, -1), last.get(name, n)) for name in net.tensors}


def reuse_bases(sizes: dict[str, int], ranges: dict[str, tuple[int, int]]) -> dict[str, int]:
    """First-fit ACT bases such that tensors whose live ranges overlap get disjoint regions: tensors in
    the order they are produced, and again largest first; the order with the lower top wins (the first
    on a tie). Largest first places ResNet-8 in 36,864 words instead of 39,936 (the input image, first
    by production, split the three 12,288-word tensors of stack 1 apart).

    Live ranges are inclusive, so an op's output never overlaps the inputs it reads."""
    order = list(sizes)
    by_time = sorted(sizes, key=lambda t: (ranges[t][0], order.index(t)))
    by_size = sorted(sizes, key=lambda t: (-sizes[t], ranges[t][0], order.index(t)))
    tries = [_first_fit(sizes, ranges, names) for names in (by_time, by_size)]
    return min(tries, key=lambda b: max((b[t] + sizes[t] for t in b), default=0))


def _first_fit(sizes: dict[str, int], ranges: dict[str, tuple[int, int]], names: list[str]) -> dict[str, int]:
    placed: list[tuple[int, int, int, int]] = []  # base, size, first, last
    bases = {}
    for name in names:
        size, (a, b) = sizes[name], ranges[name]
        live = [(pb, ps) for pb, ps, pa, pz in placed if not (pz < a or b < pa)]
        for base in sorted({0} | {pb + ps for pb, ps in live}):
            if all(base + size <= pb or pb + ps <= base for pb, ps in live):
                break
        bases[name] = base
        placed.append((base, size, a, b))
    return bases


def compile_net(net: IntNet, cfg: AcceleratorConfig, reuse: bool = False) -> Program:
    """net -> Program for cfg (_compile_net); a field that does not fit its memory format is a CompileError."""
    try:
        return _compile_net(net, cfg, reuse)
    except (CompileError, IntNetError):
        raise
    except ValueError as e:  # Layout.pack / MemoryImages.check: a value outside its field
        raise CompileError(f"the network does not fit this configuration: {e}") from None


def _compile_net(net: IntNet, cfg: AcceleratorConfig, reuse: bool = False) -> Program:
    """``reuse=True`` (deployment builds): tensors share ACT regions by liveness (``reuse_bases``),
    so intermediate tensors are overwritten and only the input and the outputs can be read back
    after a run. The default gives every tensor its own region."""
    net.validate()
    el, rl, dl = isa.entry_layout(cfg), isa.rq_layout(cfg), isa.desc_layout(cfg)
    vl, tl = isa.val_layout(cfg), isa.tap_layout(cfg)
    acc_lo, acc_hi = cfg.acc_range
    act_max = (1 << cfg.act_bits) - 1
    phase, stored_order = _layouts(net)
    # -- placement
    placements, act_top, out_top = {}, 0, 0
    raw_outs = {op.out for op in net.ops if op.mode == "raw"}
    bases = None
    if reuse:
        ranges = live_ranges(net)
        bases = reuse_bases({n: int(np.prod(t.shape)) for n, t in net.tensors.items() if n not in raw_outs}, ranges)
    for name, t in net.tensors.items():
        if name in raw_outs:
            placements[name] = Placement(name, t.shape, out_top, False, "out")
            out_top += int(np.prod(t.shape))
            continue
        if t.max_value > act_max:
            raise CompileError(f"tensor {name} holds values up to {t.max_value}; act_bits={cfg.act_bits} "
                               f"stores at most {act_max}")
        if phase[name]:
            _log2(t.shape[1], f"height of {name}")
            _log2(t.shape[2], f"width of {name}")
            if t.shape[1] < 2 or t.shape[2] < 2:
                raise CompileError(f"tensor {name} is read with stride 2 but is only {t.shape[1]}x{t.shape[2]}")
        if bases is None:
            placements[name] = Placement(name, t.shape, act_top, phase[name])
            act_top += int(np.prod(t.shape))
        else:
            placements[name] = Placement(name, t.shape, bases[name], phase[name])
            act_top = max(act_top, bases[name] + int(np.prod(t.shape)))
    if act_top > cfg.act_depth:
        raise CompileError(f"activations need {act_top} words; act_depth is {cfg.act_depth} (raise --act-depth)")
    if act_top > cfg.act_capacity:
        raise CompileError(f"activations need {act_top} words; the ACT banks hold {cfg.act_capacity} "
                           f"(act_rows {cfg.act_rows} x {cfg.lanes} lanes)")
    if out_top > cfg.out_depth:
        raise CompileError(f"raw outputs need {out_top} words; out_depth is {cfg.out_depth} (raise --out-depth)")
    # -- layers
    wgt, rq, prog, layers = [], [], [], []
    tap_rows: list[int] = []
    val_rows: list[int] = []
    val_tables: dict[tuple, int] = {}
    dmin, dmax = cfg.delta_range
    mac_info = macs(net)["per_op"]
    cache: dict[str, np.ndarray] = {}

    def addr_of(pl: Placement) -> np.ndarray:
        if pl.name not in cache:
            cache[pl.name] = pl.addresses()
        return cache[pl.name]
    for li, op in enumerate(net.ops):
        cout, ho, wo = net.tensors[op.out].shape
        hl, wl = _log2(ho, f"output height of {op.name}"), _log2(wo, f"output width of {op.name}")
        npix = ho * wo
        bound = check_accumulator(net, op, cfg)
        if op.mode == "shift" and (bound >> op.shift) > act_max:
            raise CompileError(f"op {op.name}: shifted sums reach {bound >> op.shift} > {act_max} (act_bits)")
        if op.mode == "thresh":
            nlev = len(op.levels_out)
            if nlev > cfg.max_levels:
                raise CompileError(f"op {op.name} has {nlev} output levels; max_levels is {cfg.max_levels}")
            if op.levels_out.max() > act_max:
                raise CompileError(f"op {op.name}: output level {op.levels_out.max()} exceeds act_bits")
        w_start, rq_start, counts = len(wgt), len(rq), []
        weights = [(s, s.weight, placements[s.tensor], net.tensors[s.tensor].shape) for s in op.sources]
        # -- the tap table: one row per (source, ky, kx) (npix == 1: one row, positions are addresses)
        taps, tap_of = [], {}
        direct = npix == 1
        G = lane_groups_of(net, op, cfg)
        gl, lanes_log2 = G.bit_length() - 1, cfg.lanes.bit_length() - 1
        for si, (s, W, pl, (_cin, h, w)) in enumerate(weights):
            if not direct and s.stride not in (1, 2):
                raise CompileError(f"op {op.name}: stride {s.stride} is not supported (1 or 2)")
            if not direct and s.stride == 1 and (h, w) != (ho, wo):
                raise CompileError(f"op {op.name}: stride-1 source {s.tensor} must have the output size")
            for ky in range(W.shape[2]):
                for kx in range(W.shape[3]):
                    ty, tx = ky - s.pad, kx - s.pad
                    if direct:
                        continue
                    if s.stride == 1:
                        dy, dx = ty, tx
                        off0 = pl.base + dy * w + dx
                    else:
                        py, px = ty & 1, tx & 1
                        dy, dx = (ty - py) // 2, (tx - px) // 2
                        off0 = pl.base + ((py << 1) | px) * (h * w // 4) + dy * wo + dx
                    if not (dmin <= dy <= dmax and dmin <= dx <= dmax):
                        raise CompileError(f"op {op.name}: kernel offset ({dy},{dx}) exceeds delta_bits={cfg.delta_bits}")
                    tap_of[si, ky, kx] = len(taps)
                    # grouped: a block of G input channels a position, lane j*P + i on channel b*G + j
                    taps.append({"dy": dy, "dx": dx, "off": off0 % cfg.act_depth,
                                 "ch_shift": lanes_log2 if G > 1 else _log2(h * w, f"pixels of {s.tensor}"),
                                 "valid": 1})
        if direct:
            dbase = min(pl.base for _s, _W, pl, _sh in weights)
            # grouped (B = lanes / G lanes a group, lane j*B the group's one pixel): address dbase + k*lanes +
            # j*B + r is slot j of position k << log2 B | r, whose tap row r has off dbase + r
            taps = [{"off": (dbase + r) % cfg.act_depth, "ch_shift": lanes_log2 if G > 1 else 0, "valid": 1}
                    for r in range(cfg.lanes // G if G > 1 else 1)]
        tap_log2 = max(0, (len(taps) - 1).bit_length())
        if tap_log2 > TAP_LOG2_MAX:
            raise CompileError(f"op {op.name} needs {len(taps)} tap rows; a layer has at most {1 << TAP_LOG2_MAX}")
        tap_base = -(-len(tap_rows) >> tap_log2) << tap_log2
        if tap_base + (1 << tap_log2) > cfg.tap_depth:
            raise CompileError(f"tap rows exceed tap_depth={cfg.tap_depth} at op {op.name} (raise --tap-depth)")
        tap_rows += [0] * (tap_base - len(tap_rows)) + [tl.pack(**t) for t in taps]
        tap_rows += [0] * ((1 << tap_log2) - len(taps))
        # -- the value table, from the weight values of the whole layer
        vcount: dict[int, int] = {}
        for _s, W, _pl, _sh in weights:
            for v, k in zip(*np.unique(W[W != 0], return_counts=True)):
                vcount[int(v)] = vcount.get(int(v), 0) + int(k)
        table, codes_of = value_table(vcount, cfg)
        vrows = [0] + [vl.pack(sign=sg, **{f"en{t}": 1 for t in range(len(sh))},
                               **{f"s{t}": x for t, x in enumerate(sh)}) for sg, sh in table]
        vrows += [0] * ((1 << cfg.code_bits) - len(vrows))
        val_base = val_tables.setdefault(tuple(vrows), len(val_tables))
        if val_base == len(val_tables) - 1 and len(val_rows) < (val_base + 1) << cfg.code_bits:
            val_rows += vrows
        per_ch = []  # per output channel: sorted (position, codes of its G slots)
        blog2 = lanes_log2 - gl  # grouped direct layers: log2 of a group's lanes
        for c in range(cout):
            ents = []
            for si, (s, W, pl, (_cin, h, w)) in enumerate(weights):
                for ic, ky, kx in zip(*np.nonzero(W[c])):
                    if direct:
                        ty, tx = int(ky) - s.pad, int(kx) - s.pad
                        if not (0 <= ty < h and 0 <= tx < w):
                            continue  # multiplies zero padding
                        pos = int(addr_of(pl)[ic, ty, tx]) - dbase
                        if G > 1:
                            pos, slot = (pos >> lanes_log2 << blog2) | (pos & ((1 << blog2) - 1)), (pos >> blog2) & (G - 1)
                    else:
                        pos, slot = (int(ic) >> gl << tap_log2) | tap_of[si, int(ky), int(kx)], int(ic) & (G - 1)
                    ents += [(pos, slot if G > 1 else 0, code) for code in codes_of[int(W[c, ic, ky, kx])]]
            ents.sort(key=lambda e: e[0])
            per_ch.append(_slots(ents, G))

        def fillers(start: int, ents) -> int:
            poss = [start, *(pos for pos, _ in ents)]
            return sum(len(jump_fillers(b - a, cfg.pos_bits)) for a, b in itertools.pairwise(poss))
        # diag: channel c's positions start at c << diag_log2 (a depthwise op: pooling, a shortcut add)
        diag_log2 = tap_log2
        if direct and len(weights) == 1:
            diag_log2 = _log2(weights[0][3][1] * weights[0][3][2], f"pixels of {weights[0][0].tensor}")
            if G > 1:  # channel c's first address c << diag_log2 is position c << (diag_log2 - log2 G) when
                diag_log2 = max(0, diag_log2 - gl)  # diag_log2 >= log2 lanes; any start <= it is exact (below)
        diag = all(not ents or ents[0][0] >= c << diag_log2 for c, ents in enumerate(per_ch)) and \
            sum(fillers(c << diag_log2, e) for c, e in enumerate(per_ch)) < sum(fillers(0, e) for e in per_ch)
        pos_end, dsh = 1, el.offsets["delta"]
        wgt += [0] * (-len(wgt) % G)  # a grouped layer's entries of G words start at a multiple of G
        w_start = len(wgt)
        for c, ents in enumerate(per_ch):
            n0 = len(wgt)
            prev = c << diag_log2 if diag else 0
            pos_end = max(pos_end, prev + 1)
            for pos, codes in ents:
                d = pos - prev
                for k in jump_fillers(d, cfg.pos_bits):  # fillers (code 0 in every slot) for a long jump
                    wgt += [k << dsh] + [0] * (G - 1)
                    d -= k << cfg.pos_bits
                # = el.pack(code=codes[0], delta=d), then the other slots' codes (delta 0); fields in range
                wgt += [codes[0] | d << dsh, *codes[1:]]
                prev = pos
            pos_end = max(pos_end, prev + 1)
            if pos_end >> cfg.pos_width:
                raise CompileError(f"op {op.name}: position {prev} does not fit pos_width={cfg.pos_width}")
            if len(wgt) == n0:
                wgt += [el.pack()] * G  # a channel with no non-zero weight still needs one entry: a filler
            counts.append((len(wgt) - n0) // G)
            row = {"count": counts[-1], "bias": int(op.bias[c])}
            for j in range(cfg.max_levels - 1):
                t = op.thresholds[c, j] if op.mode == "thresh" and j < op.thresholds.shape[1] else acc_hi
                row[f"thr{j}"] = int(min(max(t, acc_lo), acc_hi))
            rq.append(rl.pack(**row))
            if len(wgt) > cfg.wgt_depth:
                raise CompileError(f"weight entries exceed wgt_depth={cfg.wgt_depth} at op {op.name} (raise --wgt-depth)")
        if len(rq) > cfg.rq_depth:
            raise CompileError(f"requant rows ({len(rq)}) exceed rq_depth={cfg.rq_depth} (raise --rq-depth)")
        if cout >= 1 << cfg.ch_bits:
            raise CompileError(f"op {op.name} has {cout} channels; the descriptor holds {(1 << cfg.ch_bits) - 1}")
        opl = placements[op.out]
        if opl.phase and (hl < 1 or wl < 1):
            raise CompileError(f"op {op.name}: a phase-split output needs at least 2x2 pixels")
        desc = {"mode": {"thresh": isa.MODE_THRESH, "shift": isa.MODE_SHIFT, "raw": isa.MODE_RAW}[op.mode],
                "last": int(li == len(net.ops) - 1), "n_ch": cout, "ho_log2": hl, "wo_log2": wl,
                "w_start": w_start, "rq_start": rq_start, "out_base": opl.base,
                "out_phase": int(opl.phase and op.name not in stored_order),
                "shift": op.shift, "rmax": int(op.reduce == "max"),
                "val_base": val_base, "tap_base": tap_base, "tap_log2": tap_log2, "pos_end": pos_end,
                "diag": int(diag), "diag_log2": diag_log2 if diag else 0, "grp_log2": gl}
        if op.mode == "thresh":
            for j, v in enumerate(op.levels_out):
                desc[f"lv{j}"] = int(v)
        if not isa.wb_pairs_fit(cfg, desc):
            raise CompileError(f"op {op.name}: a two-word writeback (wb_words 2) cannot write a phase-split output "
                               f"of 2 columns and {1 << hl} rows; use --wb-words 1")
        prog.append(dl.pack(**desc))
        groups = -(-npix // cfg.lanes)
        mi = mac_info.get(op.name, {"macs": 0, "macs_nonzero": 0})
        layers.append(LayerInfo(op.name, op.kind, op.mode, op.out, cout, npix, sum(counts), counts,
                                sum(counts) * groups, mi["macs"], mi["macs_nonzero"]))
    if len(prog) > cfg.prog_depth:
        raise CompileError(f"{len(prog)} layers exceed prog_depth={cfg.prog_depth} (raise --prog-depth)")
    if len(val_tables) > cfg.prog_depth:
        raise CompileError(f"{len(val_tables)} value tables exceed prog_depth={cfg.prog_depth} (raise --prog-depth)")
    if len(tap_rows) > cfg.tap_depth:
        raise CompileError(f"tap rows ({len(tap_rows)}) exceed tap_depth={cfg.tap_depth} (raise --tap-depth)")
    images = isa.MemoryImages(cfg, wgt, rq, prog, val_rows, tap_rows)
    images.check()
    m = macs(net)
    stats = {"act_reuse": reuse, "macs": m["macs"], "macs_nonzero": m["macs_nonzero"],
             "cycles_ideal": m["macs_nonzero"] / cfg.lanes, "work_cycles": sum(li.work for li in layers)}
    return Program(cfg, images, placements, layers, net.input, net.output, act_top, stats)


def run_functional(prog: Program, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run one image through the ISA interpreter; return every tensor as read back from memory."""
    act, out, _ = isa.run_program(prog.config, prog.images, prog.input_memory(x))
    return {name: prog.read_tensor(name, act, out) for name in prog.placements}


def first_mismatch(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], order: list[str]):
    """(tensor, index tuple, expected, got) of the first differing element in layer order, or None."""
    for name in order:
        e, g = np.asarray(expected[name]), np.asarray(got[name])
        if e.shape != g.shape:
            return name, (), e.shape, g.shape
        diff = np.argwhere(e != g)
        if len(diff):
            i = tuple(int(v) for v in diff[0])
            return name, i, int(e[i]), int(g[i])
    return None


__all__ = ["CompileError", "Op", "Program", "acc_bits_needed", "check_accumulator", "compile_net", "first_mismatch",
           "run_functional", "weight_entries"]
