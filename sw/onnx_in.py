"""ONNX in: a float ONNX CNN as a torch.fx GraphModule of standard torch layers, for the graph front end.

    from apotflow.sw.onnx_in import load_onnx
    gm = load_onnx("model.onnx")          # nn.Conv2d, nn.BatchNorm2d/1d, nn.ReLU, add, pools, nn.Linear

The op set (docs/frontend.md) is the integer network's: Conv (groups 1, dilation 1, zero padding, symmetric
or not), BatchNormalization, Relu, Add (of two tensors, or a constant bias after MatMul), Concat (along
channels), MaxPool,
AveragePool, GlobalAveragePool, Pad (constant 0, spatial), Flatten and Reshape to (N, -1), Gemm and
MatMul (with constant weights), Identity and Dropout (no-ops at inference). The model has one image input
(N, C, H, W) and one output. Before anything is built, every node outside the op set is listed in one
``UnsupportedModel`` (its name, op, and what to do instead); a file that is not a readable ONNX model is
an ``OnnxError`` (one line). ``onnx`` is needed only here (the sw extra).
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from .frontend import CONCAT_INSTEAD, UnsupportedModel

MAX_ONNX_BYTES = 1 << 30  # a CNN that lowers to this project's integer network is far smaller

OPS = ("Conv", "BatchNormalization", "Relu", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Pad",
       "Flatten", "Reshape", "Gemm", "MatMul", "Identity", "Dropout", "Constant")
INSTEAD = {
    "Sigmoid": "only ReLU activations", "Tanh": "only ReLU activations", "LeakyRelu": "only ReLU activations",
    "Clip": "only ReLU activations (the activation quantizer clips at its own threshold): export ReLU",
    "HardSwish": "only ReLU activations", "HardSigmoid": "only ReLU activations", "Elu": "only ReLU activations",
    "Softmax": "drop the softmax: the integer network returns logits (argmax is unchanged)",
    "LogSoftmax": "drop the log-softmax: the integer network returns logits (argmax is unchanged)",
    "Resize": "no upsampling: the integer network only reduces spatial size",
    "Upsample": "no upsampling: the integer network only reduces spatial size",
    "Mul": "fold products into a conv or linear layer (or the declared input scaling)",
    "Sub": "fold it into the declared input mean or a bias",
    "Div": "fold it into the declared input scaling or a layer's weights",
    "ConvTranspose": "no transposed convolution: the integer network only reduces spatial size",
}


# Inputs that must be initializers (or Constant outputs): op -> the slice of node.input holding them.
CONST_INPUTS = {"Conv": slice(1, 3), "BatchNormalization": slice(1, 5), "Gemm": slice(1, 3), "MatMul": slice(1, 2),
                "Pad": slice(1, 3), "Reshape": slice(1, 2)}


class OnnxError(ValueError):
    """An ONNX file that cannot be read as a model (one line)."""


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(p, name: str) -> tuple[int, int, int, int]:
    """ONNX 2-D pads (top, left, bottom, right)."""
    p = tuple(int(v) for v in (p or (0, 0, 0, 0)))
    if len(p) != 4:
        raise OnnxError(f"node {name}: 2-D pads need 4 values, not {len(p)}")
    return p


def _check_node(node, consts: dict) -> str | None:
    """What to do instead, if the node is outside the op set; None when it is supported."""
    op, a = node.op_type, _attrs(node)
    if node.domain not in ("", "ai.onnx"):
        return f"custom op domain {node.domain!r}: only standard ONNX ops"
    if op not in OPS:
        return INSTEAD.get(op, f"{op} is outside the op set (docs/frontend.md)")
    if any(k and k not in consts for k in node.input[CONST_INPUTS.get(op, slice(0, 0))]):
        return f"{op} with constant weights, statistics, pads and shapes only (initializers, not computed tensors)"
    if op == "Conv":
        if a.get("group", 1) != 1:
            return "grouped / depthwise convolution: use group=1"
        if any(d != 1 for d in a.get("dilations", (1, 1))):
            return "dilated convolution: use dilations 1"
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return "auto_pad: export with explicit pads"
        if len(a.get("kernel_shape", (1, 1))) != 2 or len(node.input) < 2:
            return "2-D convolution with weights only"
    if op in ("MaxPool", "AveragePool"):
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", (1, 1))):
            return "pooling without ceil_mode or dilation"
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return "auto_pad: export with explicit pads"
        t, l, b, r = _pads(a.get("pads"), node.name)
        if (t, l) != (b, r):
            return "asymmetric pooling pads: pad with a Pad node before the pooling"
    if op == "Pad":
        mode = a.get("mode", b"constant")
        if mode not in (b"constant", "constant"):
            return "only constant zero padding"
        if len(node.input) > 2 and node.input[2] and float(np.asarray(consts.get(node.input[2], 1)).ravel()[0]) != 0:
            return "only zero padding"
    if op in ("Gemm", "MatMul"):
        if len(node.input) < 2:
            return "a linear layer with weights only"
        if op == "Gemm" and a.get("transA", 0):
            return "Gemm with transA=0 only"
    if op == "Concat" and (a.get("axis") not in (1, -3) or any(k in consts for k in node.input)):
        return CONCAT_INSTEAD
    if op == "Flatten" and a.get("axis", 1) != 1:
        return "flatten to (N, -1) only (axis 1)"
    return None


def load_onnx(path, max_bytes: int = MAX_ONNX_BYTES) -> fx.GraphModule:
    """The float model of an ONNX file as a torch.fx GraphModule (module doc)."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("onnx is needed to read .onnx files", name="onnx") from e
    path = Path(path)
    if not path.is_file():
        raise OnnxError(f"{path}: no such file")
    if path.stat().st_size > max_bytes:
        raise OnnxError(f"{path}: {path.stat().st_size} bytes, more than the {max_bytes} an ONNX CNN here may have")
    try:
        model = onnx.load(str(path))
        model = shape_inference.infer_shapes(model)
    except Exception as e:  # protobuf decode errors have no common public base class
        raise OnnxError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e).strip()[:120]})") from None
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            a = _attrs(n)
            if "value" in a:
                consts[n.output[0]] = numpy_helper.to_array(a["value"])
    nodes = _fold_constants(g.node, consts)
    bad = [{"name": n.name or f"#{i}", "op": n.op_type, "target": ",".join(n.input), "where": f"node {i}",
            "instead": why} for i, n in nodes if (why := _check_node(n, consts))]
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        bad.append({"name": "graph", "op": "inputs/outputs", "target": f"{len(inputs)} in, {len(g.output)} out",
                    "where": "graph", "instead": "one image input (N, C, H, W) and one output"})
    if bad:
        raise UnsupportedModel(bad, what=str(path))
    weights = [k for _, n in nodes for k in n.input[CONST_INPUTS.get(n.op_type, slice(0, 0))]
               if k and n.op_type in ("Conv", "BatchNormalization", "Gemm", "MatMul")]
    ints = [k for k in weights if not np.issubdtype(np.asarray(consts[k]).dtype, np.floating)]
    if ints:
        raise OnnxError(f"{path}: integer weights ({ints[0]!r}, {np.asarray(consts[ints[0]]).dtype}): a quantized "
                        "ONNX model; import the float model (apotflow quantizes it)")
    gm = _build(g, [n for _, n in nodes], consts, inputs[0].name, _ranks(g))
    gm.input_shape = _input_shape(inputs[0], path)
    return gm


def _input_shape(v, path) -> tuple[int, int, int]:
    """(C, H, W) of the image input: static, the batch dimension may be symbolic."""
    dims = v.type.tensor_type.shape.dim if v.type.HasField("tensor_type") else []
    if len(dims) != 4:
        raise OnnxError(f"{path}: the input {v.name!r} must be an (N, C, H, W) image tensor, not rank {len(dims)}")
    chw = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
    if any(c is None or c <= 0 for c in chw):
        shown = ["?" if c is None else c for c in chw]
        raise OnnxError(f"{path}: the input {v.name!r} has dynamic sizes (C, H, W) = ({', '.join(map(str, shown))}); "
                        "export it with a fixed image size")
    return tuple(int(c) for c in chw)


def _ranks(g) -> dict[str, int]:
    out = {}
    for v in [*g.input, *g.value_info, *g.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            out[v.name] = len(v.type.tensor_type.shape.dim)
    return out


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def _fold_constants(nodes, consts: dict) -> list:
    """(index, node) of the nodes that read the image; a node whose inputs are all constants (the shape and
    pads arithmetic exporters write, e.g. torch's F.pad: ConstantOfShape, Concat, Slice, Transpose, Cast)
    is evaluated once with ONNX's reference evaluator, its outputs becoming constants."""
    from onnx.reference import ReferenceEvaluator

    kept = []
    for i, n in enumerate(nodes):
        if n.op_type == "Constant" and n.output[0] in consts:
            continue
        ins = [k for k in n.input if k]
        if ins and all(k in consts for k in ins) and n.domain in ("", "ai.onnx"):
            try:
                outs = ReferenceEvaluator(n).run(None, {k: consts[k] for k in ins})
            except Exception:  # left in the graph: the op check names it
                kept.append((i, n))
                continue
            consts.update({k: np.asarray(v) for k, v in zip(n.output, outs)})
            continue
        kept.append((i, n))
    return kept


def _build(g, nodes: list, consts: dict, input_name: str, ranks: dict) -> fx.GraphModule:
    root, graph = nn.Module(), fx.Graph()
    env = {input_name: graph.placeholder("x")}
    uses: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    linears: dict[str, str] = {}  # output of a MatMul -> its Linear module's name (a bias Add folds into it)

    def module(name: str, m: nn.Module, x):
        key = "".join(c if c.isalnum() else "_" for c in name) or "m"
        while hasattr(root, key):
            key += "_"
        root.add_module(key, m)
        return key, graph.call_module(key, (x,))

    for i, n in enumerate(nodes):
        op, a, name = n.op_type, _attrs(n), n.name or f"{n.op_type.lower()}{i}"
        if op == "Constant":
            continue
        missing = [x for x in n.input if x and x not in consts and x not in env]
        if missing:
            raise OnnxError(f"node {name} ({op}): its input {missing[0]!r} is produced by no earlier node")
        ins = [env.get(x) for x in n.input]
        if op in ("Identity", "Dropout"):
            env[n.output[0]] = ins[0]
            continue
        if op == "Conv":
            w = consts[n.input[1]]
            t, l, b, r = _pads(a.get("pads"), name)
            x = ins[0]
            if (t, l) != (b, r):
                _, x = module(name + "_pad", nn.ZeroPad2d((l, r, t, b)), x)
                t = l = 0
            conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=tuple(a.get("strides", (1, 1))),
                             padding=(t, l), bias=len(n.input) > 2 and bool(n.input[2]))
            conv.weight.data = _t(w)
            if conv.bias is not None:
                conv.bias.data = _t(consts[n.input[2]])
            _, env[n.output[0]] = module(name, conv, x)
        elif op == "BatchNormalization":
            scale, bias, mean, var = (consts[k] for k in n.input[1:5])
            bn = (nn.BatchNorm1d if ranks.get(n.input[0]) == 2 else nn.BatchNorm2d)(len(scale), eps=a.get("epsilon", 1e-5))
            bn.weight.data, bn.bias.data = _t(scale), _t(bias)
            bn.running_mean.data, bn.running_var.data = _t(mean), _t(var)
            _, env[n.output[0]] = module(name, bn.eval(), ins[0])
        elif op == "Relu":
            _, env[n.output[0]] = module(name, nn.ReLU(), ins[0])
        elif op == "Add":
            c = [k for k in n.input if k in consts]
            if not c:
                env[n.output[0]] = graph.call_function(operator.add, tuple(ins))
                continue
            other = next(k for k in n.input if k not in consts)
            lin = linears.get(other)
            if lin is None or uses.get(other) != 1 or getattr(root, lin).bias is not None:
                raise UnsupportedModel([{"name": name, "op": op, "target": ",".join(n.input), "where": f"node {i}",
                                         "instead": "a constant added to anything but a MatMul's output: fold it "
                                                    "into a layer's bias"}])
            getattr(root, lin).bias = nn.Parameter(_t(consts[c[0]]).reshape(-1))
            env[n.output[0]] = env[other]
        elif op == "Concat":
            env[n.output[0]] = graph.call_function(torch.cat, (list(ins), 1))
        elif op in ("MaxPool", "AveragePool"):
            k, s = tuple(a["kernel_shape"]), tuple(a.get("strides", (1, 1)))
            p = _pads(a.get("pads"), name)[:2]
            pool = nn.MaxPool2d(k, s, p) if op == "MaxPool" else \
                nn.AvgPool2d(k, s, p, count_include_pad=bool(a.get("count_include_pad", 0)))
            _, env[n.output[0]] = module(name, pool, ins[0])
        elif op == "GlobalAveragePool":
            _, env[n.output[0]] = module(name, nn.AdaptiveAvgPool2d(1), ins[0])
        elif op == "Pad":
            p = [int(v) for v in (consts[n.input[1]] if len(n.input) > 1 else a["pads"])]
            if len(p) != 8 or any(p[j] for j in (0, 1, 4, 5)):
                raise UnsupportedModel([{"name": name, "op": op, "target": ",".join(n.input), "where": f"node {i}",
                                         "instead": "pad the two spatial dimensions of an (N, C, H, W) tensor only"}])
            _, env[n.output[0]] = module(name, nn.ZeroPad2d((p[3], p[7], p[2], p[6])), ins[0])
        elif op in ("Flatten", "Reshape"):
            if op == "Reshape":
                shape = [int(v) for v in consts.get(n.input[1], [])]
                if len(shape) != 2 or shape[1] not in (-1,) and shape[0] not in (0, -1, 1):
                    raise UnsupportedModel([{"name": name, "op": op, "target": str(shape), "where": f"node {i}",
                                             "instead": "reshape to (N, -1) only (a flatten)"}])
            _, env[n.output[0]] = module(name, nn.Flatten(), ins[0])
        elif op in ("Gemm", "MatMul"):
            w = np.asarray(consts[n.input[1]], dtype=np.float32)
            if op == "MatMul" or not a.get("transB", 0):
                w = w.T
            alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
            has_c = op == "Gemm" and len(n.input) > 2 and bool(n.input[2])
            lin = nn.Linear(w.shape[1], w.shape[0], bias=has_c)
            lin.weight.data = _t(w * alpha)
            if has_c:
                lin.bias.data = _t(np.broadcast_to(np.asarray(consts[n.input[2]], np.float32) * beta, (w.shape[0],)))
            key, env[n.output[0]] = module(name, lin, ins[0])
            if op == "MatMul":
                linears[n.output[0]] = key
    out = g.output[0].name
    if out not in env:
        raise OnnxError(f"graph output {out!r} is not produced by any node")
    graph.output(env[out])
    gm = fx.GraphModule(root, graph)
    return gm.eval()
