"""PROJECTION (no hardware): cycles per image with a wider writeback and extra pipeline stages.

The writeback takes one lane's accumulator a cycle (W0), so a group of n valid lanes holds the writeback for n
cycles: a layer ends n_last cycles after its last group, and a group whose channel has fewer entries than the
previous group's lanes waits for them (hw/cycles.py: ``max(count, n_prev)``). With W words a cycle (W
requantizers side by side; the lanes of a group write W distinct ACT banks) a group needs ceil(n / W) cycles.
Each pipeline stage added between issue and the writeback costs one cycle a layer (``pipe``). This script runs
the exact cycle model's recurrences (``hw/cycles.schedule_cycles``) on the fitted program with n replaced by
ceil(n / W) and ``pipe`` by pipe + E, and reports cycles, the ratio to the ideal bound (MACs with a non-zero
weight / lanes, as ``apotflow cycles`` and the 1.05x target count it) and the latency at
100 MHz, for W in 1, 2, 4, 8, 16, 64 and E in 0..4. W = 1, E = 0 is today's RTL and is asserted equal to
``hw/cycles.layer_cycles``. Requantizer and write-port costs are not modelled.

    python bench/writeback_projection.py bench/models/resnet20-ppq-jpeg.apot bench/models/resnet8-ppq-jpeg.apot
    -> bench/results/writeback-projection.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import _layers, issue_units, layer_cycles, pipe, schedule_cycles
from apotflow.hw.fit import fit
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent
LANES = 64
WIDTHS = (1, 2, 4, 8, 16, 64)
EXTRA = range(5)


def projected(cfg: AcceleratorConfig, images, width: int, extra: int) -> int:
    P = pipe(cfg) + extra
    return sum(schedule_cycles((d["last"], issue_units(d, counts, cfg.lanes, width), P)
                               for d, counts in _layers(cfg, images)))


def main(paths: list[str]) -> int:
    out = {"command": "python bench/writeback_projection.py " + " ".join(paths), "lanes": LANES, "models": []}
    for path in paths:
        prog = fit(export.load(Path(path)), AcceleratorConfig(lanes=LANES), reuse=True)
        cfg, images = prog.config, prog.images
        ideal = prog.stats["cycles_ideal"]  # MACs with a non-zero weight / lanes: the bound of the 1.05x target
        assert projected(cfg, images, 1, 0) == sum(layer_cycles(cfg, images)), "W=1, E=0 must be today's model"
        rows = []
        for w in WIDTHS:
            for e in EXTRA:
                c = projected(cfg, images, w, e)
                rows.append({"writeback_width": w, "extra_stages": e, "cycles": c, "ratio": round(c / ideal, 4),
                             "latency_ms_at_100mhz": round(c / 1e5, 3)})
        out["models"].append({"model": Path(path).name, "cycles_ideal": ideal, "rows": rows})
        print(Path(path).name, "ideal", ideal)
        for r in rows:
            if r["extra_stages"] in (0, 2, 4):
                print(f"  W {r['writeback_width']:>2}  +{r['extra_stages']} stages: {r['cycles']:>8,} cycles "
                      f"{r['ratio']:.4f}x  {r['latency_ms_at_100mhz']:.3f} ms at 100 MHz")
    (ROOT / "bench" / "results" / "writeback-projection.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
