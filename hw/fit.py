"""Size the memories of an AcceleratorConfig to a network, compiling it once.

:func:`fit` compiles the network with generous memory depths, learns what it needs (the smallest
powers of two that hold it) and re-encodes that Program's memory words for the fitted depths instead
of compiling again: the depths change only the widths of address and count fields, never a field's
value, except a weight entry's input address offset, which is taken modulo ``act_depth`` (the
compiler stores ``off % act_depth``; the generous depth is a multiple of the fitted one, so reducing
the stored value again gives the same number). tests/test_fit.py checks the result equals a fresh
compile with the fitted config, word for word.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from apotflow.sw.intnet import IntNet

from . import isa
from .compile import Program, compile_net
from .config import AcceleratorConfig

DEPTHS = ("act_depth", "wgt_depth", "rq_depth", "prog_depth", "out_depth")
PROBE_DEPTH = 1 << 24  # the depth a field is compiled with before it is fitted
MODULAR_FIELDS = {("entry", "off"): "act_depth"}  # (layout, field) -> the depth the value is reduced by


def _pow2(n: int) -> int:
    return 1 << max(0, (max(1, n) - 1).bit_length())


def needs(prog: Program) -> dict[str, int]:
    """The smallest memory depths (powers of two) that hold a compiled program."""
    cfg = prog.config
    out_words = max((p.base + p.size for p in prog.placements.values() if p.memory == "out"), default=1)
    return {  # the RTL (hw/top.py) also needs act_depth >= 2 x lanes and >= out_depth
        "act_depth": max(_pow2(prog.act_words), 2 * cfg.lanes, _pow2(out_words)),
        "wgt_depth": _pow2(len(prog.images.wgt)),
        "rq_depth": _pow2(len(prog.images.rq)),
        "prog_depth": _pow2(len(prog.images.prog)),
        "out_depth": _pow2(out_words),
    }


def _repack(words: list[int], old: isa.Layout, new: isa.Layout, cfg: AcceleratorConfig) -> list[int]:
    """Words of layout ``old`` in layout ``new`` (same fields, some unsigned ones narrower or wider)."""
    if [f.name for f in old.fields] != [f.name for f in new.fields]:
        raise ValueError(f"{new.name}: the fields differ between the two configs")
    mod = {f: getattr(cfg, depth) for (layout, f), depth in MODULAR_FIELDS.items() if layout == new.name}
    if old.width <= 63 and new.width <= 63 and not any(f.signed and f.width != new.by_name[f.name].width
                                                       for f in old.fields):
        w = np.asarray(words, dtype=np.int64)  # vectorised: every word fits an int64
        out = np.zeros_like(w)
        for f in old.fields:
            v = (w >> old.offsets[f.name]) & ((1 << f.width) - 1)  # raw bits (a signed field keeps its width)
            if f.name in mod:
                v %= mod[f.name]
            width = new.by_name[f.name].width
            if len(v) and int(v.max()) >> width:
                raise ValueError(f"{new.name}.{f.name} = {int(v.max())} does not fit {width} bits")
            out |= v << new.offsets[f.name]
        return [int(x) for x in out]
    out = []
    for word in words:
        v = old.unpack(word)
        for f, m in mod.items():
            v[f] %= m
        out.append(new.pack(**v))  # raises if a value no longer fits: a field this module does not know
    return out


def retarget(prog: Program, cfg: AcceleratorConfig) -> Program:
    """``prog`` with its memory words re-encoded for ``cfg``, which differs from ``prog.config`` in memory
    depths only (each still holding the program)."""
    old = prog.config
    if replace(cfg, **{k: getattr(old, k) for k in DEPTHS}) != old:
        raise ValueError("retarget changes memory depths only")
    words = {}
    for key, layout in (("wgt", isa.entry_layout), ("rq", isa.rq_layout), ("prog", isa.desc_layout)):
        words[key] = _repack(getattr(prog.images, key), layout(old), layout(cfg), cfg)
    images = isa.MemoryImages(cfg, **words)
    images.check()
    return replace(prog, config=cfg, images=images, stats=dict(prog.stats))


def fit(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset(), reuse: bool = False) -> Program:
    """The network compiled for cfg with its act/wgt/rq/prog/out depths fitted (fields named in ``keep``
    stay as given). One compile; any error other than a depth (accumulator width, shifts) surfaces from it."""
    probe = {k: PROBE_DEPTH for k in DEPTHS if k not in keep}
    prog = compile_net(net, replace(cfg, **probe), reuse=reuse)
    fitted = replace(cfg, **{k: v for k, v in needs(prog).items() if k not in keep})
    return retarget(prog, fitted) if probe else prog


def fitted_config(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset()) -> AcceleratorConfig:
    """cfg with act/wgt/rq/prog/out depths fitted to net (fields named in ``keep`` stay as given)."""
    return fit(net, cfg, keep).config
