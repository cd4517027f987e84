"""Benchmark: whole CIFAR networks through the generated RTL on Verilator, bit-exactly.

For each network: export it (random seeded weights unless --model is given), compile for the lane
count, build the Verilator model, co-simulate N images and record measured cycles, the cycle model,
the ideal bound, and the times (build, simulation per image). One JSON per network in --out.

    python bench/cosim_networks.py --nets resnet20 --lanes 64 --images 1 --out bench/results
    python bench/cosim_networks.py --nets resnet56 vgg16 --lanes 64 --images 1 --out bench/results
    python bench/cosim_networks.py --model runs/r20/model.apot --data data/cifar10-jpeg.tar.xz --images 20 ...
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="*", default=["resnet20"], help="architectures exported with random weights")
    p.add_argument("--model", help="an exported model instead of --nets (e.g. a trained ResNet-20)")
    p.add_argument("--data", help="CIFAR-10 path for real test images (default: random pixels)")
    p.add_argument("--lanes", type=int, default=64)
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--prune", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench-cosim", help="scratch folder (Verilator builds)")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)

    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sim.flow import cosim_model
    from apotflow.sw import export

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [("model", Path(args.model))] if args.model else [(n, None) for n in args.nets]
    for name, path in jobs:
        work = Path(args.work) / f"{name}-{args.lanes}"
        work.mkdir(parents=True, exist_ok=True)
        if path is None:
            path = work / f"{name}.apot"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "apotflow.sim.cli", "export", "--arch", name, "--random",
                            "--prune", str(args.prune), "--seed", str(args.seed), "-o", str(path)], check=True)
            export_s = time.perf_counter() - t
        else:
            export_s = None
        net = export.load(path)
        prog = fit(net, AcceleratorConfig(lanes=args.lanes))
        cfg = prog.config
        t = time.perf_counter()
        s = cosim_model(net, prog, work / "cosim", args.images, seed=args.seed, data=args.data,
                        log=lambda m: print(m, flush=True))
        wall = time.perf_counter() - t
        worst = max((abs(pl["cycles"] - pl["cycles_model"]) / pl["cycles"] for pl in s["per_layer"]), default=0)
        row = {
            "net": net.meta.get("model", name), "lanes": args.lanes, "images": s["images"],
            "mismatches": s["mismatches"], "cycles_total": s["cycles_total"], "cycles_model": s["cycles_model"],
            "cycles_ideal": s["cycles_ideal"], "cycles_ratio": s["cycles_ratio"],
            "model_error_worst_layer": worst, "build_seconds": s["build_seconds"],
            "sim_seconds_per_image": s["sim_seconds_per_image"], "cosim_wall_seconds": wall,
            "export_seconds": export_s, "config": cfg.to_dict(), "per_layer": s["per_layer"],
            "data": args.data or "random pixels", "machine": f"{platform.machine()}, {platform.node()}",
            "command": "python bench/cosim_networks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        tag = path.stem if args.model else row["net"]
        (out / f"cosim-{tag}-{args.lanes}.json").write_text(json.dumps(row, indent=1))
        print(json.dumps({k: row[k] for k in ("net", "images", "mismatches", "cycles_ratio",
                                              "model_error_worst_layer", "build_seconds", "sim_seconds_per_image")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
