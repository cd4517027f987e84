"""Geometric-median (FPGM) filter pruning, masks that keep pruned channels exactly zero, and slicing.

A prunable model exposes ``prune_groups()`` (list of groups, each a list of (conv, bn) pairs that
share ONE output-channel mask: channels that meet at a residual add; bn is None for a conv without
BatchNorm, e.g. a 1x1 projection shortcut) and ``group_consumers()``
(parallel list: layers whose input channels are that group's channels).

Score (DESIGN §3): flatten each filter (for a group: concatenate the channel's filters across the
group's convs), sum its float64 Euclidean distances to all other filters, prune the int(N * rate)
smallest sums. Ties: stable sort, so among equal sums the lower index is pruned first.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .quant import QConv2d, QLinear

Group = list[tuple[nn.Module, nn.BatchNorm2d | None]]


def masked_params(conv: nn.Module, bn: nn.BatchNorm2d | None) -> list[nn.Parameter]:
    """The parameters whose output-channel entries a pruned filter zeroes: weight, bias, BN gamma/beta."""
    return ([conv.weight] + ([conv.bias] if conv.bias is not None else [])
            + ([bn.weight, bn.bias] if bn is not None else []))


def gm_scores(weight: Tensor, block_bytes: int = 1 << 27) -> Tensor:
    """Sum of float64 Euclidean distances from each filter (row after flattening) to all others.

    Explicit differences (torch.cdist's matmul path loses precision), a block of rows at a time, on the
    weight's own device: on the GPU, SPQ's per-epoch rescoring no longer waits on busy CPU cores."""
    w = weight.detach().reshape(weight.shape[0], -1).to(torch.float64)
    n, f = w.shape
    rows = max(1, block_bytes // (8 * n * max(f, 1)))
    return torch.cat([((w[None] - w[i:i + rows, None]) ** 2).sum(2).sqrt().sum(1) for i in range(0, n, rows)])


def gm_mask(weight: Tensor, rate: float, prev: Tensor | None = None, forced: Tensor | None = None) -> Tensor:
    """Keep-mask (bool, N) that prunes floor(N * rate) filters with the smallest GM scores.

    ``prev`` (a keep-mask) makes pruning incremental: its pruned filters stay pruned, distances are
    scored among its kept filters only, and the extra filters are chosen from those.
    ``forced`` (bool, N): filters that must stay kept (e.g. channels a residual shortcut ties to an
    earlier stream). They still count in every other filter's score, but are never chosen; if too
    few filters are free, every free one is pruned (fewer than floor(N * rate))."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"Prune rate must be in [0, 1), not {rate!r}")
    n = weight.shape[0]
    keep = torch.ones(n, dtype=torch.bool) if prev is None else prev.clone().cpu()
    kept_idx = torch.nonzero(keep).squeeze(1)
    n_extra = int(n * rate) - (n - len(kept_idx))
    if n_extra > 0:
        order = torch.sort(gm_scores(weight[kept_idx.to(weight.device)]).cpu(), stable=True).indices
        cand = kept_idx[order]
        if forced is not None:
            cand = cand[~forced.cpu()[cand]]
        keep[cand[:n_extra]] = False
    return keep


def group_weight(group: Group) -> Tensor:
    """(N, F) float matrix: per channel, the group's filters flattened and concatenated."""
    return torch.cat([conv.weight.detach().reshape(conv.weight.shape[0], -1) for conv, _ in group], 1)


def compute_masks(model: nn.Module, rate: float, incremental: bool = False) -> list[Tensor]:
    """Recompute GM masks on the full-precision weights of every group, store and enforce them.

    incremental: keep what is already pruned and add to it (PPQ's staged pruning). Groups are scored
    in order; a model with ``forced_keep(i, masks_so_far) -> Tensor | None`` forces channels of
    group i to stay kept given the earlier groups' masks (residual streams tied by a shortcut)."""
    groups = model.prune_groups()
    prev = get_masks(model) if incremental else [None] * len(groups)
    forced_keep = getattr(model, "forced_keep", None)
    masks: list[Tensor] = []
    for i, (g, p) in enumerate(zip(groups, prev)):
        forced = forced_keep(i, masks) if forced_keep is not None else None
        masks.append(gm_mask(group_weight(g), rate, p, forced))  # scored on the weights' device
    set_masks(model, masks)
    return masks


def set_masks(model: nn.Module, masks: list[Tensor]) -> None:
    """Store one mask per group in the convs' filter_mask and consumers' in_mask, then enforce."""
    for group, consumers, mask in zip(model.prune_groups(), model.group_consumers(), masks):
        for conv, _ in group:
            conv.filter_mask.copy_(mask)
        for layer in consumers:
            layer.in_mask.copy_(mask)
    apply_masks(model)


def get_masks(model: nn.Module) -> list[Tensor]:
    return [group[0][0].filter_mask.clone() for group in model.prune_groups()]


@torch.no_grad()
def apply_masks(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Zero pruned filters' float weights (and bias), BN gamma/beta, their grads and momentum.

    Call after every optimizer step while masks are frozen: pruned entries then stay exactly 0."""
    for group in model.prune_groups():
        for conv, bn in group:
            drop = ~conv.filter_mask
            for p in masked_params(conv, bn):
                p[drop] = 0
                if p.grad is not None:
                    p.grad[drop] = 0
                state = optimizer.state.get(p, {}) if optimizer is not None else {}
                if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                    state["momentum_buffer"][drop] = 0


def sparsity_report(model: nn.Module) -> dict:
    """Kept / total channels per group (stable keys)."""
    masks = get_masks(model)
    return {
        "kept": [int(m.sum()) for m in masks],
        "total": [int(m.numel()) for m in masks],
    }


def _set_width(layer: nn.Module, side: str, n: int) -> None:
    """A conv's or linear layer's ``side`` ("in" or "out") channel / feature count := n."""
    setattr(layer, f"{side}_channels" if isinstance(layer, nn.Conv2d) else f"{side}_features", n)


def _slice_out(layer: nn.Module, idx: Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.data[idx].clone())
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.data[idx].clone())
    layer.filter_mask = layer.filter_mask[idx].clone()
    _set_width(layer, "out", len(idx))


def _slice_in(layer: nn.Module, idx: Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.data[:, idx].clone())
    layer.in_mask = layer.in_mask[idx].clone()
    _set_width(layer, "in", len(idx))


def _slice_bn(bn: nn.BatchNorm2d, idx: Tensor) -> None:
    bn.weight = nn.Parameter(bn.weight.data[idx].clone())
    bn.bias = nn.Parameter(bn.bias.data[idx].clone())
    bn.running_mean = bn.running_mean[idx].clone()
    bn.running_var = bn.running_var[idx].clone()
    bn.num_features = len(idx)


def slice_pruned(model: nn.Module) -> nn.Module:
    """A copy of the same class with pruned channels physically removed.

    The copy records ``unpruned_shapes`` ({module name: weight shape} before slicing) and, if the
    model defines ``after_slice(kept)`` (kept channel indices per group), calls it.

    Logits equal the masked model's exactly (eval, fake-quant on): weight statistics already use kept
    filters / kept inputs only, and quantized layers accumulate integer codes (order-independent)."""
    out = copy.deepcopy(model)
    if not hasattr(out, "unpruned_shapes"):  # the float model's shapes, for size/BOPs references
        out.unpruned_shapes = {n: list(m.weight.shape) for n, m in model.named_modules()
                               if isinstance(m, (QConv2d, QLinear))}
    groups, consumers = out.prune_groups(), out.group_consumers()
    kept = [torch.nonzero(group[0][0].filter_mask).squeeze(1) for group in groups]
    for group, cons, idx in zip(groups, consumers, kept):
        for conv, bn in group:
            if not isinstance(conv, (QConv2d, QLinear)):
                raise TypeError(f"Prunable layers must be QConv2d/QLinear, not {type(conv).__name__}")
            _slice_out(conv, idx)
            if bn is not None:
                _slice_bn(bn, idx)
        for layer in cons:
            _slice_in(layer, idx)
    if hasattr(out, "after_slice"):  # model-specific wiring that follows channels (e.g. shortcuts)
        out.after_slice(kept)
    return out
