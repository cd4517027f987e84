"""The command line: help, bad input gives one line and exit status 2, rtl writes what a user takes away."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from apotflow.sim.cli import main
from apotflow.sw import export


@pytest.fixture(scope="module")
def model_file(small_net, tmp_path_factory):
    return export.save(small_net, tmp_path_factory.mktemp("m") / "small.apot")


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    return err[0]


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "apotflow.sim.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "cosim" in r.stdout and "demo" in r.stdout


def test_unknown_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["rtl", "--model", "m.apot", "--out", "x", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["info", "rtl", "cosim", "synth"])
def test_missing_model(cmd, tmp_path, capsys):
    argv = [cmd, "--model", str(tmp_path / "absent.apot")] + ([] if cmd == "info" else ["--out", str(tmp_path / "o")])
    assert main(argv) == 2
    assert _err_line(capsys) == f"apotflow: error: {tmp_path / 'absent.apot'}: no such model file"
    assert not (tmp_path / "o").exists()


def test_truncated_model(model_file, tmp_path, capsys):
    bad = tmp_path / "t.apot"
    bad.write_bytes(model_file.read_bytes()[:1000])
    assert main(["rtl", "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "truncated" in _err_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, message", [
    (["--lanes", "3"], "lanes must be a power of two"),
    (["--act-depth", "64"], "act_depth"),
    (["--acc-bits", "12"], "accumulator"),
    (["--wgt-depth", "16"], "wgt_depth"),
])
def test_impossible_or_too_small_config(model_file, tmp_path, capsys, flags, message):
    assert main(["rtl", "--model", str(model_file), "--out", str(tmp_path / "o"), *flags]) == 2
    line = _err_line(capsys)
    assert line.startswith("apotflow: error:") and message in line
    assert not (tmp_path / "o").exists()


def test_rtl_writes_verilog_hex_and_manifest(model_file, tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["rtl", "--model", str(model_file), "--lanes", "8", "--out", str(out)]) == 0
    for f in ("apotflow_top.v", "apotflow_rom.v", "wgt.hex", "rq.hex", "prog.hex", "manifest.json"):
        assert (out / f).is_file(), f
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["lanes"] == 8
    assert {p["name"] for p in man["interface"]["ports"]} >= {"start", "done", "host_addr", "out_rdata"}
    assert "$readmemh" in (out / "apotflow_rom.v").read_text()
    v = (out / "apotflow_top.v").read_text()
    assert "module apotflow_top" in v and " * " not in v.split("module apotflow_rom")[0]  # no multiplier


def test_info(model_file, capsys):
    assert main(["info", "--model", str(model_file)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ops"] == ["conv1", "conv2", "conv3", "conv4", "pool", "fc"]


@pytest.mark.parametrize("flags, message", [
    (["--images", "-1"], "--images must be 0 (all) or a positive count"),
    (["--images", "some"], "expected a count (0: all) or 'all'"),
    (["--jobs", "0"], "--jobs must be at least 1"),
])
def test_cosim_bad_counts(model_file, tmp_path, capsys, flags, message):
    argv = ["cosim", "--model", str(model_file), "--out", str(tmp_path / "o"), *flags]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, pgo", [([], False), (["--pgo"], True)])
def test_cosim_pgo_reaches_the_flow(model_file, tmp_path, monkeypatch, flags, pgo):
    """`apotflow cosim --pgo` asks the co-simulation flow for the profile-guided build (the build itself:
    tests/test_cosim_verilator.py::test_profile_guided_build_is_bit_exact_and_reused, slow)."""
    from apotflow.sim import flow

    seen = {}

    def cosim_model(*a, **kw):
        seen.update(kw)
        return {"passed": True}

    monkeypatch.setattr(flow, "cosim_model", cosim_model)
    assert main(["cosim", "--model", str(model_file), "--out", str(tmp_path / "o"), "--images", "2", *flags]) == 0
    assert seen["pgo"] is pgo
