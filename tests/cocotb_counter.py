"""cocotb tests for the counter of ``test_runner_verilator.py`` (run inside the simulator).

Parameters arrive through the environment: ``COUNTER_WIDTH`` (bits), ``BENCH_CYCLES`` (cycles for
the throughput tests) and ``BENCH_OUT`` (a JSON file the throughput tests append their numbers to).
"""

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

WIDTH = int(os.environ.get("COUNTER_WIDTH", "8"))
BENCH_CYCLES = int(os.environ.get("BENCH_CYCLES", "20000"))


async def reset(dut, limit: int) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.en.value = 0
    dut.limit.value = limit
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def record(name: str, cycles: int, seconds: float) -> None:
    out = os.environ.get("BENCH_OUT")
    if not out:
        return
    path = Path(out)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = {"cycles": cycles, "seconds": seconds, "cycles_per_s": cycles / seconds}
    path.write_text(json.dumps(data, indent=1))


@cocotb.test()
async def counts_and_stops_at_limit(dut):
    """The count follows a Python model cycle by cycle, then holds at ``limit`` with ``done``."""
    limit = (1 << WIDTH) - 3
    await reset(dut, limit)
    dut.en.value = 1
    expected = 0
    for cycle in range(limit + 5):
        await ReadOnly()
        assert int(dut.count.value) == expected, f"cycle {cycle}: count {int(dut.count.value)} != {expected}"
        assert int(dut.done.value) == (expected == limit), f"cycle {cycle}: done wrong at count {expected}"
        await RisingEdge(dut.clk)
        if expected < limit:
            expected += 1


@cocotb.test()
async def throughput_await_done(dut):
    """Clock from cocotb's Clock (GPI-side); Python awaits only the ``done`` edge."""
    limit = min(BENCH_CYCLES, (1 << WIDTH) - 1)
    await reset(dut, limit)
    start = time.perf_counter()
    dut.en.value = 1
    await RisingEdge(dut.done)
    record("await_done", limit, time.perf_counter() - start)
    assert int(dut.count.value) == limit


@cocotb.test()
async def throughput_await_every_cycle(dut):
    """Python awaits every rising clock edge (the cost of a per-cycle driver/monitor)."""
    limit = min(BENCH_CYCLES, (1 << WIDTH) - 1)
    await reset(dut, limit)
    start = time.perf_counter()
    dut.en.value = 1
    for _ in range(limit):
        await RisingEdge(dut.clk)
    record("await_every_cycle", limit, time.perf_counter() - start)
    await ReadOnly()
    assert int(dut.done.value) == 1


@cocotb.test(skip=os.environ.get("COUNTER_FAIL") != "1")
async def fails_on_purpose(dut):
    """Proves that failures reach the caller with their lines (run only with ``COUNTER_FAIL=1``)."""
    await reset(dut, 5)
    assert int(dut.count.value) == 1, "count after reset is 0, so this must fail"
