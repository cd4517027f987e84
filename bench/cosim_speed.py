"""Benchmark: what one co-simulated image of the trained ResNet-20 (64 lanes) costs, per variant.

Every variant runs bench/cosim_testset.py on the same test images in one simulator process and must
pass it (every ACT and OUT word and every cycle count equal to the golden and cycle models); the
variants must also agree on every image's cycles. The figures are CPU seconds of the simulator
process per image (user + sys, so other work on the machine does not count), split into simulating
(the model's evaluation while the bench waits), the bench's file work, and the golden model's CPU
time in the parent; ``steady`` is their sum, what an image costs a process of many images (a
process's start, about a second, is spread over its shard of up to 200 images).

Variants: ``before`` (``--before-rev``: that revision's code, unpacked with git archive), ``plain``
(this code, an ordinary -O3 Verilator build) and ``pgo`` (this code, the profile-guided build that
bench/cosim_testset.py uses by default). Writes bench/results/cosim-speed.json.

    python bench/cosim_speed.py --images 20 --before-rev 79774d7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.36  # CPU seconds per image per process: 10,000 images in 30 minutes on 2 processes


def _old_tree(rev: str, where: Path) -> dict[str, str]:
    """Unpack ``rev`` into ``where``; the environment that makes ``apotflow`` import from it."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(blob)
        f.seek(0)
        tarfile.open(fileobj=f).extractall(where, filter="data")
    pkg = where / "_pkg" / "apotflow"
    pkg.mkdir(parents=True)
    for part in ("hw", "sim", "sw"):
        (pkg / part).symlink_to(where / part)
    return {"PYTHONPATH": str(where / "_pkg")}


def run_variant(name: str, args, tree: Path, env: dict[str, str], extra: list[str]) -> dict:
    out = Path(args.work).resolve() / f"{name}-result"
    cmd = [sys.executable, str(tree / "bench/cosim_testset.py"), "--model", os.path.abspath(args.model),
           "--data", os.path.abspath(args.data), "--lanes", "64", "--start", str(args.start),
           "--images", str(args.images), "--jobs", "1", "--work", os.path.abspath(args.work),
           "--out", str(out), *extra]
    print(f"{name}: {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=tree, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{name}: bench/cosim_testset.py failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    res = json.loads(next(out.glob("cosim-testset-*.json")).read_text())
    cpu = res["cpu_seconds_per_image"]
    steady = cpu["simulating"] + cpu["bench_files"] + cpu["golden_model"]
    return {"variant": name, "images": res["images"], "first_image": res["first_image"], "passed": res["passed"],
            "bitexact_images": res["bitexact_images"], "cycle_mismatches": res["cycle_mismatches"],
            "cycles_per_image": res["cycles_per_image"], "cycles_model": res["cycles_model"],
            "cpu_seconds_per_image": cpu, "cpu_seconds_per_image_steady": steady,
            "cpu_seconds_per_image_measured": cpu["simulator_process"] + cpu["golden_model"],
            "build_seconds": res["build_seconds"], "wall_seconds": wall, "pgo": res.get("pgo", False),
            "git_revision": res.get("git_revision"), "command": " ".join(["python bench/cosim_testset.py", *cmd[3:]])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "bench/models/resnet20-ppq-jpeg.apot"))
    p.add_argument("--data", default=str(ROOT / "data/cifar10-jpeg.tar.xz"))
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--before-rev", help="a git revision to measure as the 'before' variant")
    p.add_argument("--variants", default="before,plain,pgo")
    p.add_argument("--work", default="runs/bench-cosim-speed")
    p.add_argument("--out", default=str(ROOT / "bench/results/cosim-speed.json"))
    args = p.parse_args(argv)

    rows, load_before = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            if name == "before":
                if not args.before_rev:
                    continue
                tree = Path(tmp) / "before"
                rows.append(run_variant(name, args, tree, _old_tree(args.before_rev, tree), []))
                rows[-1]["git_revision"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.before_rev],
                                                          capture_output=True, text=True).stdout.strip()
            elif name in ("plain", "pgo"):
                rows.append(run_variant(name, args, ROOT, {}, ["--no-pgo"] if name == "plain" else []))
            else:
                raise SystemExit(f"unknown variant {name!r} (before, plain, pgo)")
            r = rows[-1]
            print(f"  {r['bitexact_images']}/{r['images']} bit-exact, {r['cycle_mismatches']} cycle mismatches, "
                  f"{r['cpu_seconds_per_image_steady']:.3f} CPU s per image (simulating "
                  f"{r['cpu_seconds_per_image']['simulating']:.3f})", flush=True)
    same_cycles = all(r["cycles_per_image"] == rows[0]["cycles_per_image"] for r in rows)
    result = {
        "model": os.path.relpath(args.model, ROOT), "lanes": 64, "first_image": args.start, "images": args.images,
        "variants": rows, "all_passed": all(r["passed"] for r in rows), "same_cycles": same_cycles,
        "target_cpu_seconds_per_image": TARGET_S, "load_average_before": load_before,
        "load_average_after": os.getloadavg(), "cpus": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.node()}",
        "command": "python bench/cosim_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if result["all_passed"] and same_cycles else 1


if __name__ == "__main__":
    sys.exit(main())
