"""CIFAR VGG-16 (13 convs, then the FPGM CIFAR classifier) with APoT quantization.

    X (3x32x32 ints 0..255), x = X / 255      convs[0]: 8-bit weights on the integer pixels
    each conv: 3x3 pad 1 + BN + ReLU; 'M' = MaxPool2d(2); convs[1:] W4/A4, quantizing their own input
    after the fifth pool the map is 1x1x512, flattened:
    hidden > 0 (the FPGM / paper classifier, zoo name vgg16):
        h = relu(bn_fc1(fc1(x)))     fc1: Linear 512 -> hidden (fc1_bits weights, 8 by default; bias),
                                     quantizing its own input (a_bits); bn_fc1: BatchNorm1d
        logits = fc(qfc(h))          qfc: ActQuantizer(a_bits) whose codes feed fc (8-bit weights, float bias)
    hidden = 0 (zoo name vgg16-1fc, the model of the runs before the classifier was added):
        logits = fc(qfc(x))

Max pooling commutes with the (monotonic) activation quantizer, so the integer model pools the next
consumer's codes (reduce="max"). Each conv is its own prune group (no residual adds), and so is the
hidden fc (its neurons, GM-scored over its weight rows; the last fc consumes them).

Why the hidden fc is pruned and has 8-bit weights: of the choices (conv filters only or the hidden fc
too; hidden fc W4 or W8; A4 inputs), only pruning it with 8-bit weights gives the
paper's size and BOPs reductions within 0.05x (15.97x / 126.26x against 15.95x / 126.24x; W4 gives
16.12x / 126.31x unpruned and 16.24x / 126.36x pruned: bench/vgg_classifier_counts.py). The paper's
"first and last layers 8-bit" then reads: the first conv and the whole classifier.

``hidden`` defaults to 0 because a checkpoint records its constructor arguments: one written before the
classifier existed names no ``hidden`` and must rebuild the one-fc model; the zoo's vgg16 passes 512.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quant import ActQuantizer, QConv2d, QLinear

CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class CifarVGG16(nn.Module):
    def __init__(self, scale: float = 1.0, num_classes: int = 10, w_bits: int = 4, a_bits: int = 4,
                 hidden: int = 0, fc1_bits: int = 8) -> None:
        """scale: channel multiplier (1/16 gives 4..32 channels, for tests and small hardware); hidden: the
        classifier's hidden width before scaling (512: the FPGM classifier; 0: one fc); fc1_bits: the
        hidden fc's weight bits."""
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, not {scale!r}")
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, not {hidden!r}")
        self.scale, self.quantize, self.hidden, self.fc1_bits = float(scale), False, int(hidden), int(fc1_bits)
        self.cfg = [v if v == "M" else max(1, round(v * scale)) for v in CFG16]
        convs, bns, cin = [], [], 3
        for v in self.cfg:
            if v == "M":
                continue
            first = not convs
            convs.append(QConv2d(cin, v, 3, padding=1, bias=False, w_bits=8 if first else w_bits,
                                 a_bits=None if first else a_bits))
            bns.append(nn.BatchNorm2d(v))
            cin = v
        self.convs, self.bns = nn.ModuleList(convs), nn.ModuleList(bns)
        if self.hidden:
            width = max(1, round(self.hidden * scale))
            self.fc1 = QLinear(cin, width, bias=True, w_bits=fc1_bits, a_bits=a_bits)
            self.bn_fc1 = nn.BatchNorm1d(width)
            cin = width
        self.qfc = ActQuantizer(a_bits)
        self.fc = QLinear(cin, num_classes, bias=True, w_bits=8, a_bits=None)

    @property
    def name(self) -> str:
        return "vgg16" if self.hidden else "vgg16-1fc"

    def arch_config(self) -> dict:
        cfg = {"name": self.name, "scale": self.scale, "num_classes": self.fc.out_features,
               "w_bits": self.convs[1].w_bits, "a_bits": self.convs[1].a_bits, "hidden": self.hidden}
        return cfg | ({"fc1_bits": self.fc1_bits} if self.hidden else {})

    def int_names(self) -> dict[str, tuple[str, str]]:
        """{layer: (op, tensor it writes)} in the integer network (sw/graph_lower.py): convs[i] -> conv{i}
        writing h{i}, the hidden fc -> fc1 writing f1 (max pools: pool{k} -> p{k}, the last fc -> logits)."""
        return {f"convs.{i}": (f"conv{i}", f"h{i}") for i in range(len(self.convs))} | {"fc1": ("fc1", "f1")}

    def prune_groups(self) -> list[list[tuple[nn.Module, nn.Module]]]:
        """conv0..conv12, then the hidden fc (FPGM classifier only)."""
        return [[(c, b)] for c, b in zip(self.convs, self.bns)] + ([[(self.fc1, self.bn_fc1)]] if self.hidden else [])

    def group_consumers(self) -> list[list[nn.Module]]:
        return [[c] for c in self.convs[1:]] + ([[self.fc1], [self.fc]] if self.hidden else [[self.fc]])

    def prune_report(self) -> list[dict]:
        """Per group (conv{i}, fc1): kept, total, achieved prune rate."""
        names = [f"conv{i}" for i in range(len(self.convs))] + ["fc1"] * bool(self.hidden)
        return [{"group": n, "kept": int(g[0][0].filter_mask.sum()), "total": int(g[0][0].filter_mask.numel()),
                 "rate": 1 - float(g[0][0].filter_mask.sum()) / g[0][0].filter_mask.numel()}
                for n, g in zip(names, self.prune_groups())]

    def features(self, X: Tensor) -> Tensor:
        """The flattened output of the last conv stage (N, 512 * scale)."""
        x, i = X / 255, 0
        for v in self.cfg:
            if v == "M":
                x = F.max_pool2d(x, 2)
                continue
            if i == 0 and self.quantize:
                y = self.convs[0](x, X, torch.tensor(1 / 255, dtype=X.dtype))
            else:
                y = self.convs[i](x)
            x, i = F.relu(self.bns[i](y)), i + 1
        return x.flatten(1)

    def forward(self, X: Tensor) -> Tensor:
        """X: pixels 0..255 as float, shape (N, 3, 32, 32)."""
        x = self.features(X)
        if self.hidden:
            x = F.relu(self.bn_fc1(self.fc1(x)))
        if not self.quantize:
            return self.fc(x)
        xq, codes = self.qfc.quantize(x)
        return self.fc(xq, codes, self.qfc.scale())
