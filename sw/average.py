"""The weight average (``FastConfig.ema``, ours, off by default): an exponential moving average of the
weights, alphas and BatchNorm statistics over the last phase, updated after every step (``ema <- d ema +
(1-d) live``, inside the CUDA graph); the final model IS the average (fixed by the config, never chosen on
the test set). The live model's accuracy is kept beside it (``accuracy_live``, ``test_acc_live`` in the
history; its state is returned as ``live_state``), so one run also shows what the same run without the
average gives.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


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
