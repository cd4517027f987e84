"""Yosys synthesis of model builds with the compact weight stream: resources against hw/estimate.py.

    .venv/bin/python bench/stream_synth.py [NAME ...]     -> appends to bench/results/stream-synth.jsonl

Each design is a model's deployment build (memories fitted with ACT reuse, ``apotflow synth --model M
--target T --lanes L --no-pnr``). Its rows (the first compact-stream RTL, 8c4f4d3 / 2a1e4c7) are a record:
the estimator is now calibrated and tested on bench/results/calib-rtl.jsonl (bench/synth_sweep.py calib-rtl,
the same kind of build at today's RTL). NAME: one of DESIGNS (default: all).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit
from apotflow.sim.flow import git_revision, synth_model
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "stream-synth.jsonl"
DESIGNS = {  # name -> (model file, target, lanes)
    "digits-ecp5-25k-l16": ("digits.apot", "ecp5-25k", 16),
    "digits-ice40-l8": ("digits.apot", "ice40-up5k", 8),
    "resnet20-ppq-ecp5-85k-l64": ("resnet20-ppq-jpeg.apot", "ecp5-85k", 64),
}


def run(name: str) -> dict:
    model, target, lanes = DESIGNS[name]
    net = export.load(ROOT / "bench" / "models" / model)
    prog = fit(net, AcceleratorConfig(lanes=lanes), reuse=True)
    with tempfile.TemporaryDirectory() as tmp:
        res = synth_model(prog.config, Path(tmp), target, log=lambda m: print(m, flush=True), program=prog,
                          design=name)
    res["lanes"] = lanes
    res["git_revision"] = git_revision()
    res["command"] = f"apotflow synth --model bench/models/{model} --target {target} --lanes {lanes} --no-pnr"
    return res


def main(names: list[str]) -> int:
    for name in names or list(DESIGNS):
        if name not in DESIGNS:
            print(f"unknown design {name!r}; known: {', '.join(DESIGNS)}", file=sys.stderr)
            return 2
        row = run(name)
        with OUT.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("design", "lut", "ff", "bram", "estimate")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
