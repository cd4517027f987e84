"""Every committed bitstream has a manifest that states its speed by hw/cycles.timing (exact cycles per
image of the program in its ROMs, latency and images/s at its Fmax) beside its resources."""

import json
from pathlib import Path

import pytest

from apotflow.hw.cycles import timing

MANIFESTS = sorted((Path(__file__).resolve().parent.parent / "bitstreams").glob("*/*/manifest.json"))


def test_there_are_bitstreams():
    assert MANIFESTS


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_manifest_reports_speed_and_resources(path):
    m = json.loads(path.read_text())
    assert {"lut", "ff", "bram", "spram", "dsp"} <= set(m["resources"])
    perf = m["performance"]
    assert perf["fmax_mhz"] == m["fmax_mhz"] > 0
    assert {k: perf[k] for k in ("cycles_per_image", "fmax_mhz", "latency_us", "images_per_s")} == \
        timing(perf["cycles_per_image"], m["fmax_mhz"])
    assert any((path.parent / f).is_file() for f in ("apotflow_board.bit", "apotflow_board.bin"))
