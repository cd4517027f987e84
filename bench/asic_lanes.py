"""ASIC gate estimate of shift-add vs multiplier lanes (Yosys abc -g cmos2, stat -tech cmos).

    .venv/bin/python bench/asic_lanes.py            -> bench/results/asic.json

Technology-independent: Yosys' own CMOS gate library and transistor counts, flip-flops excluded
from the transistor figure. Bare arrays (lanes + accumulators, shared ctrl) of 1 and 16 lanes, with the
max-pooling mode (as the lanes are now) and with it tied off (as they were before max pooling).
"""

import json
import sys
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.flows.asic import asic_estimate

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = {"act_bits": 6, "acc_bits": 20, "shift_bits": 3, "terms": 2}


def main() -> int:
    rows = []
    for mr in (True, False):
        for lanes in (1, 16):
            for kind in ("shift", "mul"):
                cfg = AcceleratorConfig(lanes=lanes, **WIDTHS)
                r = asic_estimate(cfg, ROOT / "runs" / "bench" / "asic" / f"{kind}-l{lanes}-max{int(mr)}", kind="array",
                                  lane_kind=kind, max_reduce=mr)
                keys = ("lanes", "lane_kind", "max_reduce", "gates", "ff", "transistors")
                rows.append({k: r[k] for k in (*keys, "cells_by_type")})
                print(json.dumps({k: rows[-1][k] for k in keys}), flush=True)
    out = ROOT / "bench" / "results" / "asic.json"
    out.write_text(json.dumps({"command": "python bench/asic_lanes.py", "widths": WIDTHS, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
