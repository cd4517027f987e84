"""Re-check trained runs on the CPU with the current code: fake-quant vs integer accuracy and agreement.

    python bench/recheck_run.py runs/NAME/model.pt ... [--data data/cifar10-jpeg.tar.xz] [--images N]
                                [--out bench/results/recheck.json]

For a run evaluated on the GPU before the weight statistics were made device-independent
(sw/quant.weight_stats): its fake-quant accuracy was that of slightly different weight codes than
the ones its export holds. This re-lowers each model.pt and evaluates both sides here, with the
float64 golden backend (exact; every accumulator < 2**53) and the float64 fake-quant copy; each row also
has the lowered network's size and BOPs reductions (as a run's result has them). For a run whose training
ended without an integer model (a --residual-bits 8 run trained before the 8-bit stream lowered), the
re-check of its committed bench/models/NAME.pt gives the results table its integer figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import torch

from apotflow.sw.atomic import write_json
from apotflow.sw.checkpoint import load_checkpoint
from apotflow.sw.cifar import load_cifar10
from apotflow.sw.cifar_run import integer_eval


def model_files_parser(doc: str, out: str, images: int, images_help: str,
                       models_help: str = "model.pt files of apotflow train runs") -> argparse.ArgumentParser:
    """The command line of a bench/ script over model files: MODEL.pt ... --data --images --out."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help=models_help)
    ap.add_argument("--data", default="data/cifar10-jpeg.tar.xz")
    ap.add_argument("--images", type=int, default=images, help=images_help)
    ap.add_argument("--out", default=out)
    return ap


def main(argv=None) -> int:
    a = model_files_parser(__doc__, "bench/results/recheck.json", 0, "first N test images (0: all)").parse_args(argv)
    # the checkout as the check starts (decoding the data takes a while; later edits do not count)
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    split = load_cifar10(a.data)
    x, y = split.x_test, split.y_test
    if a.images:
        x, y = x[:a.images], y[:a.images]
    rows = []
    for path in a.models:
        model, _ = load_checkpoint(path)
        t0 = time.perf_counter()
        r = integer_eval(model, x, y, "cpu", backend="float64")
        r.pop("net")
        row = {"model_file": path, "images": len(x), "accuracy": r["accuracy_fakequant_check"],
               "accuracy_int": r["accuracy_int"], "agreement": r["agreement"],
               "int_minus_fakequant": round(r["accuracy_int"] - r["accuracy_fakequant_check"], 6),
               "size_reduction": r["size_reduction"], "bops_reduction": r["bops_reduction"],
               "seconds": round(time.perf_counter() - t0, 1), "git_rev": rev}
        print(json.dumps(row), flush=True)
        rows.append(row)
    write_rows(a.out, "recheck_run.py", argv, rows)
    return 0


def write_rows(out: str, script: str, argv, rows: list[dict]) -> None:
    """The result file of a bench/ script over model files: its command, the machine, one row per model
    (written atomically: a run stopped half-way leaves no file)."""
    blob = {"command": f"python bench/{script} " + " ".join(sys.argv[1:] if argv is None else argv),
            "device": platform.processor() or platform.machine(), "host": platform.node(),
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    write_json(out, blob)


if __name__ == "__main__":
    sys.exit(main())
