"""Cycles per image of a model on 8..256 lanes (hw/cycles.py, exact), with ACT reuse by liveness.

    .venv/bin/python bench/model_cycles.py runs/models/resnet20-r.apot  -> bench/results/cycles-<name>.json

(the ResNet-20 model: ``apotflow export --random --arch resnet20 -o runs/models/resnet20-r.apot``,
random weights GM-pruned 0.3, seed 0; the digits model: bench/models/digits.apot)
"""

import json
import sys
from pathlib import Path

from apotflow.hw import isa
from apotflow.hw.compile import compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import ideal_cycles, total_cycles
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    path = Path(sys.argv[1])
    net = export.load(path)
    big = dict(act_depth=1 << 20, wgt_depth=1 << 20, rq_depth=1 << 12, tap_depth=1 << 12, prog_depth=64, out_depth=16)
    rows = []
    for lanes in (8, 16, 32, 64, 128, 256):
        cfg = AcceleratorConfig(lanes=lanes, **big)
        prog = compile_net(net, cfg, reuse=True)
        flat = compile_net(net, cfg) if lanes == 8 else None
        rows.append({"lanes": lanes, "cycles": total_cycles(cfg, prog.images), "ideal": ideal_cycles(cfg, prog.images)})
        if flat is not None:
            mem = {"act_words_reuse": prog.act_words, "act_words_no_reuse": flat.act_words,
                   "wgt_entries": len(prog.images.wgt), "rq_rows": len(prog.images.rq),
                   "layers": len(prog.images.prog), "entry_bits_at_64k_act": isa.entry_layout(
                       AcceleratorConfig(act_depth=65536)).width}
        print(rows[-1], flush=True)
    out = {"command": f"python bench/model_cycles.py {path}", "model": path.name, "memory": mem, "rows": rows}
    (ROOT / "bench" / "results" / f"cycles-{path.stem}.json").write_text(json.dumps(out, indent=1))
    print(mem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
