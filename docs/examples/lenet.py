"""Example 1: a LeNet-style CNN with max pooling, trained on scikit-learn's digits, quantized after training.

    python docs/examples/lenet.py          # trains ~2 s on a CPU, prints float / fake-quant / integer top-1

Three 3x3 convs (one without BatchNorm: prepare gives it an identity one), each followed by 2x2 max
pooling down to a 1x1 map, a hidden linear layer with ReLU and the classifier. The float model sees
``X / 16`` of the integer pixels X (0..16); ``prepare`` folds that into the first conv, which then
sees integer pixels. tests/test_examples.py runs it.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)  # bias, no BatchNorm
        self.conv3, self.bn3 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False), nn.BatchNorm2d(2 * c)
        self.pool = nn.MaxPool2d(2)
        self.fc1, self.fc2 = nn.Linear(2 * c, 32), nn.Linear(32, 10)

    def forward(self, x):  # x: X / 16, (N, 1, 8, 8)
        x = self.pool(F.relu(self.bn1(self.conv1(x))))  # 4x4
        x = self.pool(F.relu(self.conv2(x)))  # 2x2
        x = self.pool(F.relu(self.bn3(self.conv3(x))))  # 1x1
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30, seed: int = 0) -> nn.Module:
    """Plain Adam on float inputs x (already preprocessed), full batches of 128."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def train_and_import(make_model, w_bits: int, a_bits: int, pre=None, epochs: int = 30) -> dict:
    """Seed 0, train ``make_model()`` on the digits training split (seen through ``pre``, default X / 16)
    and import it at W``w_bits``/A``a_bits`` (calibration on 512 training images): the report of
    ``import_float_model`` on the 450 test images. Every example's ``main``."""
    from apotflow.sw.api import QuantConfig, import_float_model
    from apotflow.sw.data import load_digits_split
    from apotflow.sw.graph_prepare import Preprocess

    torch.manual_seed(0)
    split = load_digits_split()
    pre = pre or Preprocess(pixel_max=16)  # the float model sees X / 16
    model = train(make_model(), pre.apply(split.x_train), split.y_train, epochs=epochs)
    net, report = import_float_model(model, split.x_train[:512], split.x_test, split.y_test,
                                     QuantConfig(w_bits, a_bits), pre)
    return report


def main(w_bits: int = 4, a_bits: int = 4) -> dict:
    return train_and_import(LeNet, w_bits, a_bits)


if __name__ == "__main__":
    print(json.dumps(main()))
