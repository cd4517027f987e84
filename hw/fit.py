"""Size the memories of an AcceleratorConfig to a network: the smallest powers of two that hold it,
and the ACT banks to the live tensors (``act_rows``: not rounded up, the part needs no power of two).

:func:`fit` compiles the network with generous memory depths to learn what it needs, then compiles it
once more for the fitted depths and returns that Program, which every later step (rtl, cycles, cosim,
synth, report) takes: two compiles per command, whatever the number of steps. (With the compact weight
stream the depths change the tap table's input addresses and the descriptors' field widths, so the
probe's words cannot simply be re-encoded.)
"""

from __future__ import annotations

from dataclasses import replace

from apotflow.sw.intnet import IntNet

from .compile import Program, compile_net
from .config import MAX_LEVELS, AcceleratorConfig

DEPTHS = ("act_depth", "wgt_depth", "tap_depth", "rq_depth", "prog_depth", "out_depth")
PROBE_DEPTH = 1 << 24  # the depth a field is compiled with before it is fitted


def _pow2(n: int) -> int:
    return 1 << max(0, (max(1, n) - 1).bit_length())


def needs(prog: Program) -> dict[str, int]:
    """The smallest memory depths (powers of two) that hold a compiled program."""
    cfg = prog.config
    out_words = max((p.base + p.size for p in prog.placements.values() if p.memory == "out"), default=1)
    act_depth = max(_pow2(prog.act_words), 2 * cfg.lanes, _pow2(out_words))
    rows = max(2, -(-prog.act_words // cfg.lanes))  # the banks' live rows (at least two, as the RTL needs)
    return {  # the RTL (hw/top.py) also needs act_depth >= 2 x lanes and >= out_depth
        "act_depth": act_depth,
        "act_rows": 0 if rows >= act_depth // cfg.lanes else rows,
        "wgt_depth": max(_pow2(len(prog.images.wgt)), cfg.lane_groups),  # (the RTL's WGT rows of lane_groups words)
        "tap_depth": _pow2(len(prog.images.tap)),
        "rq_depth": _pow2(len(prog.images.rq)),
        "prog_depth": _pow2(len(prog.images.prog)),
        "out_depth": _pow2(out_words),
    }


def with_levels(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset()) -> AcceleratorConfig:
    """cfg with ``max_levels`` raised to the most output levels a thresh op of net has (an N-bit residual
    stream: 2**N), unless ``max_levels`` is in ``keep`` or cfg already has enough; never lowered, so a
    network of A4 codes keeps the default requantizer."""
    levels = max((len(op.levels_out) for op in net.ops if op.mode == "thresh"), default=0)
    if "max_levels" in keep or levels <= cfg.max_levels or levels > MAX_LEVELS:
        return cfg  # (more than MAX_LEVELS: the compiler names the op)
    return replace(cfg, max_levels=levels)


def fit(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset(), reuse: bool = False) -> Program:
    """The network compiled for cfg with its memory depths fitted and ``max_levels`` raised to what it needs
    (``with_levels``; fields named in ``keep`` stay as given).
    ``reuse``: ACT sized for ``compile_net(..., reuse=True)`` (deployment: tensors share words by liveness).
    Any error other than a depth (accumulator width, shifts) surfaces from the first compile."""
    cfg = with_levels(net, cfg, keep)
    probe = {k: PROBE_DEPTH for k in DEPTHS if k not in keep}
    if not probe:
        return compile_net(net, cfg, reuse=reuse)
    if "act_depth" in keep:  # the ACT as given: its rows too
        keep = set(keep) | {"act_rows"}
    else:
        probe["act_rows"] = 0
    prog = compile_net(net, replace(cfg, **probe), reuse=reuse)
    fitted = replace(cfg, **{k: v for k, v in needs(prog).items() if k not in keep})
    return compile_net(net, fitted, reuse=reuse)


def fitted_config(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset(),
                  reuse: bool = False) -> AcceleratorConfig:
    """cfg with its memory depths fitted to net (fields named in ``keep`` stay as given)."""
    return fit(net, cfg, keep, reuse).config
