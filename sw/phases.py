"""The schedule of a run: its phases (float, pruning stages, QAT; SPQ's one quantized, pruned phase), the
learning rate inside a phase, and the optimizer's parameter groups.

Schedule choices (ours where the paper leaves them open; all in sw.recipe.FastConfig):
- SGD momentum 0.9, wd 5e-4 on weights; alphas wd 1e-4, lr x1 (activations) and x0.2 (weights).
- One cosine schedule per phase with a linear warm-up of ``warmup_epochs`` (fixed budgets); the paper's
  SPQ rule (x0.9 after 3 epochs without train-loss improvement) is ``schedule="plateau"`` (sw/fasttrain.py).
- Activation alphas are calibrated (99.9th percentile, float mode) before the first quantized epoch
  (``calibrate=False``: kept as the model has them, e.g. post-training calibrated).
- spq/fpgm: pruned filters masked in the forward but still updated; GM recomputed and the pruned
  filters zeroed at every epoch end. ppq: float phase, prune rate/2 then rate (``prune_stages`` equal
  steps, 2 by default; stages fine-tuned with pruned entries frozen at zero after every step), then QAT at
  qat_lr.
- ``qat_wd``: the weight decay of ppq's QAT phase (default: ``wd``, as every other phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from .quant import ActQuantizer, WeightQuantizer
from .recipe import FastConfig


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    quant: bool
    frozen: bool = False  # re-zero pruned entries after every step
    regm: float | None = None  # recompute GM masks at every epoch end with this rate
    prune_before: float | None = None  # incremental GM pruning to this rate before the phase
    calibrate: bool = False
    teacher: bool = False  # ppq: the float phase, whose end state becomes the teacher (float.pt); not distilled
    hands_teacher: bool = False  # ppq, qat_teacher="pruned": this phase's end state is the next phases' teacher
    wd: float | None = None  # this phase's weight decay (None: cfg.wd)
    extra: dict = field(default_factory=dict)


def phases(cfg: FastConfig) -> list[Phase]:
    m, r = cfg.method, cfg.prune_rate
    if m == "fp":
        return [Phase("fp", cfg.epochs, cfg.lr, False)]
    if m == "fpgm":
        return [Phase("fpgm", cfg.epochs, cfg.lr, False, regm=r)]
    if m == "apot":
        return [Phase("apot", cfg.epochs, cfg.lr, True, calibrate=cfg.calibrate)]
    if m == "spq":
        return [Phase("spq", cfg.epochs, cfg.lr, True, regm=r, calibrate=cfg.calibrate)]
    k = cfg.prune_stages
    # r * i / k rounded: 0.3 * 1 / 3 is 0.09999999999999999 in floats, which would floor 10 filters to 0
    stages = [Phase(f"prune{i}", cfg.stage_epochs, cfg.lr / 10, False, frozen=True, prune_before=round(r * i / k, 12),
                    hands_teacher=i == k and cfg.qat_teacher == "pruned") for i in range(1, k + 1)]
    return [Phase("float", cfg.epochs, cfg.lr, False, teacher=True), *stages,
            Phase("qat", cfg.qat_epochs, cfg.qat_lr, True, frozen=True, calibrate=cfg.calibrate, wd=cfg.qat_wd)]


def lr_at(cfg: FastConfig, ph: Phase, step: int, total: int) -> float:
    warm = int(cfg.warmup_epochs * total / max(ph.epochs, 1))
    if step < warm:
        return ph.lr * (step + 1) / warm
    t = (step - warm) / max(total - warm, 1)
    return ph.lr * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(model: nn.Module, cfg: FastConfig, quant: bool, wd: float | None = None) -> list[dict]:
    a_w = [m.alpha for m in model.modules() if isinstance(m, WeightQuantizer)] if quant else []
    a_a = [m.alpha for m in model.modules() if isinstance(m, ActQuantizer)] if quant else []
    ids = {id(m.alpha) for m in model.modules() if isinstance(m, (WeightQuantizer, ActQuantizer))}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest, "wd": cfg.wd if wd is None else wd, "lr_mult": 1.0},
            {"params": a_a, "wd": cfg.alpha_wd, "lr_mult": 1.0},
            {"params": a_w, "wd": cfg.alpha_wd, "lr_mult": 0.2}]
