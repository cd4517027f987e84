"""Model size and BOPs: pure functions ``(model, input_shape) -> dict`` with stable keys.

Pass the MASKED model (not the sliced one): the FP32 reference is the layers' full (unpruned) shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from .intnet import COUNTING_RULES as INT_RULES
from .intnet import count_totals
from .quant import QConv2d, QLinear

COUNTING_RULES = INT_RULES + (
    " On the torch model: every QConv2d/QLinear; MACs = kept Cout x kept Cin x Kh x Kw x Hout x Wout "
    "(MACs against zero padding count; linear: Hout = Wout = 1); macs_nonzero = the same with only non-zero "
    "quantized weights (float weights when the layer is not in fake-quant mode); a_bits is the layer's "
    "ActQuantizer width, else first_a_bits for the first layer and other_a_bits for later unquantized inputs."
)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (QConv2d, QLinear))]


@torch.no_grad()
def _out_pixels(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Output pixels (Hout x Wout; 1 for linear) of each quantized layer, from one zero forward."""
    pix: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(
            lambda m, a, out, n=n: pix.__setitem__(n, out[0, 0].numel() if isinstance(m, nn.Conv2d) else 1)
        )
        for n, m in _layers(model)
    ]
    was_train = model.training
    model.eval()
    try:
        model(torch.zeros((1, *input_shape[-3:]) if len(input_shape) >= 3 else (1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_train)
    return pix


@torch.no_grad()
def _nonzero_weights(layer: nn.Module) -> int:
    if layer.quantize:
        w_int, _ = layer.wq.int_weight(layer.weight, layer.filter_mask, layer.in_mask)
        return int((w_int != 0).sum())
    return int(((layer.weight * layer._keep()) != 0).sum())


def layer_table(
    model: nn.Module, input_shape: tuple[int, ...], first_a_bits: int = 5, other_a_bits: int = 8
) -> list[dict]:
    """Per-layer counts (stable keys) that the totals below sum."""
    pix = _out_pixels(model, input_shape)
    rows = []
    for i, (name, m) in enumerate(_layers(model)):
        k = m.weight[0, 0].numel()
        cout, cin = int(m.filter_mask.sum()), int(m.in_mask.sum())
        a_bits = m.a_bits if m.a_bits is not None else (first_a_bits if i == 0 else other_a_bits)
        macs = cout * cin * k * pix[name]
        full_macs = m.weight.numel() * pix[name]
        rows.append(
            {
                "name": name,
                "w_bits": m.w_bits,
                "a_bits": a_bits,
                "out_pixels": pix[name],
                "kept_out": cout,
                "kept_in": cin,
                "weights": cout * cin * k,
                "weights_fp32": m.weight.numel(),
                "nonzero_weights": _nonzero_weights(m),
                "macs": macs,
                "macs_fp32": full_macs,
                "macs_nonzero": _nonzero_weights(m) * pix[name],
                "bops": macs * m.w_bits * a_bits,
            }
        )
    return rows


def size_metrics(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    rows = layer_table(model, input_shape)
    t = count_totals(rows)
    return {
        **{k: t[k] for k in ("model_size_bits", "size_fp32_bits", "size_reduction")},
        "weights_kept": sum(r["weights"] for r in rows),
        "weights_nonzero": sum(r["nonzero_weights"] for r in rows),
        "counting_rules": COUNTING_RULES,
    }


def bops_metrics(
    model: nn.Module, input_shape: tuple[int, ...], first_a_bits: int = 5, other_a_bits: int = 8
) -> dict:
    rows = layer_table(model, input_shape, first_a_bits, other_a_bits)
    t = count_totals(rows)
    return {
        **{k: t[k] for k in ("bops", "bops_fp32", "bops_reduction")},
        "macs": sum(r["macs"] for r in rows),
        "macs_fp32": sum(r["macs_fp32"] for r in rows),
        "macs_nonzero": sum(r["macs_nonzero"] for r in rows),
        "counting_rules": COUNTING_RULES,
    }


def model_metrics(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Size + BOPs + the per-layer table, one dict."""
    return {
        **size_metrics(model, input_shape),
        **bops_metrics(model, input_shape),
        "layers": layer_table(model, input_shape),
    }
