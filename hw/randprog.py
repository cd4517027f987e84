"""Random small programs for testing the RTL against ``isa.run_program``.

Layers read activations at offsets that never overlap their own output region (the compiler's
guarantee) and often read the previous layer's output (exercising the drain between layers). Every
program has at least one THRESH, SHIFT and RAW layer; channels with zero entries, groups with fewer
entries than valid lanes (writeback stalls) and 2x2 phase-split outputs all occur.
"""

from __future__ import annotations

import random

import numpy as np

from . import isa
from .config import AcceleratorConfig


def random_config(rng: random.Random, wb_words: int = 1) -> AcceleratorConfig:
    return AcceleratorConfig(
        wb_words=wb_words,
        lanes=rng.choice([4, 8]), terms=rng.choice([1, 2]), act_bits=rng.choice([4, 6, 8]),
        acc_bits=rng.choice([18, 20, 24]), shift_bits=rng.choice([3, 4]), delta_bits=rng.choice([2, 3]),
        code_bits=rng.choice([2, 3]), pos_bits=rng.choice([2, 3]),
        max_levels=rng.choice([4, 8]), act_depth=256, wgt_depth=256, tap_depth=32, rq_depth=32, prog_depth=8,
        out_depth=16,
    )


def _disjoint(a0: int, n: int, b0: int, m: int, depth: int) -> bool:
    """[a0, a0+n) and [b0, b0+m) modulo depth do not intersect."""
    sa = {(a0 + i) % depth for i in range(n)}
    return not any((b0 + j) % depth in sa for j in range(m))


def random_program(cfg: AcceleratorConfig, rng: random.Random, n_layers: int | None = None,
                   max_ch: int = 3, max_count: int = 5):
    """Returns (images, act_init)."""
    el, rl, dl = isa.entry_layout(cfg), isa.rq_layout(cfg), isa.desc_layout(cfg)
    vl, tl = isa.val_layout(cfg), isa.tap_layout(cfg)
    n_layers = n_layers or rng.randint(3, 4)
    modes = [isa.MODE_THRESH, isa.MODE_SHIFT, isa.MODE_RAW] + [rng.choice([0, 1, 2]) for _ in range(n_layers - 3)]
    rng.shuffle(modes)
    amax = (1 << cfg.act_bits) - 1
    dlo, dhi = cfg.delta_range
    wgt, rq, prog, val, tap = [], [], [], [], []
    prev_out = None  # (base, length) of the previous ACT-writing layer
    for li, mode in enumerate(modes):
        hl, wl = rng.randint(0, 3), rng.randint(0, 3)
        npix = 1 << (hl + wl)
        n_ch = rng.randint(1, max_ch)
        if mode == isa.MODE_RAW:
            while n_ch * npix > cfg.out_depth:
                if hl >= wl and hl > 0:
                    hl -= 1
                elif wl > 0:
                    wl -= 1
                else:
                    n_ch = 1
                npix = 1 << (hl + wl)
            out_base = rng.randrange(cfg.out_depth - n_ch * npix + 1)
            region = (0, 0)
        else:
            out_base = rng.randrange(cfg.act_depth - n_ch * npix + 1)
            region = (out_base, n_ch * npix)
        phase = int(hl >= 1 and wl >= 1 and rng.random() < 0.5)
        # Shift range so that the accumulator cannot overflow.
        room = cfg.acc_bits - 2 - cfg.act_bits - (max_count * cfg.terms).bit_length()
        smax = max(0, min(cfg.max_shift, room))
        bias_lim = 1 << max(0, cfg.acc_bits - 3)
        w_start, rq_start = len(wgt), len(rq)
        typical = (amax << min(smax, 3)) * 2
        # the layer's tables: a few tap rows (often near the previous layer's output) and value rows
        tap_log2 = rng.randint(0, 2)
        tap_base = -(-len(tap) >> tap_log2) << tap_log2
        tap += [0] * (tap_base - len(tap))
        rows = []
        for _ in range(1 << tap_log2):
            near = prev_out and rng.random() < 0.6
            off = (prev_out[0] + rng.randrange(max(1, prev_out[1]))) if near else rng.randrange(cfg.act_depth)
            rows.append({"dy": rng.randint(dlo, dhi), "dx": rng.randint(dlo, dhi), "off": off % cfg.act_depth,
                         "ch_shift": rng.randint(0, 3), "valid": 1})
        tap += [tl.pack(**r) for r in rows]
        ncodes = rng.randint(1, (1 << cfg.code_bits) - 1)
        vrows = [0]
        for _ in range(ncodes):
            v = {"sign": rng.randint(0, 1)}
            en = [int(rng.random() < 0.8) for _ in range(cfg.terms)]
            en[rng.randrange(cfg.terms)] = 1  # a row with no term is not a weight
            for t in range(cfg.terms):
                v[f"en{t}"], v[f"s{t}"] = en[t], rng.randint(0, smax)
            vrows.append(vl.pack(**v))
        val += [0] * ((li << cfg.code_bits) - len(val)) + vrows + [0] * ((1 << cfg.code_bits) - len(vrows))
        pos_end = 1
        diag, diag_log2 = int(rng.random() < 0.3), rng.randint(0, 3)
        for c in range(n_ch):
            count = rng.choice([0, 1, 1, 2, 3, max_count]) if rng.random() < 0.4 else rng.randint(1, max_count)
            pos = c << diag_log2 if diag else 0
            pos_end = max(pos_end, pos + 1)
            for _ in range(count):
                for _try in range(100):
                    code = 0 if rng.random() < 0.15 else rng.randint(1, ncodes)
                    delta = rng.randrange(1 << cfg.pos_bits)
                    p = pos + (delta << cfg.pos_bits if code == 0 else delta)
                    r = rows[p & ((1 << tap_log2) - 1)]
                    off = (r["off"] + ((p >> tap_log2) << r["ch_shift"])) % cfg.act_depth
                    if code == 0 or mode == isa.MODE_RAW or _disjoint(off, npix, *region, cfg.act_depth):
                        break
                else:  # crowded memory: a filler that stays put
                    code, delta, p = 0, 0, pos
                wgt.append(el.pack(code=code, delta=delta))
                pos = p
            pos_end = max(pos_end, pos + 1)
            thr = sorted(rng.randint(-typical, typical) for _ in range(cfg.max_levels - 1))
            row = {"count": count, "bias": rng.randint(-bias_lim // 8, bias_lim // 8)}
            row.update({f"thr{j}": t for j, t in enumerate(thr)})
            rq.append(rl.pack(**row))
        d = {"mode": mode, "last": int(li == n_layers - 1), "n_ch": n_ch, "ho_log2": hl, "wo_log2": wl,
             "w_start": w_start, "rq_start": rq_start, "out_base": out_base, "out_phase": phase,
             "shift": rng.randint(0, 6), "rmax": int(rng.random() < 0.3),
             "val_base": li, "tap_base": tap_base, "tap_log2": tap_log2, "pos_end": pos_end + rng.randint(0, 2),
             "diag": diag, "diag_log2": diag_log2}
        d.update({f"lv{j}": rng.randint(0, amax) for j in range(cfg.max_levels)})
        if not isa.wb_pairs_fit(cfg, d):  # (a two-word writeback: this output written linearly instead)
            d["out_phase"] = 0
        prog.append(dl.pack(**d))
        if mode != isa.MODE_RAW:
            prev_out = region
    images = isa.MemoryImages(cfg, wgt, rq, prog, val, tap)
    act = np.array([rng.randint(0, amax) for _ in range(cfg.act_depth)], dtype=np.int64)
    return images, act
