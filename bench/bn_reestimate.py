"""Does re-estimating BatchNorm statistics after QAT move a trained model's fake-quant accuracy?

    python bench/bn_reestimate.py bench/models/r20-ppq-k3.pt ... [--images 12800]
                                  [--out bench/results/bn-reestimate.json]

For each model.pt: its test accuracy (fake-quant, fp32), then the same after every BatchNorm's running
statistics are reset and re-accumulated (cumulative average, quantizers on) over N training images,
once augmented as in training (random crop, flip) and once clean. Weights and alphas are untouched.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from recheck_run import model_files_parser, write_rows  # bench/ is on the path of a bench/ script

from apotflow.sw.checkpoint import load_checkpoint
from apotflow.sw.cifar import load_cifar10
from apotflow.sw.fastkernels import augment_epoch
from apotflow.sw.fasttrain import evaluate
from apotflow.sw.quant import set_quantize


@torch.no_grad()
def reestimate(model: torch.nn.Module, x: torch.Tensor, bs: int = 128) -> None:
    for b in model.modules():
        if isinstance(b, torch.nn.modules.batchnorm._BatchNorm):
            b.reset_running_stats()
            b.momentum = None  # cumulative average over every batch
    set_quantize(model, True)
    model.train()
    for i in range(0, len(x), bs):
        model(x[i:i + bs].float())


def main(argv=None) -> int:
    a = model_files_parser(__doc__, "bench/results/bn-reestimate.json", 12800,
                           "training images the statistics are taken over",
                           "model.pt files of quantized apotflow train runs").parse_args(argv)
    d = load_cifar10(a.data)
    rows = []
    for path in a.models:
        model, _ = load_checkpoint(path)
        t0 = time.perf_counter()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        row = {"model_file": path, "images": a.images, "as_trained": evaluate(model, d.x_test, d.y_test, True)}
        gen = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(d.x_train), generator=gen)[:a.images]
        for name, x in (("augmented", augment_epoch(d.x_train[pick], gen)), ("clean", d.x_train[pick])):
            model.load_state_dict(state)
            reestimate(model, x)
            row[f"reestimated_{name}"] = evaluate(model, d.x_test, d.y_test, True)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    write_rows(a.out, "bn_reestimate.py", argv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
