"""How the evaluation precision of the fake-quant model moves it off the integer golden model.

    python bench/fakequant_precision.py [--model runs/x/model.pt | --arch resnet20] [--data cifar10-jpeg.tar.xz]
                                        [--images 2000] [--device cuda] [--out bench/results/fakequant-precision.json]

The same quantized model is lowered to the integer network (sw/lower) and both are run on the same
images; the table gives the top-1 agreement of the fake-quant model with the integer model (run with
the exact int64/float64 golden model) under three evaluation settings:

* ``tf32``: PyTorch's defaults (cuDNN may use TF32 for float32 convolutions);
* ``fp32``: TF32 off, the integer accumulations in float32 (what sw.fasttrain.exact_fp32 did before);
* ``exact-accum``: TF32 off and the integer accumulations in float64 (``sw.quant.exact_accumulation``,
  what sw.fasttrain.exact_fp32 does now: the per-epoch evaluation);
* ``fp64``: a float64 copy of the model (``sw.quant.exact_copy``: weight codes still from float32), what
  the final check of every run (sw/cifar_run.integer_eval) uses.

Without --model a random calibrated network (sw/randmodel) is used; without --data, random images.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

from apotflow.sw.fasttrain import exact_fp32
from apotflow.sw.golden import predict_batched
from apotflow.sw.lower import lower
from apotflow.sw.quant import exact_copy, set_quantize


@contextlib.contextmanager
def tf32(allowed: bool):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


SETTINGS = {"tf32": lambda: tf32(True), "fp32": lambda: tf32(False), "exact-accum": exact_fp32, "fp64": exact_fp32}


@torch.no_grad()
def fakequant_top1(model, x: torch.Tensor, device: str, setting: str, bs: int = 500) -> torch.Tensor:
    if setting == "fp64":
        model = exact_copy(model)
    dtype = torch.float64 if setting == "fp64" else torch.float32
    model.to(device).eval()
    with SETTINGS[setting]():
        out = [model(x[i:i + bs].to(device).to(dtype)).argmax(1).cpu() for i in range(0, len(x), bs)]
    model.cpu()
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a CIFAR training checkpoint (model.pt); default: a random calibrated --arch")
    p.add_argument("--arch", default="resnet20", help="random model architecture (default resnet20)")
    p.add_argument("--data", help="CIFAR-10 (batches-py folder or the JPEG .tar.xz): its test split")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="write the result JSON here")
    a = p.parse_args(argv)
    if a.model:
        from apotflow.sw.checkpoint import load_checkpoint

        model = load_checkpoint(a.model)[0]
    else:
        from apotflow.sw.randmodel import random_model

        model = random_model(a.arch, seed=0)
    set_quantize(model, True)
    model.eval()
    if a.data:
        from apotflow.sw.cifar import load_cifar10

        s = load_cifar10(a.data)
        x, y = s.x_test[:a.images], s.y_test[:a.images]
    else:
        from apotflow.sw.randmodel import random_images

        x, y = random_images(a.images, seed=1), None
    net = lower(model)
    t0 = time.perf_counter()
    backend = "float64" if a.device.startswith("cuda") else "int64"
    pi = torch.from_numpy(predict_batched(net, x.numpy().astype("int64"), backend, a.device))
    res = {"model": a.model or f"random {a.arch}", "images": len(x), "device": a.device,
           "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else platform.processor(),
           "torch": torch.__version__, "golden_backend": backend, "golden_seconds": time.perf_counter() - t0,
           "settings": {}}
    for name in SETTINGS:
        t0 = time.perf_counter()
        pf = fakequant_top1(model, x, a.device, name)
        r = {"agreement": float((pf == pi).float().mean()), "disagree": int((pf != pi).sum()),
             "seconds": time.perf_counter() - t0}
        if y is not None:
            r["accuracy_fakequant"] = float((pf == y).float().mean())
            r["accuracy_int"] = float((pi == y).float().mean())
        res["settings"][name] = r
        print(f"{name:11s} agreement {r['agreement']:.4f} ({r['disagree']} of {len(x)} differ)"
              + (f", fake-quant {r['accuracy_fakequant']:.4f} / integer {r['accuracy_int']:.4f}" if y is not None else ""),
              flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
