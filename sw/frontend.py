"""The graph front end's first step: trace a PyTorch model (torch.fx) and name every node that the
integer network cannot express, before anything is built.

The documented op set (what lowers to the IntNet, docs/frontend.md):

* Conv2d: any kernel and stride, zero padding (symmetric, or asymmetric through F.pad / ZeroPad2d),
  dilation 1, groups 1, with or without bias; BatchNorm2d after a conv (folded); ReLU;
* the residual add of two tensors (identity or a 1x1 projection shortcut);
* channel concatenation (``torch.cat(..., dim=1)``) of ReLU outputs read by convolutions;
* MaxPool2d / AvgPool2d, adaptive or global average pooling, flatten / view to (N, -1), Linear;
* the input scaling ``x / s`` (or ``* s``) of the first layer, Dropout and Identity (no-ops in eval).

``unsupported_nodes(model)`` returns one record per offending node: its name, op, target, where it
comes from (module path or source line) and what to do instead. ``check_model`` raises
``UnsupportedModel`` whose message lists them all (the CLI prints it and exits 2).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Tracer

from .models.resnet import option_a  # the option-A shortcut (one node: torch.fx.wrap)


class UnsupportedModel(ValueError):
    """A model with nodes outside the op set; str() is one summary line, then one line per node."""

    def __init__(self, nodes: list[dict], what: str = "model") -> None:
        self.nodes = nodes
        lines = [f"{what}: {len(nodes)} unsupported node(s); the integer network cannot express them"]
        lines += [f"{n['name']} ({n['op']} {n['target']}) at {n['where']}: {n['instead']}" for n in nodes]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class _Rule:
    ok: bool
    instead: str = ""


MODULES_OK = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear,
              nn.Identity, nn.Dropout, nn.ZeroPad2d)
FUNCTIONS_OK = {option_a, operator.add, torch.add, F.relu, torch.relu, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                torch.flatten, F.pad, operator.truediv, operator.mul, F.dropout, getattr, torch.cat}
METHODS_OK = {"relu", "flatten", "view", "reshape", "mean", "add", "size", "contiguous"}
# Concatenation lowers along channels only: the layer after it reads each branch as one source of its op
# (docs/frontend.md). One definition, used by the ONNX reader too.
CONCAT_INSTEAD = "concatenate along channels only (dim 1 of an (N, C, H, W) tensor)"
CHANNEL_DIMS = (1, -3)
INSTEAD = {  # what to do instead, by the offending operation's name
    "cat": CONCAT_INSTEAD,
    "concat": CONCAT_INSTEAD,
    "stack": "no stacking: the integer network's tensors are (C, H, W) images",
    "sigmoid": "only ReLU activations: replace it with nn.ReLU",
    "silu": "only ReLU activations: replace it with nn.ReLU",
    "gelu": "only ReLU activations: replace it with nn.ReLU",
    "hardswish": "only ReLU activations: replace it with nn.ReLU",
    "relu6": "only ReLU activations: use nn.ReLU (the activation quantizer clips at its own threshold)",
    "leaky_relu": "only ReLU activations: replace it with nn.ReLU",
    "tanh": "only ReLU activations: replace it with nn.ReLU",
    "softmax": "drop the softmax: the integer network returns logits (argmax is unchanged)",
    "log_softmax": "drop the log-softmax: the integer network returns logits (argmax is unchanged)",
    "interpolate": "no upsampling: the integer network only reduces spatial size",
    "matmul": "use nn.Linear for the classifier",
    "mul": "only a constant input scaling: fold other products into a conv or linear layer",
}


def _where(node, model: nn.Module) -> str:
    if node.op == "call_module":
        return f"module {node.target} ({type(model.get_submodule(node.target)).__name__})"
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines()
             if ln.strip().startswith("File") and "/torch/" not in ln]  # the model's own source line
    return lines[-1] if lines else "forward"


def _module_rule(mod: nn.Module) -> _Rule:
    if isinstance(mod, nn.Conv2d):
        if mod.groups != 1:
            return _Rule(False, "grouped / depthwise convolution: use groups=1")
        if tuple(mod.dilation) != (1, 1):
            return _Rule(False, "dilated convolution: use dilation=1")
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str) and mod.padding not in ("valid", "same"):
            return _Rule(False, "only zero padding: use padding_mode='zeros'")
        return _Rule(True)
    if isinstance(mod, nn.MaxPool2d) and (mod.dilation not in (1, (1, 1)) or mod.ceil_mode):
        return _Rule(False, "max pooling without dilation or ceil_mode")
    if isinstance(mod, nn.AdaptiveAvgPool2d) and mod.output_size not in (1, (1, 1)):
        return _Rule(False, "adaptive average pooling to 1x1 only (global average pooling)")
    if isinstance(mod, MODULES_OK):
        return _Rule(True)
    name = type(mod).__name__.lower()
    return _Rule(False, INSTEAD.get(name, f"{type(mod).__name__} is outside the op set (docs/frontend.md)"))


class LeafTracer(Tracer):
    """torch.fx tracer that keeps torch's layers and the quantized layers, activation quantizers and
    BatchNorms of sw/quant.py as single nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        from .quant import ActQuantizer, QConv2d, QLinear

        leaf = isinstance(m, (QConv2d, QLinear, ActQuantizer, nn.modules.batchnorm._BatchNorm))
        return leaf or super().is_leaf_module(m, qualname)


def float_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode with fake-quant off: its forward is the network's graph (a quantized forward
    computes the integer model's own roundings)."""
    from .quant import set_quantize

    return set_quantize(copy.deepcopy(model), False).eval()


def trace(model: nn.Module):
    """torch.fx GraphModule of the model (its float-mode forward, on a copy when fake-quant is on; torch's
    layers and the quantized layers are leaves). Raises UnsupportedModel with one node when the model
    cannot be traced at all."""
    from torch.fx import GraphModule

    if any(getattr(m, "quantize", False) is True for m in model.modules()):
        model = float_copy(model)
    tracer = LeafTracer()
    tracer.record_stack_traces = True  # each node's source line, for the report
    try:
        return GraphModule(model, tracer.trace(model))
    except Exception as e:  # data-dependent control flow, unsupported Python
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedModel([{"name": type(model).__name__, "op": "trace", "target": "forward", "where": "forward",
                                 "instead": f"torch.fx cannot trace it ({type(e).__name__}: {msg}); remove "
                                 "data-dependent control flow from forward"}]) from None


def concat_dim(node) -> int:
    """The dimension a torch.cat node concatenates along."""
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)


def unsupported_nodes(model: nn.Module) -> list[dict]:
    """Every node of the traced model outside the op set (module doc), in graph order."""
    gm = trace(model)
    out = []
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            rule = _module_rule(gm.get_submodule(node.target))
            target = node.target
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", str(node.target))
            ok = node.target in FUNCTIONS_OK and (node.target is not torch.cat or concat_dim(node) in CHANNEL_DIMS)
            rule = _Rule(ok, INSTEAD.get(name, f"{name} is outside the op set"))
            target = name
        else:  # call_method
            rule = _Rule(node.target in METHODS_OK, INSTEAD.get(node.target, f".{node.target}() is outside the op set"))
            target = node.target
        if not rule.ok:
            out.append({"name": node.name, "op": node.op, "target": str(target), "where": _where(node, gm),
                        "instead": rule.instead})
    return out


def check_model(model: nn.Module) -> None:
    """Raise UnsupportedModel listing every node outside the op set; return if there is none."""
    bad = unsupported_nodes(model)
    if bad:
        raise UnsupportedModel(bad, type(model).__name__)
