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


# ----------------------------------------------------------------------------- float64 backend (GPU)
# The same network in float64 on any device. Exact, not approximate: every value is an integer and
# every partial sum is bounded by IntNet.acc_bound(op) < 2**53, so each float64 add and multiply is
# exact whatever order cuDNN sums in; thresholds (|t| <= 2**40) compare exactly; ">> s" is floor(/2**s).
F64_LIMIT = 1 << 53


def _max_f64(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    patches = F.unfold(x, k, padding=pad, stride=stride)  # (N, Cin*k*k, P), zero padding included
    wf = w.reshape(cout, cin * k * k)
    out = torch.full((n, cout, ho * wo), -float("inf"), dtype=x.dtype, device=x.device)
    for c in range(cout):
        nz = torch.nonzero(wf[c]).flatten()
        if len(nz):
            out[:, c] = (wf[c, nz].view(1, -1, 1) * patches[:, nz]).amax(dim=1)
    return out.reshape(n, cout, ho, wo)


def run_float64(net: IntNet, x, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """run_integer's result (as exact float64 integers) computed with float64 convolutions on `device`."""
    for op in net.ops:
        if net.acc_bound(op) >= F64_LIMIT:
            raise ValueError(f"op {op.name}: accumulator bound {net.acc_bound(op)} >= 2**53, float64 is not exact")
    dev = torch.device(device)
    xi = torch.as_tensor(np.asarray(x), dtype=torch.int64)
    spec = net.tensors[net.input]
    if tuple(xi.shape[1:]) != spec.shape:
        raise ValueError(f"input must be (N, {', '.join(map(str, spec.shape))}), not {tuple(xi.shape)}")
    if xi.min() < 0 or xi.max() > spec.max_value:
        raise ValueError(f"input values must be integers in 0..{spec.max_value}")

    def t(a) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(dev, torch.float64)

    vals = {net.input: xi.to(dev, torch.float64)}
    for op in net.ops:
        bias = t(op.bias).view(1, -1, 1, 1)
        if op.reduce == "max":
            acc = bias
            for s in op.sources:
                acc = torch.maximum(acc, _max_f64(vals[s.tensor], t(s.weight), s.stride, s.pad))
        else:
            acc = bias
            for s in op.sources:
                acc = acc + F.conv2d(vals[s.tensor], t(s.weight), None, s.stride, s.pad)
        if op.mode == "thresh":
            k = (acc.unsqueeze(-1) >= t(op.thresholds).view(1, acc.shape[1], 1, 1, -1)).sum(dim=-1)
            acc = t(op.levels_out)[k]
        elif op.mode == "shift":
            acc = torch.floor(acc / float(1 << op.shift))
        vals[op.out] = acc
    return vals


def predict_batched(net: IntNet, x, backend: str = "int64", device: str | torch.device = "cpu",
                    batch: int = 500) -> np.ndarray:
    """Top-1 classes of the golden model, in batches; backend "int64" (CPU) or "float64" (any device)."""
    if backend not in ("int64", "float64"):
        raise ValueError(f"backend must be int64 or float64, not {backend!r}")
    x = np.asarray(x)
    out = []
    for i in range(0, len(x), batch):
        if backend == "int64":
            out.append(predict(net, x[i:i + batch]))
        else:
            logits = run_float64(net, x[i:i + batch], device)[net.output]
            out.append(logits.reshape(logits.shape[0], -1).argmax(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
