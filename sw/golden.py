"""The golden integer model: the IntNet contract (sw/intnet.py) executed in PyTorch int64.

Every tensor is an int64 tensor; no float is touched. The RTL must equal this bit for bit, and the
functional ISA interpreter (apotflow.hw.isa.run_program) must equal it too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .intnet import IntNet, Op


def _patches(x: torch.Tensor, k: int, stride: int, pad: int) -> tuple[torch.Tensor, int, int]:
    """im2col for any dtype: (N, Cin*k*k, Ho*Wo) patches of x, zero padding included; and (Ho, Wo)."""
    n, cin, h, wd = x.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad else x
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = [xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            for ky in range(k) for kx in range(k)]
    return torch.stack(cols, dim=2).reshape(n, cin * k * k, ho * wo), ho, wo


def _conv_int(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """Exact int64 convolution by im2col and an integer matmul (torch has no int64 conv2d)."""
    cout, cin, k, _ = w.shape
    patches, ho, wo = _patches(x, k, stride, pad)
    out = torch.matmul(w.reshape(cout, cin * k * k).unsqueeze(0), patches)  # int64 matmul
    return out.reshape(x.shape[0], cout, ho, wo)


def _max_reduce(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """max over the non-zero weights j of w[c, j] * patch_j (the products a sum would add); any dtype."""
    cout, cin, k, _ = w.shape
    patches, ho, wo = _patches(x, k, stride, pad)
    wf = w.reshape(cout, cin * k * k)
    lowest = torch.iinfo(x.dtype).min if not x.dtype.is_floating_point else -float("inf")
    out = torch.full((x.shape[0], cout, ho * wo), lowest, dtype=x.dtype, device=x.device)
    for c in range(cout):
        nz = torch.nonzero(wf[c]).flatten()
        if len(nz):
            out[:, c] = (wf[c, nz].view(1, -1, 1) * patches[:, nz]).amax(dim=1)
    return out.reshape(x.shape[0], cout, ho, wo)


def _conv_f64(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    return F.conv2d(x, w, None, stride, pad).round()


# The float64 backend (GPU) runs the same ops. Exact, not approximate: every value is an integer and
# every partial sum is bounded by IntNet.acc_bound(op) < 2**53, so a float64 sum of products is exact
# whatever order it is summed in. Each convolution's result is still rounded to the nearest integer,
# a guard against an algorithm that transforms the operands (FFT, Winograd) and would return the
# integer off by a rounding error far below 0.5; none was seen (bench/device_codes.py: the golden
# model agreed on the H200 and the CPU). Thresholds (|t| <= 2**40) compare exactly; ">> s" is
# floor(/2**s).
F64_LIMIT = 1 << 53


def _tensor(a, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(like.device, like.dtype)


def op_accumulator(op: Op, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    some = next(iter(inputs.values()))
    conv = _conv_int if not some.dtype.is_floating_point else _conv_f64
    acc = _tensor(op.bias, some).view(1, -1, 1, 1)
    for s in op.sources:
        x = inputs[s.tensor]
        if op.reduce == "max":
            acc = torch.maximum(acc, _max_reduce(x, _tensor(s.weight, x), s.stride, s.pad))
        else:
            acc = acc + conv(x, _tensor(s.weight, x), s.stride, s.pad)
    return acc


def requantize(op: Op, acc: torch.Tensor) -> torch.Tensor:
    if op.mode == "thresh":
        if op.thresholds.shape[1] <= 16:  # the definition: k = #{j : acc >= thr[c, j]}
            thr = _tensor(op.thresholds, acc).view(1, acc.shape[1], 1, 1, -1)
            k = (acc.unsqueeze(-1) >= thr).sum(dim=-1)
        else:  # the same count by binary search (thresholds non-decreasing): 8-bit outputs, 255 thresholds
            n, c, h, w = acc.shape
            flat = acc.permute(1, 0, 2, 3).reshape(c, -1).contiguous()
            k = torch.searchsorted(_tensor(op.thresholds, acc).contiguous(), flat, right=True)
            k = k.view(c, n, h, w).permute(1, 0, 2, 3)
        return _tensor(op.levels_out, acc)[k]
    if op.mode == "shift":
        return torch.floor(acc / float(1 << op.shift)) if acc.dtype.is_floating_point else acc >> op.shift
    return acc


def _run(net: IntNet, x, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    x = torch.as_tensor(np.asarray(x), dtype=torch.int64)
    spec = net.tensors[net.input]
    if tuple(x.shape[1:]) != spec.shape:
        raise ValueError(f"input must be (N, {', '.join(map(str, spec.shape))}), not {tuple(x.shape)}")
    if x.min() < 0 or x.max() > spec.max_value:
        raise ValueError(f"input values must be integers in 0..{spec.max_value}")
    vals = {net.input: x.to(torch.device(device), dtype)}
    for op in net.ops:
        vals[op.out] = requantize(op, op_accumulator(op, vals))
    return vals


def run_integer(net: IntNet, x: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
    """Run the integer network on integer inputs (N, C, H, W); returns every tensor by name."""
    return _run(net, x, torch.int64, "cpu")


def predict(net: IntNet, x) -> np.ndarray:
    logits = run_integer(net, x)[net.output]
    return logits.reshape(logits.shape[0], -1).argmax(dim=1).numpy()


def run_float64(net: IntNet, x, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """run_integer's result (as exact float64 integers) computed with float64 convolutions on `device`."""
    for op in net.ops:
        if net.acc_bound(op) >= F64_LIMIT:
            raise ValueError(f"op {op.name}: accumulator bound {net.acc_bound(op)} >= 2**53, float64 is not exact")
    return _run(net, x, torch.float64, device)


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
