"""Data-parallel scaling under torchrun: images/s of the training step and the whole PPQ pipeline's time.

    python bench/ddp_scaling.py --gpus 1 2 4 8 [--model resnet56] [--per-gpu-batch 128] [--steps 200]
        [--pipeline --data data/cifar10-jpeg.tar.xz [--train-args "..."]] [--out bench/results/ddp-scaling.json]

For each world size N it starts ``torchrun --standalone --nproc-per-node N`` twice:

- the step: N ranks run the W4/A4 QAT step of sw/fasttrain.Stepper (30% GM-pruned masks, SyncBatchNorm,
  the flat gradient all-reduce; ``--mode graph``: the whole step one CUDA graph per rank) at a FIXED
  per-GPU batch (global batch = per-GPU batch x N, weak scaling) on random pixels already on the device;
  ``steps`` timed steps after the warm-up (compilation, capture and ``--warmup`` steps; reported apart). The time of
  a step is the slowest rank's. ``efficiency`` = images/s at N / (N x images/s at 1);
- ``--pipeline``: ``apotflow train --model M --method ppq --data D --out OUT/N ...`` (``--train-args``
  appended; the global batch is the recipe's unless the arguments say otherwise), timed from the launch
  to the end of the last rank; its result.json gives the fake-quant and integer accuracy of that size.

N = 1 runs under torchrun too, with one process: the plain single-process trainer (no process group).
Without CUDA the ranks are CPU processes over gloo (eager steps): a smoke test of this script, never a
GPU figure (``device`` says so in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def step_worker(a: argparse.Namespace) -> None:
    """One rank of the step benchmark (run by torchrun); rank 0 writes the row to ``a.row``."""
    from apotflow.sw import distributed as ddp
    from apotflow.sw.cifar_run import build_model
    from apotflow.sw.fastkernels import GraphSGD, fast_kernels
    from apotflow.sw.fasttrain import FastConfig, Phase, Stepper, calibrate_for_qat, param_groups
    from apotflow.sw.prune import compute_masks
    from apotflow.sw.quant import set_quantize

    world = ddp.from_env()
    started = ddp.init(world)
    dev = ddp.device(world)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    cfg = FastConfig(method="ppq", batch_size=a.per_gpu_batch * world.size, step_mode=a.mode)
    model = build_model(a.model).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    compute_masks(model, 0.3)
    g = torch.Generator(device=dev).manual_seed(1 + world.rank)
    x = torch.randint(0, 256, (a.per_gpu_batch, 3, 32, 32), device=dev, dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (a.per_gpu_batch,), device=dev, generator=g)
    calibrate_for_qat(model, x)
    ddp.broadcast_alphas(model, world)
    set_quantize(model, True)
    model.train()
    opt = GraphSGD(param_groups(model, cfg, True), cfg.momentum)
    opt.set_lr(0.01)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with fast_kernels(model), ddp.sync_batchnorm(model, world):
        st = Stepper(model, cfg, Phase("bench", 1, 0.01, True, frozen=True), opt, print, world=world)
        t0 = time.perf_counter()
        st(x, y)  # compile + capture
        for _ in range(a.warmup):
            st(x, y)
        sync()
        warm = time.perf_counter() - t0
        ddp.barrier(world)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            st(x, y)
        sync()
        dt = torch.tensor(time.perf_counter() - t0, dtype=torch.float64, device=dev)
    if world.active:
        torch.distributed.all_reduce(dt, op=torch.distributed.ReduceOp.MAX)  # the slowest rank's time
    dt = float(dt)
    if world.main:
        gb = cfg.batch_size
        row = {"world_size": world.size, "mode": st.mode, "per_gpu_batch": a.per_gpu_batch, "global_batch": gb,
               "steps": a.steps, "images_per_s": a.steps * gb / dt, "ms_per_step": 1e3 * dt / a.steps,
               "warmup_seconds": warm}
        Path(a.row).write_text(json.dumps(row))
    if started:
        torch.distributed.destroy_process_group()


def torchrun(n: int, args: list[str], log) -> float:
    """Run ``torchrun --standalone --nproc-per-node n ARGS``; its wall time (s). Raises on failure."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *args]
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu (gloo, eager): a smoke test of the script, not a GPU figure"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8], help="world sizes (ranks per host)")
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--per-gpu-batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps after the compile + capture step")
    ap.add_argument("--mode", default="graph", choices=["graph", "compile", "eager"])
    ap.add_argument("--pipeline", action="store_true", help="also time the whole apotflow train --method ppq run")
    ap.add_argument("--data", help="CIFAR-10 for --pipeline (batches folder or the JPEG tarball)")
    ap.add_argument("--train-args", default="", help="more apotflow train arguments for --pipeline (one string)")
    ap.add_argument("--runs", default="runs/ddp-scaling", help="--pipeline: run folders OUT/<N>gpu")
    ap.add_argument("--out", default="bench/results/ddp-scaling.json")
    ap.add_argument("--worker-row", help=argparse.SUPPRESS)  # internal: this process is one rank of the step
    a = ap.parse_args(argv)
    if a.worker_row:
        a.row = a.worker_row
        step_worker(a)
        return 0
    if a.pipeline and not a.data:
        ap.error("--pipeline needs --data")
    if torch.cuda.is_available() and max(a.gpus) > torch.cuda.device_count():
        ap.error(f"--gpus {max(a.gpus)} but this host has {torch.cuda.device_count()} GPU(s)")
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    out = {"device": device_name(), "gpus_on_host": torch.cuda.device_count(), "torch": torch.__version__,
           "model": a.model, "command": "python " + " ".join(shlex.quote(c) for c in sys.argv),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),  # torchrun sets 1 for N > 1 unless given
           "step": [], "pipeline": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.gpus:
            row = Path(tmp) / f"step-{n}.json"
            torchrun(n, [__file__, "--worker-row", str(row), "--model", a.model, "--per-gpu-batch",
                         str(a.per_gpu_batch), "--steps", str(a.steps), "--warmup", str(a.warmup), "--mode", a.mode], log)
            r = json.loads(row.read_text())
            base = out["step"][0]["images_per_s"] if out["step"] and out["step"][0]["world_size"] == 1 else None
            r["efficiency"] = r["images_per_s"] / (n * base) if base else (1.0 if n == 1 else None)
            out["step"].append(r)
            log(json.dumps(r))
    for n in a.gpus if a.pipeline else []:
        run_dir = Path(a.runs) / f"{n}gpu"
        args = ["-m", "apotflow.sim.cli", "train", "--model", a.model, "--method", "ppq", "--data", a.data,
                "--out", str(run_dir), *shlex.split(a.train_args)]
        wall = torchrun(n, args, log)
        res = json.loads((run_dir / "result.json").read_text())
        p = {"world_size": n, "launch_to_end_seconds": wall, "wall_seconds": res["wall_seconds"],
             "train_seconds": res["train_seconds"], "resumes": res.get("resumes", 0),
             "accuracy": res["accuracy"], "accuracy_int": res.get("accuracy_int"),
             "global_batch": res["config"]["batch_size"], "result": str(run_dir / "result.json")}
        out["pipeline"].append(p)
        log(json.dumps(p))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
