"""Training schedules: fp, apot (QAT), fpgm (pruning), spq and ppq (DESIGN §4). Seeded, CPU.

Choices (ours, for digits-sized runs):
- SGD momentum 0.9, wd 5e-4 on weights; clipping thresholds alpha get wd 1e-4 and their own lr
  (activations lr x 1.0, weights lr x 0.2: the reference's 0.1 / 0.02 at base lr 0.1).
- One cosine schedule per phase instead of the paper's plateau rule (runs are a few epochs long).
- Before the first quantized epoch, activation alphas are calibrated to the 99.9th percentile of
  what each quantizer sees (8.0 is the CIFAR default and far too wide for digits).
- spq / fpgm: during an epoch pruned filters are masked in the forward (no loss gradient) but still
  updated by the optimizer (momentum, decay); at the epoch end GM is recomputed on full-precision
  weights and the pruned filters (and BN gamma/beta) are zeroed.
- ppq: float training; prune in stages (rate/2, then rate), fine-tuning after each with pruned
  filters frozen at zero; then QAT of the pruned model at lr/10.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401  (re-exported)
from .data import Split, load_digits_split
from .models import DigitsNet
from .prune import apply_masks, compute_masks, sparsity_report
from .quant import ActQuantizer, WeightQuantizer, set_quantize
from .recipe import CONFIG_VERSION, METHODS, Recipe  # noqa: F401  (re-exported)

Progress = Callable[[dict], None]


@dataclass
class TrainConfig(Recipe):
    """The digits recipe (CPU): sw.recipe.Recipe with its defaults."""

    batch_size: int = 64  # digits: 21 steps/epoch converge faster than 128


def _optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.SGD:
    a_w, a_a, rest = [], [], []
    for m in model.modules():
        if isinstance(m, WeightQuantizer):
            a_w.append(m.alpha)
        elif isinstance(m, ActQuantizer):
            a_a.append(m.alpha)
    ids = {id(p) for p in a_w + a_a}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [
        {"params": rest, "lr": lr, "weight_decay": cfg.wd},
        {"params": a_a, "lr": lr, "weight_decay": cfg.alpha_wd},
        {"params": a_w, "lr": lr * 0.2, "weight_decay": cfg.alpha_wd},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quant: bool) -> float:
    """Test accuracy with fake-quant on or off (restores the model's flag and mode)."""
    was_q, was_train = bool(getattr(model, "quantize", False)), model.training
    set_quantize(model, quant)
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    set_quantize(model, was_q)
    model.train(was_train)
    return acc


@torch.no_grad()
def calibrate_act_alphas(model: nn.Module, x: torch.Tensor, q: float = 0.999) -> None:
    """Set each ActQuantizer's alpha to the q-quantile of its float-mode input on x (BN in train
    mode, i.e. batch statistics, so an untrained net calibrates sensibly; buffers are restored)."""
    seen: dict[ActQuantizer, torch.Tensor] = {}

    def record(m: nn.Module, v: torch.Tensor) -> None:  # hooks must return None (else they replace)
        seen.setdefault(m, v.detach().flatten())

    # float mode bypasses the quantizers: hook the inputs of the layers that own them
    hooks = [
        m.register_forward_pre_hook(lambda m, a: record(m.aq, a[0]))
        for m in model.modules()
        if getattr(m, "aq", None) is not None
    ]
    was_q, was_train = bool(getattr(model, "quantize", False)), model.training
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    set_quantize(model, False)
    model.train()
    qpool = getattr(model, "qpool", None)
    if qpool is not None:  # DigitsNet: qpool sees relu(bn4(conv4(.)))
        hooks.append(model.bn4.register_forward_hook(lambda m, a, out: record(qpool, F.relu(out))))
    model(x)
    for h in hooks:
        h.remove()
    for m, v in seen.items():
        m.alpha.fill_(max(float(torch.quantile(v[:1_000_000], q)), 1e-3))
    model.load_state_dict({**buffers, **{k: v for k, v in model.state_dict().items() if "alpha" in k}})
    set_quantize(model, was_q)
    model.train(was_train)


@torch.no_grad()
def _clamp_alphas(model: nn.Module, floor: float = 1e-2) -> None:
    """Keep clipping thresholds positive (a negative alpha flips the level set)."""
    for m in model.modules():
        if isinstance(m, (ActQuantizer, WeightQuantizer)):
            m.alpha.clamp_(min=floor)


def _run_phase(
    model,
    data: Split,
    cfg: TrainConfig,
    phase: str,
    epochs: int,
    lr: float,
    quant: bool,
    frozen: bool,
    regm_rate: float | None,
    progress: Progress | None,
    log: list,
) -> None:
    """Train `epochs` epochs. frozen: re-zero pruned entries after every step. regm_rate: recompute
    GM masks at each epoch end (spq / fpgm)."""
    set_quantize(model, quant)
    opt = _optimizer(model, cfg, lr)
    xtr, ytr = data.x_train, data.y_train
    if cfg.train_subset:
        xtr, ytr = xtr[: cfg.train_subset], ytr[: cfg.train_subset]
    n, bs = len(xtr), cfg.batch_size
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + len(log))
    for ep in range(epochs):
        model.train()
        perm, total = torch.randperm(n, generator=gen), 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
            _clamp_alphas(model)
            if frozen:
                apply_masks(model, opt)
            total += loss.item() * len(idx)
        if regm_rate is not None:
            compute_masks(model, regm_rate)
        rec = {
            "phase": phase,
            "epoch": ep + 1,
            "loss": total / n,
            "test_acc": evaluate(model, data.x_test, data.y_test, quant),
            "quant": quant,
        }
        log.append(rec)
        if progress is not None:
            progress(rec)


def train(model: nn.Module, data: Split, cfg: TrainConfig, progress: Progress | None = None) -> dict:
    """Run cfg.method on model; returns {"model", "float_acc", "quant_acc", "history", ...}.

    float_acc: the final model with fake-quant off (low after QAT: BN statistics are quant-mode);
    pre_qat_float_acc (ppq): the pruned float model before QAT. The model is returned masked, in
    eval mode, fake-quant on for apot / spq / ppq."""
    torch.manual_seed(cfg.seed)
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(model, data, cfg, progress)
    finally:
        torch.use_deterministic_algorithms(was_det)


def _train(model: nn.Module, data: Split, cfg: TrainConfig, progress: Progress | None) -> dict:
    t0, log = time.perf_counter(), []
    m, rate, pre_qat = cfg.method, cfg.prune_rate, None
    calib_x = data.x_train[: cfg.train_subset or 512]
    if m == "fp":
        _run_phase(model, data, cfg, "fp", cfg.epochs, cfg.lr, False, False, None, progress, log)
    elif m == "fpgm":
        _run_phase(model, data, cfg, "fpgm", cfg.epochs, cfg.lr, False, False, rate, progress, log)
    elif m in ("apot", "spq"):
        calibrate_act_alphas(model, calib_x)
        regm = rate if m == "spq" else None
        _run_phase(model, data, cfg, m, cfg.epochs, cfg.lr, True, False, regm, progress, log)
    else:  # ppq
        _run_phase(model, data, cfg, "float", cfg.epochs, cfg.lr, False, False, None, progress, log)
        for k, r in enumerate((rate / 2, rate)):
            compute_masks(model, r, incremental=True)
            _run_phase(
                model,
                data,
                cfg,
                f"prune{k + 1}",
                cfg.stage_epochs,
                cfg.lr / 10,
                False,
                True,
                None,
                progress,
                log,
            )
        pre_qat = evaluate(model, data.x_test, data.y_test, False)
        calibrate_act_alphas(model, calib_x)
        _run_phase(model, data, cfg, "qat", cfg.qat_epochs, cfg.lr / 10, True, True, None, progress, log)
    apply_masks(model)
    quant = m in ("apot", "spq", "ppq")
    set_quantize(model, quant)
    model.eval()
    return {
        "model": model,
        "config": cfg.to_dict(),
        "float_acc": evaluate(model, data.x_test, data.y_test, False),
        "quant_acc": evaluate(model, data.x_test, data.y_test, True),
        "pre_qat_float_acc": pre_qat,
        "sparsity": sparsity_report(model),
        "history": log,
        "seconds": time.perf_counter() - t0,
    }


def train_digits(
    seed: int = 0, method: str = "ppq", progress: Progress | None = None, **overrides
) -> tuple[DigitsNet, dict]:
    """The default digits recipe (about a minute on 2 CPU cores). Returns (model, info)."""
    torch.manual_seed(seed)
    cfg = TrainConfig(method=method, seed=seed, **overrides)
    model = DigitsNet(w_bits=cfg.w_bits, a_bits=cfg.a_bits)
    info = train(model, load_digits_split(seed=seed), cfg, progress)
    return info.pop("model"), info
