"""Benchmark: the trained ResNet-20 on the JPEG CIFAR-10 test set through the RTL on Verilator.

Every image is checked word for word in every layer against the golden integer model, and its
cycles (total and per layer, measured by the bench and by the RTL's counters) against the exact
cycle model; writes bench/results/cosim-testset-<images>.json with the counts, the wall time, the
seconds per image per simulator process, the machine's load and the command.

    nice -n 10 python bench/cosim_testset.py --images 50 --jobs 2
    nice -n 10 python bench/cosim_testset.py --images all --jobs 2
    nice -n 10 python bench/cosim_testset.py --start 50 --images 300 --jobs 2   # test images 50..349
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "bench/models/resnet20-ppq-jpeg.apot"))
    p.add_argument("--data", default=str(ROOT / "data/cifar10-jpeg.tar.xz"), help="CIFAR-10 (JPEG .tar.xz)")
    p.add_argument("--lanes", type=int, default=64)
    p.add_argument("--images", default="50", help="a count, or 'all' (the 10,000 test images)")
    p.add_argument("--start", type=int, default=0, help="first test image (runs in ranges)")
    p.add_argument("--jobs", type=int, default=2, help="simulator processes at a time")
    p.add_argument("--shard-images", type=int, help="images per simulator process (default: cosim's)")
    p.add_argument("--no-pgo", action="store_true", help="a plain Verilator build (default: profile-guided)")
    p.add_argument("--work", default="runs/bench-cosim-testset", help="scratch folder (Verilator build, shards)")
    p.add_argument("--out", default=str(ROOT / "bench/results"))
    args = p.parse_args(argv)

    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sim.flow import cosim_model, git_revision, input_images, write_json
    from apotflow.sw import export

    n = 0 if args.images == "all" else int(args.images)
    net = export.load(args.model)
    prog = fit(net, AcceleratorConfig(lanes=args.lanes))  # compiled once, for the fitted depths
    load_before = os.getloadavg()
    t = time.perf_counter()
    x = input_images(net, 0, data=args.data, log=lambda m: print(m, flush=True))
    x = x[args.start:args.start + n] if n else x[args.start:]
    data_s = time.perf_counter() - t
    t = time.perf_counter()
    s = cosim_model(net, prog, Path(args.work), 0, x=x, jobs=args.jobs, shard_images=args.shard_images,
                    log=lambda m: print(m, flush=True), pgo=not args.no_pgo)
    wall = time.perf_counter() - t
    cyc = s["cycles_per_image"]
    row = {
        "model": os.path.relpath(args.model, ROOT), "lanes": args.lanes, "first_image": args.start,
        "images": s["images"],
        "bitexact_images": s["bitexact_images"], "mismatches": s["mismatches"],
        "cycle_mismatches": s["cycle_mismatches"], "first_mismatch": s["first_mismatch"],
        "first_cycle_mismatch": s["first_cycle_mismatch"], "hang": s["hang"], "passed": s["passed"],
        "cycles_model": s["cycles_model"], "cycles_per_image_min": min(cyc) if cyc else None,
        "cycles_per_image_max": max(cyc) if cyc else None, "cycles_per_image": cyc,
        "pgo": not args.no_pgo, "jobs": args.jobs, "simulator_runs": s["simulator_runs"],
        "wall_seconds": wall, "cosim_wall_seconds": s["sim_seconds"],
        "wall_seconds_per_image": s["sim_seconds"] / max(1, s["images"]),
        "seconds_per_image_per_process": s["sim_seconds"] * args.jobs / max(1, s["images"]),
        "sim_seconds_per_image_in_bench": s["sim_seconds_per_image"], "golden_seconds": s["golden_seconds"],
        "cpu_seconds_per_image": s["cpu_seconds_per_image"],
        "build_seconds": s["build_seconds"], "data_load_seconds": data_s,
        "projected_testset_minutes": s["sim_seconds"] / max(1, s["images"]) * 10_000 / 60,
        "cpu_seconds_per_image_per_process": s["cpu_seconds_per_image"]["simulator_process"]
        + s["cpu_seconds_per_image"]["golden_model"],
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "cpus": os.cpu_count(),
        "data": args.data, "config": prog.config.to_dict(), "per_layer": s["per_layer"], "git_revision": git_revision(),
        "machine": f"{platform.machine()}, {platform.node()}",
        "command": "python bench/cosim_testset.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"cosim-testset-{args.images}.json" if args.start == 0 else
                  f"cosim-testset-{args.start}-{args.start + s['images']}.json")
    write_json(path, row)
    print(json.dumps({k: row[k] for k in ("images", "bitexact_images", "mismatches", "cycle_mismatches", "wall_seconds",
                                          "seconds_per_image_per_process", "projected_testset_minutes")}))
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
