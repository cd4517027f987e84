"""The training recipe both trainers share (DESIGN §4): methods, bit widths, pruning, epochs, optimizer.

``sw.fasttrain.DigitsConfig`` (digits, CPU) and ``sw.fasttrain.FastConfig`` (CIFAR, GPU) are this recipe with
their own defaults; FastConfig adds the GPU trainer's knobs.
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
