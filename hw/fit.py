"""Size the memories of an AcceleratorConfig to a network: the smallest powers of two that hold it."""

from __future__ import annotations

from dataclasses import replace

from apotflow.sw.intnet import IntNet

from .compile import compile_net
from .config import AcceleratorConfig


def _pow2(n: int) -> int:
    return 1 << max(0, (max(1, n) - 1).bit_length())


def fitted_config(net: IntNet, cfg: AcceleratorConfig, keep: set[str] = frozenset(),
                  reuse: bool = False) -> AcceleratorConfig:
    """cfg with act/wgt/tap/rq/prog/out depths fitted to net (fields named in `keep` stay as given).
    ``reuse``: ACT sized for ``compile_net(..., reuse=True)`` (deployment: tensors share words by liveness).

    The network is first compiled with generous depths to learn its needs; any other error
    (accumulator width, shifts) surfaces from that compile.
    """
    big = {k: 1 << 24 for k in ("act_depth", "wgt_depth", "tap_depth", "rq_depth", "prog_depth", "out_depth") if k not in keep}
    prog = compile_net(net, replace(cfg, **big), reuse=reuse)
    need = {
        "act_depth": max(_pow2(prog.act_words), cfg.lanes),
        "wgt_depth": _pow2(len(prog.images.wgt)),
        "tap_depth": _pow2(len(prog.images.tap)),
        "rq_depth": _pow2(len(prog.images.rq)),
        "prog_depth": _pow2(len(prog.images.prog)),
        "out_depth": _pow2(max(p.base + p.size for p in prog.placements.values() if p.memory == "out")
                           if any(p.memory == "out" for p in prog.placements.values()) else 1),
    }
    return replace(cfg, **{k: v for k, v in need.items() if k not in keep})
