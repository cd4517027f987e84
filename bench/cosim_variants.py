"""Speed experiments on the co-simulation build: one Verilator/gcc variant, N ResNet-20 images (64 lanes).

Each variant builds the model with changed flags (or a changed wrapper) into runs/bench-cosim-variants,
co-simulates the first N test images in one simulator process (every check on) and records its CPU
seconds per image (simulating, the bench's file work, the whole simulator process) and cycles in
bench/results/cosim-variants.json (one row per variant name, replaced when re-run). The variants the
docs name were measured with these specs (10 images, on the shared 2-core machine):

    python bench/cosim_variants.py base 10 '{}'
    python bench/cosim_variants.py O2 10 '{"opt": "-O2"}'            # also -Os, -O1, "-O3 -g"
    python bench/cosim_variants.py splitcf 10 '{"extra": ["--output-split-cfuncs", "3000"]}'
    python bench/cosim_variants.py noinline 10 '{"extra": ["-fno-inline"]}'
    python bench/cosim_variants.py vdef 10 '{"args": ["--no-public-flat-rw", "--timing", "--timescale", "1ns/1ps"]}'
    python bench/cosim_variants.py rstoff 10 '{"rstoff": 1}'          # the accelerator's rst tied to 0
    python bench/cosim_variants.py pgo 10 '{"pgo": 1}'

Spec keys: ``opt`` (gcc level of the model's code), ``args`` (Verilator flags instead of
COSIM_BUILD_ARGS), ``extra`` (flags added to them), ``rstoff`` (the wrapper ties the accelerator's
reset to 0), ``pgo`` (prepare(pgo=True)).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    name, n, spec = argv[0], int(argv[1]), json.loads(argv[2] if len(argv) > 2 else "{}")
    import apotflow.sim.cosim as cosim
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sim.flow import input_images
    from apotflow.sw import export

    if "args" in spec:
        cosim.COSIM_BUILD_ARGS = tuple(spec["args"])
    cosim.COSIM_BUILD_ARGS = tuple(cosim.COSIM_BUILD_ARGS) + tuple(spec.get("extra", ()))
    cosim.OPT_FAST = spec.get("opt", cosim.OPT_FAST)
    if spec.get("rstoff"):
        wrapper = cosim.bench_verilog
        cosim.bench_verilog = lambda cfg: wrapper(cfg).replace(".rst(rst)", ".rst(1'b0)")
    net = export.load(ROOT / "bench/models/resnet20-ppq-jpeg.apot")
    prog = fit(net, AcceleratorConfig(lanes=64))
    x = input_images(net, 0, data=str(ROOT / "data/cifar10-jpeg.tar.xz"), log=lambda m: None)[:n]
    work = ROOT / "runs/bench-cosim-variants"
    setup = cosim.prepare(net, prog.config, x, work / name, program=prog, build_cache=work / "builds",
                          log=lambda m: None, pgo=bool(spec.get("pgo")))
    s = cosim.execute(setup, jobs=1, log=lambda m: None, waves_on_mismatch=False)
    c = s["cpu_seconds_per_image"]
    row = {"variant": name, "spec": spec, "images": s["images"], "passed": s["passed"],
           "bitexact_images": s["bitexact_images"], "cycle_mismatches": s["cycle_mismatches"],
           "cycles_per_image": s["cycles_per_image"], "cpu_seconds_per_image_simulating": c["simulating"],
           "cpu_seconds_per_image_bench_files": c["bench_files"],
           "cpu_seconds_per_image_simulator_process": c["simulator_process"],
           "command": "python bench/cosim_variants.py " + " ".join([name, str(n), f"'{json.dumps(spec)}'"])}
    out = ROOT / "bench/results/cosim-variants.json"
    rows = [r for r in (json.loads(out.read_text())["variants"] if out.exists() else []) if r["variant"] != name]
    out.write_text(json.dumps({"model": "bench/models/resnet20-ppq-jpeg.apot", "lanes": 64,
                               "variants": rows + [row]}, indent=1) + "\n")
    print(json.dumps({k: row[k] for k in ("variant", "passed", "cpu_seconds_per_image_simulating")}))
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
