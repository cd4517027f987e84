"""Example 3: a Keras-style ResNet exported to ONNX from PyTorch, then ``apotflow import``-ed.

    python docs/examples/keras_style_onnx.py OUT     # trains on digits, writes OUT/model.onnx, imports it

What makes it Keras-style (what a TensorFlow model converted to ONNX looks like): raw pixels in (no
scaling: ``--input-scale 1``), 'same' padding on the stride-2 convs written as an asymmetric pad (0 top
/ left, 1 bottom / right) before a conv without padding, 1x1 stride-2 projection shortcuts without
BatchNorm, a bias on every conv, ReLU after each add, average pooling over the whole last map, a dense
classifier. The ONNX exporter folds each BatchNorm into its conv, so the file has convs with biases and
no BatchNormalization nodes: ``prepare`` gives each an identity BatchNorm (the lowering folds the bias
into the requantization thresholds). tests/test_examples.py exports it inside the test and imports it
with the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class SameConv(nn.Module):
    """Keras Conv2D(padding='same'): stride 1 pads k // 2 on every side; stride 2 on an even map pads
    (k - 2) // 2 before and k // 2 after."""

    def __init__(self, cin: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        self.pad = (k // 2,) * 4 if stride == 1 else ((k - 2) // 2, k // 2) * 2  # left, right, top, bottom
        self.conv = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class Stack(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = SameConv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = SameConv(cout, cout, 3, 1), nn.BatchNorm2d(cout)
        self.proj = nn.Conv2d(cin, cout, 1, stride) if stride != 1 else None  # bias, no BatchNorm

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + (x if self.proj is None else self.proj(x)))


class KerasStyleResNet(nn.Module):
    """ResNet-8's topology (MLPerf Tiny IC01) at any input size: 3x3 conv, three stacks (stride 2 on the
    first conv of stacks 2 and 3), average pooling over the last map, dense."""

    def __init__(self, cin: int = 1, widths=(16, 32, 64), pool: int = 2, classes: int = 10) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem, self.bn = SameConv(cin, w1, 3, 1), nn.BatchNorm2d(w1)
        self.stacks = nn.Sequential(Stack(w1, w1, 1), Stack(w1, w2, 2), Stack(w2, w3, 2))
        self.pool, self.fc = nn.AvgPool2d(pool), nn.Linear(w3, classes)

    def forward(self, x):  # x: raw pixels
        h = self.stacks(F.relu(self.bn(self.stem(x))))
        return self.fc(torch.flatten(self.pool(h), 1))


def export_onnx(model: nn.Module, path, shape=(1, 8, 8)) -> Path:
    """The float model as ONNX (the legacy exporter; eval mode: BatchNorm folded into the convs)."""
    torch.onnx.export(model.eval(), torch.zeros(1, *shape), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    return Path(path)


def main(out: str) -> int:
    from lenet import train  # docs/examples/lenet.py

    from apotflow.sim.cli import main as apotflow
    from apotflow.sw.data import load_digits_split

    torch.manual_seed(0)
    split = load_digits_split()
    model = train(KerasStyleResNet(), split.x_train, split.y_train, epochs=15)  # raw pixels 0..16
    Path(out).mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, Path(out) / "model.onnx")
    return apotflow(["import", str(onnx_path), "--out", out, "--data", "digits", "--input-scale", "1"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/keras-style-onnx"))
