"""hw.fit: the fitted Program equals a fresh compile with the fitted config, word for word."""

from __future__ import annotations

from pathlib import Path

import pytest

from apotflow.hw.compile import compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit, fitted_config
from apotflow.sw import export

DIGITS = Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot"


def _same(a, b) -> None:
    assert a.config == b.config
    for k in ("wgt", "tap", "val", "rq", "prog"):
        assert getattr(a.images, k) == getattr(b.images, k), k
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("lanes", [1, 4, 16, 128])
def test_fit_equals_compile_with_fitted_config(small_net, lanes):
    prog = fit(small_net, AcceleratorConfig(lanes=lanes))
    _same(prog, compile_net(small_net, prog.config))
    assert prog.config.wgt_depth == 1 << (len(prog.images.wgt) - 1).bit_length()


def test_fit_trained_digits_and_kept_depths():
    net = export.load(DIGITS)
    prog = fit(net, AcceleratorConfig(lanes=16))
    _same(prog, compile_net(net, prog.config))
    kept = fit(net, AcceleratorConfig(lanes=8, act_depth=1 << 14), keep={"act_depth"})
    assert kept.config.act_depth == 1 << 14
    _same(kept, compile_net(net, kept.config))
    assert fitted_config(net, AcceleratorConfig(lanes=16)) == prog.config
