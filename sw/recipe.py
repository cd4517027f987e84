"""The training recipe (DESIGN §4): methods, bit widths, pruning, epochs, optimizer (``Recipe``), and the
configurations of the one trainer (sw/fasttrain.py): ``FastConfig`` (CIFAR, GPU: the paper's CIFAR defaults
and the trainer's knobs) and ``DigitsConfig`` (digits, CPU), each checked when it is made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .quant import SUPPORTED_BITS

CONFIG_VERSION = 1
METHODS = ("fp", "apot", "fpgm", "spq", "ppq")


@dataclass
class Recipe:
    method: str = "ppq"
    w_bits: int = 4
    a_bits: int = 4
    prune_rate: float = 0.3
    epochs: int = 30  # main phase (ppq: the float phase)
    stage_epochs: int = 5  # ppq: fine-tuning after each pruning stage
    qat_epochs: int = 20  # ppq: final QAT
    lr: float = 0.1
    wd: float = 5e-4
    alpha_wd: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    train_subset: int | None = None  # use only the first N training images (smoke tests)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        for name in ("w_bits", "a_bits"):
            if getattr(self, name) not in SUPPORTED_BITS:
                raise ValueError(f"{name} must be one of {SUPPORTED_BITS}, not {getattr(self, name)!r}")
        if not 0.0 <= self.prune_rate < 1.0:
            raise ValueError(f"prune_rate must be in [0, 1), not {self.prune_rate!r}")
        for name in ("epochs", "stage_epochs", "qat_epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        for name in ("lr", "wd", "alpha_wd"):
            if not getattr(self, name) >= 0 or (name == "lr" and self.lr == 0):
                raise ValueError(f"{name} must be {'> 0' if name == 'lr' else '>= 0'}, not {getattr(self, name)!r}")
        if not isinstance(self.seed, int):
            raise TypeError(f"seed must be an integer, not {self.seed!r}")

    def to_dict(self) -> dict:
        return {"version": CONFIG_VERSION, **asdict(self)}


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
    # ppq: the prune rate is reached in this many equal steps (the paper: 15% then 30%); 0: no pruning stages,
    # the QAT phase keeps the masks the model has (a fine-tune from float_init: apotflow import --finetune)
    prune_stages: int = 2
    qat_teacher: str = "float"  # ppq distillation in QAT: from the float phase, or "pruned": the last stage's end
    qat_wd: float | None = None  # ppq QAT weight decay (None: wd)
    calibrate: bool = True  # a quantizing phase starts by calibrating the activation alphas (False: keep the model's)
    ema: float = 0.0  # decay of the weight average over the last phase, which becomes the final model (0: off)
    cutout: int = 0  # side of the Cutout square of the augmentation, in pixels (0: off, the paper's crop + flip)
    augment: bool = True  # random crop (4-pixel zero padding) and horizontal flip of every training image
    # intra-op threads of a CPU run, whatever the machine has: how a reduction is split over threads changes its
    # float rounding, hence the model (so it is part of the recipe); unused on the GPU
    cpu_threads: int = 2
    # a training experiment outside the integer contract (sw/models/resnet.py; the run gets no integer model):
    # the bits of the shortcut's copy of the block input in the option-A CIFAR ResNets; 0: float; None: the
    # contract's A{a_bits} codes of conv_a's quantizer (every run before it)
    residual_bits: int | None = None

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
        if not isinstance(self.prune_stages, int) or self.prune_stages < 0:
            raise ValueError(f"prune_stages must be an integer >= 0, not {self.prune_stages!r}")
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
        if self.residual_bits is not None:
            from .models.resnet import check_residual_bits

            check_residual_bits(self.residual_bits, self.a_bits)
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
        if self.residual_bits is not None:
            raise ValueError(f"residual_bits={self.residual_bits} is an option of the CIFAR ResNets; the digits net has "
                             "no shortcut")
        super().__post_init__()
