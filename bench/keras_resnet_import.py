"""A Keras-style ResNet (docs/examples/keras_style_onnx.py: ResNet-8's topology, 'same' padding written as
asymmetric pads on the stride-2 convs, 1x1 stride-2 projections without BatchNorm, biases, raw 0..255
pixels in) trained in float on the JPEG CIFAR-10 copy on the CPU, exported to ONNX, and imported through
``apotflow import``'s path (load_onnx -> prepare -> calibrate -> lower): float, fake-quant and integer top-1.

    nice -n 10 python bench/keras_resnet_import.py --data data/cifar10-jpeg.tar.xz --epochs 2 \
        --train-images 3000 --images 500 --calib 128 --bits 8 8 --out bench/results/keras-resnet-import.json

Subsets (training, calibration, test) are seeded random draws: the JPEG copy is ordered by class.
The issue's targets on a GPU (float training with crop-and-flip, W8/A8 post-training, W4/A4 with a QAT
fine-tune of at most 15 epochs through ``apotflow import``'s path on the training set):

    python bench/keras_resnet_import.py --data data/cifar10-jpeg.tar.xz --device cuda --epochs 40 --augment \
        --train-images 0 --images 0 --bits 8 8 --bits 4 4 --finetune 15 --out bench/results/keras-resnet-import-gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

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
    ap.add_argument("--device", default="cpu", help="float training on cpu or cuda (default cpu)")
    ap.add_argument("--augment", action="store_true", help="float training with random crop (pad 4) and flip, "
                    "Adam with a cosine learning rate (default: lenet.train's plain Adam)")
    ap.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                    help="QAT fine-tune of the rows below 8 bits on the training images (sw.api.finetune)")
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
    if a.augment:
        model = train_augmented(KerasStyleResNet(cin=3, pool=8), xtr, ytr, a.epochs, a.seed, a.device)
    else:
        model = train(KerasStyleResNet(cin=3, pool=8), xtr.float(), ytr, epochs=a.epochs, seed=a.seed)
    model = model.cpu().eval()
    train_s = time.perf_counter() - t0
    tune = SimpleNamespace(x_train=xtr, y_train=ytr, x_test=x, y_test=y)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gm = load_onnx(export_onnx(model, Path(tmp) / "keras-resnet.onnx", shape=(3, 32, 32)))
        pre = Preprocess(255, scale=1.0)  # raw pixels
        for w, b in a.bits or [[8, 8]]:
            epochs = a.finetune if min(w, b) < 8 else 0
            _, r = import_float_model(gm, calib, x, y, QuantConfig(w, b), pre, finetune_data=tune if epochs else None,
                                      finetune_epochs=epochs)
            r["int_minus_float"] = round(r["accuracy_int"] - r["accuracy_float"], 6)
            print(json.dumps(r), flush=True)
            rows.append(r)
            write_atomic(a.out, json_text(_doc(a, argv, xtr, train_s, rows)))
    return 0


def train_augmented(model, x, y, epochs: int, seed: int, device: str):
    """Adam 3e-3 with a cosine learning rate, batches of 128, each image randomly cropped (zero-padded by 4)
    and flipped; raw 0..255 pixels, as the model takes them."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    model = model.to(dev).train()
    x, y = x.to(dev), y.to(dev)
    steps = epochs * -(-len(x) // 128)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.15)
    for ep in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            xb = F.pad(x[idx.to(dev)].float(), (4, 4, 4, 4))
            i, j = torch.randint(0, 9, (2,), generator=g).tolist()
            xb = xb[:, :, i:i + 32, j:j + 32]
            if torch.rand(1, generator=g).item() < 0.5:
                xb = xb.flip(3)
            opt.zero_grad()
            F.cross_entropy(model(xb), y[idx.to(dev)]).backward()
            opt.step()
            sched.step()
        print(f"float epoch {ep + 1}/{epochs}", flush=True)
    return model.eval()


def _doc(a, argv, xtr, train_s, rows) -> dict:
    return {"bench": "keras_resnet_import.py", "argv": sys.argv[1:] if argv is None else argv,
           "model": "KerasStyleResNet(cin=3, widths=(16, 32, 64), pool=8): docs/examples/keras_style_onnx.py",
           "train": {"epochs": a.epochs, "train_images": len(xtr), "optimizer": ("Adam 3e-3 one-cycle, crop + flip, batch 128" if a.augment
                                                                 else "Adam 3e-3, batch 128 (lenet.train)"),
                     "seconds": round(train_s, 1), "device": a.device, "finetune_epochs": a.finetune},
           "calib": f"{a.calib} random training images (seed {a.seed})",
           "test_images": f"{a.images or 'all'} random test images (seed {a.seed})", "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
