"""Example 2: a small ResNet with 1x1 projection shortcuts (conv + BatchNorm, torchvision style), on digits.

    python docs/examples/small_resnet.py

A 3x3 stem, one identity block and two stride-2 blocks whose shortcut is a 1x1 conv + BatchNorm
(``prepare`` folds that BatchNorm into the projection, which then joins the block's second conv as one
integer op), global average pooling over 2x2 and the classifier. The float model sees ``(X / 16 - 0.3)
/ 0.4`` (a declared mean and std; ``prepare`` folds them into the stem). tests/test_examples.py runs it.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + (x if self.down is None else self.down(x)))


class SmallResNet(nn.Module):
    def __init__(self, widths=(16, 32, 64), cin: int = 1) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem, self.bn = nn.Conv2d(cin, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1)
        self.layer1, self.layer2, self.layer3 = Block(w1, w1, 1), Block(w1, w2, 2), Block(w2, w3, 2)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(w3, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def main(w_bits: int = 4, a_bits: int = 4) -> dict:
    from lenet import train_and_import  # docs/examples/lenet.py

    from apotflow.sw.graph_prepare import Preprocess

    return train_and_import(SmallResNet, w_bits, a_bits, Preprocess(pixel_max=16, mean=(0.3,), std=(0.4,)), epochs=15)


if __name__ == "__main__":
    print(json.dumps(main()))
