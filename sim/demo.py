"""`apotflow demo`: the whole chain on the digits net with fixed seeds, compiled once, and its report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig
from apotflow.sw.progress import heartbeat

from . import flow
from .report import build_report, write_report

STEPS = 5


def lane_candidates(lanes: int) -> list[int]:
    """The lane counts the demo tries on a target, largest first: ``lanes`` (the co-simulated one), then
    every power of two below it down to 2."""
    out = [lanes]
    while out[-1] > 2:
        out.append(1 << ((out[-1] - 1).bit_length() - 1))
    return out


def _label(lanes: int, wgt_ram: int) -> str:
    return f"{lanes} lanes" + (" with the weights in SPRAM" if wgt_ram else "")


def synth_fitting(net, prog, out: Path, target: str, log=print, pnr: bool = False) -> dict:
    """Synthesise for ``target`` the largest configuration that fits it: the co-simulated one (``prog``) if
    it does, else the largest smaller lane count (compiled for it) that the estimator says fits and
    Yosys confirms; on a part with SPRAM (the iCE40 UP5K) each lane count is tried with the weights in a
    ROM, then in SPRAM (``wgt_ram``: the host loads them at boot). With none, the synthesis is skipped
    and the result's ``over`` names, for the smallest configuration tried, each resource it needs more
    of and by how much. The result's
    ``choice`` (one line) says which configuration it is and why; the report shows it."""
    from apotflow.hw.fit import fit
    from apotflow.hw.flows import devices
    from apotflow.hw.flows.build import design_estimate

    if target not in devices.DEVICES:  # "generic": an ASIC estimate, no device to fit
        res = flow.synth_model(prog.config, out, target, log=log, program=prog, meta=net.meta, pnr=pnr)
        res["choice"] = f"{prog.config.lanes} lanes: the co-simulated configuration (no device to fit)"
        return res
    tried = []  # (lanes, wgt_ram, "the estimate" | "Yosys", its fit report ({"fits", "over"}), the estimate)
    # a part with SPRAM also gets each lane count with the weights in SPRAM (loaded by the host at boot): the
    # weight ROM is what keeps a network off the UP5K's 30 block RAMs
    rams = (0, 1) if devices.DEVICES[target].get("spram") else (0,)
    for lanes in lane_candidates(prog.config.lanes):
        for ram in rams:
            what = _label(lanes, ram)
            co_simulated = (lanes, ram) == (prog.config.lanes, prog.config.wgt_ram)
            p = prog if co_simulated else fit(net, AcceleratorConfig(lanes=lanes, wgt_ram=ram))
            est = design_estimate(p.config, target, p.images)
            pre = devices.fit(est, target)
            if not pre["fits"]:
                tried.append((lanes, ram, "the estimate", pre, est))
                log(f"[{target}] {what}: the estimate {devices.fit_message(pre, target)}")
                continue
            res = flow.synth_model(p.config, out, target, log=log, program=p, meta=net.meta, pnr=pnr)
            if res.get("fits") is False:
                tried.append((lanes, ram, "Yosys", res, est))
                continue
            if co_simulated:
                res["choice"] = f"{what}: the co-simulated configuration"
            else:
                first, by, rep = _label(*tried[0][:2]), tried[0][2], tried[0][3]
                res["choice"] = (f"{what}, the largest that fits (the co-simulated {first} do not, by "
                                 f"{by}: {devices.fit_message(rep, target)})")
            return res
    lanes, ram, by, rep, est = tried[-1]
    sizes = ", ".join(str(n) for n in lane_candidates(prog.config.lanes))
    how = " (weights in ROM or SPRAM)" if len(rams) > 1 else ""
    log(f"[{target}] none of {sizes} lanes{how} fits: synthesis skipped")
    return {"target": target, "fits": False, "over": rep["over"], "skipped": True,
            "config": {"lanes": lanes, "wgt_ram": ram}, "estimate": est,
            "choice": f"none fits ({sizes} lanes tried{how}); at {_label(lanes, ram)} {by} "
                      f"{devices.fit_message(rep, target)}", "notes": []}


def demo(out: Path, images: int = 0, seed: int = 0, lanes: int = 16, targets=("ice40-up5k", "ecp5-25k"),
         log=print, reuse: bool = False, pnr: bool = False, command: str = "make demo") -> dict:
    """Train (or reuse), export, compile once, RTL, co-simulation, synthesis (with ``pnr``: placed and routed
    where it fits, for Fmax) and the report: OUT/report.{html,md,json}. Returns report.json's dict."""
    from apotflow.hw.fit import fit
    from apotflow.sw import export

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "report.md", "report.html"):
        (out / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    steps = {}

    if reuse and (out / "train.json").is_file() and (out / "model.apot").is_file():
        log(f"[1/{STEPS}] reusing the trained model in {out} (--reuse)")
        tr = json.loads((out / "train.json").read_text())
    else:
        from apotflow.sw.digits_run import train_and_export

        log(f"[1/{STEPS}] training the digits net (PPQ: float, GM pruning 15% -> 30%, APoT W4/A4 QAT) ...")
        tr = train_and_export(out, seed=seed, method="ppq", log=log)
    steps["train_export"] = time.perf_counter() - t0
    net = export.load(out / "model.apot")  # what the hardware sees: the file, read back and validated

    log(f"[2/{STEPS}] compiling for {lanes} lanes and generating the RTL ...")
    t = time.perf_counter()
    with heartbeat(log, "compiling"):
        prog = fit(net, AcceleratorConfig(lanes=lanes))  # the one compile: every later step uses this Program
    steps["compile"] = time.perf_counter() - t
    t = time.perf_counter()
    flow.write_rtl(net, prog, out / "rtl", log=log)
    steps["rtl"] = time.perf_counter() - t

    log(f"[3/{STEPS}] bit-exact co-simulation on Verilator ...")
    t = time.perf_counter()
    cos = flow.cosim_model(net, prog, out / "cosim", images, seed=seed, log=log)
    steps["cosim"] = time.perf_counter() - t

    log(f"[4/{STEPS}] synthesis{' (placed and routed where it fits)' if pnr else ''} ...")
    synth = {}
    for target in [t for t in targets if t]:
        t = time.perf_counter()
        synth[target] = synth_fitting(net, prog, out, target, log=log, pnr=pnr)
        steps[f"synth_{target}"] = time.perf_counter() - t

    log(f"[5/{STEPS}] writing the report ...")
    steps["total"] = time.perf_counter() - t0
    report = build_report(net, prog, model_path=out / "model.apot", cosim=cos, synth=synth, train=tr,
                          seconds=steps, command=command)
    paths = write_report(report, out)
    log(f"done in {time.perf_counter() - t0:.0f} s: {paths['html']}")
    return report
