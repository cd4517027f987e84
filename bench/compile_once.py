"""What compiling once saves: the compiles `apotflow demo` made before (fit probe + rtl + cosim + 2 synth
targets) against hw.fit.fit's one compile, timed on committed models.

    python bench/compile_once.py [MODEL.apot ...] [--lanes 16] [--out bench/results/compile-once.json]

Before (commit 5feb0b4) hw.fit.fitted_config compiled the network with generous depths to learn its needs,
and write_rtl, cosim and each synthesis target compiled it again with the fitted config: 1 + 4 compiles in
`make demo` (2 in `apotflow rtl` / `cycles` / `cosim` / `synth`). Now hw.fit.fit compiles once and
re-encodes the words for the fitted depths. Times are CPU seconds of this process (time.process_time;
the machine is shared), the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = [ROOT / "bench/models/digits.apot", ROOT / "bench/models/resnet20-ppq-jpeg.apot"]


def _cpu(repeat: int, fn, *args) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn(*args)
        best = min(best, time.process_time() - t)
    return best, out


def main(argv: list[str] | None = None) -> int:
    from apotflow.hw.compile import compile_net
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import DEPTHS, PROBE_DEPTH, fit
    from apotflow.sw import export

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=[str(m) for m in MODELS])
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default="bench/results/compile-once.json")
    args = p.parse_args(argv)
    rows = []
    for path in args.models:
        net = export.load(path)
        cfg = AcceleratorConfig(lanes=args.lanes)
        probe_s, _ = _cpu(args.repeat, compile_net, net, replace(cfg, **{k: PROBE_DEPTH for k in DEPTHS}))
        fit_s, prog = _cpu(args.repeat, fit, net, cfg)
        fitted_s, _ = _cpu(args.repeat, compile_net, net, prog.config)
        rows.append({"model": Path(path).name, "lanes": args.lanes, "weight_entries": len(prog.images.wgt),
                     "compile_probe_cpu_s": round(probe_s, 3), "compile_fitted_cpu_s": round(fitted_s, 3),
                     "before_command_cpu_s": round(probe_s + fitted_s, 3),
                     "before_demo_cpu_s": round(probe_s + 4 * fitted_s, 3),
                     "after_fit_cpu_s": round(fit_s, 3)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"rows": rows, "rules": "before_command: fitted_config's probe compile + the command's own compile; "
           "before_demo: probe + rtl + cosim + 2 synthesis targets (1 + 4 compiles); after: hw.fit.fit, one "
           "compile and a re-encode (every command and the demo)", "command": "python bench/compile_once.py " +
           " ".join(argv if argv is not None else sys.argv[1:])}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
