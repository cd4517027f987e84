"""Cycle model of the RTL, from the descriptors and RQ counts alone (no simulation).

Per layer with n_ch > 0 (npix = 2**(ho_log2+wo_log2), groups of `lanes` pixels, n_g = valid lanes of
group g, count'_c = max(count_c, 1)):

    cycles = 3                                   # FETCH, DESC, ROW
           + sum over (c, g) in issue order of max(count'_c, n_prev)   # RUN; n_prev: valid lanes of
                                                  # the previous group of the layer (0 for the first)
           + 6 + n_last                           # DRAIN: pipeline (4) + writeback of the last group
                                                  # (n_last writes) + the cycle that sees it empty

A layer with n_ch = 0 takes 4 cycles. The run's total (`cycles` port) is the sum over the layers up to
and including the one with last=1; ``busy`` is high for exactly that many cycles.
"""

from __future__ import annotations

from . import isa
from .config import AcceleratorConfig

FILL = 3  # FETCH, DESC, ROW
DRAIN = 6  # S1..S4, W0 of lane 0 .. W1 of the last lane, plus the cycle that sees the pipeline empty


def layer_cycles(cfg: AcceleratorConfig, images: isa.MemoryImages) -> list[int]:
    dl, rl = isa.desc_layout(cfg), isa.rq_layout(cfg)
    L = cfg.lanes
    out = []
    for dword in images.prog:
        d = dl.unpack(dword)
        npix = 1 << (d["ho_log2"] + d["wo_log2"])
        if d["n_ch"] == 0:
            out.append(FILL + 1)
        else:
            ngroups = -(-npix // L)
            nv = [min(L, npix - g * L) for g in range(ngroups)]
            run, prev = 0, 0
            for c in range(d["n_ch"]):
                cnt = max(1, rl.unpack(images.rq[(d["rq_start"] + c) % cfg.rq_depth])["count"])
                for g in range(ngroups):
                    run += max(cnt, prev)
                    prev = nv[g]
            out.append(FILL + run + DRAIN + nv[-1])
        if d["last"]:
            return out
    raise ValueError("program has no descriptor with last=1")


def total_cycles(cfg: AcceleratorConfig, images: isa.MemoryImages) -> int:
    return sum(layer_cycles(cfg, images))


def ideal_cycles(cfg: AcceleratorConfig, images: isa.MemoryImages) -> int:
    """The bound the contract is measured against: one entry per cycle per (channel, group)."""
    dl, rl = isa.desc_layout(cfg), isa.rq_layout(cfg)
    tot = 0
    for dword in images.prog:
        d = dl.unpack(dword)
        ngroups = -(-(1 << (d["ho_log2"] + d["wo_log2"])) // cfg.lanes)
        for c in range(d["n_ch"]):
            tot += ngroups * rl.unpack(images.rq[(d["rq_start"] + c) % cfg.rq_depth])["count"]
        if d["last"]:
            break
    return tot
