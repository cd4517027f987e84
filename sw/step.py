"""One training step, and its capture in a CUDA graph.

Speed (DESIGN §9: launch overhead and unfused quantizer kernels are the cost): the training kernels of
sw/fastkernels.py (exact APoT threshold search, dense masks) are compiled with torch.compile and the WHOLE
step -- forward, backward, SGD, mask and alpha upkeep, the weight average -- is captured in one CUDA graph
and replayed (``step_mode="graph"``; "compile" and "eager" are fallbacks; the CPU runs eager steps). bf16
autocast and channels_last for training.

Distillation (ours, off by default: ``distill=0`` is the paper's plain cross-entropy): with ``distill=a``
the loss is ``(1-a) CE + a T^2 KL(teacher/T || student/T)``, the teacher a frozen model in eval mode
(sw/fasttrain.py chooses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as ddp
from .average import WeightAverage
from .fastkernels import GraphSGD
from .phases import Phase
from .prune import masked_params
from .quant import ActQuantizer, WeightQuantizer
from .recipe import FastConfig


def mask_pairs(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(params, float keep-masks) so that ``_foreach_mul_`` re-zeroes every pruned entry."""
    ps, ms = [], []
    for group in model.prune_groups():
        for conv, bn in group:
            keep = conv.filter_mask.to(conv.weight.dtype)
            for p in masked_params(conv, bn):
                ps.append(p)
                ms.append(keep.view((-1,) + (1,) * (p.dim() - 1)).expand_as(p).contiguous())
    return ps, ms


class Stepper:
    """One training step on static (x, y) buffers: eager, compiled, or compiled + CUDA graph."""

    def __init__(self, model: nn.Module, cfg: FastConfig, ph: Phase, opt: GraphSGD, log,
                 teacher: nn.Module | None = None, avg: WeightAverage | None = None,
                 world: ddp.World = ddp.SINGLE, shape: tuple[int, ...] = (3, 32, 32)) -> None:
        self.model, self.cfg, self.opt, self.log, self.avg, self.world = model, cfg, opt, log, avg, world
        self.params = [p for g in opt.groups for p in g["params"]]
        dev = next(model.parameters()).device
        bs = ddp.per_rank_batch(cfg.batch_size, world.size)
        self.x = torch.zeros(bs, *shape, device=dev)  # one image's shape: (3, 32, 32) CIFAR, (1, 8, 8) digits
        if cfg.channels_last and dev.type == "cuda":
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.zeros(bs, dtype=torch.long, device=dev)
        self.loss_sum = torch.zeros((), device=dev)
        self.alphas = [m.alpha for m in model.modules() if isinstance(m, (WeightQuantizer, ActQuantizer))] \
            if ph.quant else []
        self.mps, self.mms = mask_pairs(model) if ph.frozen else ([], [])
        self.fwd, self.tfwd = model, teacher
        self.mode = cfg.step_mode if dev.type == "cuda" else "eager"
        if self.mode in ("graph", "compile"):
            try:
                self.fwd = torch.compile(model)
                self.tfwd = torch.compile(teacher) if teacher is not None else None
            except Exception as e:  # no compiler on this machine
                log(f"torch.compile unavailable ({type(e).__name__}: {e}); eager steps")
                self.mode, self.fwd, self.tfwd = "eager", model, teacher
        self.graph = None

    def _loss(self, logits: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, self.y)
        a, T = self.cfg.distill, self.cfg.distill_temp
        if self.tfwd is None or a == 0:
            return ce
        with torch.no_grad():
            t = self.tfwd(self.x).float()
        kl = F.kl_div(F.log_softmax(logits.float() / T, 1), F.log_softmax(t / T, 1), reduction="batchmean",
                      log_target=True)
        return (1 - a) * ce + a * T * T * kl

    def _step(self) -> None:
        with torch.autocast("cuda", torch.bfloat16, enabled=self.cfg.bf16 and self.x.is_cuda):
            loss = self._loss(self.fwd(self.x))
        loss.backward()
        if self.world.active:  # the flat gradient all-reduce (captured with the step on the GPU)
            ddp.average_gradients(self.params, self.world)
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            if self.alphas:
                torch._foreach_clamp_min_(self.alphas, 1e-2)
            if self.mps:
                torch._foreach_mul_(self.mps, self.mms)
            if self.avg is not None:
                self.avg.update()
            self.loss_sum += loss.detach()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self.x.copy_(xb)
        self.y.copy_(yb)
        if self.mode != "graph":
            return self._step()
        if self.graph is None:
            self._capture()
        if self.graph is None:
            return self._step()
        self.graph.replay()

    def _capture(self) -> None:
        """Warm up (compiles) on a side stream, then capture one step. Warm-up steps are real steps."""
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream().wait_stream(s)
        try:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                self._step()
            self.graph = g
        except Exception as e:
            self.log(f"CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0]}); compiled steps")
            self.mode = "compile"
