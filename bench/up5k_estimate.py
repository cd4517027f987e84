"""The iCE40 UP5K estimate (hw/estimate.py, before Yosys) of a model's deployment build at a few lane
counts, with the weights in ROM and in SPRAM (``wgt_ram``): which memory takes what, and what does not
fit by how much. Writes bench/results/up5k-estimate-<name>.json.

    python bench/up5k_estimate.py bench/models/resnet8-rand.apot --lanes 1 2 4
"""

import argparse
import json
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit
from apotflow.hw.flows import build, devices
from apotflow.sim.flow import git_revision
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent
TARGET = "ice40-up5k"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4])
    a = ap.parse_args()
    net = export.load(a.model)
    rows = []
    for lanes in a.lanes:
        for wgt_ram in (0, 1):
            prog = fit(net, AcceleratorConfig(lanes=lanes, wgt_ram=wgt_ram), reuse=True)  # as apotflow synth
            e = build.design_estimate(prog.config, TARGET, prog.images)
            fit_ = devices.fit(e, TARGET)
            rows.append({"lanes": lanes, "wgt_ram": wgt_ram, "entries": len(prog.images.wgt),
                         "act_live_words": prog.act_words, **{k: e.get(k) for k in ("lut", "ff", "lc", "bram", "spram")},
                         "blocks": e["blocks"], "memories_in": e["memories_in"], "fits": fit_["fits"],
                         "over": fit_["over"], "message": devices.fit_message(fit_, TARGET),
                         "config": prog.config.to_dict()})
            print(f"{lanes} lanes, wgt_ram={wgt_ram}: {rows[-1]['message']}; EBR {e['blocks']}, SPRAM {e.get('spram')}")
    out = ROOT / "bench" / "results" / f"up5k-estimate-{a.model.stem}.json"
    out.write_text(json.dumps({"command": f"python bench/up5k_estimate.py {a.model} --lanes "
                               + " ".join(map(str, a.lanes)), "git_revision": git_revision(), "target": TARGET,
                               "rows": rows}, indent=1))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
