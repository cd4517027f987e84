"""W4/A4 QAT training speed of ResNet-20 at batch 128 (images/s), per step mode, on the GPU.

    python bench/train_speed.py [--steps 300] [--modes graph compile eager] [--out bench/results/train_speed.json]

Times `steps` full training steps (forward, backward, SGD, alpha clamp, mask upkeep) after the warm-up
(compilation and graph capture excluded, reported separately), on random pixels already on the GPU.
The whole-pipeline wall time is the ``wall_seconds`` of a ``apotflow train --method ppq`` result.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from apotflow.sw.fastkernels import GraphSGD, fast_kernels
from apotflow.sw.fasttrain import FastConfig, Phase, Stepper, calibrate_for_qat, param_groups
from apotflow.sw.models.resnet import CifarResNet
from apotflow.sw.prune import compute_masks
from apotflow.sw.quant import set_quantize


def bench(mode: str, steps: int, bs: int, quant: bool = True) -> dict:
    torch.manual_seed(0)
    cfg = FastConfig(method="ppq", batch_size=bs, step_mode=mode)
    model = CifarResNet(20).cuda().to(memory_format=torch.channels_last)
    compute_masks(model, 0.3)
    x = torch.randint(0, 256, (bs, 3, 32, 32), device="cuda", dtype=torch.uint8)
    y = torch.randint(0, 10, (bs,), device="cuda")
    if quant:
        calibrate_for_qat(model, x)
    set_quantize(model, quant)
    model.train()
    ph = Phase("bench", 1, 0.01, quant, frozen=True)
    opt = GraphSGD(param_groups(model, cfg, quant), 0.9)
    opt.set_lr(0.01)
    with fast_kernels(model):
        st = Stepper(model, cfg, ph, opt, print)
        t0 = time.perf_counter()
        st(x, y)  # compile + capture
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        for _ in range(10):
            st(x, y)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            st(x, y)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return {"mode": st.mode, "requested": mode, "quant": quant, "batch": bs, "steps": steps,
            "images_per_s": steps * bs / dt, "ms_per_step": 1e3 * dt / steps, "warmup_seconds": warm}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--modes", nargs="*", default=["graph", "compile", "eager"])
    ap.add_argument("--float", action="store_true", help="also time the float (unquantized) step")
    ap.add_argument("--out", default="bench/results/train_speed.json")
    a = ap.parse_args()
    rows = []
    for m in a.modes:
        for q in ([True, False] if a.float else [True]):
            r = bench(m, a.steps, a.batch, q)
            print(json.dumps(r), flush=True)
            rows.append(r)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "model": "resnet20 (30% GM-pruned masks)",
           "w_bits": 4, "a_bits": 4, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
