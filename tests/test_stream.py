"""The compact weight stream (hw/isa.py decode_stream, hw/compile.py): what a compiled stream holds, and
the one-line rejection of a corrupted one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from apotflow.hw import isa
from apotflow.hw.compile import compile_net, value_table, weight_entries
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config


@pytest.fixture(scope="module")
def prog(small_net):
    return compile_net(small_net, fitted_config(small_net, AcceleratorConfig(lanes=8)))


def _images(prog, **changes):
    im = prog.images
    return isa.MemoryImages(prog.config, **{k: list(changes.get(k, getattr(im, k)))
                                            for k in ("wgt", "rq", "prog", "val", "tap")})


def _layer(prog, li):
    return isa.desc_layout(prog.config).unpack(prog.images.prog[li])


def _reject(images, *words):
    with pytest.raises(ValueError) as e:
        images.check()
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


def test_stream_decodes_to_the_weights(small_net, prog):
    """Every weight of every op, summed from its decoded entries at its input address, equals the
    network's weight (per output channel: {address: weight})."""
    cfg = prog.config
    dec = isa.decode_stream(cfg, prog.images)
    rl = isa.rq_layout(cfg)
    for li, op in enumerate(small_net.ops):
        d = _layer(prog, li)
        if (1 << (d["ho_log2"] + d["wo_log2"])) == 1:
            continue  # global layers: addresses are the elements (checked by the golden tests)
        w = d["w_start"]
        for c in range(d["n_ch"]):
            cnt = rl.unpack(prog.images.rq[d["rq_start"] + c])["count"]
            got: dict[tuple, int] = {}
            for e in range(w, w + cnt):
                if dec["real"][e]:
                    v = sum(1 << int(dec[f"s{t}"][e]) for t in range(cfg.terms) if dec[f"en{t}"][e])
                    key = (int(dec["off"][e]), int(dec["dy"][e]), int(dec["dx"][e]))
                    got[key] = got.get(key, 0) + (-v if dec["sign"][e] else v)
            w += cnt
            assert sorted(v for v in got.values() if v) == sorted(
                int(x) for s in op.sources for x in s.weight[c][s.weight[c] != 0]), (op.name, c)


def test_entry_is_nine_bits_by_default():
    assert isa.entry_layout(AcceleratorConfig()).width == 9


def test_value_table_overflow_keeps_every_value():
    """8-bit weights with more distinct rows than codes: the table holds the single powers of two and the
    most useful pairs; every value is still the sum of its rows."""
    cfg = AcceleratorConfig(code_bits=5)
    rng = np.random.default_rng(0)
    values = {int(v): int(rng.integers(1, 50)) for v in rng.integers(-127, 128, size=150) if v}
    table, codes = value_table(values, cfg)
    assert len(table) <= 31
    for v, cs in codes.items():
        assert sum((-1 if table[c - 1][0] else 1) * sum(1 << s for s in table[c - 1][1]) for c in cs) == v
    # no value needs more entries than its single powers of two
    assert all(len(cs) <= sum(len(sh) for _, sh in weight_entries(v, 1, 15)) for v, cs in codes.items())


def test_corrupted_code_is_rejected(prog):
    d = _layer(prog, 1)
    el = isa.entry_layout(prog.config)
    wgt = list(prog.images.wgt)
    e = el.unpack(wgt[d["w_start"]])
    wgt[d["w_start"]] = el.pack(code=(1 << prog.config.code_bits) - 1, delta=e["delta"])  # an unused row
    _reject(_images(prog, wgt=wgt), "layer 1 channel 0 entry 0", "empty row")


def test_escape_past_the_layer_is_rejected(prog):
    d = _layer(prog, 1)
    el = isa.entry_layout(prog.config)
    wgt = list(prog.images.wgt)
    wgt[d["w_start"]] = el.pack(code=0, delta=(1 << prog.config.pos_bits) - 1)  # a filler's longest jump
    assert (1 << prog.config.pos_bits) * ((1 << prog.config.pos_bits) - 1) >= d["pos_end"]
    _reject(_images(prog, wgt=wgt), "layer 1 channel 0 entry 0", "past the layer's end")


def test_count_that_disagrees_with_the_stream_is_rejected(prog):
    rl = isa.rq_layout(prog.config)
    d = _layer(prog, 1)
    rq = list(prog.images.rq)
    row = rl.unpack(rq[d["rq_start"]])
    rq[d["rq_start"]] = rl.pack(**dict(row, count=row["count"] + 1))
    _reject(_images(prog, rq=rq), "layer 1", "layer 2's stream starts at word")
    rq[d["rq_start"]] = rl.pack(**dict(row, count=row["count"] - 1))
    _reject(_images(prog, rq=rq), "layer 1", "layer 2's stream starts at word")


def test_position_on_a_missing_tap_row_is_rejected(prog):
    """A weight (not a filler) whose position lands on a tap row outside the layer's table."""
    d = _layer(prog, 1)
    tl = isa.tap_layout(prog.config)
    tap = list(prog.images.tap)
    t0 = d["tap_base"]
    tap[t0] = tl.pack(**dict(tl.unpack(tap[t0]), valid=0))
    msg = _reject(_images(prog, tap=tap), "layer 1", f"tap row {t0}")
    assert "not in the layer's table" in msg


def test_long_jumps_take_fillers(small_net):
    """With a 2-bit delta the digits net needs fillers; the program still equals the wider one's."""
    cfg = fitted_config(small_net, AcceleratorConfig(lanes=4))
    wide, narrow = compile_net(small_net, cfg), compile_net(small_net, replace(cfg, pos_bits=2, wgt_depth=cfg.wgt_depth * 2))
    ent = isa.entry_layout(narrow.config).unpack_array(narrow.images.wgt)
    assert (ent["code"] == 0).sum() > 0 and len(narrow.images.wgt) > len(wide.images.wgt)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 17, size=small_net.tensors[small_net.input].shape)
    a1, o1, _ = isa.run_program(wide.config, wide.images, wide.input_memory(x))
    a2, o2, _ = isa.run_program(narrow.config, narrow.images, narrow.input_memory(x))
    assert np.array_equal(o1, o2)
