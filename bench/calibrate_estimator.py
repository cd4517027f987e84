"""Fit hw/estimate.py's LUT coefficients to synthesis, and report the estimator's error.

    .venv/bin/python bench/calibrate_estimator.py     -> bench/results/calibration.json (+ printed table)
    .venv/bin/python bench/calibrate_estimator.py --current  -> bench/results/calibration-current.json

Reads the whole-accelerator builds of the calibration sweeps (bench/results/{calib,calib-more,lanes,ice40}.jsonl,
written by bench/synth_sweep.py; the bare lane arrays from lanes-cmp*.jsonl), fits
the LUT coefficients per family by non-negative least squares on the relative error (each design
weighs the same), prints the COEF lines to paste into hw/estimate.py, and the error of the estimator
*as committed* for LUT, FF and block RAM per design (worst case last). ``--fit`` only prints.
"""

import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.estimate import COEF, FAMILY, estimate, ff_features, lut_features, memory_map

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# set -> (the kind of build its rows are, the sweep files). "holdout": whole-accelerator builds the fit
# never sees, reported apart (the out-of-sample error)
SWEEPS = {"board": ("board", ("calib", "calib-more", "lanes", "ice40")),
          "array": ("array", ("lanes-cmp", "lanes-cmp-nomax")),
          "holdout": ("board", ("holdout",)),
          # syntheses of the compact-stream RTL (config version 2), the ResNet-8 ECP5-25k build among them:
          # ``--current`` refits the flip-flop terms on these (the sweeps above are of the 35-bit-entry RTL)
          "current": ("board", ("calib-current",))}


def rows(sweep: str = "board") -> list[dict]:
    kind, names = SWEEPS[sweep]
    out, seen = [], set()
    for f in [RESULTS / f"{name}.jsonl" for name in names if (RESULTS / f"{name}.jsonl").exists()]:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            key = (r["target"], r["design"], json.dumps(r["config"], sort_keys=True))
            if r["kind"] == kind and r["target"] in FAMILY and key not in seen:
                seen.add(key)
                out.append(r)
    return out


def used_of(r):
    """ROM words holding the program: the model's program for model builds, all words otherwise."""
    if r.get("rom_used"):
        return r["rom_used"]
    if r["design"].startswith("digits"):  # rows written before rom_used was recorded
        from apotflow.hw.compile import compile_net
        from apotflow.sw import export

        img = compile_net(export.load(ROOT / "bench" / "models" / "digits.apot"), cfg_of(r)).images
        r["rom_used"] = {k: len(getattr(img, k)) for k in ("wgt", "rq", "prog")}
        return r["rom_used"]
    return None


def cfg_of(r) -> AcceleratorConfig:
    names = {f.name for f in fields(AcceleratorConfig)}
    return AcceleratorConfig(**{k: v for k, v in r["config"].items() if k in names})


def fit_ff(sel: list[dict], family: str) -> dict:
    """The flip-flop terms (``ff_const``, ``ff_lane``, ``ff_rom_words``) by non-negative least squares on the
    relative error: synth - counted registers - memories in FFs = const + lane * L + rom_words * (width)."""
    from scipy.optimize import nnls

    sel = [r for r in sel if FAMILY[r["target"]] == family]
    feats = [ff_features(cfg_of(r), used_of(r), r["lane_kind"]) for r in sel]
    keys = [k for k in feats[0] if k != "regs"]
    A = np.array([[f[k] for k in keys] for f in feats])
    y = np.array([r["ff"] - f["regs"] - memory_map(cfg_of(r), family, used_of(r))["ff_bits"]
                  for r, f in zip(sel, feats)], dtype=float)
    w = 1 / np.array([r["ff"] for r in sel], dtype=float)
    c, _ = nnls(A * w[:, None], y * w)
    return {f"ff_{k}": round(float(v), 4) for k, v in zip(keys, c)}


def current() -> int:
    """``--current``: the FF terms refitted on the compact-stream syntheses; every row's LUT / FF / block RAM
    error with the committed COEF and with the refit, and the FF leave-one-out error (refitted without it)."""
    rs = rows("current")
    fams = sorted({FAMILY[r["target"]] for r in rs})
    fitted = {fam: fit_ff(rs, fam) for fam in fams}
    print("fitted FF terms (paste into hw/estimate.py COEF):", json.dumps(fitted, indent=1))
    table = []
    for i, r in enumerate(rs):
        fam, cfg, used = FAMILY[r["target"]], cfg_of(r), used_of(r)
        row = {"target": r["target"], "design": r["design"], "lanes": r["lanes"], "command": r.get("command"),
               "git_revision": r.get("git_revision")}
        loo = {**COEF[fam], **fit_ff(rs[:i] + rs[i + 1:], fam)} if sum(FAMILY[x["target"]] == fam for x in rs) > 3 else None
        for label, coef in (("committed", COEF[fam]), ("refit", {**COEF[fam], **fitted[fam]}), ("loo", loo)):
            if coef is None:
                continue
            e = estimate(cfg, r["target"], lane_kind=r["lane_kind"], rom_used=used, coef=coef)
            row[label] = {k: {"synth": r[k], "estimate": e[k], "error": round((e[k] - r[k]) / r[k], 4)}
                          for k in ("lut", "ff", "bram")}
        table.append(row)
        print(f"{r['target']:11s} {r['design']:28s} " + "  ".join(
            f"{k} {r[k]:6d} est {row['committed'][k]['estimate']:6d} ({100 * row['committed'][k]['error']:+5.1f}%)"
            f" -> {row['refit'][k]['estimate']:6d} ({100 * row['refit'][k]['error']:+5.1f}%)" for k in ("lut", "ff")))
    out = {"command": "python bench/calibrate_estimator.py --current", "fitted": fitted, "rows": table,
           "note": "committed: hw/estimate.py's COEF when this ran; refit: its FF terms replaced by 'fitted' "
                   "(in-sample); loo: FF terms refitted without the row (families with more than 3 rows)"}
    (RESULTS / "calibration-current.json").write_text(json.dumps(out, indent=1))
    return 0


def fit(boards: list[dict], arrays: list[dict], family: str) -> dict:
    """Lane coefficients from the bare arrays (LUT / lane feature), then the other LUT terms of the
    whole accelerator by non-negative least squares on the relative error, and the FF constant."""
    from scipy.optimize import nnls

    coef = {}
    for lk, key in (("shift", "lut_lane"), ("mul", "lut_lane_mul")):
        sel = [r for r in arrays if FAMILY[r["target"]] == family and r["lane_kind"] == lk and r.get("max_reduce", True)]
        if sel:
            coef[key] = round(float(np.mean([r["lut"] / lut_features(cfg_of(r), family, "array", lk)["lane"]
                                             for r in sel])), 4)
    sel = [r for r in boards if FAMILY[r["target"]] == family]
    if not sel:
        return coef
    keys = [k for k in lut_features(cfg_of(sel[0]), family) if k != "lane"]
    lane = np.array([coef.get("lut_lane" if r["lane_kind"] == "shift" else "lut_lane_mul", 1.0)
                     * lut_features(cfg_of(r), family, "board", r["lane_kind"], used_of(r))["lane"] for r in sel])
    A = np.array([[lut_features(cfg_of(r), family, "board", r["lane_kind"], used_of(r))[k] for k in keys]
                  for r in sel])
    y = np.array([r["lut"] for r in sel], dtype=float) - lane
    w = 1 / np.array([r["lut"] for r in sel], dtype=float)
    c, _ = nnls(A * w[:, None], y * w)
    coef.update({f"lut_{k}": round(float(v), 4) for k, v in zip(keys, c)})
    coef.update(fit_ff(sel, family))
    return coef


def compare(rs: list[dict]) -> tuple[list[dict], dict]:
    """Each design's synthesis against the estimator as committed: (table rows, worst |error| per resource)."""
    table, worst = [], {"lut": 0.0, "ff": 0.0, "bram": 0.0}
    for r in rs:
        e = estimate(cfg_of(r), r["target"], lane_kind=r["lane_kind"], rom_used=used_of(r))
        c = r["config"]
        row = {"target": r["target"], "design": r["design"], "lanes": r["lanes"],
               "memories": f"ACT {c['act_depth']}, WGT {c['wgt_depth']}, RQ {c['rq_depth']}, acc {c['acc_bits']}",
               "config": c, "lane_kind": r["lane_kind"], "rom_used": used_of(r)}
        for k in ("lut", "ff", "bram"):
            err = (e[k] - r[k]) / r[k] if r[k] else (0.0 if e[k] == 0 else float("inf"))
            row[k] = {"synth": r[k], "estimate": e[k], "error": round(err, 4)}
            worst[k] = max(worst[k], abs(err))
        table.append(row)
        print(f"{r['target']:11s} {r['design']:28s} " + "  ".join(
            f"{k} {row[k]['synth']:6d} est {row[k]['estimate']:6d} ({100 * row[k]['error']:+5.1f}%)"
            for k in ("lut", "ff", "bram")))
    return table, worst


def main() -> int:
    if "--current" in sys.argv:
        return current()
    rs, arrays = rows("board"), rows("array")
    fitted = {fam: fit(rs, arrays, fam) for fam in ("ice40", "ecp5")}
    print("fitted COEF (paste into hw/estimate.py):", json.dumps(fitted, indent=1))
    if "--fit" in sys.argv:
        return 0
    table, worst = compare(rs)
    print("worst |error|:", {k: f"{100 * v:.1f}%" for k, v in worst.items()})
    held, held_worst = compare(rows("holdout"))
    print("hold-out (not fitted) worst |error|:", {k: f"{100 * v:.1f}%" for k, v in held_worst.items()})
    # leave-one-out: refit without each design, estimate it (the estimator on a design it has not seen)
    loo = {"lut": 0.0, "ff": 0.0}
    for i, r in enumerate(rs):
        fam = FAMILY[r["target"]]
        c = {**COEF[fam], **fit(rs[:i] + rs[i + 1:], arrays, fam)}
        e = estimate(cfg_of(r), r["target"], lane_kind=r["lane_kind"], rom_used=used_of(r), coef=c)
        for k in loo:
            err = (e[k] - r[k]) / r[k]
            table[i][k]["loo_error"] = round(err, 4)
            loo[k] = max(loo[k], abs(err))
    print("leave-one-out worst |error|:", {k: f"{100 * v:.1f}%" for k, v in loo.items()})
    out = {"command": "python bench/calibrate_estimator.py", "fitted": fitted, "rows": table,
           "worst_abs_error": worst, "loo_worst_abs_error": loo, "holdout": held, "holdout_worst_abs_error": held_worst,
           "note": "coefficients fitted on these same designs (in-sample); loo: each design refitted without it"}
    (RESULTS / "calibration.json").write_text(json.dumps(out, indent=1))
    md = ["| target | design | memories | LUT synth / est (leave-one-out) | FF synth / est (leave-one-out) | "
          "BRAM synth / est |", "|---|---|---|---|---|---|"]

    def design_row(row: dict, label: str = "") -> str:  # a cell's leave-one-out error where it has one
        return f"| {row['target']} | {row['design']}{label} | {row['memories']} | " + " | ".join(
            f"{row[k]['synth']} / {row[k]['estimate']} ({100 * row[k]['error']:+.1f}%"
            + (f"; {100 * row[k]['loo_error']:+.1f}%)" if "loo_error" in row[k] else ")") for k in ("lut", "ff", "bram")) + " |"

    def worst_row(label: str, w: dict, loo_w: dict) -> str:
        return f"| **{label}** | | | " + " | ".join(
            f"**{100 * w[k]:.1f}%**" + (f" ({100 * loo_w[k]:.1f}%)" if k in loo_w else "") for k in ("lut", "ff", "bram")) + " |"

    md += [design_row(row) for row in table] + [worst_row("worst", worst, loo)]
    md += [design_row(row, " (hold-out)") for row in held] + ([worst_row("worst hold-out", held_worst, {})] if held else [])
    (RESULTS / "calibration.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
