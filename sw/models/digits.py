"""DigitsNet: a small residual CNN for scikit-learn's 8x8 digits (the embedded default model).

The hardware compiler depends on this exact structure and these attribute names.

    X (1x8x8 ints 0..16), x = X / 16   conv1's input is already integer: codes X, quantum 1/16
    h1  = relu(bn1(conv1(x)))          conv1: 8-bit weights, no ActQuantizer
    r   = conv2.aq(h1)                 the residual stream carries conv2's QUANTIZED input (h1 in float)
    h3  = relu(bn3(conv3(relu(bn2(conv2(h1))))) + r)
    h4  = relu(bn4(conv4(h3)))         conv4: stride 2 -> 4x4, quantizes its own input
    u   = floor(sum_pixels(qpool codes(h4)) / 4) * alpha_p / (4 * D)   (D = 48; 16 pixels = 2^4, so
          the pooled code sum is shifted right by 4 - 2 = 2 bits; straight-through grad for the floor)
    logits = fc(u)                     8-bit weights, float bias, input codes = the shifted sums

Prune groups: {conv1, conv3} (residual stream, one shared mask), {conv2}, {conv4}; fc never.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quant import ActQuantizer, QConv2d, QLinear

POOL_SHIFT = 2  # log2(16 pixels) - 2: the fc input keeps 2 fractional bits of the code average


class _Replace(torch.autograd.Function):
    """Forward: the exact value; backward: the gradient of the differentiable surrogate."""

    @staticmethod
    def forward(ctx, exact, surrogate):  # type: ignore[override]
        return exact

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return None, g


def pool_input(h: Tensor, qpool: ActQuantizer, quantize: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The global average pool feeding the fc (DigitsNet's, CifarResNet's): (value, integer codes, quantum);
    codes and quantum are None in float mode. Quantized: ``qpool``'s codes of 2**k pixels summed and shifted
    right by k - POOL_SHIFT (floor), the quantum alpha / (denominator * 2**POOL_SHIFT)."""
    if not quantize:
        return h.mean((2, 3)), None, None
    npix = h.shape[2] * h.shape[3]
    shift = npix.bit_length() - 1 - POOL_SHIFT
    if npix != 1 << (shift + POOL_SHIFT):
        raise ValueError(f"Average pooling needs 2^k pixels, not {npix}")
    hq, codes = qpool.quantize(h)
    u_int = torch.floor(codes.sum((2, 3)) / (1 << shift))
    quantum = (qpool.alpha / (qpool.denominator << POOL_SHIFT)).detach()
    return _Replace.apply(u_int * quantum, hq.mean((2, 3))), u_int, quantum


class DigitsNet(nn.Module):
    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 16, 32),
        num_classes: int = 10,
        w_bits: int = 4,
        a_bits: int = 4,
    ) -> None:
        """w_bits / a_bits: the inner layers (conv2..conv4, qpool); conv1 and fc are 8-bit weights."""
        super().__init__()
        c1, c2, c4 = widths
        wb, ab = w_bits, a_bits
        self.quantize = False
        self.conv1 = QConv2d(1, c1, 3, padding=1, bias=False, w_bits=8, a_bits=None)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = QConv2d(c1, c2, 3, padding=1, bias=False, w_bits=wb, a_bits=ab)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = QConv2d(c2, c1, 3, padding=1, bias=False, w_bits=wb, a_bits=ab)
        self.bn3 = nn.BatchNorm2d(c1)
        self.conv4 = QConv2d(c1, c4, 3, stride=2, padding=1, bias=False, w_bits=wb, a_bits=ab)
        self.bn4 = nn.BatchNorm2d(c4)
        self.qpool = ActQuantizer(ab)
        self.fc = QLinear(c4, num_classes, bias=True, w_bits=8, a_bits=None)

    @property
    def widths(self) -> tuple[int, int, int]:
        return (self.conv1.out_channels, self.conv2.out_channels, self.conv4.out_channels)

    def arch_config(self) -> dict:
        """What load_checkpoint needs to rebuild this (possibly sliced) net."""
        return {
            "name": "digits",
            "widths": list(self.widths),
            "num_classes": self.fc.out_features,
            "w_bits": self.conv2.w_bits,
            "a_bits": self.conv2.a_bits,
        }

    def int_names(self) -> dict[str, tuple[str, str]]:
        """{layer: (op, tensor it writes)} in the integer network (sw/graph_lower.py): conv1..conv4 write
        h1..h4 (then pool -> u, fc -> logits)."""
        return {f"conv{i}": (f"conv{i}", f"h{i}") for i in range(1, 5)}

    def prune_groups(self) -> list[list[tuple[QConv2d, nn.BatchNorm2d]]]:
        return [
            [(self.conv1, self.bn1), (self.conv3, self.bn3)],
            [(self.conv2, self.bn2)],
            [(self.conv4, self.bn4)],
        ]

    def group_consumers(self) -> list[list[nn.Module]]:
        return [[self.conv2, self.conv4], [self.conv3], [self.fc]]

    def pool_input(self, h4: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """fc input (value, integer codes, quantum); codes/quantum are None in float mode."""
        return pool_input(h4, self.qpool, self.quantize)

    def forward(self, X: Tensor) -> Tensor:
        """X: pixels 0..16 as float, shape (N, 1, 8, 8)."""
        x = X / 16
        if self.quantize:
            h1 = F.relu(self.bn1(self.conv1(x, X, torch.tensor(1 / 16))))
            r = self.conv2.aq(h1)
        else:
            h1 = F.relu(self.bn1(self.conv1(x)))
            r = h1
        h2 = F.relu(self.bn2(self.conv2(h1)))
        if self.quantize and not self.training:
            from ..lower import residual_gain  # eval: the shortcut scale the integer model uses

            r = r * residual_gain(self.conv3, self.bn3, self.conv2.aq).to(r).view(1, -1, 1, 1)
        h3 = F.relu(self.bn3(self.conv3(h2)) + r)
        h4 = F.relu(self.bn4(self.conv4(h3)))
        u, u_int, quantum = self.pool_input(h4)
        return self.fc(u, u_int, quantum)
