"""Time `apotflow demo` (what `make demo` runs) and count its compiles; append the result to a JSON file.

    python bench/demo_time.py --label after --out /tmp/demo-after [--code DIR] [--seed-from DIR] [-- DEMO-ARGS...]

``--code DIR`` runs another checkout's code (a folder holding sw/, hw/, sim/, e.g. ``git archive`` of an
older commit): its folders are linked into a temporary ``apotflow`` namespace that goes first on
PYTHONPATH. The demo runs in a child process under ``nice -n 10``; wall time, the CPU time of the child
and everything it started (Verilator's compilers, Yosys), and the 1-minute load average before and after
are recorded (this machine is shared, so compare CPU seconds first). ``compile_net_calls`` counts the
calls of hw.compile.compile_net in the run (the child wraps it before anything imports it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys
import apotflow.hw.compile as c
calls = []
real = c.compile_net
def counted(*a, **k):
    calls.append(1)
    return real(*a, **k)
c.compile_net = counted
from apotflow.sim.cli import main
sys.argv = ["apotflow", *sys.argv[2:]]
try:
    rc = main(sys.argv[1:])
finally:
    with open(COUNT, "w") as f:
        json.dump(len(calls), f)
sys.exit(rc)
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True, help="the demo's --out (emptied first)")
    p.add_argument("--code", help="a checkout's folder holding sw/, hw/, sim/ (default: the installed apotflow)")
    p.add_argument("--results", default="bench/results/demo-time.json")
    p.add_argument("--git", help="the revision --code holds (recorded)")
    p.add_argument("--seed-from", help="copy model.apot, model.pt and train.json from this folder into --out first "
                   "(with the demo's --reuse: every run starts from the same trained model)")
    p.add_argument("demo_args", nargs="*")
    args = p.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    if args.seed_from:
        out.mkdir(parents=True)
        for f in ("model.apot", "model.pt", "train.json"):
            shutil.copyfile(Path(args.seed_from) / f, out / f)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        if args.code:
            ns = Path(tmp) / "site" / "apotflow"
            ns.mkdir(parents=True)
            for d in ("sw", "hw", "sim"):
                (ns / d).symlink_to(Path(args.code).resolve() / d)
            env["PYTHONPATH"] = str(ns.parent) + os.pathsep + env.get("PYTHONPATH", "")
        count = Path(tmp) / "count.json"
        child = CHILD.replace("COUNT", repr(str(count)))
        cmd = ["nice", "-n", "10", sys.executable, "-c", child, "x", "demo", "--out", str(out), *args.demo_args]
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        with open(out.with_name(out.name + ".log"), "w") as log:
            rc = subprocess.run(cmd, env=env, cwd=args.code or None, stdout=log, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        calls = json.loads(count.read_text()) if count.is_file() else None
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    row = {"label": args.label, "rc": rc, "command": "apotflow demo --out " + " ".join([str(out), *args.demo_args]),
           "code": args.code or "installed", "git": args.git, "wall_seconds": round(wall, 1),
           "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 1), "compile_net_calls": calls,
           "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2),
           "steps_seconds": report.get("seconds"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "measured_by": "python bench/demo_time.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    res = Path(args.results)
    data = json.loads(res.read_text()) if res.is_file() else {"runs": []}
    data["runs"] = [r for r in data["runs"] if r["label"] != args.label] + [row]
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(row))
    return rc


if __name__ == "__main__":
    sys.exit(main())
