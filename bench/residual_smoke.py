"""CPU smoke run of ``residual_bits`` (issue 22's finer residual stream): the three arms train and evaluate
end to end. NOT a measurement of the hypothesis (a hundred-odd training images, a few steps, a test subset).

    python bench/residual_smoke.py --out bench/results/residual-smoke.json [--train-subset 128] [--test-every 20]

Each arm is ResNet-20 ppq from a committed float model (bench/models/r20-ppq-s80-float.pt, as ``--float-init``)
on ``--train-subset`` training images of the JPEG CIFAR-10 copy (batch 64, 1 epoch per pruning stage, 2 QAT
epochs, distill 0.9, the CPU trainer: eager steps) and every ``--test-every``-th test image (all classes):
residual_bits unset (the integer contract: lowered, integer accuracy and agreement), 8 and 0 (fake-quant
accuracy, float64 copy, as ``apotflow train`` reports it; the lowering's refusal recorded). The library's
trainer is called directly (``apotflow train`` always evaluates the whole test split, minutes per evaluation
on the CPU); the JSON holds the recipe, each arm's figures and its history.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ARMS = {"a4": None, "res8": 8, "resf": 0}


def main(argv: list[str] | None = None) -> int:
    from apotflow.sw.checkpoint import load_checkpoint
    from apotflow.sw.cifar import load_cifar10
    from apotflow.sw.cifar_run import build_model, fakequant_accuracy, integer_eval
    from apotflow.sw.fasttrain import FastConfig, train_fast
    from apotflow.sw.lower import lower

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the summary JSON to write")
    ap.add_argument("--data", default="data/cifar10-jpeg.tar.xz")
    ap.add_argument("--float-init", default="bench/models/r20-ppq-s80-float.pt")
    ap.add_argument("--train-subset", type=int, default=128)
    ap.add_argument("--test-every", type=int, default=20)
    a = ap.parse_args(argv)
    full = load_cifar10(a.data)
    data = replace(full, x_test=full.x_test[::a.test_every], y_test=full.y_test[::a.test_every])
    init = load_checkpoint(a.float_init)[0].state_dict()
    arms = {}
    for name, bits in ARMS.items():
        cfg = FastConfig(method="ppq", train_subset=a.train_subset, batch_size=64, stage_epochs=1, qat_epochs=2,
                         distill=0.9, nesterov=True, residual_bits=bits)
        torch.manual_seed(cfg.seed)
        model = build_model("resnet20", cfg.w_bits, cfg.a_bits, bits)
        t0 = time.perf_counter()
        info = train_fast(model, data, cfg, None, log=lambda *m: None, float_init=init, save_float=False)
        arm = {"residual_bits": bits, "train_seconds": round(info["train_seconds"], 1),
               "accuracy_fp32": info["accuracy"], "pre_qat_float_acc": info["pre_qat_float_acc"],
               "history": [{k: h.get(k) for k in ("phase", "epoch", "loss", "test_acc")} for h in info["history"]]}
        model.cpu()
        if bits is None:
            ie = integer_eval(model, data.x_test, data.y_test, "cpu")
            arm.update(accuracy=ie["accuracy_fakequant_check"], accuracy_int=ie["accuracy_int"], agreement=ie["agreement"])
        else:
            arm.update(accuracy=fakequant_accuracy(model, data.x_test, data.y_test, "cpu"), accuracy_int=None)
            try:
                lower(model)
                arm["lowering"] = "lowered (unexpected)"
            except ValueError as e:
                arm["lowering"] = f"{type(e).__name__}: {e}"
        arm["seconds"] = round(time.perf_counter() - t0, 1)
        arms[name] = arm
        print(f"{name}: fake-quant {arm['accuracy']:.4f}, integer {arm['accuracy_int']}, {arm['seconds']} s", flush=True)
    Path(a.out).write_text(json.dumps({
        "what": "SMOKE RUN (CPU): the three residual_bits arms train and evaluate end to end; "
                f"{a.train_subset} training images, 2 QAT epochs and {len(data.y_test)} test images say nothing "
                "about the hypothesis (docs/experiments.md, 'A finer residual stream')",
        "command": "python bench/residual_smoke.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "recipe": {"model": "resnet20", "float_init": a.float_init, "data": a.data, "train_subset": a.train_subset,
                   "test_images": len(data.y_test), "test_every": a.test_every, "batch_size": 64, "stage_epochs": 1,
                   "qat_epochs": 2, "distill": 0.9, "nesterov": True, "device": info["device"],
                   "cpu_threads": info["cpu_threads"], "torch": torch.__version__},
        "arms": arms}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
