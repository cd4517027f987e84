"""`apotflow import --finetune` on an ONNX model: accuracy after calibration alone, and after QAT fine-tuning
with and without making the fixed BatchNorms trainable (sw.api.batchnorms_for_training).

The model: docs/examples/lenet.py's LeNet (width 8), trained in float on digits (15 epochs, seed 0), exported
to ONNX (the exporter folds its BatchNorms into the convs) and imported at W2/A2 with 30% GM pruning,
calibrated on 256 random training images, fine-tuned for 4 epochs, evaluated on the whole digits test split.

    python bench/import_finetune.py --out bench/results/import-finetune.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs/examples"))

import lenet  # noqa: E402

from apotflow.sw import api  # noqa: E402
from apotflow.sw.data import load_digits_split, random_subsets  # noqa: E402
from apotflow.sw.graph_prepare import Preprocess  # noqa: E402
from apotflow.sw.lower import lower  # noqa: E402
from apotflow.sw.onnx_in import load_onnx  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "bench/results/import-finetune.json"))
    a = p.parse_args(argv)
    split, pre = load_digits_split(), Preprocess(16)
    torch.manual_seed(0)
    model = lenet.train(lenet.LeNet(8), pre.apply(split.x_train), split.y_train, epochs=15)
    calib, x, y = random_subsets(split, 256, 0, 0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet.onnx"
        torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
        for batchnorms in (False, True):
            t0 = time.perf_counter()
            q = api.prepare(load_onnx(path), api.QuantConfig(2, 2), pre)
            api.prune_(q, 0.3)
            api.calibrate(q, calib)
            ptq = api.accuracy_report(model, pre.apply, q, lower(q, (1, 8, 8)), x, y)
            api.finetune(q, split, a.epochs, log=lambda *_: None, batchnorms=batchnorms)
            ft = api.accuracy_report(model, pre.apply, q, lower(q, (1, 8, 8)), x, y)
            row = {"trainable_batchnorms": batchnorms, "epochs": a.epochs, "images": len(y),
                   "accuracy_float": ptq["accuracy_float"], "post_training_int": ptq["accuracy_int"],
                   "finetuned_int": ft["accuracy_int"], "finetuned_fakequant": ft["accuracy_fakequant"],
                   "agreement": ft["agreement"], "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    Path(a.out).write_text(json.dumps({"command": "python bench/import_finetune.py", "torch": torch.__version__,
                                       "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
