"""Example 4: an Inception-style CNN whose branches are concatenated along channels, on digits.

    python docs/examples/inception.py      # trains ~3 s on a CPU, prints float / fake-quant / integer top-1

A 3x3 stem and a 2x2 max pool (8x8 -> 4x4), then a module of three branches (a 1x1 conv, a 3x3 conv and
the pooled stem itself) concatenated along channels (``torch.cat(..., 1)``), a 3x3 conv over the
concatenation, global average pooling and the classifier. ``prepare`` stores the
three branches with one quantizer, that of the layers reading them (the two branch convs read the
pooled stem, the conv after them reads all three); the integer op of that conv reads each branch
as one source, its weights split by channel range. tests/test_examples.py runs it.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Inception(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem, self.pool = conv_bn(1, c, 3), nn.MaxPool2d(2)
        self.b1, self.b2 = conv_bn(c, c, 1), conv_bn(c, c, 3)
        self.mix = conv_bn(3 * c, 2 * c, 3)  # reads the concatenation
        self.fc = nn.Linear(2 * c, 10)

    def forward(self, x):  # x: X / 16, (N, 1, 8, 8)
        p = self.pool(self.stem(x))  # 4x4
        x = self.mix(torch.cat([self.b1(p), self.b2(p), p], 1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main(w_bits: int = 4, a_bits: int = 4) -> dict:
    from lenet import train_and_import  # docs/examples/lenet.py

    return train_and_import(Inception, w_bits, a_bits, epochs=15)


if __name__ == "__main__":
    print(json.dumps(main()))
