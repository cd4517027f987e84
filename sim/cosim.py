"""Bit-exact co-simulation: the golden integer model against the generated RTL on Verilator.

``prepare`` compiles the network for a config, generates the Verilog and its memory images and the
simulation-only wrapper ``apotflow_cosim`` (:func:`bench_verilog`), then builds the Verilator model
(optimised, nothing public but the wrapper's ports: the build depends on the config alone, and is
reused when nothing changed). ``execute`` splits the images into shards, computes the golden model's
every tensor for each shard, lays them out as the RTL's memories must hold them, and runs the cocotb
bench (apotflow.sim.cocotb_accel) on each shard in its own folder -- ``jobs`` simulator processes at
a time -- then merges one summary: the first mismatching layer and index in layer order, and every
measured cycle count (total and per layer, by the wrapper and by the RTL's own counters) against the
exact cycle model (apotflow.hw.cycles). The hex files the RTL loads with $readmemh live in the
simulation folder (copied into each shard's folder when it runs), so a test can tamper with them
between the two steps.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from apotflow.hw import isa
from apotflow.hw.actmem import tail_split
from apotflow.hw.compile import Program, compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.sw.intnet import IntNet

from . import runner
from .flow import write_json

TOP = "apotflow_top"
BENCH_TOP = "apotflow_cosim"
BENCH = "apotflow.sim.cocotb_accel"
#: Verilator flags of the co-simulation build. cocotb's runner asks for --public-flat-rw, which keeps
#: every signal of the design visible (and unoptimised); the bench needs only the wrapper's ports,
#: which the wrapper marks public itself.
COSIM_BUILD_ARGS = ("--no-public-flat-rw", "-O3", "--timing", "--timescale", "1ns/1ps")
#: make variables the --timing build needs from the PyPI wheel's verilated.mk (it leaves them empty)
COSIM_MAKE_VARS = {"CFG_CXXFLAGS_STD": "-std=gnu++20", "CFG_CXXFLAGS_COROUTINES": "-fcoroutines"}
OPT_FAST = "-O3"  # (-march=native measured no faster: 0.561 against 0.550 CPU s per ResNet-20 image)
#: gcc profile-guided optimisation of the model's evaluation code (``prepare(pgo=True)``): an instrumented
#: build runs one image, then the same folder is rebuilt with the profile (bench/results/cosim-speed.json)
PGO_GENERATE = "-fprofile-generate -fprofile-update=single"
PGO_USE = "-fprofile-use -fprofile-partial-training -Wno-missing-profile"
PGO_DONE = "pgo.done"  # marks a build folder whose model was rebuilt with its profile
PERIOD_NS = 10  # the wrapper's clock (simulated time only matters for the bench's time limit)
SHARD_IMAGES = 200  # images per simulator process (its start costs about a second)


def bench_verilog(cfg: AcceleratorConfig) -> str:
    """The simulation-only wrapper (with ``cfg.wgt_ram``, the WGT write port as inputs the bench drives
    to load the weights): per request (``req`` != ``ack``) it loads the input files
    ``act_in<b>.hex`` into the ACT banks, pulses ``start``, counts the cycles ``busy`` is high (``t``),
    logs the cycle of every change of the latched descriptor (a layer start, seen one cycle after it),
    and in the second cycle after ``done`` -- the accelerator idle, every write landed -- dumps the
    first ``act_rows`` rows of every bank (``act_out<b>.hex``), OUT (``out.hex``; two writeback words: and
    ``out_b.hex``, the odd words), the perf counters and its log
    (latch cycles; the latch count, the busy cycles and the RTL's ``cycles`` output at the end)."""
    lanes, pd = cfg.lanes, cfg.prog_depth
    dw = isa.desc_layout(cfg).width
    split = tail_split(cfg)
    if split is None:
        loads = "\n".join(f'                $readmemh("act_in{b}.hex", dut.act.bank{b}.mem);' for b in range(lanes))
        dumps = "\n".join(f'                $writememh("act_out{b}.hex", dut.act.bank{b}.mem, 0, act_rows - 1);'
                          for b in range(lanes))
    else:  # banks in two memories (apotflow_ram_split): rows below split in lo, the rest in hi, both whole
        tail = cfg.act_bank_rows - split
        loads = "\n".join(f'                $readmemh("act_in{b}.hex", dut.act.bank{b}.lo);\n'
                          f'                $readmemh("act_inh{b}.hex", dut.act.bank{b}.hi);' for b in range(lanes))
        dumps = "\n".join(f'                $writememh("act_out{b}.hex", dut.act.bank{b}.lo, 0, {split - 1});\n'
                          f'                $writememh("act_outh{b}.hex", dut.act.bank{b}.hi, 0, {tail - 1});'
                          for b in range(lanes))
    # OUT: one memory, or with two writeback words two, the even and the odd words (hw/top.py), out.hex and
    # out_b.hex (the bench interleaves them)
    out_dumps = '                $writememh("out.hex", dut.outmem);' + (
        '\n                $writememh("out_b.hex", dut.outmem_b);' if cfg.wb_words == 2 else "")
    pub = "/*verilator public_flat_rw*/"
    # wgt_ram: the bench writes the weight image (wgt.hex) through the host's WGT port before the first image
    wgt_in, wgt_conn = "", ""
    if cfg.wgt_ram:
        wgt_in = (f"    input  wire        wgt_we   {pub},\n"
                  f"    input  wire [{cfg.wgt_addr_bits - 1}:0] wgt_waddr {pub},\n"
                  f"    input  wire [{isa.entry_layout(cfg).width - 1}:0] wgt_wdata {pub},\n")
        wgt_conn = ",\n        .wgt_we(wgt_we), .wgt_waddr(wgt_waddr), .wgt_wdata(wgt_wdata)"
    return f"""// apotflow_cosim: simulation-only wrapper of apotflow_top for the cocotb bench (generated by
// apotflow.sim.cosim.bench_verilog; see apotflow/sim/cocotb_accel.py). Not for synthesis.
module apotflow_cosim (
{wgt_in}    input  wire [31:0] req      {pub},
    input  wire [31:0] act_rows {pub},
    output reg  [31:0] ack      {pub},
    output reg  [31:0] changes  {pub},
    output reg  [31:0] t        {pub},
    output wire [{cfg.prog_addr_bits - 1}:0] layer {pub}  // the descriptor the sequencer addresses: the layer running
);
    // The clock runs inside the model (Verilator --timing): no simulator callback per edge.
    reg clk {pub} = 1'b0;
    always #{PERIOD_NS // 2} clk = ~clk;
    // Reset for the first three cycles, from inside: logic that depends on a top-level input is
    // re-evaluated by Verilator at every clock edge, and the RTL's synchronous reset feeds most of it.
    reg [1:0] boot = 2'd0;
    wire rst = boot != 2'd3;
    reg start;
    wire busy, done;
    wire [31:0] cycles;
    assign layer = dut.seq.prog_addr;
    apotflow_top dut (
        .clk(clk), .rst(rst), .start(start), .busy(busy), .done(done), .cycles(cycles),
        .host_addr(0), .host_wdata(0), .host_we(1'b0), .out_addr(0), .perf_addr(0),
        .host_rdata(), .out_rdata(), .perf_rdata(){wgt_conn}
    );
    reg [{dw - 1}:0] desc_q;
    reg [31:0] log_mem [0:{pd + 2}];
    reg [2:0] ph;
    always @(posedge clk) begin
        desc_q <= dut.desc;
        if (rst) boot <= boot + 2'd1;
        if (rst) begin
            ph <= 0; ack <= 0; start <= 0; t <= 0; changes <= 0;
        end else begin
            case (ph)
            0: if (req != ack) begin
{loads}
                ph <= 1;
            end
            1: begin start <= 1; t <= 0; changes <= 0; ph <= 2; end
            2: begin
                start <= 0;
                if (busy) begin
                    t <= t + 1;
                    if (dut.desc != desc_q) begin
                        if (changes < {pd}) log_mem[changes[{max(1, (pd - 1).bit_length()) - 1}:0]] <= t;
                        changes <= changes + 1;
                    end
                    if (done) ph <= 3;
                end
            end
            3: begin log_mem[{pd}] <= changes; log_mem[{pd + 1}] <= t; log_mem[{pd + 2}] <= cycles; ph <= 4; end
            default: begin
{dumps}
{out_dumps}
                $writememh("perf.hex", dut.perfmem);
                $writememh("log.hex", log_mem);
                ack <= req;
                ph <= 0;
            end
            endcase
        end
    end
endmodule
"""


@dataclass
class CosimSetup:
    net: IntNet
    program: Program
    out_dir: Path
    sim_dir: Path
    build_dir: Path
    x: np.ndarray  # the input images (K, C, H, W)
    expected: dict[str, np.ndarray] | None  # golden tensors (K, C, H, W); None: computed per shard
    build_seconds: float
    model: object = None  # the built Verilator runner

    @property
    def vectors(self) -> Path:
        return self.out_dir / "vectors.npz"


def top_verilog(cfg: AcceleratorConfig, emit_src: bool = False) -> str:
    """apotflow_top.v for cfg as ``generate_verilog`` writes it (the ROM contents are $readmemh files, so
    the text depends on the config alone: one text for every network); ``emit_src``: with Amaranth's
    source attributes (each statement names its hw/*.py line; bench/mutants.py locates mutations by them)."""
    from amaranth.back import verilog

    from apotflow.hw.rtl import TOP, sim_accelerator

    return verilog.convert(sim_accelerator(cfg), name=TOP, emit_src=emit_src)


def golden_tensors(net: IntNet, x: np.ndarray) -> dict[str, np.ndarray]:
    from apotflow.sw.golden import run_integer  # torch: only the golden side needs it

    return {k: v.numpy() for k, v in run_integer(net, x).items()}


def _build(cfg: AcceleratorConfig, rtl_dir: Path, build_root: Path, waves: bool = False, in_place: bool = False,
           train=None):
    """Build (or reuse) the Verilator model in ``build_root/<digest>``: the digest covers the Verilog
    (which depends on the config alone; the ROM contents are $readmemh files) and the flags, so one
    build serves every network and every run with the same config. ``in_place``: build in build_root
    itself, whatever the Verilog (mutation testing: Verilator rewrites only the C++ files that changed
    and make compiles only those; a new folder would recompile Verilator's runtime as well).
    ``train``: profile-guided optimisation -- the model is first built instrumented and handed to
    ``train(model)``, which runs it (its results are not used); the model's own C++ and cocotb's main
    are then recompiled in the same folder with the profile gcc wrote there. The simulated behaviour is
    that of the same Verilog: only the compiler's code layout and inlining change."""
    tb = rtl_dir / f"{BENCH_TOP}.v"
    tb.write_text(bench_verilog(cfg))
    sources = sorted(p for p in rtl_dir.glob("*.v") if p != tb) + [tb]
    pgo = train is not None and not in_place and not waves
    h = hashlib.sha256(repr((COSIM_BUILD_ARGS, COSIM_MAKE_VARS, OPT_FAST, waves)
                            + ((PGO_GENERATE, PGO_USE) if pgo else ())).encode())
    for src in sources:
        h.update(src.read_bytes())
    build_dir = Path(build_root) if in_place else Path(build_root) / h.hexdigest()[:16]
    if in_place:
        # Verilator rewrites its makefile on every run, and verilated.mk makes its runtime objects depend
        # on it; they do not depend on the design (same flags for every build), so they are dated a day
        # ahead and make keeps them: the rebuild compiles the design's C++ alone (~4x less).
        ahead = time.time() + 86_400
        for obj in [*build_dir.glob("verilated*.o"), build_dir / "verilator.o"]:
            if obj.is_file():
                os.utime(obj, (ahead, ahead))
    if pgo and build_dir.is_dir() and not (build_dir / PGO_DONE).is_file():
        shutil.rmtree(build_dir)  # an instrumented build that did not finish: start again
    src_dir = build_dir / "src"  # the sources at a fixed path: Verilator's output names them
    src_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if not (src_dir / src.name).is_file() or (src_dir / src.name).read_bytes() != src.read_bytes():
            shutil.copy(src, src_dir / src.name)

    def build(opt: str, extra: tuple[str, ...] = ()):
        return runner.build([src_dir / s.name for s in sources], BENCH_TOP, build_dir, waves=waves,
                            build_args=COSIM_BUILD_ARGS + extra, opt_fast=opt, opt_global="-O2",
                            make_vars=COSIM_MAKE_VARS)

    if not pgo:
        return build(OPT_FAST)
    if not (build_dir / PGO_DONE).is_file():
        train(build(f"{OPT_FAST} {PGO_GENERATE}", ("-LDFLAGS", "-fprofile-generate")))
        # the instrumented objects go; Verilator's runtime (OPT_GLOBAL, not instrumented) stays
        for obj in [*build_dir.glob("Vtop*.o"), *build_dir.glob("*.gch"), build_dir / "verilator.o",
                    build_dir / "Vtop__ALL.a", build_dir / BENCH_TOP]:
            obj.unlink(missing_ok=True)
        model = build(f"{OPT_FAST} {PGO_USE}")
        (build_dir / PGO_DONE).write_text("".join(sorted(f"{p.name}\n" for p in build_dir.glob("*.gcda"))))
        return model
    return build(f"{OPT_FAST} {PGO_USE}")


def prepare(net: IntNet, cfg: AcceleratorConfig, x: np.ndarray, out_dir: Path, *, waves: bool = False,
            expected: dict[str, np.ndarray] | None = None, build_cache: Path | None = None, log=print,
            program: Program | None = None, verilog: str | None = None, build_in_place: bool = False,
            pgo: bool = False) -> CosimSetup:
    """Compile, generate the RTL and build the model; ``build_cache``: where builds are kept (default
    out_dir/sim_build), one folder per Verilog and flags. ``verilog``: the text of apotflow_top.v to
    build instead of generating it (mutation testing, bench/mutants.py: it must be for ``cfg``); the
    ROM source and hex images are written as ``generate_verilog`` writes them; ``build_in_place``: build
    in ``build_cache`` itself (see ``_build``); ``pgo``: a profile-guided build (see ``_build``), trained
    on the first image (about twice the build time, once per config; a run of many images then costs
    about 15 % less CPU time per image)."""
    from apotflow.hw.rtl import TOP, generate_verilog, sim_sources, write_hex_images

    out_dir = Path(out_dir).resolve()  # the simulator runs in sim_dir: every path it gets is absolute
    rtl_dir, sim_dir = out_dir / "rtl", out_dir / "sim"
    build_dir = Path(build_cache).resolve() if build_cache else out_dir / "sim_build"
    sim_dir.mkdir(parents=True, exist_ok=True)
    prog = program if program is not None else compile_net(net, cfg)  # the caller's compile, if it made one
    log(f"compiled: {len(prog.images.wgt)} weight entries, {len(prog.images.rq)} requant rows, "
        f"{len(prog.layers)} layers, {prog.act_words} activation words")
    _observable(prog)  # refuse a program whose layer starts the bench cannot see, before building
    if verilog is None:
        generate_verilog(cfg, prog.images, rtl_dir)
    else:
        rtl_dir.mkdir(parents=True, exist_ok=True)
        prog.images.check()
        (rtl_dir / f"{TOP}.v").write_text(verilog)
        for src in sim_sources(cfg):
            shutil.copyfile(src, rtl_dir / src.name)
        write_hex_images(cfg, prog.images, rtl_dir)
    for hexfile in rtl_dir.glob("*.hex"):
        shutil.copy(hexfile, sim_dir / hexfile.name)  # $readmemh resolves against the simulator's cwd
    log("building the Verilator model ...")
    t0 = time.perf_counter()
    x = np.asarray(x, dtype=np.int64)

    def train(model) -> None:  # the instrumented model runs the first image; its results are not used
        exp = None if expected is None else {k: v[:1] for k, v in expected.items()}
        log("profile-guided build: running the instrumented model on one image ...")
        try:
            _run_shard(_Shard(model, sim_dir, out_dir / "pgo-train", prog, net, x[:1], exp, 0))
        except runner.SimulationError:
            pass  # a crashed run leaves a partial profile: the rebuild still uses what there is
        shutil.rmtree(out_dir / "pgo-train", ignore_errors=True)

    model = _build(cfg, rtl_dir, build_dir, waves, build_in_place, train if pgo and len(x) else None)
    return CosimSetup(net, prog, out_dir, sim_dir, build_dir, x, expected, time.perf_counter() - t0, model)


def _observable(prog: Program) -> np.ndarray:
    """(2, layers): whether a layer's descriptor latch changes the descriptor register, for the first
    image a simulator process runs (after reset the register is 0) and for later ones (it holds the
    last layer's descriptor). Layer 0's start is not needed (its count runs from cycle 0)."""
    desc = [int(d) for d in prog.images.prog[:len(prog.layers)]]
    obs = np.ones((2, len(desc)), dtype=bool)
    obs[0, 0], obs[1, 0] = desc[0] != 0, desc[0] != desc[-1]
    for k in range(1, len(desc)):
        if desc[k] == desc[k - 1]:
            raise ValueError(f"layers {prog.layers[k - 1].op} and {prog.layers[k].op} have identical descriptors: "
                             "the bench cannot see where the second starts")
    return obs


def _memories(prog: Program, expected: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The golden tensors laid out as ACT (n, act_words) and OUT (n, out_words) hold them after a run:
    written in the order the run writes them (the input, then each layer's output), so that where
    tensors share words (a deployment build, ``compile_net(reuse=True)``) the last writer's stay."""
    out_words = max((p.base + p.size for p in prog.placements.values() if p.memory == "out"), default=0)
    act_type = np.uint8 if prog.config.act_bits <= 8 else np.int64
    exp_act = np.zeros((n, prog.act_words), dtype=act_type)
    exp_out = np.zeros((n, out_words), dtype=np.int64)
    for name in _write_order(prog):
        pl = prog.placements[name]
        mem = exp_out if pl.memory == "out" else exp_act
        mem[:, pl.addresses().reshape(-1)] = expected[name].reshape(n, -1)
    return exp_act, exp_out


def _write_order(prog: Program) -> list[str]:
    """The input, then the layers' outputs in layer order, then any tensor neither (placed, never written)."""
    order = [prog.input] + [li.out for li in prog.layers]
    return order + [t for t in prog.placements if t not in order]


def _survivors(prog: Program) -> dict[str, np.ndarray]:
    """Per tensor, which of its elements still hold it after a run (all, unless a later tensor shares
    its words: a deployment build's overwritten intermediate tensors are checked where they survive)."""
    owner: dict[tuple[str, int], str] = {}
    for name in _write_order(prog):
        pl = prog.placements[name]
        for a in pl.addresses().reshape(-1).tolist():
            owner[(pl.memory, a)] = name
    return {name: np.vectorize(lambda a, pl=pl, name=name: owner[(pl.memory, int(a))] == name, otypes=[bool])(
        pl.addresses()) for name, pl in prog.placements.items()}


def _first_difference(prog: Program, expected: dict[str, np.ndarray], i: int, got_act, got_out) -> dict | None:
    """The first tensor in layer order where image i's memories differ, with its first index."""
    producer = {li.out: li.op for li in prog.layers}
    alive = _survivors(prog)
    for name in [prog.input] + [li.out for li in prog.layers]:
        pl = prog.placements[name]
        got = (got_out if pl.memory == "out" else got_act)[pl.addresses()]
        exp = expected[name][i]
        diff = np.argwhere((got != exp) & alive[name])
        if len(diff):
            idx = tuple(int(v) for v in diff[0])
            return {"layer": producer.get(name, "input"), "tensor": name, "index": list(idx),
                    "expected": int(exp[idx]), "got": int(got[idx]), "elements_differing": int(len(diff))}
    return None


@dataclass
class _Shard:
    model: object
    hex_dir: Path
    work: Path
    program: Program
    net: IntNet
    x: np.ndarray
    expected: dict[str, np.ndarray] | None
    first: int  # global index of the shard's first image
    waves: bool = False
    threads: int = 0  # torch threads for the golden model (0: leave as is)


def _run_shard(sh: _Shard) -> dict:
    """Golden model, vectors, one simulator process for the shard's images; per-image results."""
    prog = sh.program
    t0, g0 = time.perf_counter(), time.process_time()
    if sh.threads:
        import torch

        torch.set_num_threads(sh.threads)
    expected = sh.expected if sh.expected is not None else golden_tensors(sh.net, sh.x)
    golden_s, golden_cpu = time.perf_counter() - t0, time.process_time() - g0
    n = len(sh.x)
    exp_act, exp_out = _memories(prog, expected, n)
    sh.work.mkdir(parents=True, exist_ok=True)
    for hexfile in Path(sh.hex_dir).glob("*.hex"):
        if hexfile.name in _rom_files():
            shutil.copy(hexfile, sh.work / hexfile.name)
    vectors, results = sh.work / "vectors.npz", sh.work / "results.npz"
    results.unlink(missing_ok=True)
    cfg = prog.config
    inp = prog.placements[prog.input]
    np.savez(vectors, in_addr=inp.addresses().reshape(-1), in_val=sh.x.reshape(n, -1), exp_act=exp_act,
             exp_out=exp_out, lanes=cfg.lanes, n_layers=len(prog.layers), act_bits=cfg.act_bits,
             acc_bits=cfg.acc_bits, observable=_observable(prog), timeout_cycles=timeout_cycles(prog),
             period_ns=PERIOD_NS, split=tail_split(cfg) or 0, model_cycles=_model_cycles(prog),
             wgt_ram=cfg.wgt_ram, wgt_bits=isa.entry_layout(cfg).width, wb_words=cfg.wb_words)
    t1, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    run_ = runner.run(sh.model, BENCH, BENCH_TOP, sh.work,
                      {"APOTFLOW_COSIM_VECTORS": str(vectors), "APOTFLOW_COSIM_RESULTS": str(results)},
                      waves=sh.waves)
    sim_s = time.perf_counter() - t1
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime  # the simulator process (and make, if any)
    if not results.exists():
        raise runner.SimulationError(run_)
    r = dict(np.load(results))
    first = None
    if int(r["first_bad"]) >= 0:
        i = int(r["first_bad"])
        named = _first_difference(prog, expected, i, r["first_act"], r["first_out"])
        if named is None:  # a word outside every tensor differs: name its address
            a = int(np.flatnonzero(r["first_act"] != exp_act[i])[0])
            named = {"layer": None, "tensor": None, "index": None, "act_address": a, "expected": int(exp_act[i][a]),
                     "got": int(r["first_act"][a]), "elements_differing": int(r["bad_words"][i])}
        first = {"image": sh.first + i, **named}
    hang = None
    if int(r["hang"][0]) >= 0:
        k = int(r["hang"][1])
        hang = {"image": sh.first + int(r["hang"][0]), "layer": prog.layers[k].op if k < len(prog.layers) else None,
                "layer_index": k, "cycles": int(r["hang"][2]), "timeout_cycles": timeout_cycles(prog)}
    keep = ("bad_words", "cycles", "rtl_cycles", "layer_cycles", "rtl_layer_cycles", "sim_s", "cpu_s")
    return {**{k: r[k] for k in keep}, "done_images": int(r["done_images"]), "first_mismatch": first,
            "hang": hang, "passed": run_.passed, "log": str(run_.log), "golden_seconds": golden_s,
            "golden_cpu_seconds": golden_cpu, "cpu_seconds": cpu, "sim_seconds": sim_s, "first": sh.first, "n": n}


def _model_cycles(prog: Program) -> int:
    """An image's cycles by the exact cycle model (apotflow.hw.cycles)."""
    from apotflow.hw.cycles import layer_cycles

    return int(sum(layer_cycles(prog.config, prog.images)))


def _rom_files() -> set[str]:
    from apotflow.hw.top import HEX_FILES

    return set(HEX_FILES.values())


def timeout_cycles(prog: Program) -> int:
    """Simulated cycles an image may take before the bench calls it a hang."""
    return 4 * prog.stats["work_cycles"] + 100 * len(prog.layers) + 10_000


def waveform(setup: CosimSetup, image: int, log=print) -> Path:
    """Re-run one image on a Verilator model built with tracing; return the VCD file."""
    wave_dir = setup.out_dir / "waves"
    log(f"re-running image {image} with waveform tracing ...")
    model = _build(setup.program.config, setup.out_dir / "rtl", setup.out_dir / "sim_build_waves", waves=True)
    exp = None if setup.expected is None else {k: v[image:image + 1] for k, v in setup.expected.items()}
    try:
        _run_shard(_Shard(model, setup.sim_dir, wave_dir, setup.program, setup.net, setup.x[image:image + 1], exp,
                          image, waves=True))
    except runner.SimulationError:
        pass  # a crash may still leave a waveform
    dumps = sorted(wave_dir.glob("*.vcd")) + sorted(wave_dir.glob("*.fst"))
    if not dumps:
        raise runner.BuildError(f"no waveform was written in {wave_dir}")
    target = setup.out_dir / f"mismatch_image{image}{dumps[0].suffix}"
    shutil.move(str(dumps[0]), target)
    return target


def shards(n: int, jobs: int, shard_images: int | None = None) -> list[range]:
    """Image ranges, one per simulator process: at most ``shard_images`` each, at least ``jobs`` of them."""
    size = shard_images or min(SHARD_IMAGES, max(1, -(-n // max(1, jobs))))
    return [range(a, min(n, a + size)) for a in range(0, n, size)]


def execute(setup: CosimSetup, *, waves: bool = False, waves_on_mismatch: bool = True, jobs: int = 1,
            shard_images: int | None = None, log=print) -> dict:
    """Run the bench on every image (``jobs`` simulator processes at a time); return the summary
    (also written to out_dir/cosim.json)."""
    from apotflow.hw.cycles import layer_cycles as model_layer_cycles

    prog = setup.program
    n = len(setup.x)
    parts = shards(n, jobs, shard_images)
    log(f"co-simulating {n} image(s) on Verilator in {len(parts)} simulator run(s), {jobs} at a time ...")
    tasks = [_Shard(setup.model, setup.sim_dir, setup.out_dir / "shards" / f"{j:05d}", prog, setup.net,
                    setup.x[p.start:p.stop],
                    None if setup.expected is None else {k: v[p.start:p.stop] for k, v in setup.expected.items()},
                    p.start, waves=waves, threads=1 if jobs > 1 else 0)
             for j, p in enumerate(parts)]
    t0 = time.perf_counter()
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            outs = []
            for o in pool.map(_run_shard, tasks):
                outs.append(o)
                log(f"  {sum(x['done_images'] for x in outs)}/{n} images, {time.perf_counter() - t0:.0f} s")
    else:
        outs = []
        for t in tasks:
            outs.append(_run_shard(t))
            if len(tasks) > 1:
                log(f"  {sum(x['done_images'] for x in outs)}/{n} images, {time.perf_counter() - t0:.0f} s")
    wall = time.perf_counter() - t0
    cat = {k: np.concatenate([o[k] for o in outs]) for k in ("bad_words", "cycles", "rtl_cycles", "layer_cycles",
                                                              "rtl_layer_cycles", "sim_s", "cpu_s")}
    done_images = sum(o["done_images"] for o in outs)
    ran = np.concatenate([np.arange(o["n"]) < o["done_images"] for o in outs])
    first = next((o["first_mismatch"] for o in outs if o["first_mismatch"]), None)
    hang = next((o["hang"] for o in outs if o["hang"]), None)
    mismatched = int(np.count_nonzero((cat["bad_words"] > 0) | ~ran))

    modelled = np.array(model_layer_cycles(prog.config, prog.images), dtype=np.int64)
    total_model = int(modelled.sum())
    measured = {"layer_cycles": (cat["layer_cycles"], modelled), "rtl_layer_cycles": (cat["rtl_layer_cycles"], modelled),
                "cycles": (cat["cycles"], total_model), "rtl_cycles": (cat["rtl_cycles"], total_model)}
    cycle_bad = np.zeros(n, dtype=bool)
    first_cycle = None
    for what, (got, want) in measured.items():
        bad = got != want
        bad = (bad.any(axis=1) if bad.ndim == 2 else bad) & ran
        cycle_bad |= bad
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if got.ndim == 2:
                k = int(np.flatnonzero(got[i] != want)[0])
                cand = {"image": i, "what": what, "layer": prog.layers[k].op, "layer_index": k,
                        "measured": int(got[i, k]), "model": int(want[k])}
            else:
                cand = {"image": i, "what": what, "measured": int(got[i]), "model": int(want)}
            if first_cycle is None or cand["image"] < first_cycle["image"]:
                first_cycle = cand

    ideal = prog.stats["cycles_ideal"]
    c0 = cat["layer_cycles"][0] if n else np.zeros(len(prog.layers), np.int64)
    r0 = cat["rtl_layer_cycles"][0] if n else np.zeros(len(prog.layers), np.int64)
    per_layer = [{"layer": li.op, "kind": li.kind, "cycles": int(c0[k]), "cycles_rtl_counter": int(r0[k]),
                  "cycles_model": int(modelled[k]), "cycles_ideal": li.macs_nonzero / prog.config.lanes,
                  "work": li.work, "entries": li.entries, "macs": li.macs, "macs_nonzero": li.macs_nonzero}
                 for k, li in enumerate(prog.layers)]
    cyc = cat["cycles"][ran]
    sim_s = cat["sim_s"][ran]
    cpu_s = cat["cpu_s"][ran]
    summary = {
        "images": n, "mismatches": mismatched, "bitexact_images": n - mismatched, "first_mismatch": first,
        "cycle_mismatches": int(np.count_nonzero(cycle_bad)), "first_cycle_mismatch": first_cycle, "hang": hang,
        "cycles_total": int(cyc[0]) if len(cyc) else None, "cycles_model": total_model,
        "cycles_per_image_min": int(cyc.min()) if len(cyc) else None,
        "cycles_per_image_max": int(cyc.max()) if len(cyc) else None, "cycles_ideal": ideal,
        "cycles_ratio": float(cyc[0] / ideal) if len(cyc) and ideal else None, "per_layer": per_layer,
        "sim_seconds": wall, "sim_seconds_per_image": float(sim_s.mean()) if len(sim_s) else None,
        "wall_seconds_per_image": wall / max(1, done_images),
        "cpu_seconds_per_image": {"simulating": float(cpu_s[:, 0].mean()) if len(cpu_s) else None,
                                  "bench_files": float(cpu_s[:, 1].mean()) if len(cpu_s) else None,
                                  "simulator_process": sum(o["cpu_seconds"] for o in outs) / max(1, done_images),
                                  "golden_model": sum(o["golden_cpu_seconds"] for o in outs) / max(1, done_images)}, "golden_seconds": sum(o["golden_seconds"] for o in outs),
        "simulator_runs": len(outs), "jobs": jobs, "build_seconds": setup.build_seconds, "lanes": prog.config.lanes,
        "passed": bool(all(o["passed"] for o in outs) and mismatched == 0 and not cycle_bad.any() and hang is None),
        "cycles_per_image": [int(v) for v in cat["cycles"]],
    }
    if first is not None and waves_on_mismatch:
        try:
            summary["waveform"] = str(waveform(setup, first["image"], log=log))
        except (runner.BuildError, runner.SimulationError) as e:
            summary["waveform_error"] = str(e).splitlines()[0]
    summary["config"] = prog.config.to_dict()  # what `apotflow report --cosim` compiles for
    write_json(setup.out_dir / "cosim.json", summary)
    return summary


def flip_hex_bit(path: Path, word: int, bit: int) -> None:
    """Flip one bit of one word of a $readmemh file (used to prove the checker can fail)."""
    words = isa.read_hex(path)
    width = len(Path(path).read_text().splitlines()[0].strip()) * 4
    words[word] ^= 1 << bit
    isa.write_hex(path, words, width)
