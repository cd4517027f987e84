"""One lowering from the traced graph: a quantized model's torch.fx graph -> IntNet, for any model whose
graph is inside the op set of sw/frontend.py (the zoo's included).

The model is traced in float mode (a copy with fake-quant off: the quantize-mode forwards compute the
integer model's own roundings, the float graph is the network), with the quantized layers, activation
quantizers and BatchNorms as leaves. Walking the graph in order:

* ``X / d`` (or ``X * (1/d)``) on the input: integer pixels 0..d, scale 1/d (tensor ``x``);
* conv / linear [+ BatchNorm] [+ residual add] + ReLU -> one thresh op (sw/lower.py's rules); the
  quantizer whose codes it produces is its consumers': a quantized layer's own input quantizer, or,
  for a linear layer without one (the last) and for global average pooling, the model's one
  activation quantizer that no layer owns (``qpool`` / ``qfc`` in the zoo);
* the residual add's other operand: a tensor of codes (identity shortcut), an option-A shortcut
  (``models.resnet.option_a``: strided channel selection) or a 1x1 projection conv (a QConv2d without
  its own input quantizer: it reads the block input's codes), with or without a BatchNorm;
* a channel concatenation (``torch.cat(..., 1)``) of code tensors stored with one quantizer: a conv
  reading it gets one source per branch, its weights split by channel range (the op sums its sources);
* max pooling 2x2 / stride 2 -> a reduce=max op; global average pooling (``mean((2, 3))``, adaptive
  or full-window average pooling) -> sum >> (k - 2); flatten / view / dropout / identity: nothing;
* the last linear layer (the output) -> raw logits;
* a model with an N-bit residual stream (``residual_bits``, sw/models/resnet.py): a ReLU output that a
  shortcut reads is stored at N bits on its consumers' clip (``quant.UniformLevels``), and a second op,
  ``<tensor>q`` (sw/lower.py ``_stream_codes_op``), gives its quantized-layer consumers their codes.

Names: a model may name its layers' ops and output tensors with a method ``int_names()`` -> {module path:
(op, tensor)} (the zoo's classes do: ``stem``, ``s1b0a``, ``conv0`` / ``h0``, ...); any other layer's op
and tensor are named after its graph node (``convs_0``, ``blocks_3_conv_b``). Max pools are ``pool{k}`` /
``p{k}``, the average pool ``pool`` / ``u``, the last fc ``fc`` / ``logits``, the input ``x``.

Meta: the model's name (``arch_config()["name"]``, else its class name), the constructor arguments of
META_KEYS that its ``arch_config()`` records, the classes, the input format and the unpruned layer shapes
(``fp32_shapes``, which the size and BOPs reductions read).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import GraphModule, Node

from .frontend import LeafTracer, check_model, float_copy
from .intnet import IntNet, TensorSpec
from .lower import (
    _avg_pool_op,
    _conv_op,
    _fc_op,
    _fp32_shapes,
    _linear_op,
    _max_pool_op,
    _projection,
    _stream_codes_op,
)
from .models.resnet import option_a
from .quant import ActQuantizer, QConv2d, QLinear, UniformLevels

META_KEYS = ("depth", "widths", "scale")  # constructor arguments a zoo model's export records


class GraphLoweringError(ValueError):
    """A graph the lowering cannot map to the integer network (one line naming the node)."""


def trace_float(model: nn.Module) -> tuple[GraphModule, nn.Module]:
    """(the float-mode graph, the copy it was traced from: quantization off, eval mode). The graph module
    holds the copy's own layer objects. Raises UnsupportedModel listing every node outside the op set."""
    m = float_copy(model)
    check_model(m)
    return GraphModule(m, LeafTracer().trace(m)), m


@dataclass
class _Acc:
    """A conv / linear accumulation not yet requantized."""

    layer: nn.Module
    src: str
    name: str  # the op's name
    out: str  # the tensor it writes (if requantized)
    bn: nn.Module | None = None
    residual: tuple | None = None
    extra_bias: np.ndarray | None = None


@dataclass
class _Cat:
    """A channel concatenation of code tensors (read by a conv only)."""

    parts: tuple[str, ...]


@dataclass
class _OptionA:
    src: str
    index: np.ndarray


@dataclass
class _State:
    gm: GraphModule
    input_shape: tuple[int, int, int]
    tensors: dict = field(default_factory=dict)
    ops: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)
    free: ActQuantizer | None = None
    pools: int = 0
    names: dict = field(default_factory=dict)  # module path -> (op, tensor): the model's int_names()
    stream_bits: int | None = None  # the model's residual_bits: its shortcuts read N-bit stream tensors
    codes_of: dict = field(default_factory=dict)  # stream tensor -> the tensor of its consumers' codes


def _is(node: Node, *what) -> bool:
    """Whether node calls one of the functions / method names / module classes in what."""
    if node.op == "call_function":
        return node.target in what
    if node.op == "call_method":
        return node.target in what
    if node.op == "call_module":
        mod = node.graph.owning_module.get_submodule(node.target)
        return any(isinstance(w, type) and isinstance(mod, w) for w in what)
    return False


RELU = (F.relu, torch.relu, "relu", nn.ReLU)
ADD = (operator.add, torch.add, "add")
MAXPOOL = (F.max_pool2d, nn.MaxPool2d)
GAP = (F.adaptive_avg_pool2d, F.avg_pool2d, "mean", nn.AdaptiveAvgPool2d, nn.AvgPool2d)
PASS = (torch.flatten, "flatten", "view", "reshape", "contiguous", F.dropout, nn.Flatten, nn.Dropout, nn.Identity)


def _module(st: _State, node: Node) -> nn.Module | None:
    return st.gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_projection(st: _State, node: Node) -> bool:
    """A QConv2d without its own quantizer whose output goes into an add (straight, or through a BatchNorm)."""
    mod = _module(st, node)
    if not (isinstance(mod, QConv2d) and mod.aq is None and len(node.users) == 1):
        return False
    user = next(iter(node.users))
    if isinstance(_module(st, user), nn.modules.batchnorm._BatchNorm) and len(user.users) == 1:
        user = next(iter(user.users))
    return _is(user, *ADD)


def _shortcut_conv(v) -> bool:
    """An accumulation that can be the add's projection: a QConv2d without its own input quantizer."""
    return isinstance(v, _Acc) and isinstance(v.layer, QConv2d) and v.layer.aq is None and v.residual is None


def _consumer_quantizer(st: _State, node: Node) -> ActQuantizer:
    """The activation quantizer whose codes a ReLU output is stored as (see the module doc)."""
    found, stack = [], list(node.users)
    while stack:
        u = stack.pop()
        mod = _module(st, u)
        if isinstance(mod, (QConv2d, QLinear)):
            if _is_projection(st, u):
                continue  # a shortcut reads the same codes
            if mod.aq is not None:
                found.append(mod.aq)
            elif isinstance(mod, QLinear) and st.free is not None:
                found.append(st.free)
            else:
                raise GraphLoweringError(f"{u.name}: a layer without its own input quantizer reads {node.name}")
        elif _is(u, *MAXPOOL) or _is(u, *PASS) or _is(u, torch.cat):
            stack.extend(u.users)
        elif _is(u, *GAP):
            if st.free is None:
                raise GraphLoweringError(f"{u.name}: average pooling needs the model's pooling quantizer")
            found.append(st.free)
        elif _is(u, *ADD) or _is(u, option_a):
            continue  # the shortcut: the same codes
        else:
            raise GraphLoweringError(f"{u.name} ({u.op} {u.target}) reads {node.name}: outside the op set")
    if not found or any(q is not found[0] for q in found):
        raise GraphLoweringError(f"{node.name}: its consumers quantize it {'differently' if found else 'nowhere'}")
    return found[0]


def _feeds_shortcut(node: Node) -> bool:
    """Whether a shortcut (an add, or option A's selection) reads node's value (through flatten-like nodes)."""
    stack = list(node.users)
    while stack:
        u = stack.pop()
        if _is(u, *ADD) or _is(u, option_a):
            return True
        if _is(u, *PASS):
            stack.extend(u.users)
    return False


def _input(st: _State, node: Node, value) -> str:
    """The input scaling X / d -> tensor x (pixels 0..d, scale 1/d, bit width of d)."""
    x, c = node.args
    d = 1 / c if node.target is operator.mul else c
    if not isinstance(c, (int, float)) or abs(d - round(d)) > 1e-9 or round(d) < 1:
        raise GraphLoweringError(f"{node.name}: the input must be scaled by 1/d with d a positive integer")
    d = int(round(d))
    st.tensors["x"] = TensorSpec("x", st.input_shape, d, 1 / d, bits=d.bit_length())
    return "x"


def _requantize(st: _State, node: Node, acc: _Acc) -> str:
    """conv / linear (+ BN, + shortcut) + ReLU + the consumers' quantizer -> one thresh op."""
    nxt = _consumer_quantizer(st, node)
    if acc.bn is None:
        raise GraphLoweringError(f"{acc.name}: a conv or linear layer before ReLU needs a BatchNorm")
    # stored as the N-bit stream (then its consumers' codes op) when a shortcut reads it
    stream = bool(st.stream_bits) and isinstance(acc.layer, QConv2d) and isinstance(acc.src, str) and \
        _feeds_shortcut(node)
    if isinstance(acc.layer, QLinear):
        if acc.residual is not None:
            raise GraphLoweringError(f"{acc.name}: a residual add after a linear layer")
        op = _linear_op(acc.name, acc.layer, acc.bn, acc.src, acc.out, nxt, st.tensors)
    elif isinstance(acc.src, _Cat):
        op = _concat_conv_op(st, acc, nxt)
    else:
        op = _conv_op(acc.name, acc.layer, acc.bn, acc.src, acc.out,
                      UniformLevels(nxt.alpha, st.stream_bits) if stream else nxt, st.tensors, acc.residual,
                      acc.extra_bias)
    st.ops.append(op)
    st.layers[acc.name] = acc.layer
    if stream:
        st.codes_of[acc.out] = acc.out + "q"
        st.ops.append(_stream_codes_op(acc.out + "q", acc.out, acc.out + "q", nxt, st.tensors))
    return acc.out


def _concat_conv_op(st: _State, acc: _Acc, nxt: ActQuantizer):
    """A conv reading a concatenation: the conv rule on the branches' channels end to end (one tensor of
    their common scale), then its main source split into one source per branch: the op's sum over sources
    is the conv over the concatenation, exactly."""
    specs = [st.tensors[t] for t in acc.src.parts]
    first = specs[0]
    for t in specs[1:]:
        if (t.shape[1:], t.max_value, t.scale, t.bits) != (first.shape[1:], first.max_value, first.scale, first.bits):
            raise GraphLoweringError(f"{acc.name}: the concatenated tensors {first.name} and {t.name} differ in size "
                                     "or quantization")
    joined = "+".join(acc.src.parts)
    spec = replace(first, name=joined, shape=(sum(t.shape[0] for t in specs), *first.shape[1:]))
    tensors = {**st.tensors, joined: spec}
    op = _conv_op(acc.name, acc.layer, acc.bn, joined, acc.out, nxt, tensors, acc.residual, acc.extra_bias)
    st.tensors[acc.out] = tensors[acc.out]
    main, rest = op.sources[0], op.sources[1:]
    parts, c0 = [], 0
    for t in specs:
        parts.append(replace(main, tensor=t.name, codes=np.ascontiguousarray(main.codes[:, c0:c0 + t.shape[0]])))
        c0 += t.shape[0]
    op.sources = parts + rest
    return op


def _add(st: _State, node: Node, a, b) -> _Acc:
    """main accumulation (with its BatchNorm) + shortcut -> the accumulation with a residual source."""
    main, other = (a, b) if isinstance(a, _Acc) and a.bn is not None and not _shortcut_conv(a) else (b, a)
    if not isinstance(main, _Acc) or main.bn is None or main.residual is not None:
        raise GraphLoweringError(f"{node.name}: an add needs a conv + BatchNorm on one side")
    cout = main.layer.out_channels
    if isinstance(other, str):  # identity: the codes the block input is stored as
        main.residual = (other, np.eye(st.tensors[other].shape[0], cout, dtype=np.int64).T.copy(),
                         st.tensors[other].scale, 1)
    elif isinstance(other, _OptionA):
        select = np.zeros((cout, st.tensors[other.src].shape[0]), dtype=np.int64)
        idx = other.index
        select[np.nonzero(idx >= 0)[0], idx[idx >= 0]] = 1
        main.residual = (other.src, select, st.tensors[other.src].scale, 2)
    elif _shortcut_conv(other):
        main.residual, main.extra_bias = _projection(other.layer, other.src, st.tensors, other.bn)
        st.layers[f"{main.name}.projection"] = other.layer
    else:
        raise GraphLoweringError(f"{node.name}: the shortcut must be a tensor, an option-A selection or a 1x1 "
                                 "projection conv (+ BatchNorm)")
    return main


def _step(st: _State, node: Node, env: dict):
    """The value of one node (a tensor name, a concatenation, an accumulation, an option-A shortcut, a
    constant)."""
    args = [env.get(a) if isinstance(a, Node) else a for a in node.args]
    mod = _module(st, node)
    if _is(node, torch.cat):
        parts = [env.get(a) for a in node.args[0]]
        if not all(isinstance(p, str) for p in parts):
            raise GraphLoweringError(f"{node.name}: a concatenation of quantized tensors only")
        return _Cat(tuple(parts))
    if any(isinstance(a, _Cat) for a in args) and not isinstance(mod, QConv2d):
        raise GraphLoweringError(f"{node.name}: a concatenation is read by convolutions only")
    if node.op == "placeholder":
        return node
    if node.op == "get_attr":
        return st.gm.get_buffer(node.target) if node.target in dict(st.gm.named_buffers()) else None
    if node.op == "call_function" and node.target in (operator.truediv, operator.mul) and isinstance(args[0], Node):
        return _input(st, node, args[0])
    if isinstance(mod, (QConv2d, QLinear)):
        if not isinstance(args[0], str) and not (isinstance(mod, QConv2d) and isinstance(args[0], _Cat)):
            raise GraphLoweringError(f"{node.name}: its input is not a quantized tensor")
        src = st.codes_of.get(args[0], args[0]) if mod.aq is not None and isinstance(args[0], str) else args[0]
        return _Acc(mod, src, *st.names.get(node.target, (node.name, node.name)))
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if not isinstance(args[0], _Acc) or args[0].bn is not None:
            raise GraphLoweringError(f"{node.name}: a BatchNorm must follow a conv or linear layer")
        args[0].bn = mod
        return args[0]
    if _is(node, *ADD):
        return _add(st, node, args[0], args[1])
    if _is(node, option_a):
        return _OptionA(args[0], args[1].cpu().numpy())
    if _is(node, *RELU):
        if not isinstance(args[0], _Acc):
            raise GraphLoweringError(f"{node.name}: ReLU must follow a conv / linear (+ BatchNorm, + add)")
        return _requantize(st, node, args[0])
    if _is(node, *MAXPOOL):
        k, s, p = _pool_args(node, mod, args)
        if (k, s, p) != (2, 2, 0):
            raise GraphLoweringError(f"{node.name}: max pooling must be 2x2, stride 2, no padding")
        out = f"p{st.pools}"
        st.ops.append(_max_pool_op(f"pool{st.pools}", args[0], out, st.tensors))
        st.pools += 1
        return out
    if _is(node, *GAP):
        _check_global(st, node, mod, args)
        st.ops.append(_avg_pool_op(args[0], "u", st.tensors))
        return "u"
    if _is(node, *PASS):
        return args[0]
    if node.op == "call_method" and node.target == "size" or node.op == "call_function" and node.target is getattr:
        return None
    if node.op == "output":
        acc = args[0]
        if not isinstance(acc, _Acc) or not isinstance(acc.layer, QLinear) or acc.bn is not None:
            raise GraphLoweringError("the output must be a linear layer's logits")
        if st.tensors[acc.src].shape[1:] != (1, 1):
            raise GraphLoweringError(f"the last linear layer expects a 1x1 map, not {st.tensors[acc.src].shape}")
        st.ops.append(_fc_op(acc.layer, acc.src, st.tensors))
        st.layers["fc"] = acc.layer
        return "logits"
    raise GraphLoweringError(f"{node.name} ({node.op} {node.target}): outside the op set (docs/frontend.md)")


def _check_global(st: _State, node: Node, mod, args) -> None:
    """Average pooling must cover the whole map (global average pooling)."""
    _, h, w = st.tensors[args[0]].shape
    if _is(node, "mean"):
        dims = args[1] if len(args) > 1 else node.kwargs.get("dim")
        ok = sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])) == [2, 3]
    elif _is(node, F.adaptive_avg_pool2d, nn.AdaptiveAvgPool2d):
        size = mod.output_size if mod is not None else args[1]
        ok = size in (1, (1, 1), [1, 1])
    else:
        k, s, p = _pool_args(node, mod, args)
        ok = k == h == w and p == 0
    if not ok:
        raise GraphLoweringError(f"{node.name}: only global average pooling (over the whole {h}x{w} map)")


def _pool_args(node: Node, mod, args) -> tuple[int, int, int]:
    def one(v):
        return v[0] if isinstance(v, (tuple, list)) and len(set(v)) == 1 else v

    if mod is not None:
        return one(mod.kernel_size), one(mod.stride or mod.kernel_size), one(mod.padding)
    kw = node.kwargs
    k = one(args[1] if len(args) > 1 else kw.get("kernel_size"))
    s = one(args[2] if len(args) > 2 and args[2] is not None else kw.get("stride") or k)
    return k, s, one(args[3] if len(args) > 3 else kw.get("padding", 0))


def lower_graph(model: nn.Module, input_shape: tuple[int, int, int]) -> IntNet:
    """A quantized model (sliced: see sw/lower.lower) -> IntNet, from its traced float-mode graph."""
    gm, copied = trace_float(model)
    owned = {id(m.aq) for m in copied.modules() if isinstance(m, (QConv2d, QLinear)) and m.aq is not None}
    free = [q for q in copied.modules() if isinstance(q, ActQuantizer) and id(q) not in owned]
    if len(free) > 1:
        raise GraphLoweringError(f"{len(free)} activation quantizers belong to no layer; at most one (the "
                                 "last linear layer's input) can be placed")
    names = model.int_names() if callable(getattr(model, "int_names", None)) else {}
    st = _State(gm, tuple(input_shape), free=free[0] if free else None, names=names,
                stream_bits=getattr(model, "residual_bits", None))
    env: dict = {}
    for node in gm.graph.nodes:
        env[node] = _step(st, node, env)
    if "x" not in st.tensors:
        raise GraphLoweringError("the input is never scaled to integer pixels (X / d)")
    cfg = model.arch_config() if callable(getattr(model, "arch_config", None)) else {}
    x = st.tensors["x"]
    meta = {"model": cfg.get("name", getattr(model, "model_name", type(model).__name__)), **{k: cfg[k] for k in META_KEYS if k in cfg},
            "classes": st.tensors["logits"].shape[0],
            "input_format": f"pixels 0..{x.max_value} (scale 1/{x.max_value}), {'x'.join(map(str, x.shape))}",
            "fp32_shapes": _fp32_shapes(copied, st.layers)}
    return IntNet(st.tensors, st.ops, "x", "logits", meta).validate()
