"""cocotb bench for the generated accelerator (runs inside the simulator; see apotflow.sim.cosim).

Driver: writes each image into the activation memory through the host port and pulses ``start``.
Monitor: after ``done``, reads back the whole activation region, the raw outputs and the per-layer
cycle counters. Checker: every word must equal the golden model's (exact integers); the first
differing address of each image is reported, and all results are saved for the host to name the
layer and index. Inputs arrive through APOTFLOW_COSIM_VECTORS (npz), results go to
APOTFLOW_COSIM_RESULTS (npz).
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout


async def _reset(dut) -> None:
    dut.start.value = 0
    dut.host_we.value = 0
    dut.host_addr.value = 0
    dut.host_wdata.value = 0
    dut.out_addr.value = 0
    dut.perf_addr.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)


async def _write_act(dut, addrs: np.ndarray, values: np.ndarray) -> None:
    dut.host_we.value = 1
    for a, v in zip(addrs.tolist(), values.tolist()):
        dut.host_addr.value = a
        dut.host_wdata.value = v
        await FallingEdge(dut.clk)
    dut.host_we.value = 0


async def _read(dut, addr_sig, data_sig, n: int, signed_bits: int = 0, latency: int = 1) -> np.ndarray:
    """Synchronous-read port, one address per cycle: the data of address k appears ``latency`` rising
    edges after k is presented."""
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    addr_sig.value = 0
    await FallingEdge(dut.clk)
    for step in range(n + latency - 1):
        k = step - (latency - 1)
        if k >= 0:
            v = int(data_sig.value)
            if signed_bits and v >> (signed_bits - 1):
                v -= 1 << signed_bits
            out[k] = v
        if step + 1 < n:
            addr_sig.value = step + 1
        if step + 1 < n + latency - 1:
            await FallingEdge(dut.clk)
    return out


@cocotb.test()
async def images_bit_exact(dut):
    vec = np.load(os.environ["APOTFLOW_COSIM_VECTORS"])
    result_path = os.environ["APOTFLOW_COSIM_RESULTS"]
    in_addr, in_val = vec["in_addr"], vec["in_val"]
    exp_act, exp_out = vec["exp_act"], vec["exp_out"]
    n_img, act_words, out_words = exp_act.shape[0], exp_act.shape[1], exp_out.shape[1]
    n_layers, acc_bits, act_latency = int(vec["n_layers"]), int(vec["acc_bits"]), int(vec["act_latency"])
    limit_ns = int(vec["timeout_cycles"]) * 10
    got_act = np.zeros_like(exp_act)
    got_out = np.zeros_like(exp_out)
    cycles = np.zeros(n_img, dtype=np.int64)
    layer_cycles = np.zeros((n_img, n_layers), dtype=np.int64)
    sim_s = np.zeros(n_img)

    Clock(dut.clk, 10, unit="ns").start()
    await _reset(dut)
    bad = []
    for i in range(n_img):
        t0 = time.perf_counter()
        await _write_act(dut, in_addr, in_val[i])
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        await with_timeout(RisingEdge(dut.done), limit_ns, "ns")
        await FallingEdge(dut.clk)
        got_act[i] = await _read(dut, dut.host_addr, dut.host_rdata, act_words, latency=act_latency)
        got_out[i] = await _read(dut, dut.out_addr, dut.out_rdata, out_words, acc_bits)
        layer_cycles[i] = await _read(dut, dut.perf_addr, dut.perf_rdata, n_layers)
        cycles[i] = int(dut.cycles.value)  # settles a cycle after done; read once the readback is over
        sim_s[i] = time.perf_counter() - t0
        diff = np.flatnonzero(np.concatenate([got_act[i] != exp_act[i], got_out[i] != exp_out[i]]))
        if diff.size:
            a = int(diff[0])
            mem, addr = ("ACT", a) if a < act_words else ("OUT", a - act_words)
            e = exp_act[i][addr] if mem == "ACT" else exp_out[i][addr]
            g = got_act[i][addr] if mem == "ACT" else got_out[i][addr]
            bad.append(i)
            dut._log.error("image %d: %d words differ; first %s[%d] expected %d got %d", i, diff.size, mem, addr, e, g)
    np.savez(result_path, got_act=got_act, got_out=got_out, cycles=cycles, layer_cycles=layer_cycles, sim_s=sim_s)
    assert not bad, f"{len(bad)} of {n_img} images differ from the golden model (first: image {bad[0]})"
