"""Size the memories of an AcceleratorConfig to a network: the smallest powers of two that hold it."""

from __future__ import annotations

from dataclasses import replace

from apotflow.sw.intnet import IntNet

from .compile import compile_net
from .config import AcceleratorConfig


def _pow2(n: int) -> int:
    return 1 << max(0, (max(1, n) - 1).bit_length())


def fitted_config(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset()) -> AcceleratorConfig:
    """cfg with act/wgt/rq/prog/out depths fitted to net (fields named in `keep` stay as given).

    The network is first compiled with generous depths to learn its needs; any other error
    (accumulator width, shifts) surfaces from that compile.
    """
    big = {k: 1 << 24 for k in ("act_depth", "wgt_depth", "rq_depth", "prog_depth", "out_depth") if k not in keep}
    prog = compile_net(net, replace(cfg, **big))
    out_words = max((p.base + p.size for p in prog.placements.values() if p.memory == "out"), default=1)
    need = {  # the RTL (hw/top.py) also needs act_depth >= 2 x lanes and >= out_depth
        "act_depth": max(_pow2(prog.act_words), 2 * cfg.lanes, _pow2(out_words)),
        "wgt_depth": _pow2(len(prog.images.wgt)),
        "rq_depth": _pow2(len(prog.images.rq)),
        "prog_depth": _pow2(len(prog.images.prog)),
        "out_depth": _pow2(out_words),
    }
    return replace(cfg, **{k: v for k, v in need.items() if k not in keep})
