"""The fast estimator (hw/estimate.py, as committed) against synthesis results it was not fitted to: for
each ``MODEL.apot SYNTH.json`` pair, the build's own configuration (synth.json's ``config``) compiled as the
CLI compiles it, estimated, and compared with Yosys' LUT4 / FF / block RAM counts in synth.json.

    python bench/estimate_check.py \\
        bench/models/resnet8-ppq-jpeg.apot bench/results/synth-resnet8-ppq-l16-ecp5-25k.json \\
        bench/models/resnet8-rand.apot bench/results/synth-resnet8-rand-l64-ecp5-85k-59d4b1f.json \\
        bench/models/digits.apot bench/results/synth-digits-l16-ecp5-25k-59d4b1f.json \\
        --out bench/results/estimate-check.json
"""

from __future__ import annotations

import argparse
import json
import sys

from apotflow.hw.compile import compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.flows.build import design_estimate
from apotflow.sw import export
from apotflow.sw.atomic import json_text, write_atomic


def check(model: str, synth: str) -> dict:
    s = json.load(open(synth))
    cfg = AcceleratorConfig.from_dict(s["config"])
    prog = compile_net(export.load(model), cfg, reuse=True)
    est = design_estimate(prog.config, s["target"], prog.images)
    row = {"model": model, "synth": synth, "target": s["target"], "lanes": cfg.lanes}
    for k in ("lut", "ff", "bram"):
        row[k] = {"estimate": est[k], "yosys": s[k], "error": round(est[k] / s[k] - 1, 4) if s[k] else None}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", metavar="MODEL SYNTH", help="model file and its synth.json, repeated")
    ap.add_argument("--out", default="bench/results/estimate-check.json")
    a = ap.parse_args(argv)
    if len(a.pairs) % 2:
        ap.error("give MODEL SYNTH pairs")
    rows = [check(m, s) for m, s in zip(a.pairs[::2], a.pairs[1::2])]
    for r in rows:
        print(f"{r['model']} {r['target']} {r['lanes']} lanes: " + ", ".join(
            f"{k} {r[k]['estimate']} vs {r[k]['yosys']} ({100 * r[k]['error']:+.1f}%)" for k in ("lut", "ff", "bram")))
    write_atomic(a.out, json_text({"bench": "estimate_check.py", "argv": sys.argv[1:] if argv is None else argv,
                                   "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
