"""iCE40 logic cells: the netlist estimate (hw/flows/ice40_cells.py) and the estimator's ``lc`` against
nextpnr's count, and the estimator's ``lc_ff`` fitted to them.

    .venv/bin/python bench/ice40_cells.py RUN [RUN ...]   -> bench/results/ice40-cells.json (+ printed table)

Each RUN is an ``apotflow synth --target ice40-up5k ... --out RUN`` (or ``apotflow demo``) folder. Where
its nextpnr did not run (``apotflow synth`` no longer places a design whose estimated logic cells exceed the
UP5K's 5,280), nextpnr is run here on its netlist: a design over the part fails in placement after printing
its packed count (``RUN/synth-ice40-up5k/nextpnr.log``), which is what is compared. ``lc_ff`` is fitted by least squares on
the relative error of Yosys' ``lut + lc_ff x ff`` (the estimator's ``lc`` is its own ``lut + lc_ff x ff``); paste it
into hw/estimate.py's COEF.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.estimate import COEF, estimate
from apotflow.hw.flows.ice40_cells import logic_cells
from apotflow.hw.flows.nextpnr import parse_utilisation, pnr

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "ice40-cells.json"
_PACK = re.compile(r"^Info:\s+(\d+) (LCs used as LUT4 only|LCs used as LUT4 and DFF|LCs used as DFF only|"
                   r"LCs used as CARRY only|LUTs merged into carry LCs|LCs used to legalise carry chains)", re.M)
_KEYS = {"LCs used as LUT4 only": "lut_only", "LCs used as LUT4 and DFF": "lut_ff", "LCs used as DFF only": "ff_only",
         "LCs used as CARRY only": "carry_only", "LUTs merged into carry LCs": "merged",
         "LCs used to legalise carry chains": "feed"}


def row(run: Path) -> dict:
    work = run / "synth-ice40-up5k"
    # apotflow synth writes RUN/synth.json; apotflow demo one per target in its tool folder
    synth = next(d for d in (json.loads(f.read_text()) for f in (work / "synth.json", run / "synth.json") if f.is_file())
                 if d["target"] == "ice40-up5k")
    if not (work / "nextpnr.log").is_file():  # refused by the logic-cell check, so not placed: pack it here
        pnr(work / "apotflow_board.json", "ice40-up5k", work, 24.0)
    log = (work / "nextpnr.log").read_text(errors="replace")
    cfg = AcceleratorConfig.from_dict(synth["config"])
    est = estimate(cfg, "ice40-up5k", rom_used=synth.get("rom_used"))
    net = logic_cells(work / "apotflow_board.json", "apotflow_board")
    placed = parse_utilisation(log)["ICESTORM_LC"]["used"]
    return {
        "run": str(run), "design": synth.get("design"), "lanes": cfg.lanes, "config": synth["config"],
        "yosys": {k: synth[k] for k in ("lut", "ff", "carry", "bram")},
        "nextpnr_lc": placed, "nextpnr_packing": {_KEYS[k]: int(n) for n, k in _PACK.findall(log)},
        "netlist_lc": net["cells"], "netlist_packing": {k: v for k, v in net.items() if k not in ("cells", "what")},
        "netlist_error_pct": round(100 * (net["cells"] - placed) / placed, 2),
        "estimate": {k: est[k] for k in ("lut", "ff", "lc")},
    }


def fit_lc_ff(rows: list[dict]) -> float:
    """lc_ff minimising the squared relative error of Yosys' LUT4 + lc_ff x Yosys' FF against nextpnr's cells
    (fitted on the synthesised counts, so that the estimator's own LUT/FF error does not leak into it)."""
    num = sum(r["yosys"]["ff"] * (r["nextpnr_lc"] - r["yosys"]["lut"]) / r["nextpnr_lc"] ** 2 for r in rows)
    den = sum(r["yosys"]["ff"] ** 2 / r["nextpnr_lc"] ** 2 for r in rows)
    return round(num / den, 4)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rows = [row(Path(a)) for a in argv]
    k = fit_lc_ff(rows)
    for r in rows:
        r["estimate_lc_error_pct"] = round(100 * (r["estimate"]["lc"] - r["nextpnr_lc"]) / r["nextpnr_lc"], 2)
        lc_fit = r["yosys"]["lut"] + k * r["yosys"]["ff"]
        r["yosys_lut_plus_lc_ff_ff"] = round(lc_fit)
        r["yosys_lut_plus_lc_ff_ff_error_pct"] = round(100 * (lc_fit - r["nextpnr_lc"]) / r["nextpnr_lc"], 2)
    out = {"command": "python bench/ice40_cells.py " + " ".join(argv), "lc_ff_committed": COEF["ice40"].get("lc_ff"),
           "lc_ff_fitted": k, "rows": rows}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print("| run | lanes | Yosys LUT4 / FF / carry | nextpnr cells | netlist estimate | estimator lc (committed) |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        y = r["yosys"]
        print(f"| {r['run']} | {r['lanes']} | {y['lut']} / {y['ff']} / {y['carry']} | {r['nextpnr_lc']} | "
              f"{r['netlist_lc']} ({r['netlist_error_pct']:+.2f}%) | {r['estimate']['lc']} ({r['estimate_lc_error_pct']:+.1f}%) |")
    print(f"lc_ff fitted: {k} (committed {COEF['ice40'].get('lc_ff')}); {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
