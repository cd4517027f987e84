"""cocotb bench for the generated accelerator (runs inside the simulator; see apotflow.sim.cosim).

The bench drives ``apotflow_cosim`` (the simulation-only wrapper that apotflow.sim.cosim generates
around ``apotflow_top``): the clock runs inside the simulator (cocotb's GPI clock, no Python per
edge); a ``wgt_ram`` build's weights are first written through the host's WGT port (``load_weights``,
one word a cycle from wgt.hex, as a host would at boot); and per image the bench only writes the input
words as ``$readmemh`` files (one per ACT bank), raises ``req`` and awaits ``ack``. The wrapper loads the files into the banks, pulses
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
from cocotb.triggers import ClockCycles, FallingEdge, SimTimeoutError, Timer, with_timeout

WRAPPER_CYCLES = 8  # cycles from ``req`` to ``ack`` besides the accelerator's busy ones (apotflow_cosim: 5)


def _hex_words(blob: bytes) -> np.ndarray | None:
    """The words of ``$writememh`` text (one word per line, no comments) as int64, parsed in one
    vectorised pass when every line has the same width (as $writememh writes them); None otherwise."""
    if not blob:
        return np.zeros(0, dtype=np.int64)
    width = blob.find(b"\n")
    if width <= 0 or width > 15 or len(blob) % (width + 1) or blob.startswith(b"//"):
        return None
    digits = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width + 1)
    if not (digits[:, width] == ord("\n")).all():
        return None
    digits = digits[:, :width].astype(np.int64)
    digits = np.where(digits >= ord("a"), digits - ord("a") + 10,
                      np.where(digits >= ord("A"), digits - ord("A") + 10, digits - ord("0")))
    v = np.zeros(len(digits), dtype=np.int64)
    for k in range(width):
        v = (v << 4) | digits[:, k]
    return v


def read_memh(path: Path, bits: int, signed: bool = False) -> np.ndarray:
    """A ``$writememh`` dump (one word per line, hex; ``//`` comment lines skipped) as int64."""
    blob = Path(path).read_bytes()
    v = _hex_words(blob)
    if v is None:
        words = [ln for ln in blob.split(b"\n") if ln and not ln.startswith(b"//")]
        v = np.array([int(w, 16) for w in words], dtype=np.int64)
    v &= (1 << bits) - 1
    if signed:
        v = np.where(v >> (bits - 1), v - (1 << bits), v)
    return v


def read_memh_many(paths: list[str], bits: int) -> list[np.ndarray]:
    """Several ``$writememh`` dumps of one word width, parsed together (one pass instead of one per file)."""
    blobs = [Path(p).read_bytes() for p in paths]
    v = _hex_words(b"".join(blobs))
    if v is None or any(len(b) % (blobs[0].find(b"\n") + 1) for b in blobs):
        return [read_memh(p, bits) for p in paths]
    v &= (1 << bits) - 1
    width = blobs[0].find(b"\n") + 1
    return np.split(v, np.cumsum([len(b) // width for b in blobs])[:-1])


class InputWriter:
    """Writes one image's input words as ``$readmemh`` files, one per ACT bank: ``@row value`` lines for
    the words it holds. ``split`` (banks in two memories, hw/actmem.tail_split): rows from ``split`` on go
    to ``act_inh<b>.hex``, less split. The ``@row`` prefixes are formatted once; per image only the values."""

    def __init__(self, in_addr: np.ndarray, lanes: int, split: int = 0):
        self.files: list[tuple[str, np.ndarray, list[str]]] = []  # (file, word indices, "@row " prefixes)
        self.fds: dict[Path, int] = {}
        banks, rows = in_addr % lanes, in_addr // lanes
        for b in range(lanes):
            sel = np.flatnonzero(banks == b)
            lo = sel[rows[sel] < split] if split else sel
            self.files.append((f"act_in{b}.hex", lo, [f"@{a:x} " for a in rows[lo].tolist()]))
            if split:
                hi = sel[rows[sel] >= split]
                self.files.append((f"act_inh{b}.hex", hi, [f"@{a - split:x} " for a in rows[hi].tolist()]))

    def write(self, values: np.ndarray, folder: Path = Path()) -> None:
        for name, sel, prefixes in self.files:
            if not len(sel) and (folder / name) in self.fds:
                continue  # a file without words: the same for every image
            data = ("// input\n" + "".join(f"{p}{v:x}\n" for p, v in zip(prefixes, values[sel].tolist()))).encode()
            fd = self.fds.get(folder / name)
            if fd is None:  # each file is opened once and rewritten in place (creating files costs more)
                fd = self.fds[folder / name] = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


async def load_weights(dut, words: np.ndarray) -> None:
    """A wgt_ram build's boot: the host writes every word of the weight image (wgt.hex, line k to entry
    k) through the WGT write port, one a cycle, while the accelerator is idle (hw/top.py ``wgt_ram``)."""
    await FallingEdge(dut.clk)
    dut.wgt_we.value = 1
    for k, w in enumerate(words.tolist()):
        dut.wgt_waddr.value, dut.wgt_wdata.value = k, w
        await FallingEdge(dut.clk)
    dut.wgt_we.value = 0
    await FallingEdge(dut.clk)


@cocotb.test()
async def images_bit_exact(dut):
    vec = np.load(os.environ["APOTFLOW_COSIM_VECTORS"])
    result_path = os.environ["APOTFLOW_COSIM_RESULTS"]
    in_addr, in_val = vec["in_addr"], vec["in_val"]
    exp_act, exp_out = vec["exp_act"], vec["exp_out"]
    n_img, act_words, out_words = exp_act.shape[0], exp_act.shape[1], exp_out.shape[1]
    lanes, n_layers = int(vec["lanes"]), int(vec["n_layers"])
    act_bits, acc_bits = int(vec["act_bits"]), int(vec["acc_bits"])
    wb_words = int(vec["wb_words"]) if "wb_words" in vec else 1
    observable = vec["observable"]  # (2, n_layers): a layer's latch changes the descriptor (first image; later)
    limit_ns = int(vec["timeout_cycles"]) * int(vec["period_ns"])
    # The image's cycles by the cycle model, and the few the wrapper adds (load, start, dump): the bench
    # first sleeps that long (no value-change callback for the simulator to check at every time step)
    # and only then waits for ``ack``, so a run that takes longer is still caught by the time limit.
    expect_ns = min(limit_ns, (int(vec["model_cycles"]) + WRAPPER_CYCLES) * int(vec["period_ns"]))
    act_rows = -(-act_words // lanes)
    split = int(vec["split"]) if "split" in vec else 0  # banks in two memories (hw/actmem.tail_split)
    inputs = InputWriter(in_addr, lanes, split)
    act_files = [f for b in range(lanes) for f in [f"act_out{b}.hex"] + ([f"act_outh{b}.hex"] if split else [])]

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
    if int(vec["wgt_ram"]) if "wgt_ram" in vec else 0:
        await load_weights(dut, read_memh("wgt.hex", int(vec["wgt_bits"])))
    done_images = 0
    for i in range(n_img):
        t0, c0 = time.perf_counter(), time.process_time()
        inputs.write(in_val[i])
        obs = np.flatnonzero(observable[0 if i == 0 else 1])  # layers whose start the wrapper sees
        dut.req.value = i + 1
        c1 = time.process_time()
        try:
            await Timer(expect_ns, "ns")
            if int(dut.ack.value) != i + 1:
                await with_timeout(dut.ack.value_change, limit_ns - expect_ns, "ns")
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
        parts = read_memh_many(act_files, act_bits)  # bank 0 (lo, hi), bank 1, ...
        step = 2 if split else 1
        got_act = np.stack([np.concatenate(parts[k:k + step]) for k in range(0, len(parts), step)], axis=1).reshape(-1)
        got_act = got_act[:act_words]
        got_out = read_memh("out.hex", acc_bits, signed=True)
        if wb_words == 2:  # OUT in two memories, the even and the odd words (hw/top.py)
            odd = read_memh("out_b.hex", acc_bits, signed=True)
            both = np.zeros(len(got_out) + len(odd), dtype=got_out.dtype)
            both[0::2], both[1::2] = got_out, odd
            got_out = both
        got_out = got_out[:out_words]
        bad_words[i] = np.count_nonzero(got_act != exp_act[i]) + np.count_nonzero(got_out != exp_out[i])
        if bad_words[i] and first_bad < 0:
            first_bad, first_act, first_out = i, got_act, got_out
            dut._log.error("image %d: %d words differ from the golden model", i, bad_words[i])
        sim_s[i] = time.perf_counter() - t0
        if (i + 1) % 25 == 0:
            dut._log.info("%d of %d images done", i + 1, n_img)
        cpu_s[i] = (c2 - c1, time.process_time() - c2 + c1 - c0)
        done_images += 1
    inputs.close()
    np.savez(result_path, bad_words=bad_words, cycles=cycles, rtl_cycles=rtl_cycles, layer_cycles=layer_cycles,
             rtl_layer_cycles=rtl_layer_cycles, sim_s=sim_s, cpu_s=cpu_s, first_bad=first_bad, first_act=first_act,
             first_out=first_out, hang=hang, done_images=done_images)
    assert hang[0] < 0, f"image {hang[0]}: the accelerator did not finish (layer {hang[1]} was running)"
    assert first_bad < 0, f"{np.count_nonzero(bad_words)} of {n_img} images differ from the golden model"
