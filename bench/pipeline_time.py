"""Where the time of a training run went, from its result JSON (the PPQ pipeline's wall-time figure).

    python bench/pipeline_time.py docs/cifar-runs/variants/resnet20-ppq-jpeg-qat200.json [--out FILE]

Sums each phase's epoch times from the run's history; the rest of ``train_seconds`` is evaluation,
CUDA-graph capture (once per phase and process) and checkpointing. A run resumed N times captured
its graphs N more times, so its total is an upper bound on an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="result.json of an apotflow train run")
    ap.add_argument("--out", help="write the summary here as JSON")
    a = ap.parse_args(argv)
    r = json.loads(Path(a.run).read_text())
    phases: dict[str, dict] = {}
    for h in r.get("history", []):
        p = phases.setdefault(h["phase"], {"epochs": 0, "epoch_seconds": 0.0})
        p["epochs"] += 1
        p["epoch_seconds"] += h["epoch_seconds"]
    in_epochs = sum(p["epoch_seconds"] for p in phases.values())
    out = {"run": a.run, "command": r.get("command"), "device": r.get("device"),
           "train_seconds": r.get("train_seconds"), "resumes": r.get("resumes", 0),
           "phases": {k: {"epochs": v["epochs"], "epoch_seconds": round(v["epoch_seconds"], 1)} for k, v in phases.items()},
           "outside_epochs_seconds": round(r["train_seconds"] - in_epochs, 1) if r.get("train_seconds") else None}
    for k, v in out["phases"].items():
        print(f"{k:8s} {v['epochs']:4d} epochs {v['epoch_seconds']:8.1f} s")
    print(f"training {r.get('train_seconds', 0):.1f} s on {r.get('device')} ({out['resumes']} resume(s)); "
          f"outside the epochs {out['outside_epochs_seconds']} s")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
