"""Bit-exact co-simulation: the golden integer model against the generated RTL on Verilator.

``prepare`` compiles the network for a config, generates the Verilog and its memory images, computes
the golden model's every tensor for the images and lays them out as the RTL's memories must hold
them, then builds the Verilator model. ``execute`` runs the cocotb bench (apotflow.sim.cocotb_accel)
and names the first mismatching layer and index in layer order. The hex files the RTL loads with
$readmemh live in the simulation folder, so a test can tamper with them between the two steps.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apotflow.hw import isa
from apotflow.hw.compile import Program, compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.sw.intnet import IntNet

from . import runner

TOP = "apotflow_top"
BENCH = "apotflow.sim.cocotb_accel"


@dataclass
class CosimSetup:
    net: IntNet
    program: Program
    out_dir: Path
    sim_dir: Path
    build_dir: Path
    vectors: Path
    expected: dict[str, np.ndarray]  # golden tensors, (K, C, H, W)
    build_seconds: float
    model: object = None  # the built Verilator runner


def golden_tensors(net: IntNet, x: np.ndarray) -> dict[str, np.ndarray]:
    from apotflow.sw.golden import run_integer  # torch: only the golden side needs it

    return {k: v.numpy() for k, v in run_integer(net, x).items()}


def prepare(net: IntNet, cfg: AcceleratorConfig, x: np.ndarray, out_dir: Path, *, waves: bool = False,
            expected: dict[str, np.ndarray] | None = None, log=print, program: Program | None = None) -> CosimSetup:
    from apotflow.hw.rtl import generate_verilog  # amaranth: imported only when RTL is generated

    out_dir = Path(out_dir).resolve()  # the simulator runs in sim_dir: every path it gets is absolute
    rtl_dir, sim_dir, build_dir = out_dir / "rtl", out_dir / "sim", out_dir / "sim_build"
    sim_dir.mkdir(parents=True, exist_ok=True)
    prog = program if program is not None else compile_net(net, cfg)  # the caller's compile, if it made one
    log(f"compiled: {len(prog.images.wgt)} weight entries, {len(prog.images.rq)} requant rows, "
        f"{len(prog.layers)} layers, {prog.act_words} activation words")
    generate_verilog(cfg, prog.images, rtl_dir)
    for hexfile in rtl_dir.glob("*.hex"):
        shutil.copy(hexfile, sim_dir / hexfile.name)  # $readmemh resolves against the simulator's cwd
    x = np.asarray(x, dtype=np.int64)
    if expected is None:
        expected = golden_tensors(net, x)
    inp = prog.placements[prog.input]
    in_addr = inp.addresses().reshape(-1)
    act_words = prog.act_words
    out_words = max((p.base + p.size for p in prog.placements.values() if p.memory == "out"), default=0)
    exp_act = np.zeros((len(x), act_words), dtype=np.int64)
    exp_out = np.zeros((len(x), out_words), dtype=np.int64)
    for name, pl in prog.placements.items():
        mem = exp_out if pl.memory == "out" else exp_act
        mem[:, pl.addresses().reshape(-1)] = expected[name].reshape(len(x), -1)
    work = prog.stats["work_cycles"]
    np.savez(out_dir / "vectors.npz", in_addr=in_addr, in_val=x.reshape(len(x), -1), exp_act=exp_act,
             exp_out=exp_out, n_layers=len(prog.layers), acc_bits=cfg.acc_bits, act_latency=cfg.act_read_latency,
             timeout_cycles=4 * work + 100 * len(prog.layers) + 10_000)
    sources = sorted(rtl_dir.glob("*.v"))
    log(f"building the Verilator model of {len(sources)} Verilog file(s) ...")
    t0 = time.perf_counter()
    model = runner.build(sources, TOP, build_dir, waves=waves)
    return CosimSetup(net, prog, out_dir, sim_dir, build_dir, out_dir / "vectors.npz", expected,
                      time.perf_counter() - t0, model)


def waveform(setup: CosimSetup, image: int, log=print) -> Path:
    """Re-run one image on a Verilator model built with tracing; return the VCD file."""
    vec = dict(np.load(setup.vectors))
    one = setup.out_dir / "vectors_one.npz"
    for k in ("in_val", "exp_act", "exp_out"):
        vec[k] = vec[k][image:image + 1]
    np.savez(one, **vec)
    wave_dir = setup.out_dir / "waves"
    wave_dir.mkdir(exist_ok=True)
    for hexfile in setup.sim_dir.glob("*.hex"):
        shutil.copy(hexfile, wave_dir / hexfile.name)
    log(f"re-running image {image} with waveform tracing ...")
    model = runner.build(sorted((setup.out_dir / "rtl").glob("*.v")), TOP, setup.out_dir / "sim_build_waves", waves=True)
    runner.run(model, BENCH, TOP, wave_dir, {"APOTFLOW_COSIM_VECTORS": str(one),
               "APOTFLOW_COSIM_RESULTS": str(setup.out_dir / "results_one.npz")}, waves=True)
    dumps = sorted(wave_dir.glob("*.vcd")) + sorted(wave_dir.glob("*.fst"))
    if not dumps:
        raise runner.BuildError(f"no waveform was written in {wave_dir}")
    target = setup.out_dir / f"mismatch_image{image}{dumps[0].suffix}"
    shutil.move(str(dumps[0]), target)
    return target


def execute(setup: CosimSetup, *, waves: bool = False, waves_on_mismatch: bool = True, log=print) -> dict:
    """Run the bench; return the co-simulation summary (also written to out_dir/cosim.json)."""
    results = setup.out_dir / "results.npz"
    results.unlink(missing_ok=True)
    n = len(next(iter(setup.expected.values())))
    log(f"co-simulating {n} image(s) on Verilator ...")
    t0 = time.perf_counter()
    run_ = runner.run(setup.model, BENCH, TOP, setup.sim_dir,
                      {"APOTFLOW_COSIM_VECTORS": str(setup.vectors), "APOTFLOW_COSIM_RESULTS": str(results)},
                      waves=waves)
    sim_seconds = time.perf_counter() - t0
    if not results.exists():
        raise runner.SimulationError(run_)
    r = np.load(results)
    prog = setup.program
    order = [prog.input] + [li.out for li in prog.layers]
    producer = {li.out: li.op for li in prog.layers}
    mismatched_images, first = 0, None
    for i in range(n):
        bad = False
        for name in order:
            pl = prog.placements[name]
            mem = r["got_out"][i] if pl.memory == "out" else r["got_act"][i]
            got = mem[pl.addresses()]
            exp = setup.expected[name][i]
            diff = np.argwhere(got != exp)
            if len(diff):
                bad = True
                if first is None:
                    idx = tuple(int(v) for v in diff[0])
                    first = {"image": i, "layer": producer.get(name, "input"), "tensor": name, "index": list(idx),
                             "expected": int(exp[idx]), "got": int(got[idx]), "elements_differing": int(len(diff))}
                break
        mismatched_images += bad
    from apotflow.hw.cycles import layer_cycles as model_cycles

    modelled = model_cycles(prog.config, prog.images)
    layer_cycles = r["layer_cycles"]
    cycles = r["cycles"]
    ideal = prog.stats["cycles_ideal"]
    per_layer = []
    for k, li in enumerate(prog.layers):
        ideal_l = li.macs_nonzero / prog.config.lanes
        per_layer.append({"layer": li.op, "kind": li.kind, "cycles": int(layer_cycles[0, k]),
                          "cycles_model": int(modelled[k]),
                          "cycles_ideal": ideal_l, "work": li.work, "entries": li.entries,
                          "macs": li.macs, "macs_nonzero": li.macs_nonzero})
    summary = {
        "images": n, "mismatches": mismatched_images, "bitexact_images": n - mismatched_images,
        "first_mismatch": first, "cycles_total": int(cycles[0]), "cycles_model": int(sum(modelled)), "cycles_per_image_min": int(cycles.min()),
        "cycles_per_image_max": int(cycles.max()), "cycles_ideal": ideal,
        "cycles_ratio": float(cycles[0] / ideal) if ideal else None, "per_layer": per_layer,
        "sim_seconds": sim_seconds, "sim_seconds_per_image": float(r["sim_s"].mean()),
        "build_seconds": setup.build_seconds, "lanes": prog.config.lanes, "passed": run_.passed,
    }
    if first is not None and waves_on_mismatch:
        try:
            summary["waveform"] = str(waveform(setup, first["image"], log=log))
        except (runner.BuildError, runner.SimulationError) as e:
            summary["waveform_error"] = str(e).splitlines()[0]
    (setup.out_dir / "cosim.json").write_text(json.dumps(summary, indent=1))
    return summary


def flip_hex_bit(path: Path, word: int, bit: int) -> None:
    """Flip one bit of one word of a $readmemh file (used to prove the checker can fail)."""
    words = isa.read_hex(path)
    width = len(Path(path).read_text().splitlines()[0].strip()) * 4
    words[word] ^= 1 << bit
    isa.write_hex(path, words, width)
