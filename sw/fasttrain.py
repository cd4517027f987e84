"""The trainer of every network: fp / apot / fpgm / spq / ppq (DESIGN §4), resumable. The CIFAR nets train
on the GPU (graphed steps), the digits net on the CPU (eager steps: the same phases, loop, calibration,
evaluation and checkpoint; ``DigitsConfig``). This file is the loop; the rest of the trainer, by concern:

- sw/recipe.py: the configurations (``FastConfig``, ``DigitsConfig``), checked when made;
- sw/phases.py: the schedule (the phases of each method, the learning rate, the parameter groups);
- sw/step.py: one training step (eager, compiled, or captured in a CUDA graph), the distillation loss;
- sw/average.py: the weight average (``ema``);
- sw/evaluation.py: the exact fake-quant test accuracy and the calibration of the activation alphas.

CPU runs are deterministic whatever the machine's thread count: the loop runs with the recipe's
``cpu_threads`` intra-op threads (2; digits 1) and torch's deterministic algorithms (a seed gives the same
model bit for bit; a run resumed from its checkpoint ends with the same model as one that never stopped).

The data set lives on the device as uint8; each epoch is augmented at once (random crop with 4-pixel zero
padding, flip: one gather; ``cutout=s``, ours, off by default: one s x s square of every training image
zeroed after the crop and flip, sw/fastkernels.augment_epoch). Epoch = floor(50000 / batch) full batches
(static shapes for the graph); the tail is dropped. Evaluation is the exact fp32 fake-quant model.

Distillation teacher (``distill > 0``, sw/step.py): a frozen float model in eval mode: for ppq its own float
phase (saved as ``float.pt`` beside the checkpoint), otherwise a checkpoint given to
``train_fast(teacher=...)`` (CLI ``--teacher``). ppq with ``qat_teacher="pruned"``: the QAT phase distils
from the last pruning stage's end state instead (the float model with the same filters removed as the
student's).

Data-parallel (``torchrun --nproc-per-node N``, sw/distributed.py): the same recipe, the global batch still
``batch_size``, split evenly over the ranks; gradients averaged right after backward, BatchNorm over the
global batch, masks and clipping thresholds broadcast from rank 0, checkpoint written by rank 0. One
process (no process group) runs exactly the code above.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time

import torch
from torch import nn

from . import distributed as ddp
from .average import WeightAverage
from .evaluation import calibrate_alphas, calibration_images, evaluate, exact_fp32
from .fastkernels import GraphSGD, augment_apply, augment_draws, augment_epoch, fast_kernels
from .phases import Phase, lr_at, param_groups, phases
from .prune import apply_masks, compute_masks, sparsity_report
from .quant import set_quantize
from .recipe import METHODS, QAT_TEACHERS, STEP_MODES, DigitsConfig, FastConfig
from .step import Stepper, mask_pairs

# the trainer's names as they were before it was split by concern (callers import them from here)
__all__ = ["METHODS", "QAT_TEACHERS", "STEP_MODES", "DigitsConfig", "FastConfig", "Phase", "Stepper", "WeightAverage",
           "calibrate_alphas", "calibrate_for_qat", "cpu_determinism", "evaluate", "exact_fp32", "lr_at", "mask_pairs", "param_groups",
           "phases", "train_fast"]


def _cpu_copy(state: dict) -> dict:
    """A state dict's tensors copied to the CPU (a snapshot: later training does not change it)."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _save(path, blob: dict) -> None:
    from .atomic import write_atomic
    from .checkpoint import torch_bytes

    write_atomic(path, torch_bytes(blob))


# Knobs the float phase does not see: residual_bits (sw/models/resnet.py) acts only in fake-quant mode, and
# its model's state dict is the float model's.
FLOAT_PHASE_BLIND = frozenset({"residual_bits"})


def float_phase_view(d: dict) -> dict:
    """``d`` (an architecture or a recipe) without the ``FLOAT_PHASE_BLIND`` keys: what a float phase depends on."""
    return {k: v for k, v in d.items() if k not in FLOAT_PHASE_BLIND}


def _same_run(saved: dict, now: dict, blind: frozenset = frozenset()) -> bool:
    """Same configuration, but for the knobs that do not change the result (and those in ``blind``). A key
    the saved one lacks (a checkpoint from before that knob existed) counts as its default."""
    skip = {"step_mode", "eval_every", *blind}
    saved = {**FastConfig().to_dict(), **saved}
    return {k: v for k, v in saved.items() if k not in skip} == {k: v for k, v in now.items() if k not in skip}


def _frozen_teacher(like: nn.Module, state: dict, quant: bool, dev: torch.device, channels_last: bool) -> nn.Module:
    t = copy.deepcopy(like)
    t.load_state_dict(state)
    set_quantize(t, quant)
    t.to(dev)
    if channels_last and dev.type == "cuda":
        t.to(memory_format=torch.channels_last)
    return t.eval().requires_grad_(False)


@contextlib.contextmanager
def cpu_determinism(dev: torch.device, threads: int):
    """On the CPU: ``threads`` intra-op threads and deterministic algorithms inside the block (restored after
    it). The model then depends on the seed, torch's version and the CPU's instruction set (``cpu_capability``
    in the summary), not on the machine's thread count or an OMP_NUM_THREADS setting."""
    if dev.type != "cpu":
        yield
        return
    was, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(was)
        torch.use_deterministic_algorithms(det)


def calibrate_for_qat(model: nn.Module, xtr: torch.Tensor) -> None:
    """A quantizing phase's start: the activation alphas from 1,024 training images of every class, in
    fake-quant mode on the batch's BatchNorm statistics, two passes (``sw.evaluation.calibrate_alphas``)."""
    calibrate_alphas(model, calibration_images(xtr), passes=2, batch_stats=True)


def train_fast(model: nn.Module, data, cfg: FastConfig, ckpt: str | None = None, progress=None,
               log=print, teacher: nn.Module | None = None, float_init: dict | None = None,
               save_float: bool = True) -> dict:
    """Run cfg.method on `model` (moved to the GPU if there is one). ``ckpt``: written atomically after
    every epoch; if it exists (same config) training resumes from it; ppq also writes its float model to
    ``float.pt`` beside it (unless ``save_float`` is False), from which a ppq run whose checkpoint is gone
    resumes after its float phase (``_own_float``). ``teacher``: the distillation teacher
    (cfg.distill > 0; ppq defaults to its own float phase). ``float_init``: ppq only, a float state dict
    that replaces the float phase (reuse one float training across pruning / QAT recipes). Returns a
    summary dict; ``train_seconds`` adds up the training time of every process that worked on the
    checkpoint (``resumes``: how many took it over).

    Under torchrun (an initialised process group, sw/distributed.py) every rank calls this with the same
    arguments; rank 0 alone writes ``ckpt`` and ``float.pt``; every rank returns the same model and figures."""
    world = ddp.current()
    dev = ddp.device(world)
    with cpu_determinism(dev, cfg.cpu_threads):
        return _train_fast(model, data, cfg, ckpt, progress, log, teacher, float_init, save_float, world, dev)


def _training_set(data, cfg: FastConfig, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels on ``dev``; ``train_subset``: that many, spread over the set (all classes)."""
    xtr, ytr = data.x_train.to(dev), data.y_train.to(dev)
    n_all = len(xtr)
    if cfg.train_subset:
        keep = torch.linspace(0, n_all - 1, min(cfg.train_subset, n_all), device=dev).long()
        xtr, ytr = xtr[keep], ytr[keep]
    return xtr, ytr


def _start(model: nn.Module, cfg: FastConfig, ckpt: str | None, float_init: dict | None, phs: list[Phase],
           world: ddp.World, log) -> dict:
    """Where the run starts: the checkpoint's state if ``ckpt`` exists (its model loaded), else the start
    (ppq with ``float_init``: after the float phase). The keys are train.ckpt's (but cfg, model, arch):
    history, phase and epoch (the next to train), opt (the optimizer's state), seconds (the training time so
    far), plateau, teacher (ppq: the teacher's state), resumes, ema (the weight average), pre_qat (ppq: the
    float-mode accuracy just before QAT)."""
    st = {"history": [], "phase": 0, "epoch": 0, "opt": None, "seconds": 0.0, "plateau": {}, "teacher": None,
          "resumes": 0, "ema": None, "pre_qat": None}
    blob = None  # under torchrun, rank 0 reads the checkpoint and hands it to every rank
    if ckpt and world.main and os.path.exists(ckpt):
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob = ddp.broadcast_object(blob, world)
    if blob is not None:
        if not _same_run(blob["cfg"], cfg.to_dict()):
            raise ValueError(f"{ckpt}: checkpoint of a different configuration; remove it or change --out")
        model.load_state_dict(blob["model"])
        st.update({k: blob[k] for k in ("history", "phase", "epoch", "opt", "seconds")})
        st.update(plateau=blob.get("plateau", {}), teacher=blob.get("teacher"), ema=blob.get("ema"),
                  pre_qat=blob.get("pre_qat"), resumes=blob.get("resumes", 0) + 1)
        log(f"resuming from {ckpt}: phase {phs[st['phase']].name if st['phase'] < len(phs) else 'done'}, "
            f"epoch {st['epoch']}")
        return st
    if float_init is not None and cfg.method != "ppq":
        raise ValueError(f"float_init replaces ppq's float phase; method is {cfg.method}")
    if float_init is not None:
        log("float phase skipped: starting from the given float model")
    elif ckpt and cfg.method == "ppq" and os.path.exists(float_path(ckpt)):
        float_init, st["history"] = _own_float(model, cfg, float_path(ckpt), world, log)
    if float_init is not None:
        model.load_state_dict(float_init)
        st.update(teacher=_cpu_copy(float_init), phase=1)
    return st


def float_path(ckpt: str) -> str:
    """Where a ppq run with checkpoint ``ckpt`` writes its float model: float.pt beside it."""
    return os.path.join(os.path.dirname(ckpt) or ".", "float.pt")


def _own_float(model: nn.Module, cfg: FastConfig, path: str, world: ddp.World, log) -> tuple[dict, list]:
    """(float state, history) of a ppq run whose train.ckpt is gone (a checkpoint that could not be kept past
    the float phase), from the float.pt its float phase wrote: started from it as from a float_init, the run
    holds the model and teacher that checkpoint would have held at the phase boundary (the next phase builds
    its own optimizer, and every epoch's data order comes from the seed, so the later phases train as in a
    run that never stopped); the float phase's history is its last test accuracy alone (``resumed_from``:
    float.pt), its training time is not counted. A float.pt of another configuration (its meta's ``cfg``; one
    written before float.pt kept it: the architecture) is refused, but for ``FLOAT_PHASE_BLIND`` knobs: the
    float phase of a run that differs from this one only in them is this run's float phase."""
    from .checkpoint import read_torch_file

    blob = read_torch_file(path) if world.main else None
    blob = ddp.broadcast_object(blob, world)
    meta = (blob.get("meta") or {}) if isinstance(blob, dict) else {}
    if not isinstance(blob, dict) or float_phase_view(blob.get("arch") or {}) != float_phase_view(model.arch_config()) or \
            ("cfg" in meta and not _same_run(meta["cfg"], cfg.to_dict(), FLOAT_PHASE_BLIND)):
        raise ValueError(f"{path}: the float model of another configuration and no train.ckpt beside it; remove "
                         "it or change --out")
    log(f"no checkpoint: resuming after the float phase from {path} (its test accuracy {meta.get('test_acc')})")
    hist = [{"phase": "float", "test_acc": meta["test_acc"], "resumed_from": "float.pt"}] if "test_acc" in meta else []
    return blob["state_dict"], hist


def _phase_teacher(cfg: FastConfig, ph: Phase, teacher: nn.Module | None, t_state: dict | None, model: nn.Module,
                   dev: torch.device) -> nn.Module | None:
    """The frozen model phase ``ph`` distils from (None: no distillation in it): the given teacher, or (ppq,
    and for QAT with qat_teacher="pruned") the state the teacher phase handed on."""
    if cfg.distill == 0 or ph.teacher:
        return None
    if teacher is not None and not (ph.quant and cfg.qat_teacher == "pruned"):
        return _frozen_teacher(teacher, teacher.state_dict(), bool(getattr(teacher, "quantize", False)), dev,
                               cfg.channels_last)
    if t_state is not None:
        return _frozen_teacher(model, t_state, False, dev, cfg.channels_last)
    raise ValueError(f"distill={cfg.distill} needs a teacher (method {cfg.method}: give one)")


def _plateau_step(plateau: dict, loss: float) -> None:
    """schedule="plateau" (the paper's SPQ rule): lr x0.9 after 3 epochs without a lower training loss."""
    if loss < plateau["best"]:
        plateau.update(best=loss, bad=0)
    else:
        plateau["bad"] += 1
        if plateau["bad"] >= 3:
            plateau.update(lr=plateau["lr"] * 0.9, bad=0)


def _train_fast(model, data, cfg, ckpt, progress, log, teacher, float_init, save_float, world, dev) -> dict:

    from .checkpoint import save_checkpoint

    torch.manual_seed(cfg.seed)
    model.to(dev)
    if cfg.channels_last and dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    xtr, ytr = _training_set(data, cfg, dev)
    xte, yte = data.x_test, data.y_test
    n, bs = len(xtr), cfg.batch_size
    steps = n // bs
    if steps == 0:
        raise ValueError(f"batch size {bs} is larger than the training set ({n})")
    b = ddp.per_rank_batch(bs, world.size)  # this rank's share of every batch
    phs = phases(cfg)
    st = _start(model, cfg, ckpt, float_init, phs, world, log)
    hist, plateau = st["history"], st["plateau"]
    avg = None  # cfg.ema: the average over the last phase
    ddp.broadcast_state(model, world)  # every rank starts from rank 0's model
    t0 = time.perf_counter() - st["seconds"]
    for pi in range(st["phase"], len(phs)):
        ph = phs[pi]
        e0 = st["epoch"] if pi == st["phase"] else 0
        if e0 == 0:
            if ph.prune_before is not None:
                compute_masks(model, ph.prune_before, incremental=True)
                ddp.broadcast_masks(model, world)
            if ph.quant and pi > 0 and st["pre_qat"] is None:
                st["pre_qat"] = evaluate(model, xte, yte, False)
            if ph.calibrate:
                calibrate_for_qat(model, xtr)
                ddp.broadcast_alphas(model, world)
            plateau = {"lr": ph.lr, "best": float("inf"), "bad": 0}
        if ph.frozen:
            apply_masks(model)
        set_quantize(model, ph.quant)
        model.train()
        opt = GraphSGD(param_groups(model, cfg, ph.quant, ph.wd), cfg.momentum, cfg.nesterov)
        if st["opt"] is not None and pi == st["phase"] and e0 > 0:
            opt.load_state_dict(st["opt"])
        total = ph.epochs * steps
        tmodel = _phase_teacher(cfg, ph, teacher, st["teacher"], model, dev)
        if cfg.ema > 0 and pi == len(phs) - 1:
            avg = WeightAverage(model, cfg.ema, st["ema"] if pi == st["phase"] and e0 > 0 else None)
        with fast_kernels(model) as fk, (fast_kernels(tmodel) if tmodel is not None else contextlib.nullcontext()), \
                ddp.sync_batchnorm(model, world):
            stepper = Stepper(model, cfg, ph, opt, log, tmodel, avg, world, tuple(xtr.shape[1:]))
            for ep in range(e0, ph.epochs):
                te = time.perf_counter()
                gen = torch.Generator(device=dev).manual_seed(cfg.seed * 100_003 + pi * 1_000 + ep)
                if not world.active:
                    xa = augment_epoch(xtr, gen, cutout=cfg.cutout) if cfg.augment else xtr
                    perm = torch.randperm(n, device=dev, generator=gen)
                else:  # the same draws on every rank; each augments only its share of every global batch
                    draws = augment_draws(xtr, gen, cutout=cfg.cutout) if cfg.augment else None
                    own = ddp.rank_share(torch.randperm(n, device=dev, generator=gen), steps, bs, world)
                    xa, ya = augment_apply(xtr, draws, own) if cfg.augment else xtr[own], ytr[own]
                stepper.loss_sum.zero_()
                for k in range(steps):
                    if cfg.schedule == "cosine":
                        opt.set_lr(lr_at(cfg, ph, ep * steps + k, total))
                    elif k == 0:
                        opt.set_lr(plateau["lr"])
                    if not world.active:
                        idx = perm[k * bs:(k + 1) * bs]
                        stepper(xa[idx], ytr[idx])
                    else:
                        stepper(xa[k * b:(k + 1) * b], ya[k * b:(k + 1) * b])
                loss = float(ddp.mean_(stepper.loss_sum, world)) / steps
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                ep_s = time.perf_counter() - te
                if ph.regm is not None:
                    compute_masks(model, ph.regm)
                    ddp.broadcast_masks(model, world)
                if cfg.schedule == "plateau":
                    _plateau_step(plateau, loss)
                rec = {"phase": ph.name, "epoch": ep + 1, "loss": loss, "epoch_seconds": ep_s,
                       "images_per_s": steps * bs / ep_s, "step_mode": stepper.mode}
                if (ep + 1) % cfg.eval_every == 0 or ep + 1 == ph.epochs:
                    with fk.suspended():
                        if avg is not None:
                            rec["test_acc_live"] = evaluate(model, xte, yte, ph.quant)
                        # test_acc: the model the run yields (with cfg.ema, the average)
                        with avg.swapped() if avg is not None else contextlib.nullcontext():
                            rec["test_acc"] = evaluate(model, xte, yte, ph.quant)
                    model.train()
                hist.append(rec)
                if progress is not None:
                    progress(rec)
                if (ph.teacher or ph.hands_teacher) and ep + 1 == ph.epochs:
                    st["teacher"] = _cpu_copy(model.state_dict())
                    if ph.teacher and ckpt and save_float and world.main:
                        with fk.suspended():
                            save_checkpoint(model, float_path(ckpt), {"phase": ph.name, "test_acc": rec.get("test_acc"),
                                                                      "cfg": cfg.to_dict()})
                if ckpt and world.main:
                    nxt = (pi, ep + 1) if ep + 1 < ph.epochs else (pi + 1, 0)
                    _save(ckpt, {"cfg": cfg.to_dict(), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                 "opt": opt.state_dict(), "phase": nxt[0], "epoch": nxt[1], "history": hist,
                                 "plateau": plateau, "seconds": time.perf_counter() - t0, "teacher": st["teacher"],
                                 "resumes": st["resumes"], "ema": avg.state() if avg is not None else None,
                                 "pre_qat": st["pre_qat"],
                                 "arch": model.arch_config() if hasattr(model, "arch_config") else None})
                if ckpt:
                    ddp.barrier(world)  # the other ranks wait until rank 0 has written this epoch's checkpoint
            del stepper, tmodel
    quant, pruned = cfg.method in ("apot", "spq", "ppq"), cfg.method in ("fpgm", "spq", "ppq")
    acc_live, live_state = _final_model(model, cfg, quant, pruned, avg, st["ema"], xte, yte)
    return {"config": cfg.to_dict(), "history": hist, "train_seconds": time.perf_counter() - t0,
            "resumes": st["resumes"], "accuracy_live": acc_live, "live_state": live_state,
            "accuracy": evaluate(model, xte, yte, quant), "pre_qat_float_acc": st["pre_qat"],
            "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "world_size": world.size, "cpu_threads": cfg.cpu_threads if dev.type == "cpu" else None,
            "cpu_capability": torch.backends.cpu.get_cpu_capability() if dev.type == "cpu" else None,
            "sparsity": sparsity_report(model)}


def _final_model(model: nn.Module, cfg: FastConfig, quant: bool, pruned: bool, avg: WeightAverage | None,
                 ema_state: dict | None, xte: torch.Tensor, yte: torch.Tensor) -> tuple[float | None, dict | None]:
    """The model the run yields, in eval mode (pruned entries zero, quantized as its method): with cfg.ema the
    average installed. Returns the live model's accuracy and state (cfg.ema; else None, None)."""
    if pruned:
        apply_masks(model)
    set_quantize(model, quant)
    model.eval()
    if cfg.ema == 0:
        return None, None
    if avg is None:  # resumed after the last epoch: the checkpoint holds the average
        avg = WeightAverage(model, cfg.ema, ema_state)
    acc_live = evaluate(model, xte, yte, quant)
    live_state = _cpu_copy(model.state_dict())
    avg.install()
    if pruned:
        apply_masks(model)  # spq/fpgm: the average of a filter pruned late is not zero
    return acc_live, live_state
