"""The fake-quant accuracy a QAT phase starts from: a float checkpoint, its activation alphas calibrated as the
trainer calibrates them at a quantizing phase's start (``sw.fasttrain.calibrate_alphas`` on
``calibration_images`` of the training set: ``calibrate`` below), BatchNorm statistics re-estimated in fake-quant mode on 2,048
training images (the float model's do not fit its quantized weights), then the fake-quant model's top-1
before any QAT step.

    python bench/qat_start.py bench/models/r20-ppq-s80-float.pt --data data/cifar10-jpeg.tar.xz --images 2000 \
        --out bench/results/qat-start-r20.json

Run at two revisions to compare two calibrations (the file records the revision). Test images: --images random
ones (0: all; seeded, sw.data.random_subsets: the JPEG copy is ordered by class).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from apotflow.sw import fasttrain
from apotflow.sw.checkpoint import load_checkpoint
from apotflow.sw.cifar import load_cifar10
from apotflow.sw.data import random_subsets
from apotflow.sw.fasttrain import calibration_images, evaluate
from apotflow.sw.quant import set_quantize
from apotflow.sw.randmodel import calibrate_bn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recheck_run import model_files_parser, write_rows  # noqa: E402


def calibrate(model, xtr) -> None:
    """What the trainer does at a quantizing phase's start (before s16 it called
    ``calibrate_alphas(model, calibration_images(xtr))``: float mode, BatchNorm on the batch's statistics)."""
    if hasattr(fasttrain, "calibrate_for_qat"):
        fasttrain.calibrate_for_qat(model, xtr)
    else:
        fasttrain.calibrate_alphas(model, calibration_images(xtr))


def main(argv=None) -> int:
    ap = model_files_parser(__doc__, "bench/results/qat-start.json", 2000, "N random test images (0: all)",
                            "float checkpoints (e.g. a ppq run's float.pt)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random test subset")
    a = ap.parse_args(argv)
    split = load_cifar10(a.data)
    _, x, y = random_subsets(split, 0, a.images, a.seed)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip()
    rows = []
    for path in a.models:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model, _ = load_checkpoint(path)
        acc_f = evaluate(model, x, y, False)
        calibrate(model, split.x_train.float())
        set_quantize(model, True)  # BatchNorm statistics of the quantized model (the float ones do not fit it)
        calibrate_bn(model, list(calibration_images(split.x_train.float(), 2048).float().split(256)))
        acc_q = evaluate(model, x, y, True)
        row = {"model_file": path, "revision": rev, "images": len(x), "seed": a.seed,
               "accuracy_float": acc_f, "accuracy_fakequant_start": acc_q,
               "alphas": [round(float(m.alpha.detach()), 5) for m in model.modules() if type(m).__name__ == "ActQuantizer"],
               "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps({k: v for k, v in row.items() if k != "alphas"}), flush=True)
        rows.append(row)
    write_rows(a.out, "qat_start.py", argv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
