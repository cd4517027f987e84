"""A Keras-style ResNet (docs/examples/keras_style_onnx.py: ResNet-8's topology, 'same' padding written as
asymmetric pads on the stride-2 convs, 1x1 stride-2 projections without BatchNorm, biases, raw 0..255
pixels in) trained in float on the JPEG CIFAR-10 copy on the CPU, exported to ONNX, and imported through
``apotflow import``'s path (load_onnx -> prepare -> calibrate -> lower): float, fake-quant and integer top-1.

    nice -n 10 python bench/keras_resnet_import.py --data data/cifar10-jpeg.tar.xz --epochs 2 \
        --train-images 3000 --images 500 --calib 128 --bits 8 8 --out bench/results/keras-resnet-import.json

Subsets (training, calibration, test) are seeded random draws: the JPEG copy is ordered by class.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))
from keras_style_onnx import KerasStyleResNet, export_onnx  # noqa: E402
from lenet import train  # noqa: E402

from apotflow.sw.api import QuantConfig, import_float_model  # noqa: E402
from apotflow.sw.atomic import json_text, write_atomic  # noqa: E402
from apotflow.sw.cifar import load_cifar10  # noqa: E402
from apotflow.sw.graph_prepare import Preprocess  # noqa: E402
from apotflow.sw.onnx_in import load_onnx  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/cifar10-jpeg.tar.xz")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-images", type=int, default=20000, help="the first N training images (0: all)")
    ap.add_argument("--images", type=int, default=0, help="first N test images (0: all 10,000)")
    ap.add_argument("--calib", type=int, default=512)
    ap.add_argument("--bits", type=int, nargs=2, action="append", metavar=("W", "A"),
                    help="inner-layer bits, repeatable (default 8 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/keras-resnet-import.json")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    split = load_cifar10(a.data)
    g = torch.Generator().manual_seed(a.seed)  # the JPEG copy is ordered by class: seeded random subsets
    tr = torch.randperm(len(split.x_train), generator=g)
    te = torch.randperm(len(split.x_test), generator=g)[:a.images or None]
    xtr, ytr = split.x_train[tr[:a.train_images or None]], split.y_train[tr[:a.train_images or None]]
    calib = split.x_train[tr[-a.calib:]]  # training images (not trained on unless --train-images 0)
    x, y = split.x_test[te], split.y_test[te]
    t0 = time.perf_counter()
    model = train(KerasStyleResNet(cin=3, pool=8), xtr.float(), ytr, epochs=a.epochs, seed=a.seed)
    train_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gm = load_onnx(export_onnx(model, Path(tmp) / "keras-resnet.onnx", shape=(3, 32, 32)))
        pre = Preprocess(255, scale=1.0)  # raw pixels
        for w, b in a.bits or [[8, 8]]:
            _, r = import_float_model(gm, calib, x, y, QuantConfig(w, b), pre)
            r["int_minus_float"] = round(r["accuracy_int"] - r["accuracy_float"], 6)
            print(json.dumps(r), flush=True)
            rows.append(r)
            write_atomic(a.out, json_text(_doc(a, argv, xtr, train_s, rows)))
    return 0


def _doc(a, argv, xtr, train_s, rows) -> dict:
    return {"bench": "keras_resnet_import.py", "argv": sys.argv[1:] if argv is None else argv,
           "model": "KerasStyleResNet(cin=3, widths=(16, 32, 64), pool=8): docs/examples/keras_style_onnx.py",
           "train": {"epochs": a.epochs, "train_images": len(xtr), "optimizer": "Adam 3e-3, batch 128 (lenet.train)",
                     "seconds": round(train_s, 1), "device": "cpu"},
           "calib": f"{a.calib} random training images (seed {a.seed})",
           "test_images": f"{a.images or 'all'} random test images (seed {a.seed})", "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
