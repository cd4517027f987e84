"""The golden integer model: the IntNet contract (sw/intnet.py) executed in PyTorch int64.

Every tensor is an int64 tensor; no float is touched. The RTL must equal this bit for bit, and the
functional ISA interpreter (apotflow.hw.isa.run_program) must equal it too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .intnet import IntNet, Op


def _conv_int(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """Exact int64 convolution by im2col and an integer matmul (torch has no int64 conv2d)."""
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad else x
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = [xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            for ky in range(k) for kx in range(k)]
    patches = torch.stack(cols, dim=2).reshape(n, cin * k * k, ho * wo)  # (N, Cin*k*k, P)
    out = torch.matmul(w.reshape(cout, cin * k * k).unsqueeze(0), patches)  # int64 matmul
    return out.reshape(n, cout, ho, wo)


def _max_int(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """max over the non-zero weights j of w[c, j] * patch_j (the products a sum would add)."""
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad else x
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = [xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            for ky in range(k) for kx in range(k)]
    patches = torch.stack(cols, dim=2).reshape(n, cin * k * k, ho * wo)
    wf = w.reshape(cout, cin * k * k)
    out = torch.full((n, cout, ho * wo), torch.iinfo(torch.int64).min, dtype=torch.int64)
    for c in range(cout):
        nz = torch.nonzero(wf[c]).flatten()
        if len(nz):
            out[:, c] = (wf[c, nz].view(1, -1, 1) * patches[:, nz]).amax(dim=1)
    return out.reshape(n, cout, ho, wo)


def op_accumulator(op: Op, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    bias = torch.from_numpy(np.asarray(op.bias, dtype=np.int64)).view(1, -1, 1, 1)
    if op.reduce == "max":
        acc = bias
        for s in op.sources:
            acc = torch.maximum(acc, _max_int(inputs[s.tensor], torch.from_numpy(s.weight), s.stride, s.pad))
        return acc
    acc = None
    for s in op.sources:
        part = _conv_int(inputs[s.tensor], torch.from_numpy(s.weight), s.stride, s.pad)
        acc = part if acc is None else acc + part
    return acc + torch.from_numpy(np.asarray(op.bias, dtype=np.int64)).view(1, -1, 1, 1)


def requantize(op: Op, acc: torch.Tensor) -> torch.Tensor:
    if op.mode == "thresh":
        thr = torch.from_numpy(op.thresholds).view(1, acc.shape[1], 1, 1, -1)
        k = (acc.unsqueeze(-1) >= thr).sum(dim=-1)
        return torch.from_numpy(op.levels_out)[k]
    if op.mode == "shift":
        return acc >> op.shift
    return acc


def run_integer(net: IntNet, x: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
    """Run the integer network on integer inputs (N, C, H, W); returns every tensor by name."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.int64)
    spec = net.tensors[net.input]
    if tuple(x.shape[1:]) != spec.shape:
        raise ValueError(f"input must be (N, {', '.join(map(str, spec.shape))}), not {tuple(x.shape)}")
    if x.min() < 0 or x.max() > spec.max_value:
        raise ValueError(f"input values must be integers in 0..{spec.max_value}")
    vals = {net.input: x}
    for op in net.ops:
        vals[op.out] = requantize(op, op_accumulator(op, vals))
    return vals


def predict(net: IntNet, x) -> np.ndarray:
    logits = run_integer(net, x)[net.output]
    return logits.reshape(logits.shape[0], -1).argmax(dim=1).numpy()
