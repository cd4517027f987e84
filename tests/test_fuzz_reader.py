"""Hostile model files: a slice of bench/fuzz_reader.py, and the faults it found, one by one.

Every file is either accepted and consistent downstream or refused with one ExportError line."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import resource
from pathlib import Path

import pytest

from apotflow.sw import export
from apotflow.sw.export import ExportError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "bench" / "models" / "digits.apot"


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_reader", ROOT / "bench" / "fuzz_reader.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fuzz_slice():
    res = _fuzz_module().fuzz(300, seed=7, resnet_share=0.0)
    assert res["cases"] == 300
    bad = {k: v for k, v in res["outcomes"].items() if k not in ("rejected", "accepted")}
    assert not bad, (bad, res["examples"])
    assert res["outcomes"]["accepted"] > 0 and res["outcomes"]["rejected"] > 200


def _forge(mutate) -> bytes:
    data = DIGITS.read_bytes()
    hlen = int.from_bytes(data[12:16], "little")
    h, payload = json.loads(data[56:56 + hlen]), data[56 + hlen:]
    text = mutate(h)
    hb = (text if isinstance(text, str) else json.dumps(h)).encode()
    return (data[:12] + len(hb).to_bytes(4, "little") + len(payload).to_bytes(8, "little")
            + hashlib.sha256(hb + payload).digest() + hb + payload)


def _set(path, value):
    def mutate(h):
        node = h
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_set(("ops", 0, "sources", 0, "stride"), 0), "'stride' must be an integer 1.."),
    (_set(("ops", 0, "sources", 0, "stride"), 2**63), "'stride' must be an integer"),
    (_set(("tensors", 0, "max_value"), 2**64), "'max_value' must be an integer"),
    (_set(("ops", 1), 5), "op #1 is not an object"),
    (_set(("ops", 1, "name"), "conv\nTraceback"), "'name' must be 1..200 printable characters"),
    (_set(("tensors", 1, "name"), ""), "'name' must be 1..200 printable characters"),
    (_set(("ops", 0, "sources", 0, "ch_sign", 0), 0), "ch_sign must be -1 or +1"),
    (_set(("ops", 1, "sources", 0, "ch_shift", 0), -1), "'ch_shift' must be a list"),
    (_set(("ops", 1, "sources", 0, "levels"), [10, 8, 6, 4, 3, 2, 1, 0]), "levels must start at 0"),
    (_set(("ops", 1, "out"), "h1"), "'h1' is already written"),
    (_set(("ops", 1, "sources", 0, "role"), "bogus"), "'role' must be one of"),
    (_set(("version",), 2), "header says format"),
    (_set(("ops", 0, "sources", 0, "shape"), [12, 1, 2**20, 2**20]), "weights exceed 16777216 elements"),
    (lambda h: h["ops"][1].__setitem__("bias", dict(h["ops"][0]["bias"])), "overlaps another array"),
    (lambda h: json.dumps(h).replace('"scale": 0.0625', '"scale": NaN'), "NaN, which is not JSON"),
    (lambda h: json.dumps(h).replace('"scale": 0.0625', '"scale": 1e999'), "non-finite"),
    (lambda h: json.dumps(h).replace('"meta": {', '"meta": {"x": ' + "[" * 50000 + "]" * 50000 + ', '),
     "nests deeper than"),
    (lambda h: json.dumps(h).replace('"max_value": 16', '"max_value": ' + "9" * 5000), "integer of 5000 digits"),
])
def test_forged_header_is_refused_in_one_line(tmp_path, mutate, message):
    bad = tmp_path / "bad.apot"
    bad.write_bytes(_forge(mutate))
    with pytest.raises(ExportError, match=re.escape(message)) as e:
        export.load(bad)
    assert "\n" not in str(e.value)


def test_special_files_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "fifo.apot"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/urandom"), Path("/dev/zero")):
        with pytest.raises(ExportError, match="not a regular file"):
            export.load(path)


def test_sparse_huge_file_is_refused_without_reading(tmp_path):
    data = DIGITS.read_bytes()
    hlen = int.from_bytes(data[12:16], "little")
    huge = tmp_path / "huge.apot"
    size = 8 << 30  # 8 GiB, sparse: the prefix's lengths say exactly this size
    huge.write_bytes(data[:16] + (size - 56 - hlen).to_bytes(8, "little") + data[24:56 + hlen])
    os.truncate(huge, size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ExportError, match="exceed the reader's limit"):
        export.load(huge)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: nothing was read


def test_cli_on_a_network_without_macs_and_a_tiny_fitted_config(tmp_path, capsys):
    """Found by the fuzzer's CLI sample: `cycles` divided by an ideal of 0 cycles (no non-zero MAC),
    and a fitted act_depth of `lanes` words that the RTL refuses (it needs 2 x lanes)."""
    import numpy as np

    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fitted_config
    from apotflow.sim.cli import main
    from apotflow.sw.intnet import IntNet, Op, Source, TensorSpec

    net = IntNet({"x": TensorSpec("x", (1, 2, 2), 15), "y": TensorSpec("y", (1, 1, 1), 60)},
                 [Op("pool", "pool", "y", [Source("x", np.ones((1, 1, 2, 2), np.int64), 2, 0, role="pool")],
                     np.zeros(1, np.int64), "shift")], "x", "y").validate()
    export.save(net, tmp_path / "m.apot")
    assert main(["cycles", "--model", str(tmp_path / "m.apot")]) == 0
    assert capsys.readouterr().out.splitlines()[-2].split()[-1] == "-"
    cfg = fitted_config(net, AcceleratorConfig(lanes=16))
    assert cfg.act_depth >= 2 * cfg.lanes and cfg.act_depth >= cfg.out_depth
