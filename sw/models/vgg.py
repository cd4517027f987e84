"""CIFAR VGG-16 (13 convs + one fc, as in the FPGM / APoT CIFAR code) with APoT quantization.

    X (3x32x32 ints 0..255), x = X / 255      convs[0]: 8-bit weights on the integer pixels
    each conv: 3x3 pad 1 + BN + ReLU; 'M' = MaxPool2d(2); convs[1:] W4/A4, quantizing their own input
    after the fifth pool the map is 1x1x512: logits = fc(qfc(h))   qfc: ActQuantizer(a_bits) whose
    integer codes feed the fc (8-bit weights, float bias)

Max pooling commutes with the (monotonic) activation quantizer, so the integer model pools the next
consumer's codes (reduce="max"). Each conv is its own prune group (no residual adds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quant import ActQuantizer, QConv2d, QLinear

CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class CifarVGG16(nn.Module):
    def __init__(self, scale: float = 1.0, num_classes: int = 10, w_bits: int = 4, a_bits: int = 4) -> None:
        """scale: channel multiplier (1/16 gives 4..32 channels, for tests and small hardware)."""
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, not {scale!r}")
        self.scale, self.quantize = float(scale), False
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
        self.qfc = ActQuantizer(a_bits)
        self.fc = QLinear(cin, num_classes, bias=True, w_bits=8, a_bits=None)

    name = "vgg16"

    def arch_config(self) -> dict:
        return {"name": "vgg16", "scale": self.scale, "num_classes": self.fc.out_features,
                "w_bits": self.convs[1].w_bits, "a_bits": self.convs[1].a_bits}

    def prune_groups(self) -> list[list[tuple[QConv2d, nn.BatchNorm2d]]]:
        return [[(c, b)] for c, b in zip(self.convs, self.bns)]

    def group_consumers(self) -> list[list[nn.Module]]:
        return [[c] for c in self.convs[1:]] + [[self.fc]]

    def prune_report(self) -> list[dict]:
        """Per group (conv{i}): kept, total, achieved prune rate."""
        return [{"group": f"conv{i}", "kept": int(c.filter_mask.sum()), "total": int(c.filter_mask.numel()),
                 "rate": 1 - float(c.filter_mask.sum()) / c.filter_mask.numel()} for i, c in enumerate(self.convs)]

    def forward(self, X: Tensor) -> Tensor:
        """X: pixels 0..255 as float, shape (N, 3, 32, 32)."""
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
        x = x.flatten(1)
        if not self.quantize:
            return self.fc(x)
        xq, codes = self.qfc.quantize(x)
        return self.fc(xq, codes, self.qfc.scale())
