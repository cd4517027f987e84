"""Cycle model of the RTL, from the descriptors and RQ counts alone (no simulation). Exact.

Time 0 is the first cycle ``busy`` is high. For layer k (npix = 2**(ho_log2+wo_log2), groups of
``lanes`` pixels, n_g = the writeback cycles of group g = ceil(valid lanes / ``wb_words``), count'_c =
max(count_c, 1)):

* it starts (descriptor and first RQ row latched) at X_k = max(W_k + SETTLE, F), where W_k is the cycle its
  WAIT began (0 for the first layer, I_last + 1 after a layer that issued, X + 1 after an empty one)
  and F = I + pipe + WB + n + 1 is the cycle after the previous issuing layer's last write (last
  entry issued at I, n its writeback cycles) is in the final stage (the sequencer sees an empty pipeline
  through a register);
* RUN issues from X_k + 1 for R_k = sum over (c, g) in issue order of max(count'_c, n_prev) cycles
  (n_prev: the writeback cycles of the previous group of the same layer, 0 for the first): the last entry
  of a group waits until the writeback buffer is free;
* the last layer ends with ``done`` at D = max(X + 2, I_last + pipe + WB + 3 + n_last) (the sequencer sees the
  empty pipeline through two registers there, and DRAIN's first cycle never ends it); total = D + 1.

Steady state a middle layer therefore costs R_k + pipe + WB + 1 + n_last = R_k + 22 + n_last cycles (24 at 64 lanes, 25 from 128 on)
(n_last = the writeback of its last group, ``wb_words`` lanes a cycle), the first layer SETTLE = 6 more, the last layer 3 more.
perf[k] = X_{k+1} - X_k (perf[0] counts from 0; the last layer counts through D).
"""

from __future__ import annotations

from . import isa
from .config import AcceleratorConfig


def pipe(cfg: AcceleratorConfig) -> int:
    """S1, S1a, S1b, D1..D3, S2, S2a, S2b, S3..S9: issue of a group's last entry to the writeback buffer
    load (the WGT read's second cycle: S1a; the stream decode: S1b, D1..D3; the ACT rows registered and
    then registered beside each bank: S2a, S2b; the lanes: S6..S8); one more (S3c) where the ACT
    rotation is registered mid-way (hw/actmem.py, 128 lanes and more); and, with lane groups, the fold
    tree's log2 lane_groups registered levels between the lanes and the writeback buffer, in every layer,
    grouped or not; and one more each (S1c, S5b) where the WGT bank select is registered mid-way and the lanes'
    operands twice (64 lanes and more)."""
    return (13 + cfg.lane_latency + (cfg.act_read_latency - 2) + (cfg.wgt_read_latency - 2)
            + (cfg.operand_stages - 1) + cfg.fold_levels)
WB = 5  # W1..W4: writeback stages after W0 (RQ row register, comparators, level mux, its register W3b, registered write)
SETTLE = 6  # PROG read, RQ port A's address registered, then three fills (prefetch and current channel)


def _layers(cfg: AcceleratorConfig, images: isa.MemoryImages):
    dl, rl = isa.desc_layout(cfg), isa.rq_layout(cfg)
    for dword in images.prog:
        d = dl.unpack(dword)
        counts = [rl.unpack(images.rq[(d["rq_start"] + c) % cfg.rq_depth])["count"] for c in range(d["n_ch"])]
        yield d, counts
        if d["last"]:
            return
    raise ValueError("program has no descriptor with last=1")


def issue_units(d: dict, counts: list[int], lanes: int, words: int) -> list[tuple[int, int]]:
    """A layer's issue units in issue order: (entries of the channel, writeback cycles of the pixel group:
    its valid lanes n written ``words`` a cycle, ceil(n / words)) for each channel and each group of
    ``lanes`` pixels; [] for a layer without channels."""
    npix = 1 << (d["ho_log2"] + d["wo_log2"])
    nv = [min(lanes, npix - g * lanes) for g in range(-(-npix // lanes))]
    return [(cnt, -(-n // words)) for cnt in counts for n in nv]


def layer_cycles(cfg: AcceleratorConfig, images: isa.MemoryImages) -> list[int]:
    return schedule_cycles((d["last"], issue_units(d, counts, cfg.lanes, cfg.wb_words), pipe(cfg))
                           for d, counts in _layers(cfg, images))


def schedule_cycles(layers) -> list[int]:
    """The recurrences of the module docstring on a schedule: per layer (last, issue units [(count, n), ...]
    in issue order, or [] for a layer that issues nothing, its pipe). Returns perf[k], each layer's cycles."""
    starts, wait_start, front_free, last_issue = [], 0, 0, None
    done = None
    for last, units, P in layers:
        x = max(wait_start + SETTLE, front_free)
        starts.append(x)
        if not units:
            wait_start = x + 1
            if last:
                done = x + 2 if last_issue is None else max(x + 2, last_issue[0] + last_issue[2] + WB + 3 + last_issue[1])
            continue
        run, prev = 0, 0
        for cnt, n in units:
            run += max(cnt, 1, prev)
            prev = n
        i_last = x + run
        last_issue = (i_last, units[-1][1], P)
        front_free = i_last + P + WB + 1 + units[-1][1]
        wait_start = i_last + 1
        if last:
            done = i_last + P + WB + 3 + units[-1][1]
    ends = starts[1:] + [done + 1]
    out = [e - s for s, e in zip(starts, ends)]
    out[0] = ends[0]
    return out


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


TIMING_RULES = ("latency = cycles per image / Fmax (nextpnr's, after routing); images/s = Fmax / cycles per image: "
                "one image at a time, host transfers not included")


def timing(cycles: int | None, fmax_mhz: float | None) -> dict:
    """The one definition of a build's speed: ``cycles_per_image`` (exact, from this model or the
    co-simulation), ``fmax_mhz``, ``latency_us`` = cycles / Fmax and ``images_per_s`` = Fmax / cycles
    (None where either is unknown: no program, or not placed and routed)."""
    known = bool(cycles) and bool(fmax_mhz)
    return {
        "cycles_per_image": cycles,
        "fmax_mhz": fmax_mhz,
        "latency_us": round(cycles / fmax_mhz, 3) if known else None,
        "images_per_s": round(fmax_mhz * 1e6 / cycles, 2) if known else None,
    }
