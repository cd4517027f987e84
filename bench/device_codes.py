"""Do a trained model's fake-quant activation codes depend on the device? Per-layer comparison.

    python bench/device_codes.py MODEL.pt [--data data/cifar10-jpeg.tar.xz] [--images 2000] [--device cuda]
                                 [--out DIR/device-codes.json]

Runs the model's float64 copy (sw/quant.exact_copy) on the CPU as the reference, then on --device
(float64 with and without quant.exact_accumulation, float32 inside fasttrain.exact_fp32) and on the
CPU in float32, recording every quantizer's codes: per layer, how many codes differ from the
reference, and the top-1 agreement. Measured on the H200 (1fc84fe plus the float64 rounding, before
quant.weight_stats; first version of this script), a
trained ResNet-20 (bench/models/r20-ppq-q200.pt): layers 0-4 equal, then 272,903 codes of layer 5
differ on the GPU in every precision, agreement 0.9765: a weight-code flip from the device's
float32 reduction order, not an activation precision effect (bench/results/device-codes-q200.json).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys

import torch

from apotflow.sw.checkpoint import load_checkpoint
from apotflow.sw.cifar import load_cifar10
from apotflow.sw.fasttrain import exact_fp32
from apotflow.sw.quant import QConv2d, exact_accumulation, exact_copy


def codes_and_top1(model, x, device, ctx, dtype, bs=500):
    e = exact_copy(model) if dtype == torch.float64 else copy.deepcopy(model)
    e = e.to(device)
    seen = []

    def record(quantize):
        def f(v):
            out = quantize(v)
            seen.append(out[1].detach().cpu())
            return out
        return f

    for mod in e.modules():
        if isinstance(mod, QConv2d) and mod.aq is not None:
            mod.aq.quantize = record(mod.aq.quantize)
    e.qpool.quantize = record(e.qpool.quantize)
    nb = (len(x) + bs - 1) // bs
    with torch.no_grad(), ctx():
        top1 = torch.cat([e(x[i:i + bs].to(device).to(dtype)).argmax(1).cpu() for i in range(0, len(x), bs)])
    per = len(seen) // nb
    return top1, [torch.cat([seen[b * per + k] for b in range(nb)]) for k in range(per)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="data/cifar10-jpeg.tar.xz")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "device-codes.json"))
    a = ap.parse_args(argv)
    model, _ = load_checkpoint(a.model)
    split = load_cifar10(a.data)
    x, y = split.x_test[:a.images], split.y_test[:a.images]
    ref_p, ref_c = codes_and_top1(model.eval(), x, "cpu", contextlib.nullcontext, torch.float64)
    res = {"model": a.model, "images": len(x), "cpu64_acc": float((ref_p == y).float().mean())}
    for name, dev, ctx, dt in [(f"{a.device}64_exact_accumulation", a.device, exact_accumulation, torch.float64),
                               (f"{a.device}64", a.device, contextlib.nullcontext, torch.float64),
                               (f"{a.device}32_exact_fp32", a.device, exact_fp32, torch.float32),
                               ("cpu32_exact_fp32", "cpu", exact_fp32, torch.float32)]:
        p, c = codes_and_top1(model, x, dev, ctx, dt)
        res[name] = {"acc": float((p == y).float().mean()), "agreement_with_cpu64": float((p == ref_p).float().mean()),
                     "codes_differing_per_layer": [int((u.long() != v.long()).sum()) for u, v in zip(c, ref_c)]}
        print(name, json.dumps(res[name]), flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
