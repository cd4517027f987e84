"""The packed format: round trip, and every kind of damage is caught with a one-line error."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apotflow.sw import export
from apotflow.sw.export import ExportError, pack_bits, unpack_bits


@given(st.integers(1, 16).flatmap(lambda b: st.tuples(st.just(b), st.lists(st.integers(0, (1 << b) - 1), max_size=200))))
@settings(max_examples=60, deadline=None)
def test_pack_unpack_round_trip(case):
    bits, vals = case
    vals = np.asarray(vals, dtype=np.int64)
    assert np.array_equal(unpack_bits(pack_bits(vals, bits), bits, len(vals)), vals)


def test_round_trip_is_exact(small_net, tmp_path):
    path = export.save(small_net, tmp_path / "m.apot")
    back = export.load(path)
    assert list(back.tensors) == list(small_net.tensors)
    for a, b in zip(small_net.ops, back.ops):
        assert a.name == b.name and a.mode == b.mode and a.shift == b.shift
        assert np.array_equal(a.bias, b.bias)
        assert (a.thresholds is None) == (b.thresholds is None)
        if a.thresholds is not None:
            assert np.array_equal(a.thresholds, b.thresholds)
        for sa, sb in zip(a.sources, b.sources):
            assert np.array_equal(sa.weight, sb.weight)
            assert (sa.stride, sa.pad, sa.role) == (sb.stride, sb.pad, sb.role)
    assert export.to_bytes(back) == export.to_bytes(small_net)  # canonical


def test_weight_codes_are_bit_packed(small_net):
    data = export.to_bytes(small_net)
    nnz = sum(int(np.count_nonzero(s.codes)) for op in small_net.ops for s in op.sources)
    assert len(data) < nnz * 6 + 60_000  # 4-bit codes + 32-bit indices, not int64 tensors


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:-3], "truncated"),
    (lambda d: b"NOTAPOTF" + d[8:], "bad magic"),
    (lambda d: d[:8] + struct.pack("<H", 99) + d[10:], "version 99"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 0x10]), "checksum"),
    (lambda d: d[:100] + bytes([d[100] ^ 0x01]) + d[101:], "checksum"),
    (lambda d: b"", "truncated"),
])
def test_damaged_files_are_rejected(small_net, tmp_path, damage, message):
    bad = tmp_path / "bad.apot"
    bad.write_bytes(damage(export.to_bytes(small_net)))
    with pytest.raises(ExportError, match=message) as e:
        export.load(bad)
    assert "\n" not in str(e.value)


def test_inconsistent_header_with_valid_checksum_is_rejected(small_net):
    import hashlib
    import json

    data = export.to_bytes(small_net)
    magic, ver, fl, hlen, plen, _ = export._PRE.unpack_from(data)
    h = json.loads(data[56:56 + hlen])
    h["ops"][1]["sources"][0]["tensor"] = "nowhere"
    header = json.dumps(h).encode()
    payload = data[56 + hlen:]
    forged = export._PRE.pack(magic, ver, fl, len(header), plen, hashlib.sha256(header + payload).digest())
    with pytest.raises(ExportError, match="nowhere"):
        export.from_bytes(forged + header + payload)


def test_missing_file(tmp_path):
    with pytest.raises(ExportError, match="no such model file"):
        export.load(tmp_path / "absent.apot")


def test_save_is_atomic(small_net, tmp_path, monkeypatch):
    target = tmp_path / "m.apot"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", boom)
    with pytest.raises(OSError):
        export.save(small_net, target)
    assert not target.exists() and not list(tmp_path.iterdir())
