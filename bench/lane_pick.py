"""Which lane counts the fast estimator says fit each part: what `make demo` (sim/demo.synth_fitting) checks
before it runs Yosys, for the digits net and ResNet-8 on the ECP5-25k, ECP5-85k and iCE40 UP5K.

    .venv/bin/python bench/lane_pick.py [--coef-from REV] -> bench/results/lane-pick[-REV].json (+ table)

For each model, target and lane count (64 down to 1; on the UP5K also with --wgt-ram, weights in SPRAM):
the memories fitted as `apotflow synth` fits them (``hw.fit.fit``, ACT by liveness), ``design_estimate``'s
LUT / FF / block RAM / SPRAM (and logic cells on iCE40) and ``devices.fit``'s verdict; the largest lane
count that fits. ``--coef-from REV``: hw/estimate.py's COEF as of git revision REV (terms it lacks: 0),
the same features, to say what a refit changed.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("digits", "resnet8-rand", "resnet8-ppq-jpeg")
TARGETS = ("ecp5-25k", "ecp5-85k", "ice40-up5k")
LANES = (64, 32, 16, 8, 4, 2, 1)


def coef_at(rev: str) -> dict:
    """COEF as hw/estimate.py held it at ``rev`` (the dict literal, read without importing that file)."""
    src = subprocess.run(["git", "show", f"{rev}:hw/estimate.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COEF" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{rev}: hw/estimate.py has no COEF")


def main() -> int:
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.estimate import COEF, FAMILY, estimate
    from apotflow.hw.fit import fit
    from apotflow.hw.flows import devices
    from apotflow.hw.flows.build import rom_used
    from apotflow.sw import export

    ap = argparse.ArgumentParser()
    ap.add_argument("--coef-from", metavar="REV", help="COEF of this git revision (default: as committed now)")
    a = ap.parse_args()
    coef = COEF
    if a.coef_from:
        old = coef_at(a.coef_from)
        coef = {fam: {k: old.get(fam, {}).get(k, 0.0) for k in COEF[fam]} for fam in COEF}
    rows, best = [], {}
    for model in MODELS:
        net = export.load(ROOT / "bench" / "models" / f"{model}.apot")
        for target in TARGETS:
            for wgt_ram in ((0, 1) if target == "ice40-up5k" else (0,)):
                key = f"{model} {target}" + (" --wgt-ram" if wgt_ram else "")
                best[key] = None
                for lanes in LANES:
                    prog = fit(net, AcceleratorConfig(lanes=lanes, wgt_ram=wgt_ram), reuse=True)
                    e = estimate(prog.config, target, rom_used=rom_used(prog.images), coef=coef[FAMILY[target]])
                    rep = devices.fit(e, target)
                    rows.append({"model": model, "target": target, "wgt_ram": wgt_ram, "lanes": lanes,
                                 **{k: e.get(k) for k in ("lut", "ff", "lc", "bram", "spram")},
                                 "fits": rep["fits"], "message": devices.fit_message(rep, target)})
                    if rep["fits"] and best[key] is None:
                        best[key] = lanes
                print(f"{key:42s} largest lane count that fits by the estimate: {best[key]}", flush=True)
    name = "lane-pick" + (f"-{a.coef_from}" if a.coef_from else "")
    cmd = "python bench/lane_pick.py" + (f" --coef-from {a.coef_from}" if a.coef_from else "")
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(
        {"command": cmd, "largest_fitting_lanes": best, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
