"""The build report: stable keys, the Markdown and the self-contained HTML page (and, with Chromium, that
the page renders with every plot)."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path

import pytest

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import total_cycles
from apotflow.hw.fit import fit
from apotflow.sim.report import build_report, render_markdown, write_report
from apotflow.sim.report_html import render_html
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "bench" / "models" / "digits.apot"
# `make demo`'s outputs through `apotflow report` (the command is in the file), committed
DEMO_REPORT = ROOT / "bench" / "results" / "demo-report.json"

KEYS = {"report_version", "model", "accuracy", "size", "cycles", "layers", "bitexact", "targets", "timing_rules",
        "config", "memory_words", "seconds", "command", "git_revision", "versions"}


def _browser():
    spec = importlib.util.spec_from_file_location("report_browser", ROOT / "bench" / "report_browser.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def digits():
    net = export.load(DIGITS)
    return net, fit(net, AcceleratorConfig(lanes=16))


def test_report_without_cosim_or_synthesis(digits, tmp_path):
    net, prog = digits
    r = build_report(net, prog, model_path=DIGITS)
    assert set(r) == KEYS
    assert r["bitexact"]["status"] == "not run" and r["targets"] == {}
    assert r["cycles"]["measured"] is None and r["cycles"]["model"] == total_cycles(prog.config, prog.images)
    assert [row["layer"] for row in r["layers"]] == [li.op for li in prog.layers]
    assert r["size"]["bits"] == 23008 and "BOPs" in r["size"]["rules"]
    paths = write_report(r, tmp_path)
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(r))
    page = paths["html"].read_text()
    assert "Not run" in page and page.count("data:image/png;base64,") == 1  # the cycles plot only
    assert f"| **total** | | **-** | **{total_cycles(prog.config, prog.images)}** |" in paths["md"].read_text()


def test_committed_demo_report_renders_every_part():
    r = json.loads(DEMO_REPORT.read_text())
    assert set(r) == KEYS
    page = render_html(r)
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 3  # accuracy, cycles per layer, resources per target
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: nothing fetched
    for part in ("Accuracy", "Bit-exact co-simulation", "Size and BOPs", "Cycles per image",
                 "FPGA resources, Fmax and throughput", "Configuration"):
        assert part in page and part in render_markdown(r)
    assert r["bitexact"]["status"] == "pass" and r["bitexact"]["images"] == 450
    assert r["cycles"]["measured"] == r["cycles"]["model"]
    assert set(r["targets"]) == {"ice40-up5k", "ecp5-25k"}
    assert all(t["synthesis"]["lut"] and t["estimate"]["lut"] for t in r["targets"].values())
    for t in r["targets"].values():  # placed and routed (demo --pnr) or not: throughput only with an Fmax
        assert t["images_per_s"] == (pytest.approx(t["fmax_mhz"] * 1e6 / r["cycles"]["measured"])
                                     if t["fmax_mhz"] else None)


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    browser = _browser()
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    html = tmp_path / "report.html"
    html.write_text(render_html(json.loads(DEMO_REPORT.read_text())))
    seen = browser.check(html)
    assert seen == {"images": 3, "of": 3, "tables": seen["tables"]} and seen["tables"] >= 5
    png = browser.screenshot(html, tmp_path / "shot.png", height=900)
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000


def test_report_speed_is_the_one_timing_formula(digits):
    """The report's latency and images/s come from hw/cycles.timing, as synth.json's and the manifests' do."""
    from apotflow.hw.cycles import timing

    net, prog = digits
    cycles = total_cycles(prog.config, prog.images)
    synth = {"target": "ecp5-85k", "fmax_mhz": 91.08, "lut": 1, "ff": 1, "bram": 1, "config": prog.config.to_dict()}
    t = build_report(net, prog, synth={"ecp5-85k": synth})["targets"]["ecp5-85k"]
    want = timing(cycles, 91.08)
    assert (t["fmax_mhz"], t["latency_us"], t["images_per_s"]) == (91.08, want["latency_us"], want["images_per_s"])
    assert want["latency_us"] == round(cycles / 91.08, 3) and want["images_per_s"] == round(91.08e6 / cycles, 2)
    assert timing(cycles, None) == {"cycles_per_image": cycles, "fmax_mhz": None, "latency_us": None,
                                    "images_per_s": None}
    assert timing(None, 91.08)["images_per_s"] is None
