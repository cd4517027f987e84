"""cocotb bench for the generated accelerator (runs inside the simulator; see apotflow.sim.cosim).

The bench drives ``apotflow_cosim`` (the simulation-only wrapper that apotflow.sim.cosim generates
around ``apotflow_top``): the clock runs inside the simulator (cocotb's GPI clock, no Python per
edge), and per image the bench only writes the input words as ``$readmemh`` files (one per ACT
bank), raises ``req`` and awaits ``ack``. The wrapper loads the files into the banks, pulses
``start``, counts the cycles ``busy`` is high, records the cycle of every descriptor latch (the
measured start of each layer) and, once the accelerator is idle again (the cycle after ``done``),
dumps ACT, OUT, the RTL's per-layer counters and its own cycle log with ``$writememh``.

Checker: every ACT and OUT word must equal the golden model's (exact integers); the first differing
image's memories are kept for the host to name layer and index. A run that does not end within the
time limit is reported with the layer that was running. Inputs arrive through
APOTFLOW_COSIM_VECTORS (npz), results go to APOTFLOW_COSIM_RESULTS (npz).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, SimTimeoutError, with_timeout


def read_memh(path: Path, bits: int, signed: bool = False) -> np.ndarray:
    """A ``$writememh`` dump (one word per line, hex; ``//`` comment lines skipped) as int64."""
    words = [ln for ln in Path(path).read_bytes().split(b"\n") if ln and not ln.startswith(b"//")]
    if not words:
        return np.zeros(0, dtype=np.int64)
    if all(len(w) == len(words[0]) for w in words) and len(words[0]) <= 15:
        digits = np.frombuffer(b"".join(words), dtype=np.uint8).reshape(len(words), -1).astype(np.int64)
        digits = np.where(digits >= ord("a"), digits - ord("a") + 10,
                          np.where(digits >= ord("A"), digits - ord("A") + 10, digits - ord("0")))
        v = np.zeros(len(words), dtype=np.int64)
        for k in range(digits.shape[1]):
            v = (v << 4) | digits[:, k]
    else:
        v = np.array([int(w, 16) for w in words], dtype=np.int64)
    v &= (1 << bits) - 1
    if signed:
        v = np.where(v >> (bits - 1), v - (1 << bits), v)
    return v


def write_inputs(files: list[str], rows: list[np.ndarray], values: np.ndarray, per_bank: list[np.ndarray],
                 split: int = 0) -> None:
    """One ``$readmemh`` file per ACT bank: ``@row value`` lines for the input words it holds. ``split``
    (banks in two memories, hw/actmem.tail_split): rows from ``split`` on go to ``act_inh<b>.hex``, less split."""
    for f, r, sel in zip(files, rows, per_bank):
        pairs = list(zip(r.tolist(), values[sel].tolist()))
        lo = [(a, v) for a, v in pairs if not split or a < split]
        Path(f).write_text("// input\n" + "".join(f"@{a:x} {v:x}\n" for a, v in lo))
        if split:
            hi = [(a - split, v) for a, v in pairs if a >= split]
            Path(f.replace("act_in", "act_inh")).write_text(
                "// input\n" + "".join(f"@{a:x} {v:x}\n" for a, v in hi))


@cocotb.test()
async def images_bit_exact(dut):
    vec = np.load(os.environ["APOTFLOW_COSIM_VECTORS"])
    result_path = os.environ["APOTFLOW_COSIM_RESULTS"]
    in_addr, in_val = vec["in_addr"], vec["in_val"]
    exp_act, exp_out = vec["exp_act"], vec["exp_out"]
    n_img, act_words, out_words = exp_act.shape[0], exp_act.shape[1], exp_out.shape[1]
    lanes, n_layers = int(vec["lanes"]), int(vec["n_layers"])
    act_bits, acc_bits = int(vec["act_bits"]), int(vec["acc_bits"])
    observable = vec["observable"]  # (2, n_layers): a layer's latch changes the descriptor (first image; later)
    limit_ns = int(vec["timeout_cycles"]) * int(vec["period_ns"])
    act_rows = -(-act_words // lanes)
    split = int(vec["split"]) if "split" in vec else 0  # banks in two memories (hw/actmem.tail_split)
    banks = in_addr % lanes
    per_bank = [np.flatnonzero(banks == b) for b in range(lanes)]
    in_rows = [in_addr[sel] // lanes for sel in per_bank]
    in_files = [f"act_in{b}.hex" for b in range(lanes)]

    bad_words = np.zeros(n_img, dtype=np.int64)
    cycles = np.full(n_img, -1, dtype=np.int64)  # busy cycles counted by the wrapper
    rtl_cycles = np.full(n_img, -1, dtype=np.int64)  # the RTL's own ``cycles`` output
    layer_cycles = np.full((n_img, n_layers), -1, dtype=np.int64)  # measured from the descriptor latches
    rtl_layer_cycles = np.full((n_img, n_layers), -1, dtype=np.int64)  # the RTL's perf counters
    sim_s = np.zeros(n_img)  # wall seconds per image
    cpu_s = np.zeros((n_img, 2))  # CPU seconds of this process per image: simulating, and the bench's file work
    first_bad, first_act, first_out = -1, np.zeros(act_words, np.int64), np.zeros(out_words, np.int64)
    hang = np.array([-1, -1, -1], dtype=np.int64)  # image, layer running (PROG address), cycles elapsed

    dut.req.value = 0
    dut.act_rows.value = act_rows
    await ClockCycles(dut.clk, 4)  # the wrapper holds reset for three cycles
    done_images = 0
    for i in range(n_img):
        t0, c0 = time.perf_counter(), time.process_time()
        write_inputs(in_files, in_rows, in_val[i], per_bank, split)
        obs = np.flatnonzero(observable[0 if i == 0 else 1])  # layers whose start the wrapper sees
        dut.req.value = i + 1
        c1 = time.process_time()
        try:
            await with_timeout(dut.ack.value_change, limit_ns, "ns")
        except SimTimeoutError:
            hang[:] = (i, int(dut.layer.value), int(dut.t.value))
            dut._log.error("image %d: no done after %d cycles; layer %d was running", i, hang[2], hang[1])
            break
        c2 = time.process_time()
        log = read_memh("log.hex", 32)
        seen, total = int(log[-3]), int(log[-2])
        cycles[i], rtl_cycles[i] = total, log[-1]
        if seen == len(obs):
            starts = np.full(n_layers, -1, dtype=np.int64)
            starts[obs] = log[:seen] - 1  # a latch at the end of cycle X shows in cycle X + 1
            ends = np.append(starts[1:], total)
            layer_cycles[i] = ends - np.where(np.arange(n_layers) == 0, 0, starts)
            layer_cycles[i][(starts < 0) & (np.arange(n_layers) > 0)] = -1
        rtl_layer_cycles[i] = read_memh("perf.hex", 32)[:n_layers]
        got_act = np.stack([np.concatenate([read_memh(f"act_out{b}.hex", act_bits)]
                                           + ([read_memh(f"act_outh{b}.hex", act_bits)] if split else []))
                            for b in range(lanes)], axis=1).reshape(-1)
        got_act = got_act[:act_words]
        got_out = read_memh("out.hex", acc_bits, signed=True)[:out_words]
        bad_words[i] = np.count_nonzero(got_act != exp_act[i]) + np.count_nonzero(got_out != exp_out[i])
        if bad_words[i] and first_bad < 0:
            first_bad, first_act, first_out = i, got_act, got_out
            dut._log.error("image %d: %d words differ from the golden model", i, bad_words[i])
        sim_s[i] = time.perf_counter() - t0
        if (i + 1) % 25 == 0:
            dut._log.info("%d of %d images done", i + 1, n_img)
        cpu_s[i] = (c2 - c1, time.process_time() - c2 + c1 - c0)
        done_images += 1
    np.savez(result_path, bad_words=bad_words, cycles=cycles, rtl_cycles=rtl_cycles, layer_cycles=layer_cycles,
             rtl_layer_cycles=rtl_layer_cycles, sim_s=sim_s, cpu_s=cpu_s, first_bad=first_bad, first_act=first_act,
             first_out=first_out, hang=hang, done_images=done_images)
    assert hang[0] < 0, f"image {hang[0]}: the accelerator did not finish (layer {hang[1]} was running)"
    assert first_bad < 0, f"{np.count_nonzero(bad_words)} of {n_img} images differ from the golden model"
