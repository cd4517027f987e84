"""The time limit on place and route: run_tool stops a tool at its limit, a nextpnr run stopped there is a
failed place and route with one line saying how far the router got, a seed sweep goes on past it, and
``apotflow synth --pnr-timeout`` ends cleanly (synthesis figures kept, no bitstream, exit status 1)."""

import json
import sys
import time

import pytest

from apotflow.hw.flows import nextpnr
from apotflow.hw.flows.build import seed_line, sweep_note
from apotflow.hw.flows.tools import ToolError, ToolTimeout, run_tool


def test_run_tool_kills_a_tool_at_its_time_limit(tmp_path):
    """A tool that would sleep 30 s is killed after 1 s: ToolTimeout (a ToolError) with the limit, its last
    line and the log, which holds what the tool wrote before it was stopped."""
    cmd = [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(30)"]
    t0 = time.perf_counter()
    with pytest.raises(ToolTimeout) as caught:
        run_tool(cmd, tmp_path, tmp_path / "tool.log", timeout=1)
    took = time.perf_counter() - t0
    assert 1 <= took < 10, took
    e = caught.value
    assert isinstance(e, ToolError) and e.seconds == 1 and e.last == "working" and e.log == tmp_path / "tool.log"
    assert str(e).startswith("python") and "stopped after 1 s (its time limit)" in str(e) and "'working'" in str(e)
    assert (tmp_path / "tool.log").read_text() == "working\n"
    # within its limit a tool runs as without one
    assert run_tool([sys.executable, "-c", "print('ok')"], tmp_path, tmp_path / "ok.log", timeout=20) < 20
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        run_tool([sys.executable, "-c", "pass"], tmp_path, tmp_path / "x.log", timeout=0)


ROUTER2_LOG = """Info: Routing globals...
Info: Running router2...
Info:     iter=1 wires=41012 overused=2011 overuse=2318 archfail=NA
Info:     iter=296 wires=40127 overused=19 overuse=19 archfail=NA
Info:     iter=297 wires=40133 overused=21 overuse=22 archfail=NA
"""


def test_timeout_message_says_how_far_router2_got():
    assert nextpnr.timeout_message(3600, ROUTER2_LOG) == (
        "nextpnr stopped after 3600 s: router2 had not converged (iteration 297, 21 wires overused); "
        "try another --pnr-seed (several: --pnr-seeds) or a longer --pnr-timeout")
    before = nextpnr.timeout_message(2.0, "Info: Device utilisation:\n", "Info: Running main analytical placer.")
    assert before.startswith("nextpnr stopped after 2 s: it had not finished (its last line: "
                             "'Info: Running main analytical placer.')")


def test_seed_sweep_goes_on_past_a_timed_out_seed(monkeypatch, tmp_path):
    """pnr_seeds with the first seed stopped at the limit: the next seeds still run, the best one that routed
    is kept, and the sweep, its progress line and its note say which seed was stopped."""
    calls = []

    def fake_pnr(netlist, target, workdir, freq, *, seed, timeout, **kw):
        calls.append((seed, timeout))
        base = {"target": target, "constraint_mhz": freq, "seed": seed, "timeout_s": timeout}
        if seed == 1:
            return {**base, "success": False, "timed_out": True, "fmax_mhz": None, "seconds": timeout,
                    "errors": [nextpnr.timeout_message(timeout, ROUTER2_LOG)]}
        return {**base, "success": True, "fmax_mhz": {2: 80.5, 3: 84.7}[seed], "meets_constraint": False,
                "seconds": 600.0}

    monkeypatch.setattr(nextpnr, "pnr", fake_pnr)
    lines = []
    best = nextpnr.pnr_seeds("n.json", "ecp5-85k", tmp_path, 100.0, [1, 2, 3], timeout=1800,
                             on_seed=lambda p, b: lines.append(seed_line(p, b, [1, 2, 3])))
    assert calls == [(1, 1800), (2, 1800), (3, 1800)]
    assert best["seed"] == 3 and best["fmax_mhz"] == 84.7
    assert [(s["seed"], s["success"], s["timed_out"]) for s in best["sweep"]] == [(1, False, True), (2, True, False),
                                                                                (3, True, False)]
    assert lines[0] == ("placement seed 1 (1 of 3): nextpnr stopped after 1800 s: router2 had not converged "
                        "(iteration 297, 21 wires overused); try another --pnr-seed (several: --pnr-seeds) or a "
                        "longer --pnr-timeout")
    assert lines[2].endswith("best so far 84.7 MHz (seed 3)")
    assert sweep_note(best["sweep"], 3).startswith(
        "placement seeds swept (seed 1: stopped at the time limit, seed 2: 80.5 MHz, seed 3: 84.7 MHz)")


@pytest.mark.yosys
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_synth_with_a_too_short_pnr_timeout_ends_cleanly(tmp_path, capsys):
    """A real tiny board build whose nextpnr cannot finish in 2 s (it takes ~45 s): exit status 1 (a failed
    place and route), synth.json keeps the synthesis figures and the estimate, ``pnr`` says success false,
    timed out, the limit, and the one-line reason (also in the notes), and no bitstream or nextpnr output
    was written."""
    from apotflow.sim.cli import main

    out = tmp_path / "out"
    code = main(["synth", "--lanes", "2", "--act-depth", "256", "--wgt-depth", "256", "--rq-depth", "32",
                 "--prog-depth", "8", "--target", "ecp5-25k", "--out", str(out), "--pnr-timeout", "2"])
    assert code == 1
    saved = json.loads((out / "synth.json").read_text())
    p = saved["pnr"]
    assert p["success"] is False and p["timed_out"] is True and p["timeout_s"] == 2 and p["fmax_mhz"] is None
    assert len(p["errors"]) == 1 and "\n" not in p["errors"][0]
    assert p["errors"][0].startswith("nextpnr stopped after 2 s: ") and "--pnr-seed" in p["errors"][0]
    assert p["errors"][0] in saved["notes"]
    assert saved["lut"] > 0 and saved["ff"] > 0 and saved["estimate"]["lut"] > 0
    assert saved["bitstream"] is None and saved["fmax_mhz"] is None
    work = out / "synth-ecp5-25k"
    assert (work / "nextpnr.log").is_file()
    assert not [f.name for f in work.iterdir() if f.suffix in (".bit", ".config")]
    assert not (work / "apotflow_board.pnr.json").exists()
    assert "nextpnr stopped after 2 s" in capsys.readouterr().err
