"""CIFAR ResNets (He et al. 2016, the 6n+2 family: ResNet-8/20/32/56/110) with APoT quantization.

Structure (quantization placed exactly as in DigitsNet)::

    X (3x32x32 ints 0..255), x = X / 255   stem's input is already integer: codes X, quantum 1/255
    h = relu(bn(stem(x)))                  stem: 3x3, 3 -> w1, 8-bit weights, no ActQuantizer
    3 stages of n = (depth - 2) / 6 BasicBlocks, widths w1/w2/w3, stride 2 at the first block of
    stages 2 and 3. A block (conv_a, conv_b: 3x3, W4/A4, each quantizing its own input):
        r   = conv_a.aq(x)                 the residual stream carries the QUANTIZED block input
        out = relu(bn_b(conv_b(relu(bn_a(conv_a(x))))) + shortcut(r))      (float mode: r = x)
    shortcut: identity, or when downsampling either option A: r[:, :, ::2, ::2] with planes // 4 zero
    channels on each side (as in the APoT / FPGM reference code), stored as a channel selection
    ``sc_index`` (output channel -> input channel, -1 = zero), which slicing keeps exact; or option B
    (``shortcut="B"``): a 1x1 stride-2 projection ``proj`` (QConv2d, W{w_bits}, with a bias, no
    BatchNorm, so ``denorm``: its quantized weights keep their float scale) of the quantized block
    input r: proj(r) = s_wp * s_r * (W_p conv codes(r)) + b_p, s_wp = std * alpha / D.
    ``shortcut="BN"`` (zoo: resnet20bn, the APoT authors' downsampling): the 1x1 stride-2 projection
    (QConv2d, normalised like every conv, a bias only with conv_bias) followed by a BatchNorm ``proj_bn``;
    the lowering folds that BatchNorm into the projection's residual scale (signed, per channel).
    ``conv_bias=True`` gives every conv a bias (before its BatchNorm; the lowering folds it).
    ResNet-8 (MLPerf Tiny IC01: depth 8, one block per stage, option B, biases) is ``resnet8``.
    ``residual_bits`` N (None: the above): a finer residual stream. N > a_bits: the block input is
    quantized once, to r = x on 2**N uniform levels clipped at conv_a.aq's alpha (``residual_stream``); the
    shortcut adds r and conv_a quantizes r (not x) to its A{a_bits} codes, so those codes are a function of
    r's N-bit codes and the integer model stores the block output at N bits only (sw/graph_lower.py: the
    stream tensor, and a 1x1 requantizing op that gives conv_a its codes). 0: the shortcut adds x in float
    (the APoT authors' shortcut; a training experiment that has no integer model). Option A and identity
    shortcuts only.
    u = floor(sum_pixels(qpool codes) / 2**4) * alpha_p / (4 * D)   (64 = 2**6 pixels; DigitsNet's rule)
    logits = fc(u)                         8-bit weights, float bias

Prune groups (DESIGN §3, shared residual masks): one mask per residual stream -- stage 1: the stem
and every conv_b of stage 1; stage s > 1: every conv_b of stage s -- and each conv_a its own group.
Option B: the projection's output channels are in its stage's stream (its filters scored with the
stream's), its input channels follow the previous stream (a consumer), and nothing is tied.
Option A ties the streams: stage s+1 channel pad + c carries stage s channel c, so if stage s keeps
c, stage s+1 must keep pad + c (or the shortcut would add x_c into a removed channel). Rule: stage
masks are computed in order; for stage s+1 the tied channels are forced kept and int(N * rate)
channels are pruned by GM (scored over the whole stream) among the others; if too few are free, all
free ones are pruned. ``prune_report`` gives the achieved rate per group.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..quant import ActQuantizer, QConv2d, QLinear, uniform_act_quant
from .digits import pool_input

DEPTHS = (8, 20, 32, 56, 110)
SHORTCUTS = ("A", "B", "BN")
RESIDUAL_MAX_BITS = 16  # residual_bits: 0 (float), or a_bits < N <= this


def check_residual_bits(residual_bits: int | None, a_bits: int, shortcut: str = "A") -> None:
    """ValueError (one line) unless residual_bits is None, 0 or a_bits < N <= RESIDUAL_MAX_BITS with option-A
    shortcuts (a projection, option B or BN, convolves the block input's A{a_bits} codes)."""
    if residual_bits is None:
        return
    if isinstance(residual_bits, bool) or not isinstance(residual_bits, int) or \
            not (residual_bits == 0 or a_bits < residual_bits <= RESIDUAL_MAX_BITS):
        raise ValueError(f"residual_bits must be 0 (a float shortcut) or an integer in ({a_bits}, {RESIDUAL_MAX_BITS}] "
                         f"(more bits than a_bits {a_bits}), not {residual_bits!r}")
    if shortcut != "A":
        raise ValueError(f"residual_bits needs option-A shortcuts (resnet20/32/56/110): shortcut {shortcut} "
                         f"(resnet8, resnet20bn) projects the block input's A{a_bits} codes")


def option_a(r: Tensor, sc_index: Tensor) -> Tensor:
    """The option-A shortcut: r[:, :, ::2, ::2] with output channel c = input channel sc_index[c] (-1: zero).
    One graph node when traced (torch.fx.wrap below), which the graph lowering reads as a strided
    channel selection."""
    sel = sc_index >= 0
    out = r.new_zeros(r.shape[0], len(sc_index), (r.shape[2] + 1) // 2, (r.shape[3] + 1) // 2)
    out[:, sel] = r[:, sc_index[sel], ::2, ::2]
    return out


torch.fx.wrap("option_a")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, w_bits: int, a_bits: int, shortcut: str = "A",
                 conv_bias: bool = False, residual_bits: int | None = None) -> None:
        super().__init__()
        check_residual_bits(residual_bits, a_bits, shortcut)
        self.quantize, self.residual_bits = False, residual_bits
        self.conv_a = QConv2d(cin, cout, 3, stride=stride, padding=1, bias=conv_bias, w_bits=w_bits, a_bits=a_bits)
        self.bn_a = nn.BatchNorm2d(cout)
        self.conv_b = QConv2d(cout, cout, 3, padding=1, bias=conv_bias, w_bits=w_bits, a_bits=a_bits)
        self.bn_b = nn.BatchNorm2d(cout)
        self.downsample = stride != 1 or cin != cout
        self.proj = self.proj_bn = None
        if self.downsample and shortcut == "B":
            self.proj = QConv2d(cin, cout, 1, stride=stride, bias=True, w_bits=w_bits, a_bits=None, denorm=True)
        elif self.downsample and shortcut == "BN":  # the APoT authors' projection: 1x1 conv + BatchNorm
            self.proj = QConv2d(cin, cout, 1, stride=stride, bias=conv_bias, w_bits=w_bits, a_bits=None)
            self.proj_bn = nn.BatchNorm2d(cout)
        elif self.downsample:
            pad = cout // 4
            if stride != 2 or cin + 2 * pad != cout:
                raise ValueError(f"Option-A shortcut needs stride 2 and {cin} + 2 * {pad} == {cout} channels")
            index = torch.full((cout,), -1, dtype=torch.long)
            index[pad:pad + cin] = torch.arange(cin)
            self.register_buffer("sc_index", index)
        self.pad = cout // 4 if self.downsample and self.proj is None else 0

    def shortcut(self, r: Tensor, r_codes: Tensor | None = None) -> Tensor:
        """The shortcut of the (quantized) block input r; a projection without its bias and BatchNorm (see
        forward)."""
        if not self.downsample:
            return r
        if self.proj is not None:
            p = self.proj(r, r_codes, None if r_codes is None else self.conv_a.aq.scale())
            return p if self.proj.bias is None else p - self.proj.bias.view(1, -1, 1, 1)
        return option_a(r, self.sc_index)

    def residual_stream(self, x: Tensor) -> Tensor:
        """The block input x as the residual stream carries it under ``residual_bits`` N (fake-quant mode):
        N = 0: x itself (float); else x on 2**N uniform levels clipped at conv_a.aq's alpha. That alpha, not
        one of its own: the stream is clipped where the A4 stream is, so only its resolution changes, and
        the model has no new parameter (its state dict is the same: a float checkpoint or --float-init
        loads as it is, calibration sets the clip with conv_a's input)."""
        if self.residual_bits == 0:
            return x
        return uniform_act_quant(x, self.conv_a.aq.alpha, self.residual_bits)

    def _proj_bias(self) -> Tensor | float:
        return 0.0 if self.proj.bias is None else self.proj.bias.view(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        r, codes, a_in = x, None, x
        if self.quantize and self.residual_bits is not None:  # the N-bit or float stream (option A / identity)
            r = self.residual_stream(x)
            a_in = r if self.residual_bits else x  # N > 0: conv_a's codes are those of the stream's value
        elif self.quantize:  # option B's projection also takes the codes (an integer accumulation)
            r, codes = self.conv_a.aq.quantize(x) if self.proj is not None else (self.conv_a.aq(x), None)
        h = F.relu(self.bn_a(self.conv_a(a_in)))
        if self.proj is not None and not self.quantize:  # float: the projection with its own bias (and BN)
            p = self.proj(r)
            return F.relu(self.bn_b(self.conv_b(h)) + (p if self.proj_bn is None else self.proj_bn(p)))
        sc = self.shortcut(r, codes)
        if self.proj_bn is not None and self.training:  # QAT: the projection's BatchNorm on batch statistics
            return F.relu(self.bn_b(self.conv_b(h)) + self.proj_bn(sc + self._proj_bias()))
        if self.quantize and not self.training and self.residual_bits != 0:  # 0: a float stream, no integer model
            from ..lower import residual_gain  # eval: the shortcut scale the integer model uses

            sc = sc * residual_gain(self.conv_b, self.bn_b, self.shortcut_quantum()).to(sc).view(1, -1, 1, 1)
        if self.proj_bn is not None:  # eval: its BatchNorm as y = A*x + B, A in the (gained) scale
            a, b = self.proj_bn_affine()
            sc = sc * a + (a * self._proj_bias() + b)
        elif self.proj is not None:
            sc = sc + self._proj_bias()
        return F.relu(self.bn_b(self.conv_b(h)) + sc)

    def proj_bn_affine(self) -> tuple[Tensor, Tensor]:
        """The projection's BatchNorm in eval mode as (A, B), each (1, C, 1, 1): y = A*x + B."""
        bn = self.proj_bn
        inv = torch.rsqrt(bn.running_var + bn.eps)
        a = bn.weight * inv
        return a.view(1, -1, 1, 1), (bn.bias - bn.running_mean * a).view(1, -1, 1, 1)

    def shortcut_quantum(self):
        """The real value of one integer unit of the shortcut: the input codes' quantum s_r, times the
        projection's weight quantum for option B (its accumulator scale), times its BatchNorm's scale A
        per output channel with one (a float64 array, signed). Float64 from the float32 quanta the
        export reads."""
        from ..lower import _bn_affine

        d = (1 << self.residual_bits) - 1 if self.residual_bits else self.conv_a.aq.denominator
        s_r = float(self.conv_a.aq.alpha.detach()) / d
        if self.proj is None:
            return s_r
        s_p = s_r * float(self.proj.weight_quantum())
        return s_p if self.proj_bn is None else s_p * _bn_affine(self.proj_bn)[0]


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10,
                 w_bits: int = 4, a_bits: int = 4, shortcut: str = "A", conv_bias: bool = False,
                 residual_bits: int | None = None) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"CIFAR ResNet depth must be one of {DEPTHS}, not {depth!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, not {shortcut!r}")
        if len(widths) != 3 or (shortcut == "A" and any(w % 4 for w in widths[1:])):
            raise ValueError(f"widths must be 3 channel counts (option A: the last two multiples of 4), not {widths!r}")
        self.depth, self._widths, self.quantize = depth, tuple(int(w) for w in widths), False
        self.shortcut, self.conv_bias = shortcut, bool(conv_bias)
        check_residual_bits(residual_bits, a_bits, shortcut)
        self.residual_bits = residual_bits
        n = (depth - 2) // 6
        w1, w2, w3 = self._widths
        self.stem = QConv2d(3, w1, 3, padding=1, bias=self.conv_bias, w_bits=8, a_bits=None)
        self.bn = nn.BatchNorm2d(w1)
        blocks, cin = [], w1
        for s, w in enumerate((w1, w2, w3)):
            for b in range(n):
                blocks.append(BasicBlock(cin, w, 2 if (s > 0 and b == 0) else 1, w_bits, a_bits, shortcut,
                                         self.conv_bias, residual_bits))
                cin = w
        self.blocks = nn.ModuleList(blocks)
        self.n = n
        self.qpool = ActQuantizer(a_bits)
        self.fc = QLinear(w3, num_classes, bias=True, w_bits=8, a_bits=None)

    @property
    def name(self) -> str:
        """resnet{depth}: option A without conv biases, but resnet8 = option B with biases (MLPerf Tiny);
        any other combination gets a suffix (b: option B, a: option A, then +bias)."""
        standard = (self.shortcut, self.conv_bias) == (("B", True) if self.depth == 8 else ("A", False))
        if standard:
            return f"resnet{self.depth}"
        return f"resnet{self.depth}{self.shortcut.lower()}{'-bias' if self.conv_bias else ''}"

    def arch_config(self) -> dict:
        """Constructor arguments (of the unsliced net: checkpoints hold masked, not sliced, models)."""
        first = self.blocks[0].conv_a
        cfg = {"name": self.name, "depth": self.depth, "widths": list(self._widths),
               "num_classes": self.fc.out_features, "w_bits": first.w_bits, "a_bits": first.a_bits}
        if (self.shortcut, self.conv_bias) != ("A", False):  # the keys of older checkpoints stay as they were
            cfg.update(shortcut=self.shortcut, conv_bias=self.conv_bias)
        if self.residual_bits is not None:  # the training experiment only (older keys unchanged)
            cfg["residual_bits"] = self.residual_bits
        return cfg

    def int_names(self) -> dict[str, tuple[str, str]]:
        """{layer: (op, tensor it writes)} in the integer network (sw/graph_lower.py): the stem; block b of
        stage s: conv_a -> op and tensor s{s}b{b}a, conv_b (with the shortcut) -> op s{s}b{b}b writing the
        block output s{s}b{b} (then pool -> u, fc -> logits)."""
        out = {"stem": ("stem", "stem")}
        for i in range(len(self.blocks)):
            tag = f"s{i // self.n + 1}b{i % self.n}"
            out.update({f"blocks.{i}.conv_a": (tag + "a", tag + "a"), f"blocks.{i}.conv_b": (tag + "b", tag)})
        return out

    def stage_blocks(self, s: int) -> list[BasicBlock]:
        """Blocks of stage s (0-based)."""
        return list(self.blocks[s * self.n:(s + 1) * self.n])

    def prune_groups(self) -> list[list[tuple[QConv2d, nn.BatchNorm2d | None]]]:
        """[stream 1, stream 2, stream 3, then each conv_a in network order]; an option-B projection
        (no BatchNorm: None) is in the stream its output joins."""
        streams = []
        for s in range(3):
            g = [(self.stem, self.bn)] if s == 0 else []
            g += [(b.proj, b.proj_bn) for b in self.stage_blocks(s) if b.proj is not None]
            streams.append(g + [(b.conv_b, b.bn_b) for b in self.stage_blocks(s)])
        return streams + [[(b.conv_a, b.bn_a)] for b in self.blocks]

    def group_consumers(self) -> list[list[nn.Module]]:
        streams: list[list[nn.Module]] = [[], [], [self.fc]]
        for i, b in enumerate(self.blocks):
            s = max(0, (i - 1) // self.n)  # a block reads the previous block's stream
            streams[s].append(b.conv_a)
            if b.proj is not None:
                streams[s].append(b.proj)
        return streams + [[b.conv_b] for b in self.blocks]

    def forced_keep(self, i: int, masks: list[Tensor]) -> Tensor | None:
        """Stream s+1 must keep channel pad + c wherever stream s keeps c (option-A tie)."""
        if i not in (1, 2) or self.shortcut != "A":
            return None
        blk = self.stage_blocks(i)[0]
        forced = torch.zeros(len(blk.sc_index), dtype=torch.bool)
        sel = blk.sc_index >= 0
        forced[sel] = masks[i - 1].cpu()[blk.sc_index[sel].cpu()]
        return forced

    def after_slice(self, kept: list[Tensor]) -> None:
        """Re-point each option-A shortcut at the kept input channels (called by slice_pruned)."""
        if self.shortcut != "A":
            return
        for s in (1, 2):
            blk = self.stage_blocks(s)[0]
            size = max([int(blk.sc_index.max()) + 1] + [int(kept[s - 1].max()) + 1] * bool(len(kept[s - 1])))
            new_pos = torch.full((size,), -1, dtype=torch.long)
            new_pos[kept[s - 1]] = torch.arange(len(kept[s - 1]))  # old input channel -> new one
            old = blk.sc_index[kept[s].to(blk.sc_index.device)]
            blk.sc_index = torch.where(old >= 0, new_pos[old.clamp(min=0)], old)

    def prune_report(self) -> list[dict]:
        """Per group: name, kept, total, achieved prune rate."""
        names = ["stream1", "stream2", "stream3"] + [f"s{i // self.n + 1}b{i % self.n}a" for i in range(len(self.blocks))]
        out = []
        for name, g in zip(names, self.prune_groups()):
            m = g[0][0].filter_mask
            out.append({"group": name, "kept": int(m.sum()), "total": int(m.numel()),
                        "rate": 1 - float(m.sum()) / m.numel()})
        return out

    def pool_input(self, h: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """fc input (value, integer codes, quantum): DigitsNet's rule (sw.models.digits.pool_input)."""
        return pool_input(h, self.qpool, self.quantize)

    def forward(self, X: Tensor) -> Tensor:
        """X: pixels 0..255 as float, shape (N, 3, 32, 32); no mean/std normalisation (pixel 0 = padding)."""
        x = X / 255
        if self.quantize:
            h = F.relu(self.bn(self.stem(x, X, torch.tensor(1 / 255, dtype=X.dtype))))
        else:
            h = F.relu(self.bn(self.stem(x)))
        for b in self.blocks:
            h = b(h)
        u, u_int, quantum = self.pool_input(h)
        return self.fc(u, u_int, quantum)


def resnet(depth: int, **kw) -> CifarResNet:
    return CifarResNet(depth, **kw)
