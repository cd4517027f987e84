"""Fit hw/estimate.py's coefficients to synthesis, and report the estimator's error.

    .venv/bin/python bench/synth_sweep.py calib-rtl --jobs 1   -> bench/results/calib-rtl.jsonl (the syntheses)
    .venv/bin/python bench/calibrate_estimator.py              -> bench/results/calibration.{json,md} (+ table)

Reads the whole-accelerator builds of today's RTL (bench/results/calib-rtl.jsonl: ``apotflow synth
--no-pnr`` of digits, ResNet-8, ResNet-20 and random-ROM builds, ECP5 and iCE40; bench/synth_sweep.py)
and the bare lane arrays (lanes-cmp*.jsonl, which give the lane coefficients), fits the LUT and FF
coefficients per family by non-negative least squares on the relative error (each design weighs the
same) on the rows not marked ``holdout``, prints the COEF to paste into hw/estimate.py, and reports the
error of the estimator *as committed* for LUT, FF, block RAM and SPRAM per design: in-sample, leave-one-out
(each design refitted without it) and on the hold-out rows, which the fit never sees (chosen in
bench/synth_sweep.py's job list before the fit). ``--fit`` only prints. tests/test_synth_fast.py checks
that COEF is what this fit gives (``fitted_coef``).
"""

import json
import sys
from pathlib import Path

import numpy as np

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.estimate import COEF, FAMILY, LUT6_PER_LUT4, estimate, ff_features, lut_features, memory_map

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEYS = ("lut", "ff", "bram", "spram")

# set -> (the kind of build its rows are, the sweep files, whether its rows are the hold-out ones). The
# earlier sweeps (bench/results/superseded/: calib, calib-more, ice40, calib-current; lanes, holdout .jsonl) are of earlier RTL (the
# 35-bit weight entries, before the S1a/S2a/W4 stages): kept as records, no longer fitted.
SWEEPS = {"board": ("board", ("calib-rtl",), False),
          "array": ("array", ("lanes-cmp", "lanes-cmp-nomax"), False),
          "holdout": ("board", ("calib-rtl",), True)}


def rows(sweep: str = "board") -> list[dict]:
    kind, names, held = SWEEPS[sweep]
    out, seen = [], set()
    for f in [RESULTS / f"{name}.jsonl" for name in names if (RESULTS / f"{name}.jsonl").exists()]:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            key = (r["target"], r["design"], json.dumps(r["config"], sort_keys=True))
            if r["kind"] == kind and r["target"] in FAMILY and key not in seen and r.get("holdout", False) == held:
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
    return AcceleratorConfig.from_dict(r["config"])


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


# The LUT terms fitted per family (hw/estimate.lut_features; the others are 0): the first line of ``--select``,
# the subset with the lowest worst-case leave-one-out error over the fitted rows (the hold-out rows not
# read), the constant always in. On 06b0d13's rows the first line leaves one out at 4.2% (2.8% in-sample);
# more terms fit the rows closer but leave one out worse.
LUT_TERMS = {"ecp5": ("const", "per_lane", "per_lane_random", "rq", "ram", "bram_mux", "rom_random", "copies"),
             "ice40": ("const", "bank", "per_lane_random", "bram_mux", "rom", "rom_random")}


def fit(boards: list[dict], arrays: list[dict], family: str) -> dict:
    """Lane coefficients from the bare arrays (LUT / lane feature), then the other LUT terms of the
    whole accelerator by non-negative least squares on the relative error, and the FF terms."""
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
    every = [k for k in lut_features(cfg_of(sel[0]), family) if k != "lane"]
    keys = [k for k in every if k in LUT_TERMS[family]]
    coef.update({f"lut_{k}": 0.0 for k in every if k not in keys})
    if not keys:  # (scipy's nnls does not take a matrix without columns)
        coef.update(fit_ff(sel, family))
        return coef
    feats = [lut_features(cfg_of(r), family, "board", r["lane_kind"], used_of(r)) for r in sel]
    lane = np.array([coef.get("lut_lane" if r["lane_kind"] == "shift" else "lut_lane_mul", 1.0) * f["lane"]
                     for r, f in zip(sel, feats)])
    A = np.array([[f[k] for k in keys] for f in feats])
    y = np.array([r["lut"] for r in sel], dtype=float) - lane
    w = 1 / np.array([r["lut"] for r in sel], dtype=float)
    c, _ = nnls(A * w[:, None], y * w)
    coef.update({f"lut_{k}": round(float(v), 4) for k, v in zip(keys, c)})
    coef.update(fit_ff(sel, family))
    return coef


def select_terms(family: str, top: int = 8) -> list[tuple[float, float, tuple[str, ...]]]:
    """``--select``: every subset of the LUT terms that holds the constant, fitted on the family's fitted rows
    (the lane coefficient fixed from the bare arrays), ranked by the worst |leave-one-out error| over those
    rows, then by the number of terms: [(leave-one-out, in-sample, terms)], best first. The hold-out rows
    are not read."""
    from itertools import combinations

    from scipy.optimize import nnls

    rs, arrays = rows("board"), rows("array")
    sel = [r for r in rs if FAMILY[r["target"]] == family]
    lane_c = {k: v for k, v in fit(rs, arrays, family).items() if k in ("lut_lane", "lut_lane_mul")}
    feats = [lut_features(cfg_of(r), family, "board", r["lane_kind"], used_of(r)) for r in sel]
    keys = [k for k in feats[0] if k not in ("lane", "const")]
    lane = np.array([lane_c["lut_lane" if r["lane_kind"] == "shift" else "lut_lane_mul"] * f["lane"]
                     for r, f in zip(sel, feats)])
    y = np.array([r["lut"] for r in sel], dtype=float)
    n = len(sel)

    def worst(terms, fit_rows, test_rows):
        A = np.array([[f[k] for k in terms] for f in feats])
        c, _ = nnls(A[fit_rows] / y[fit_rows, None], (y[fit_rows] - lane[fit_rows]) / y[fit_rows])
        return max(abs((A[i] @ c + lane[i]) / y[i] - 1) for i in test_rows)

    ranked = []
    for size in range(0, min(len(keys), n - 3) + 1):
        for extra in combinations(keys, size):
            terms = ("const", *extra)
            loo = max(worst(terms, [j for j in range(n) if j != i], [i]) for i in range(n))
            ranked.append((round(float(loo), 4), round(float(worst(terms, list(range(n)), range(n))), 4), terms))
    ranked.sort(key=lambda t: (t[0], len(t[2])))  # on a tie (a term fitted to 0), the fewer terms
    return ranked[:top]


def fitted_coef() -> dict:
    """COEF as this fit gives it: iCE40 and ECP5 fitted; Xilinx (not calibrated: no place and route here)
    the ECP5 LUT4 terms x ``LUT6_PER_LUT4`` and the ECP5 FF terms."""
    rs, arrays = rows("board"), rows("array")
    out = {fam: {**COEF[fam], **fit(rs, arrays, fam)} for fam in ("ice40", "ecp5")}
    out["xilinx"] = {k: (round(v * LUT6_PER_LUT4, 4) if k.startswith("lut_") else v) for k, v in out["ecp5"].items()
                     if k != "lc_ff"}
    return out


def error(est: float, synth: float) -> float:
    return round((est - synth) / synth, 4) if synth else (0.0 if est == 0 else float("inf"))


def compare(rs: list[dict], coef: dict | None = None) -> tuple[list[dict], dict]:
    """Each design's synthesis against the estimator (``coef``: per family, default COEF as committed):
    (table rows, worst |error| per resource)."""
    table, worst = [], dict.fromkeys(KEYS, 0.0)
    for r in rs:
        fam = FAMILY[r["target"]]
        e = estimate(cfg_of(r), r["target"], lane_kind=r["lane_kind"], rom_used=used_of(r),
                     coef=(coef or COEF)[fam])
        c = r["config"]
        row = {"target": r["target"], "design": r["design"], "lanes": r["lanes"],
               "memories": f"ACT {c['act_depth']}" + (f" ({c['act_rows']} rows a bank)" if c.get("act_rows") else "")
                           + f", WGT {c['wgt_depth']}{' RAM' if c.get('wgt_ram') else ''}, RQ {c['rq_depth']}",
               "command": r.get("command"), "git_rev": r.get("git_rev"), "config": c, "lane_kind": r["lane_kind"],
               "rom_used": used_of(r), "memories_in": e["memories_in"]}
        for k in KEYS:
            synth = r.get(k) or 0
            row[k] = {"synth": synth, "estimate": e[k], "error": error(e[k], synth)}
            worst[k] = max(worst[k], abs(row[k]["error"]))
        table.append(row)
        print(f"{r['target']:11s} {r['design']:36s} " + "  ".join(
            f"{k} {row[k]['synth']:6d} est {row[k]['estimate']:6d} ({100 * row[k]['error']:+5.1f}%)"
            for k in KEYS[:3]))
    return table, worst


def main() -> int:
    if "--select" in sys.argv:
        for fam in LUT_TERMS:
            print(f"{fam}: LUT term subsets by worst |leave-one-out error| (in-sample), best first")
            for loo, ins, terms in select_terms(fam):
                print(f"  {100 * loo:5.1f}% ({100 * ins:4.1f}%) {', '.join(terms)}")
        return 0
    rs, arrays = rows("board"), rows("array")
    fitted = fitted_coef()
    print("fitted COEF (paste into hw/estimate.py):", json.dumps(fitted, indent=1))
    if "--fit" in sys.argv:
        return 0
    if any(fitted[f] != COEF[f] for f in fitted):
        print("note: hw/estimate.py's COEF differs from this fit (the errors below are of COEF as committed)")
    print(f"fitted rows ({len(rs)}):")
    table, worst = compare(rs)
    print("worst |error|:", {k: f"{100 * v:.1f}%" for k, v in worst.items()})
    held = rows("holdout")
    print(f"hold-out rows ({len(held)}, never fitted):")
    held_table, held_worst = compare(held)
    print("hold-out worst |error|:", {k: f"{100 * v:.1f}%" for k, v in held_worst.items()})
    # leave-one-out: refit without each design, estimate it (the estimator on a design it has not seen)
    loo = {"lut": 0.0, "ff": 0.0}
    for i, r in enumerate(rs):
        fam = FAMILY[r["target"]]
        c = {**COEF[fam], **fit(rs[:i] + rs[i + 1:], arrays, fam)}
        e = estimate(cfg_of(r), r["target"], lane_kind=r["lane_kind"], rom_used=used_of(r), coef=c)
        for k in loo:
            table[i][k]["loo_error"] = error(e[k], r[k])
            loo[k] = max(loo[k], abs(table[i][k]["loo_error"]))
    print("leave-one-out worst |error|:", {k: f"{100 * v:.1f}%" for k, v in loo.items()})
    out = {"command": "python bench/calibrate_estimator.py", "sweep": "bench/results/calib-rtl.jsonl "
           "(python bench/synth_sweep.py calib-rtl --jobs 1)", "fitted": fitted, "rows": table,
           "worst_abs_error": worst, "loo_worst_abs_error": loo, "holdout": held_table,
           "holdout_worst_abs_error": held_worst,
           "holdout_designs": [f"{r['target']} {r['design']}" for r in held],
           "note": "errors of hw/estimate.py's COEF as committed (equal to 'fitted': tests/test_synth_fast.py); "
                   "rows: in-sample; loo_error: the design refitted out; holdout: rows marked holdout in "
                   "bench/synth_sweep.py's calib-rtl job list before the fit, never fitted"}
    (RESULTS / "calibration.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["| target | design | lanes | memories | LUT synth / est (leave-one-out) | FF synth / est (leave-one-out) | "
          "BRAM synth / est | SPRAM synth / est |", "|---|---|---|---|---|---|---|---|"]

    def design_row(row: dict, label: str = "") -> str:  # a cell's leave-one-out error where it has one
        return f"| {row['target']} | {row['design']}{label} | {row['lanes']} | {row['memories']} | " + " | ".join(
            f"{row[k]['synth']} / {row[k]['estimate']} ({100 * row[k]['error']:+.1f}%"
            + (f"; {100 * row[k]['loo_error']:+.1f}%)" if "loo_error" in row[k] else ")") for k in KEYS) + " |"

    def worst_row(label: str, w: dict, loo_w: dict) -> str:
        return f"| **{label}** | | | | " + " | ".join(
            f"**{100 * w[k]:.1f}%**" + (f" ({100 * loo_w[k]:.1f}%)" if k in loo_w else "") for k in KEYS) + " |"

    md += [design_row(row) for row in table] + [worst_row("worst", worst, loo)]
    md += [design_row(row, " (hold-out)") for row in held_table]
    md += [worst_row("worst hold-out", held_worst, {})] if held_table else []
    (RESULTS / "calibration.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
