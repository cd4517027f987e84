"""Checkpoints: state_dict + architecture + metadata, written atomically (sw/atomic.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from .atomic import write_atomic
from .models import CifarResNet
from .quant import set_quantize
from .zoo import ZOO, model_class

CHECKPOINT_VERSION = 1


def arch_class(name: str):
    """The class that rebuilds a checkpoint's architecture: a zoo model's, or CifarResNet for a ResNet
    variant outside the zoo (its arch_config holds depth, shortcut and conv_bias); None if unknown."""
    if name in ZOO:
        return model_class(name)
    return CifarResNet if name.startswith("resnet") else None


def torch_bytes(obj) -> bytes:
    """``torch.save``'s bytes of ``obj`` (written with sw.atomic.write_atomic or published with a run's set)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def checkpoint_bytes(model: nn.Module, meta: dict | None = None) -> bytes:
    """The bytes of a checkpoint {version, arch, quantize, state_dict, meta}; ``meta``: plain Python values."""
    return torch_bytes({
        "version": CHECKPOINT_VERSION,
        "arch": model.arch_config(),
        "quantize": bool(getattr(model, "quantize", False)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    })


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write checkpoint_bytes(model, meta) to ``path`` atomically."""
    return write_atomic(path, checkpoint_bytes(model, meta))


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or rebuilt (one line)."""


def read_torch_file(path: str | os.PathLike, error: type[Exception] | None = None, what: str = "checkpoint"):
    """``torch.load`` of a file of tensors (weights only: no pickled code) on the CPU. Raises
    FileNotFoundError, or ``error`` (CheckpointError by default) in one line for a file torch cannot read
    (truncated, not a torch file, pickled code)."""
    error = error or CheckpointError
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise error(f"{path}: not a readable {what} ({type(e).__name__}: {msg})") from None


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode with its saved masks and quantize flag, meta). Raises FileNotFoundError or
    CheckpointError (not a checkpoint, another version, an unknown architecture, weights that do not fit
    the architecture it names)."""
    blob = read_torch_file(path)
    if not isinstance(blob, dict) or not {"arch", "state_dict"} <= set(blob):
        raise CheckpointError(f"{path}: not an apotflow checkpoint (no arch / state_dict): a bare state_dict or "
                              "another tool's file")
    if blob.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"Unsupported checkpoint version {blob.get('version')!r} in {path}")
    arch = dict(blob["arch"])
    name = arch.pop("name", None)
    cls = arch_class(str(name))
    if cls is None:
        raise CheckpointError(f"Unknown architecture {name!r} in {path}; known: {sorted(ZOO)}")
    try:
        model = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})
        model.load_state_dict(blob["state_dict"])
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit the {name} it names ({first})") from None
    set_quantize(model, blob["quantize"])
    return model.eval(), blob["meta"]
