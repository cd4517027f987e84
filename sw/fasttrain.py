"""The trainer of every network: fp / apot / fpgm / spq / ppq (DESIGN §4), resumable. The CIFAR nets train
on the GPU (graphed steps), the digits net on the CPU (eager steps: the same phases, loop, calibration,
evaluation and checkpoint; ``DigitsConfig``).

CPU runs are deterministic whatever the machine's thread count: the loop runs with the recipe's
``cpu_threads`` intra-op threads (2; digits 1) and torch's deterministic algorithms (a seed gives the same
model bit for bit; a run resumed from its checkpoint ends with the same model as one that never stopped).

Speed (DESIGN §9: launch overhead and unfused quantizer kernels are the cost): the data set lives on
the GPU as uint8; each epoch is augmented at once (random crop with 4-pixel zero padding, flip: one
gather); the training kernels of sw/fastkernels.py (exact APoT threshold search, dense masks) are
compiled with torch.compile and the WHOLE step -- forward, backward, SGD, mask and alpha upkeep -- is
captured in one CUDA graph and replayed (``step_mode="graph"``; "compile" and "eager" are fallbacks).
bf16 autocast and channels_last for training; evaluation is the exact fp32 fake-quant model.

Schedule choices (ours where the paper leaves them open; all in FastConfig):
- SGD momentum 0.9, wd 5e-4 on weights; alphas wd 1e-4, lr x1 (activations) and x0.2 (weights).
- One cosine schedule per phase with a linear warm-up of ``warmup_epochs`` (fixed budgets); the paper's
  SPQ rule (x0.9 after 3 epochs without train-loss improvement) is ``schedule="plateau"``.
- Epoch = floor(50000 / batch) full batches (static shapes for the graph); the tail is dropped.
- Activation alphas are calibrated (99.9th percentile, float mode) before the first quantized epoch.
- spq/fpgm: pruned filters masked in the forward but still updated; GM recomputed and the pruned
  filters zeroed at every epoch end. ppq: float phase, prune rate/2 then rate (``prune_stages`` equal
  steps, 2 by default; stages fine-tuned with pruned entries frozen at zero after every step), then QAT at
  qat_lr.
- Distillation (ours, off by default: ``distill=0`` is the paper's plain cross-entropy): with
  ``distill=a`` the loss is ``(1-a) CE + a T^2 KL(teacher/T || student/T)``. The teacher is a frozen
  float model in eval mode: for ppq its own float phase (saved as ``float.pt`` beside the checkpoint),
  otherwise a checkpoint given to ``train_fast(teacher=...)`` (CLI ``--teacher``). ppq with
  ``qat_teacher="pruned"``: the QAT phase distils from the last pruning stage's end state instead (the
  float model with the same filters removed as the student's).
- ``qat_wd``: the weight decay of ppq's QAT phase (default: ``wd``, as every other phase).
- ``ema=d`` (ours, off by default): an exponential moving average of the weights, alphas and BatchNorm
  statistics over the last phase, updated after every step (``ema <- d ema + (1-d) live``, inside the
  CUDA graph); the final model IS the average (fixed by the config, never chosen on the test set). The
  live model's accuracy is kept beside it (``accuracy_live``, ``test_acc_live`` in the history; its state
  is returned as ``live_state``), so one run also shows what the same run without the average gives.
- ``cutout=s`` (ours, off by default): one s x s square of every training image zeroed after the crop and
  flip (sw/fastkernels.augment_epoch), in every phase this run trains.

Data-parallel (``torchrun --nproc-per-node N``, sw/distributed.py): the same recipe, the global batch still
``batch_size``, split evenly over the ranks; gradients averaged right after backward, BatchNorm over the
global batch, masks and clipping thresholds broadcast from rank 0, checkpoint written by rank 0. One
process (no process group) runs exactly the code above.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as ddp
from .fastkernels import GraphSGD, augment_apply, augment_draws, augment_epoch, fast_kernels
from .prune import apply_masks, compute_masks, masked_params, sparsity_report
from .quant import ActQuantizer, WeightQuantizer, _QLayer, exact_accumulation, set_quantize
from .recipe import METHODS, Recipe  # noqa: F401  (METHODS re-exported)

STEP_MODES = ("graph", "compile", "eager")
QAT_TEACHERS = ("float", "pruned")


@dataclass
class FastConfig(Recipe):
    """The CIFAR recipe (GPU): sw.recipe.Recipe with the paper's CIFAR defaults, plus this trainer's knobs."""

    epochs: int = 200  # main phase (ppq: the float phase)
    stage_epochs: int = 20  # ppq: fine-tuning after each pruning stage
    qat_epochs: int = 50  # ppq: final QAT
    batch_size: int = 128
    qat_lr: float = 0.01  # ppq QAT (the paper's 0.01); stages use lr / 10
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"  # cosine | plateau
    warmup_epochs: float = 0.0
    bf16: bool = True
    channels_last: bool = True
    step_mode: str = "graph"  # graph | compile | eager
    eval_every: int = 10  # epochs between test evaluations (and every phase end)
    distill: float = 0.0  # weight of the distillation loss (0: off, the paper's recipe)
    distill_temp: float = 4.0
    prune_stages: int = 2  # ppq: the prune rate is reached in this many equal steps (the paper: 15% then 30%)
    qat_teacher: str = "float"  # ppq distillation in QAT: from the float phase, or "pruned": the last stage's end
    qat_wd: float | None = None  # ppq QAT weight decay (None: wd)
    ema: float = 0.0  # decay of the weight average over the last phase, which becomes the final model (0: off)
    cutout: int = 0  # side of the Cutout square of the augmentation, in pixels (0: off, the paper's crop + flip)
    augment: bool = True  # random crop (4-pixel zero padding) and horizontal flip of every training image
    # intra-op threads of a CPU run, whatever the machine has: how a reduction is split over threads changes its
    # float rounding, hence the model (so it is part of the recipe); unused on the GPU
    cpu_threads: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {STEP_MODES}, not {self.step_mode!r}")
        if self.schedule not in ("cosine", "plateau"):
            raise ValueError(f"schedule must be cosine or plateau, not {self.schedule!r}")
        if not isinstance(self.eval_every, int) or self.eval_every <= 0:
            raise ValueError(f"eval_every must be a positive integer, not {self.eval_every!r}")
        if not self.qat_lr > 0:
            raise ValueError(f"qat_lr must be > 0, not {self.qat_lr!r}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1], not {self.distill!r}")
        if not self.distill_temp > 0:
            raise ValueError(f"distill_temp must be > 0, not {self.distill_temp!r}")
        if not isinstance(self.prune_stages, int) or self.prune_stages <= 0:
            raise ValueError(f"prune_stages must be a positive integer, not {self.prune_stages!r}")
        if self.qat_teacher not in QAT_TEACHERS:
            raise ValueError(f"qat_teacher must be one of {QAT_TEACHERS}, not {self.qat_teacher!r}")
        if self.qat_wd is not None and not self.qat_wd >= 0:
            raise ValueError(f"qat_wd must be >= 0, not {self.qat_wd!r}")
        if self.qat_wd is not None and self.method != "ppq":
            raise ValueError(f"qat_wd is the weight decay of ppq's QAT phase; method is {self.method}")
        if not isinstance(self.cutout, int) or not 0 <= self.cutout <= 32:
            raise ValueError(f"cutout must be an integer side in pixels in [0, 32], not {self.cutout!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), not {self.ema!r}")
        if not isinstance(self.cpu_threads, int) or self.cpu_threads <= 0:
            raise ValueError(f"cpu_threads must be a positive integer, not {self.cpu_threads!r}")
        if self.cutout and not self.augment:
            raise ValueError(f"cutout={self.cutout} is part of the augmentation, which augment=False turns off")
        if self.qat_teacher == "pruned" and (self.method != "ppq" or self.distill == 0):
            raise ValueError("qat_teacher='pruned' is ppq's QAT distillation: it needs method ppq and distill > 0 "
                             f"(method {self.method}, distill {self.distill})")


@dataclass
class DigitsConfig(FastConfig):
    """The digits recipe (CPU, one thread): the shared recipe's epochs (sw.recipe.Recipe),
    batch 64 (21 steps per epoch converge faster than 128), no augmentation (a flipped digit is another
    digit), a test evaluation after every epoch; ppq's QAT at lr / 10 (``qat_lr`` None)."""

    epochs: int = Recipe.epochs
    stage_epochs: int = Recipe.stage_epochs
    qat_epochs: int = Recipe.qat_epochs
    batch_size: int = 64
    qat_lr: float | None = None
    eval_every: int = 1
    augment: bool = False
    step_mode: str = "eager"
    cpu_threads: int = 1  # the net is small: a second thread only waits (and burns a core doing it)

    def __post_init__(self) -> None:
        if self.qat_lr is None:
            self.qat_lr = self.lr / 10
        super().__post_init__()


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
        return [Phase("apot", cfg.epochs, cfg.lr, True, calibrate=True)]
    if m == "spq":
        return [Phase("spq", cfg.epochs, cfg.lr, True, regm=r, calibrate=True)]
    k = cfg.prune_stages
    # r * i / k rounded: 0.3 * 1 / 3 is 0.09999999999999999 in floats, which would floor 10 filters to 0
    stages = [Phase(f"prune{i}", cfg.stage_epochs, cfg.lr / 10, False, frozen=True, prune_before=round(r * i / k, 12),
                    hands_teacher=i == k and cfg.qat_teacher == "pruned") for i in range(1, k + 1)]
    return [Phase("float", cfg.epochs, cfg.lr, False, teacher=True), *stages,
            Phase("qat", cfg.qat_epochs, cfg.qat_lr, True, frozen=True, calibrate=True, wd=cfg.qat_wd)]


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


class WeightAverage:
    """``FastConfig.ema``: the moving average of a model's floating-point state (parameters, alphas,
    BatchNorm statistics), updated in place (capturable in a CUDA graph). ``saved``: a ``state()`` to resume."""

    def __init__(self, model: nn.Module, decay: float, saved: dict | None = None) -> None:
        sd = model.state_dict()
        self.names = [k for k, v in sd.items() if v.is_floating_point()]
        self.live = [sd[k] for k in self.names]  # share the model's storage
        if saved is not None:  # empty_like: the live tensors' strides (channels_last), which the graph captured
            self.avg = [torch.empty_like(t).copy_(saved[k]) for k, t in zip(self.names, self.live)]
        else:
            self.avg = [t.detach().clone() for t in self.live]
        self.weight = 1.0 - decay

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.avg, self.live, self.weight)

    @contextlib.contextmanager
    def swapped(self):
        """The model holds the average inside the block, its own state again after it."""
        keep = [t.clone() for t in self.live]
        torch._foreach_copy_(self.live, self.avg)
        try:
            yield
        finally:
            torch._foreach_copy_(self.live, keep)

    @torch.no_grad()
    def install(self) -> None:
        torch._foreach_copy_(self.live, self.avg)

    def state(self) -> dict:
        return {k: a.detach().cpu() for k, a in zip(self.names, self.avg)}


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


@contextlib.contextmanager
def exact_fp32():
    """fp32 convolutions and matmuls without TF32 (cuDNN allows TF32 convolutions by default, whose 10-bit
    mantissa moves activations across quantizer thresholds: the fake-quant model would drift from the
    integer model), and the integer accumulations of the quantized layers in float64
    (``quant.exact_accumulation``: cuDNN's Winograd algorithms are not exact on integers)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with exact_accumulation():
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quant: bool, bs: int = 1000) -> float:
    """Exact fake-quant (or float) test accuracy: original kernels, fp32 without TF32, eval mode."""
    was_train = model.training
    set_quantize(model, quant)
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    with exact_fp32():
        for i in range(0, len(x), bs):
            xb = x[i:i + bs].to(dev).float()
            correct += int((model(xb).argmax(1) == y[i:i + bs].to(dev)).sum())
    model.train(was_train)
    return correct / len(x)


@torch.no_grad()
def calibrate_alphas(model: nn.Module, x: torch.Tensor, q: float = 0.999) -> None:
    """Each ActQuantizer's alpha := q-quantile of what it sees (float mode, BN batch statistics).
    The pooled quantizer (qpool) sees the last block's output."""
    seen: dict[nn.Module, torch.Tensor] = {}

    def record(q: nn.Module, v: torch.Tensor) -> None:  # hooks must return None (else they replace)
        seen.setdefault(q, v.detach().flatten())

    hooks = [m.register_forward_pre_hook(lambda m, a: record(m.aq, a[0]))
             for m in model.modules() if isinstance(m, _QLayer) and m.aq is not None]
    qpool = getattr(model, "qpool", None)  # ResNet: sees the last block's output; DigitsNet: relu(bn4(conv4(.)))
    if qpool is not None and hasattr(model, "blocks"):
        hooks.append(model.blocks[-1].register_forward_hook(lambda m, a, out: record(qpool, out)))
    elif qpool is not None and hasattr(model, "bn4"):
        hooks.append(model.bn4.register_forward_hook(lambda m, a, out: record(qpool, F.relu(out))))
    qfc = getattr(model, "qfc", None)  # VGG: sees the fc's input
    if qfc is not None:
        hooks.append(model.fc.register_forward_pre_hook(lambda m, a: record(qfc, a[0])))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    set_quantize(model, False)
    model.train()
    model(x.float())
    for h in hooks:
        h.remove()
    model.load_state_dict(state)
    gen = torch.Generator(device=x.device).manual_seed(0)  # its own draws: a resumed run calibrates the same
    for m, v in seen.items():
        v = v[torch.randperm(len(v), device=v.device, generator=gen)[:1_000_000]] if len(v) > 1_000_000 else v
        m.alpha.fill_(max(float(torch.quantile(v.float(), q)), 1e-2))


# ----------------------------------------------------------------------------- the loop
def _cpu_copy(state: dict) -> dict:
    """A state dict's tensors copied to the CPU (a snapshot: later training does not change it)."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _save(path, blob: dict) -> None:
    from .atomic import write_atomic
    from .checkpoint import torch_bytes

    write_atomic(path, torch_bytes(blob))


def _same_run(saved: dict, now: dict) -> bool:
    """Same configuration, but for the knobs that do not change the result. A key the saved one lacks
    (a checkpoint from before that knob existed) counts as its default."""
    skip = {"step_mode", "eval_every"}
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


def train_fast(model: nn.Module, data, cfg: FastConfig, ckpt: str | None = None, progress=None,
               log=print, teacher: nn.Module | None = None, float_init: dict | None = None,
               save_float: bool = True) -> dict:
    """Run cfg.method on `model` (moved to the GPU if there is one). ``ckpt``: written atomically after
    every epoch; if it exists (same config) training resumes from it; ppq also writes its float model to
    ``float.pt`` beside it (unless ``save_float`` is False). ``teacher``: the distillation teacher
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


def _train_fast(model, data, cfg, ckpt, progress, log, teacher, float_init, save_float, world, dev) -> dict:
    import os

    from .checkpoint import save_checkpoint

    torch.manual_seed(cfg.seed)
    model.to(dev)
    if cfg.channels_last and dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    xtr, ytr = data.x_train.to(dev), data.y_train.to(dev)
    n_all = len(xtr)
    if cfg.train_subset:
        keep = torch.linspace(0, n_all - 1, min(cfg.train_subset, n_all), device=dev).long()  # all classes
        xtr, ytr = xtr[keep], ytr[keep]
    xte, yte = data.x_test, data.y_test
    n, bs = len(xtr), cfg.batch_size
    steps = n // bs
    if steps == 0:
        raise ValueError(f"batch size {bs} is larger than the training set ({n})")
    b = ddp.per_rank_batch(bs, world.size)  # this rank's share of every batch
    phs = phases(cfg)
    hist, start_phase, start_epoch, opt_state, spent, plateau, resumes = [], 0, 0, None, 0.0, {}, 0
    t_state = None  # ppq: the float phase's final state, the teacher of the later phases
    ema_state, avg, acc_live, live_state = None, None, None, None  # cfg.ema: the average over the last phase
    pre_qat = None  # ppq: the float-mode accuracy just before QAT (kept in the checkpoint)
    blob = None  # under torchrun, rank 0 reads the checkpoint and hands it to every rank
    if ckpt and world.main and os.path.exists(ckpt):
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob = ddp.broadcast_object(blob, world)
    if blob is not None:
        if not _same_run(blob["cfg"], cfg.to_dict()):
            raise ValueError(f"{ckpt}: checkpoint of a different configuration; remove it or change --out")
        model.load_state_dict(blob["model"])
        hist, start_phase, start_epoch = blob["history"], blob["phase"], blob["epoch"]
        opt_state, spent, plateau = blob["opt"], blob["seconds"], blob.get("plateau", {})
        t_state, ema_state, pre_qat = blob.get("teacher"), blob.get("ema"), blob.get("pre_qat")
        resumes = blob.get("resumes", 0) + 1
        log(f"resuming from {ckpt}: phase {phs[start_phase].name if start_phase < len(phs) else 'done'}, "
            f"epoch {start_epoch}")
    elif float_init is not None:
        if cfg.method != "ppq":
            raise ValueError(f"float_init replaces ppq's float phase; method is {cfg.method}")
        model.load_state_dict(float_init)
        t_state = _cpu_copy(float_init)
        start_phase = 1
        log("float phase skipped: starting from the given float model")
    ddp.broadcast_state(model, world)  # every rank starts from rank 0's model
    t0 = time.perf_counter() - spent
    for pi in range(start_phase, len(phs)):
        ph = phs[pi]
        e0 = start_epoch if pi == start_phase else 0
        if e0 == 0:
            if ph.prune_before is not None:
                compute_masks(model, ph.prune_before, incremental=True)
                ddp.broadcast_masks(model, world)
            if ph.quant and pi > 0 and pre_qat is None:
                pre_qat = evaluate(model, xte, yte, False)
            if ph.calibrate:
                calibrate_alphas(model, xtr[:1024])
                ddp.broadcast_alphas(model, world)
            plateau = {"lr": ph.lr, "best": float("inf"), "bad": 0}
        if ph.frozen:
            apply_masks(model)
        set_quantize(model, ph.quant)
        model.train()
        opt = GraphSGD(param_groups(model, cfg, ph.quant, ph.wd), cfg.momentum, cfg.nesterov)
        if opt_state is not None and pi == start_phase and e0 > 0:
            opt.load_state_dict(opt_state)
        total = ph.epochs * steps
        tmodel = None
        if cfg.distill > 0 and not ph.teacher:
            if teacher is not None and not (ph.quant and cfg.qat_teacher == "pruned"):
                tmodel = _frozen_teacher(teacher, teacher.state_dict(), bool(getattr(teacher, "quantize", False)),
                                         dev, cfg.channels_last)
            elif t_state is not None:
                tmodel = _frozen_teacher(model, t_state, False, dev, cfg.channels_last)
            else:
                raise ValueError(f"distill={cfg.distill} needs a teacher (method {cfg.method}: give one)")
        if cfg.ema > 0 and pi == len(phs) - 1:
            avg = WeightAverage(model, cfg.ema, ema_state if pi == start_phase and e0 > 0 else None)
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
                    if loss < plateau["best"]:
                        plateau.update(best=loss, bad=0)
                    else:
                        plateau["bad"] += 1
                        if plateau["bad"] >= 3:
                            plateau.update(lr=plateau["lr"] * 0.9, bad=0)
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
                    t_state = _cpu_copy(model.state_dict())
                    if ph.teacher and ckpt and save_float and world.main:
                        with fk.suspended():
                            save_checkpoint(model, os.path.join(os.path.dirname(ckpt) or ".", "float.pt"),
                                            {"phase": ph.name, "test_acc": rec.get("test_acc")})
                if ckpt and world.main:
                    nxt = (pi, ep + 1) if ep + 1 < ph.epochs else (pi + 1, 0)
                    _save(ckpt, {"cfg": cfg.to_dict(), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                 "opt": opt.state_dict(), "phase": nxt[0], "epoch": nxt[1], "history": hist,
                                 "plateau": plateau, "seconds": time.perf_counter() - t0, "teacher": t_state,
                                 "resumes": resumes, "ema": avg.state() if avg is not None else None, "pre_qat": pre_qat,
                                 "arch": model.arch_config() if hasattr(model, "arch_config") else None})
                if ckpt:
                    ddp.barrier(world)  # the other ranks wait until rank 0 has written this epoch's checkpoint
            del stepper, tmodel
    quant, pruned = cfg.method in ("apot", "spq", "ppq"), cfg.method in ("fpgm", "spq", "ppq")
    if pruned:
        apply_masks(model)
    set_quantize(model, quant)
    model.eval()
    if cfg.ema > 0:
        if avg is None:  # resumed after the last epoch: the checkpoint holds the average
            avg = WeightAverage(model, cfg.ema, ema_state)
        acc_live = evaluate(model, xte, yte, quant)
        live_state = _cpu_copy(model.state_dict())
        avg.install()
        if pruned:
            apply_masks(model)  # spq/fpgm: the average of a filter pruned late is not zero
    return {"config": cfg.to_dict(), "history": hist, "train_seconds": time.perf_counter() - t0, "resumes": resumes,
            "accuracy_live": acc_live, "live_state": live_state, "accuracy": evaluate(model, xte, yte, quant),
            "pre_qat_float_acc": pre_qat, "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "world_size": world.size, "cpu_threads": cfg.cpu_threads if dev.type == "cpu" else None,
            "cpu_capability": torch.backends.cpu.get_cpu_capability() if dev.type == "cpu" else None,
            "sparsity": sparsity_report(model)}
