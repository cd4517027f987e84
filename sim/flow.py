"""The hardware half of the flow behind the CLI: a compiled Program -> RTL, co-simulation, synthesis.

Training and export live in sw (sw/digits_run.py, sw/cifar_run.py, sw/convert.py); every function here
takes the one Program that hw.fit.fit (or hw.compile.compile_net) made, so a command compiles once.
"""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from apotflow.hw.compile import Program
from apotflow.hw.config import AcceleratorConfig
from apotflow.sw import atomic
from apotflow.sw.atomic import remove_stale
from apotflow.sw.intnet import IntNet
from apotflow.sw.progress import heartbeat


class FlowError(RuntimeError):
    """A step of the flow could not run (missing data, failed check)."""


def write_text_atomic(path: Path, text: str) -> Path:
    """A file whole or absent, never half-written (sw/atomic.py's writer: the project's one); the
    temporaries a killed earlier run left in the folder go first (sw.atomic.remove_stale)."""
    remove_stale(Path(path).parent)
    return atomic.write_atomic(path, text)


def write_json(path: Path, data) -> Path:
    """write_text_atomic of the project's JSON layout (sw.atomic.json_text)."""
    return write_text_atomic(path, atomic.json_text(data))


def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "") if rev.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    from apotflow.hw.flows.tools import dist_version
    from apotflow.sim.toolpaths import tool_versions

    out = {"python": platform.python_version(), "numpy": np.__version__}
    if torch := dist_version("torch"):  # metadata only: the hardware side does not import torch
        out["torch"] = torch
    try:
        out.update(tool_versions())
    except Exception as e:  # a missing tool must not hide the rest of the report
        out["tools_error"] = str(e).splitlines()[0]
    return out


# ----------------------------------------------------------------------------- hardware side
def write_rtl(net: IntNet, prog: Program, out_dir: Path, log=print) -> dict:
    from apotflow.hw import isa
    from apotflow.hw.rtl import generate_verilog, ports_manifest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = prog.config
    log(f"generating Verilog for {cfg.lanes} lanes ...")
    t0 = time.perf_counter()
    try:
        with heartbeat(log, "generating Verilog"):
            generate_verilog(cfg, prog.images, out_dir)
    except ValueError as e:  # a config the RTL cannot build (hw/top.py's checks)
        raise FlowError(f"rtl: {e}") from None
    manifest = {
        "config": cfg.to_dict(), "interface": ports_manifest(cfg), "program": prog.to_dict(),
        "formats": {"entry": isa.entry_layout(cfg).to_dict(), "val": isa.val_layout(cfg).to_dict(),
                    "tap": isa.tap_layout(cfg).to_dict(), "rq": isa.rq_layout(cfg).to_dict(),
                    "desc": isa.desc_layout(cfg).to_dict()},
        "files": sorted(p.name for p in out_dir.iterdir() if p.suffix in (".v", ".hex")),
        "git_revision": git_revision(), "versions": versions(), "model_meta": net.meta,
        "seconds": time.perf_counter() - t0,
        "notes": "$readmemh files (wgt.hex, rq.hex, prog.hex, val.hex, tap.hex) are opened relative to the simulator's or "
                 "synthesis tool's working directory.",
    }
    write_json(out_dir / "manifest.json", manifest)
    log(f"wrote {out_dir} ({len(manifest['files'])} files) in {manifest['seconds']:.1f} s")
    return manifest


RANDOM_IMAGES = 16  # a CIFAR net co-simulated without --data and without --images gets this many random images


def input_images(net: IntNet, n: int, seed: int = 0, data: str | None = None, log=print) -> np.ndarray:
    """``n`` test images (0: all) for a model: the digits test split, CIFAR-10 test images (data=path), or,
    for a CIFAR net without data, seeded random pixels (bit-exactness does not depend on the data)."""
    if n < 0:
        raise FlowError(f"--images must be 0 (all) or a positive count, not {n}")
    if net.meta.get("model") == "digits" or data:
        if net.meta.get("model") == "digits":
            from apotflow.sw.digits_run import digits_test_images

            x, what = digits_test_images(seed)[0], "the digits test split"
        else:
            from apotflow.sw.cifar import load_cifar10

            log(f"loading the CIFAR-10 test split from {data} (the first time decodes and caches it) ...")
            with heartbeat(log, "loading CIFAR-10"):
                x, what = load_cifar10(data).x_test.numpy().astype(np.int64), "the CIFAR-10 test split"
        if n > len(x):
            log(f"--images {n}: {what} holds {len(x)} images; co-simulating all {len(x)}")
        return x[:n] if n else x
    spec = net.tensors[net.input]
    n = n or RANDOM_IMAGES
    log(f"no --data given: {n} random input images, integers 0..{spec.max_value} (seed {seed})")
    return np.random.default_rng(seed).integers(0, spec.max_value + 1, size=(n, *spec.shape))


def cosim_model(net: IntNet, prog: Program, out_dir: Path, n_images: int = 16, seed: int = 0,
                waves: bool = False, log=print, x: np.ndarray | None = None, data: str | None = None,
                jobs: int = 1, shard_images: int | None = None, pgo: bool = False) -> dict:
    """Co-simulate ``n_images`` images (0: every test image) in ``jobs`` simulator processes; ``pgo``: a
    profile-guided Verilator build (apotflow.sim.cosim.prepare)."""
    from apotflow.sim.cosim import execute, prepare

    if x is None:
        x = input_images(net, n_images, seed, data, log)
    elif n_images:
        x = x[:n_images]
    with heartbeat(log, "preparing the co-simulation (golden model, Verilog, Verilator build)"):
        setup = prepare(net, prog.config, x, Path(out_dir), waves=waves, log=log, program=prog, pgo=pgo)
    with heartbeat(log, f"co-simulating {len(x)} image(s)"):
        summary = execute(setup, waves=waves, jobs=jobs, shard_images=shard_images, log=log)
    log(f"co-simulation: {summary['bitexact_images']}/{summary['images']} images bit-exact, "
        f"{summary['cycles_total']} cycles/image ({summary['cycles_ratio']:.3f}x the ideal bound), "
        f"{summary['cycle_mismatches']} image(s) with cycles other than the cycle model's")
    if summary["first_mismatch"]:
        fm = summary["first_mismatch"]
        log(f"first mismatch: image {fm['image']}, layer {fm['layer']} ({fm['tensor']}), index {fm['index']}: "
            f"expected {fm['expected']}, got {fm['got']}")
    if summary["first_cycle_mismatch"]:
        fc = summary["first_cycle_mismatch"]
        where = f", layer {fc['layer']}" if "layer" in fc else ""
        log(f"first cycle mismatch: image {fc['image']}{where} ({fc['what']}): measured {fc['measured']}, "
            f"cycle model {fc['model']}")
    if summary["hang"]:
        h = summary["hang"]
        log(f"hang: image {h['image']} did not finish within {h['timeout_cycles']} cycles; "
            f"layer {h['layer']} (index {h['layer_index']}) was running")
    return summary


def design_name(meta: dict | None, cfg: AcceleratorConfig) -> str:
    """A build's default name: <model>-l<lanes> (array-l<lanes> without a model)."""
    return f"{meta.get('model', 'model')}-l{cfg.lanes}" if meta is not None else f"array-l{cfg.lanes}"


def weight_load(cfg: AcceleratorConfig) -> dict:
    """A ``wgt_ram`` bitstream's manifest entry: the weight image the host writes at boot (none for ROM weights)."""
    from apotflow.hw import isa
    from apotflow.hw.ioshell import shell_fields

    if not cfg.wgt_ram:
        return {}
    return {"weight_load": {
        "file": "wgt.hex", "words": cfg.wgt_depth, "bits": isa.entry_layout(cfg).width,
        "shell_fields": shell_fields(cfg),
        "how": "before the first start (busy low), for each line k of wgt.hex: shift {wgt_waddr = k, wgt_wdata = the "
               "word, wgt_we = 1} into the input register (shell_fields, LSB first, sshift high), then pulse sapply; "
               "SPRAM holds no contents after configuration, so this is repeated after every power-up (hw/ioshell.py)"}}


def synth_model(cfg: AcceleratorConfig, out_dir: Path, target: str, log=print, *, program: Program | None = None,
                meta: dict | None = None, lane_kind: str = "shift", pnr: bool = False,
                freq_mhz: float | None = None, nodsp: bool = False, design: str | None = None,
                bitstreams: Path | None = None, seed: int = 0, router: str | None = None,
                pnr_seeds: list[int] | None = None, pnr_timeout: float | None = None,
                command: str | None = None) -> dict:
    """Synthesise the accelerator for ``target`` (hw/flows/build.py): resources, fit, Fmax, bitstream.

    With ``program`` the ROMs hold it (its config must be ``cfg``); without, a random program fills them
    (memories sized by ``cfg``). ``target="generic"`` gives the ASIC estimate (CMOS gates and transistors).
    ``pnr_seeds``: nextpnr placement seeds (default ``[1]``), place and route once each on the one netlist,
    the highest Fmax kept (hw/flows/build.py); ``pnr_timeout``: seconds each nextpnr run may take (None:
    hw/flows/nextpnr.DEFAULT_TIMEOUT). The bitstream stays in ``out_dir/synth-<target>/``; with ``bitstreams`` it is also copied to
    ``bitstreams/<target>/<design>/`` with a manifest. Writes ``out_dir/synth.json`` (and
    ``out_dir/synth-<target>/synth.json``) and returns it.
    """
    from apotflow.hw.cycles import total_cycles
    from apotflow.hw.flows.build import build, filled_images
    from apotflow.hw.flows.nextpnr import DEFAULT_SEED, DEFAULT_TIMEOUT

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if program is not None and program.config != cfg:
        raise ValueError("synth_model: the program was compiled for another configuration")
    images = program.images if program is not None else filled_images(cfg, seed)
    name = design or design_name(meta if program is not None else None, cfg)
    if lane_kind != "shift":
        name += f"-{lane_kind}"
    if target == "generic":
        from apotflow.hw.flows.asic import asic_estimate

        res = asic_estimate(cfg, out_dir / "synth-generic", images, kind="board", lane_kind=lane_kind, log=log)
    else:
        res = build(cfg, target, out_dir, images, design=name, lane_kind=lane_kind, pnr=pnr, freq_mhz=freq_mhz,
                    router=router, seeds=pnr_seeds or [DEFAULT_SEED], pnr_timeout=pnr_timeout or DEFAULT_TIMEOUT,
                    extra_synth_args="-nodsp" if nodsp else "",
                    bitstream_root=Path(bitstreams) if bitstreams else None,
                    cycles=total_cycles(cfg, program.images) if program is not None else None,
                    manifest_extra={"command": command, "git_revision": git_revision(), "versions": versions(),
                                    "model_meta": meta, **weight_load(cfg)},
                    log=log)
    write_json(out_dir / "synth.json", res)
    work = out_dir / f"synth-{target}"
    if work.is_dir():
        write_json(work / "synth.json", res)
    return res
