"""ONNX in (sw/onnx_in.py): a float ONNX CNN becomes a torch.fx model of standard layers that computes what
ONNX's own reference evaluator computes; every node outside the op set is named before anything is built."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from apotflow.sw.frontend import UnsupportedModel  # noqa: E402
from apotflow.sw.onnx_in import OnnxError, load_onnx  # noqa: E402

RNG = np.random.default_rng(0)


def _init(name, *shape, positive=False):
    a = RNG.standard_normal(shape).astype(np.float32) * 0.3
    return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)


def _bn(name, c, x, y):
    inits = [_init(f"{name}.s", c), _init(f"{name}.b", c), _init(f"{name}.m", c), _init(f"{name}.v", c, positive=True)]
    return helper.make_node("BatchNormalization", [x, *(i.name for i in inits)], [y], name=name, epsilon=1e-5), inits


def _small_resnet(path, extra_nodes=(), extra_inits=()):
    """conv (asymmetric pad) - bn - relu - conv - bn - add - relu - maxpool - conv 1x1 s2 - avgpool -
    global average pool - flatten - gemm - bn1d - relu - matmul + bias."""
    nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64), "pads")]
    nodes.append(helper.make_node("Pad", ["x", "pads"], ["p0"], name="pad0", mode="constant"))
    inits += [_init("w1", 8, 3, 3, 3), _init("b1", 8)]
    nodes.append(helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                                  strides=[1, 1], pads=[0, 0, 0, 0]))
    n, i = _bn("bn1", 8, "c1", "n1")
    nodes.append(n)
    inits += i
    nodes.append(helper.make_node("Relu", ["n1"], ["r1"], name="relu1"))
    inits.append(_init("w2", 8, 8, 3, 3))
    nodes.append(helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    n, i = _bn("bn2", 8, "c2", "n2")
    nodes += [n, helper.make_node("Add", ["n2", "r1"], ["a2"], name="add2"),
              helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
              helper.make_node("MaxPool", ["r2"], ["m2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2])]
    inits += i
    inits.append(_init("w3", 16, 8, 1, 1))
    nodes += [helper.make_node("Conv", ["m2", "w3"], ["c3"], name="conv3", kernel_shape=[1, 1], strides=[2, 2]),
              helper.make_node("AveragePool", ["c3"], ["ap"], name="avg", kernel_shape=[2, 2], strides=[1, 1]),
              helper.make_node("GlobalAveragePool", ["ap"], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1)]
    inits += [_init("wf", 12, 16), _init("bf", 12)]
    nodes.append(helper.make_node("Gemm", ["f", "wf", "bf"], ["h"], name="fc1", transB=1))
    n, i = _bn("bn3", 12, "h", "hn")
    nodes += [n, helper.make_node("Relu", ["hn"], ["hr"], name="relu3"), *extra_nodes]
    inits += [*i, _init("wo", 12, 10), _init("bo", 10), *extra_inits]
    nodes += [helper.make_node("MatMul", ["hr", "wo"], ["mo"], name="fc2"),
              helper.make_node("Add", ["mo", "bo"], ["y"], name="fc2_bias")]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def test_onnx_model_computes_what_onnx_computes(tmp_path):
    model = _small_resnet(tmp_path / "m.onnx")
    x = RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    gm = load_onnx(tmp_path / "m.onnx")
    with torch.no_grad():
        got = gm(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    kinds = {type(m).__name__ for m in gm.modules()}
    assert {"Conv2d", "BatchNorm2d", "BatchNorm1d", "ZeroPad2d", "MaxPool2d", "AvgPool2d", "Linear"} <= kinds


def test_every_unsupported_node_is_named(tmp_path):
    extra = [helper.make_node("Sigmoid", ["hr"], ["s"], name="gate"),
             helper.make_node("Concat", ["hr", "s"], ["cat"], name="join", axis=2)]
    _small_resnet(tmp_path / "m.onnx", extra_nodes=extra)
    with pytest.raises(UnsupportedModel) as e:
        load_onnx(tmp_path / "m.onnx")
    msg = str(e.value)
    assert "2 unsupported node(s)" in msg.splitlines()[0]
    assert "gate (Sigmoid" in msg and "only ReLU" in msg and "join (Concat" in msg and "along channels only" in msg


def test_grouped_conv_is_refused(tmp_path):
    w = _init("wg", 4, 1, 3, 3)
    g = helper.make_graph([helper.make_node("Conv", ["x", "wg"], ["y"], name="dw", kernel_shape=[3, 3], group=4)],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], [w])
    onnx.save(helper.make_model(g), str(tmp_path / "dw.onnx"))
    with pytest.raises(UnsupportedModel, match="dw \\(Conv.*group=1"):
        load_onnx(tmp_path / "dw.onnx")


@pytest.mark.parametrize("content", [b"", b"not a protobuf \xff\xfe" * 10])
def test_a_broken_file_is_one_line(tmp_path, content):
    f = tmp_path / "bad.onnx"
    f.write_bytes(content)
    with pytest.raises((OnnxError, UnsupportedModel)) as e:
        load_onnx(f)
    assert "\n" not in str(e.value).splitlines()[0]


def test_computed_parameters_and_dangling_inputs_are_one_line(tmp_path):
    """A BatchNormalization whose scale is a computed tensor is named before anything is built; a node
    reading a tensor no earlier node produced is one OnnxError line (not a KeyError traceback)."""
    c, x = 4, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    inits = [_init("b", c), _init("m", c), _init("v", c, positive=True)]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["s"], name="r"),
                           helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")],
                          "g", [x], [y], inits)
    onnx.save(helper.make_model(g), str(tmp_path / "bn.onnx"))
    with pytest.raises(UnsupportedModel, match="bn \\(BatchNormalization.*constant weights, statistics"):
        load_onnx(tmp_path / "bn.onnx")
    g = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], "g", [x], [y])
    onnx.save(helper.make_model(g), str(tmp_path / "dangling.onnx"))
    with pytest.raises(OnnxError, match="node r \\(Relu\\): its input 'nowhere' is produced by no earlier node"):
        load_onnx(tmp_path / "dangling.onnx")
