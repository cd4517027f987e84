"""Post-training APoT quantization of a float checkpoint (sw/api.py): float vs fake-quant vs integer top-1.

    python bench/ptq.py bench/models/r20-ppq-s80-float.pt --bits 8 8 --data data/cifar10-jpeg.tar.xz \
        --images 2000 --calib 512 --out bench/results/ptq-r20-w8a8.json

Calibration images are --calib random TRAINING images (never test images; seeded by --seed: the JPEG copy
is ordered by class); accuracy is on --images random test images (0: all): the float model in fp32, the fake-quant model's float64 copy, and the exported
integer network (golden model, float64 backend; exact) with its top-1 agreement.

``--finetune EPOCHS`` then fine-tunes the calibrated model with QAT (``sw.api.finetune``, as ``apotflow import
--finetune`` does; on the GPU when there is one) on the first ``--finetune-images`` of a seeded shuffle of the
training set (0: all) and measures again; the row keeps the post-training figures under ``post_training``:

    python bench/ptq.py bench/models/r20-ppq-s80-float.pt --bits 4 4 --data data/cifar10-jpeg.tar.xz \
        --images 0 --finetune 15 --out bench/results/ptq-r20-w4a4-ft15.json
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

import torch

from apotflow.sw.api import QuantConfig, calibrate, finetune, prepare
from apotflow.sw.checkpoint import load_checkpoint
from apotflow.sw.cifar import load_cifar10
from apotflow.sw.cifar_run import integer_eval
from apotflow.sw.data import random_subsets

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from recheck_run import model_files_parser, write_rows  # noqa: E402


def main(argv=None) -> int:
    ap = model_files_parser(__doc__, "bench/results/ptq.json", 2000, "N random test images (0: all)",
                            "float checkpoints (e.g. a ppq run's float.pt)")
    ap.add_argument("--bits", type=int, nargs=2, default=[8, 8], metavar=("W", "A"), help="inner-layer bits")
    ap.add_argument("--calib", type=int, default=512, help="calibration images (N random training images)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random calibration and test subsets")
    ap.add_argument("--percentile", type=float, default=None, help="activation clipping quantile "
                    f"(default QuantConfig's, {QuantConfig().act_percentile})")
    ap.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                    help="QAT fine-tuning epochs after calibration (0: post-training only)")
    ap.add_argument("--finetune-images", type=int, default=0, metavar="N",
                    help="fine-tune on N random training images (0: all)")
    a = ap.parse_args(argv)
    split = load_cifar10(a.data)
    calib, x, y = random_subsets(split, a.calib, a.images, a.seed)
    rows = []
    for path in a.models:
        t0 = time.perf_counter()
        fm, _ = load_checkpoint(path)
        with torch.no_grad():
            acc_f = float((torch.cat([fm(x[i:i + 500].float()).argmax(1) for i in range(0, len(x), 500)]) == y)
                          .float().mean())
        cfg = QuantConfig(a.bits[0], a.bits[1], **({} if a.percentile is None else {"act_percentile": a.percentile}))
        q = calibrate(prepare(fm, cfg), calib)
        r = integer_eval(q, x, y, "cpu", backend="float64")
        r.pop("net")
        tuned = {}
        if a.finetune:
            post = {"accuracy_fakequant": r["accuracy_fakequant_check"], "accuracy_int": r["accuracy_int"],
                    "agreement": r["agreement"]}
            g = torch.Generator().manual_seed(a.seed)
            tr = torch.randperm(len(split.x_train), generator=g)[:a.finetune_images or None]
            data = SimpleNamespace(x_train=split.x_train[tr], y_train=split.y_train[tr], x_test=x, y_test=y)
            info = finetune(q, data, a.finetune, seed=a.seed)
            r = integer_eval(q, x, y, "cpu", backend="float64")
            r.pop("net")
            tuned = {"post_training": post, "finetune": {"epochs": a.finetune, "train_images": len(tr),
                                                         "seconds": round(info["train_seconds"], 1)}}
        row = {"model_file": path, "w_bits": a.bits[0], "a_bits": a.bits[1], "first_last_bits": 8,
               "act_percentile": cfg.act_percentile, "calib_images": len(calib), "seed": a.seed, "images": len(x),
               "accuracy_float": acc_f, "accuracy_fakequant": r["accuracy_fakequant_check"],
               "accuracy_int": r["accuracy_int"], "agreement": r["agreement"],
               "int_minus_float": round(r["accuracy_int"] - acc_f, 6), **tuned, "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    write_rows(a.out, "ptq.py", argv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
