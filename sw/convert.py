"""Trained (or random-weight) PyTorch models -> the integer network and its .apot file."""

from __future__ import annotations

import time
from pathlib import Path

from .intnet import IntNet, size_and_bops


class ConvertError(ValueError):
    """A model that cannot be exported as asked (one-line message)."""


def lower_model(model) -> tuple[IntNet, object]:
    """(IntNet, sliced model) of any zoo model; the IntNet's fp32 shapes are the unpruned layers'."""
    from .lower import lower
    from .prune import slice_pruned

    sliced = slice_pruned(model).eval()  # records the unpruned shapes, which lower() reports
    return lower(sliced), sliced


def export_checkpoint(checkpoint, output) -> Path:
    """A training checkpoint (model.pt) lowered and saved as ``output`` (.apot)."""
    from . import export
    from .checkpoint import load_checkpoint

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    model, meta = load_checkpoint(checkpoint)
    net, _ = lower_model(model)
    net.meta.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float))})
    return export.save(net, output)


def check_random(arch: str, prune: float, width_scale: float) -> None:
    """The arguments of :func:`export_random`, checked before any work."""
    from .randmodel import ARCHS

    if arch not in ARCHS:
        raise ConvertError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    if not 0.0 <= prune < 1.0:
        raise ConvertError(f"--prune must be in [0, 1), not {prune}")
    if not width_scale > 0:
        raise ConvertError(f"--width-scale must be positive, not {width_scale}")


def export_random(arch: str, output, prune: float = 0.3, seed: int = 0, width_scale: float = 1.0,
                  log=lambda msg: None) -> tuple[Path, dict]:
    """A pruned, quantized, calibrated model with random (seeded) weights, lowered and saved.

    Returns (path, info) with the achieved prune rate per group and the seconds each step took."""
    from . import export
    from .randmodel import random_model

    check_random(arch, prune, width_scale)
    t0 = time.perf_counter()
    log(f"building {arch} with random weights (prune {prune}, width x{width_scale:g}) ...")
    model = random_model(arch, prune, seed, width_scale)
    t1 = time.perf_counter()
    log(f"built in {t1 - t0:.1f} s; lowering to the integer network and saving ...")
    net, _ = lower_model(model)
    report = model.prune_report()
    net.meta.update({"model": arch, "random_weights": True, "seed": seed, "prune": prune,
                     "width_scale": width_scale, "prune_report": report})
    path = export.save(net, output)
    t2 = time.perf_counter()
    return path, {"model": arch, "path": str(path), "prune_report": report, "seconds_model": t1 - t0,
                  "seconds_lower_save": t2 - t1, **{k: v for k, v in size_and_bops(net).items() if k != "counting_rules"}}
