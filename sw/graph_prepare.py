"""``prepare`` for a model outside the zoo: a float model's traced graph -> a fake-quant ``PreparedNet``.

The float model (a PyTorch module, or the GraphModule of sw/onnx_in.load_onnx) is traced with torch.fx
(sw/frontend.py lists every unsupported node first) and read into a plan of steps, one per graph node:
input, conv, linear, BatchNorm, ReLU, add, channel concatenation, max pool, global average pool, flatten.
The plan is rewritten
so that it carries what the zoo models carry:

* the declared input preprocessing (``Preprocess``: the float model sees ``(X * scale - mean) / std`` of
  integer pixels X in 0..pixel_max) is folded into the first conv: the prepared model computes
  ``X / pixel_max`` and the first conv sees integer pixels (its weights scaled per input channel, the
  mean moved into its bias: exact except at zero-padded borders when the mean is not 0);
* a ZeroPad2d / F.pad before a conv joins the conv's padding; asymmetric padding (Keras 'same' on a
  stride-2 conv) becomes a symmetric one with zero kernel rows / columns in front or behind;
* the first conv and the last linear layer get 8-bit weights and take integer codes (pixels; the codes
  of the model's one free activation quantizer ``qfc``); every other conv and linear layer gets
  ``QuantConfig``'s bits and its own input quantizer (shared by layers that read the same tensor);
* a conv whose output goes into an add beside a conv + BatchNorm is the shortcut's 1x1 projection: its
  BatchNorm, if any, is folded into its weights and bias, and it keeps its float scale (``denorm``);
* a conv or hidden linear layer followed by ReLU without a BatchNorm gets an identity one (the lowering
  folds a BatchNorm, with the layer's bias, into the requantization thresholds);
* a channel concatenation joins ReLU outputs (or their max pools) and is read by convolutions only: its
  branches are stored with their readers' one input quantizer, and each reader's op reads every branch
  as one source (sw/graph_lower.py). The filters that feed a concatenation are not pruned.

In fake-quant mode (``quantize``) each ReLU output is quantized with its consumers' quantizer, the
residual add scales the quantized shortcut by ``lower.residual_gain`` (eval), and global average pooling
computes ``floor(sum(codes) / 2**(k-2))`` for 2**k pixels: the integer network's own arithmetic
(sw/graph_lower.py lowers the float-mode graph of this module). ``prune_groups`` / ``group_consumers``
come from the graph: the channels that meet at an add are one group; a group that feeds a concatenation
keeps every channel (``forced_keep``: its reader's input channels would be several groups' masks end to
end).
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .api import ApiError
from .frontend import UnsupportedModel, check_model, trace
from .quant import ActQuantizer, QConv2d, QLinear


class PrepareError(ApiError):
    """A graph inside the op set whose structure prepare cannot map (one line naming the node)."""


@dataclass(frozen=True)
class Preprocess:
    """The float model's input: ``(X * scale - mean) / std`` per channel, X integer pixels 0..pixel_max
    (scale default 1 / pixel_max)."""

    pixel_max: int = 255
    scale: float | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not isinstance(self.pixel_max, int) or not 1 <= self.pixel_max <= 65535:
            raise PrepareError(f"pixel_max must be an integer in 1..65535, not {self.pixel_max!r}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise PrepareError(f"input scale must be a positive number, not {self.scale!r}")
        for k in ("mean", "std"):
            v = tuple(float(x) for x in getattr(self, k))
            if not v or not all(math.isfinite(x) for x in v) or k == "std" and min(v) <= 0:
                raise PrepareError(f"input {k} must be finite numbers{' > 0' if k == 'std' else ''}, not {v!r}")
            object.__setattr__(self, k, v)

    def channel(self, k: str, c: int) -> Tensor:
        v = getattr(self, k)
        if len(v) not in (1, c):
            raise PrepareError(f"input {k} has {len(v)} values; the first conv has {c} input channels")
        return torch.tensor(v * (c if len(v) == 1 else 1), dtype=torch.float64)

    def apply(self, X: Tensor) -> Tensor:
        """The float model's input for integer pixels X (N, C, H, W)."""
        c = X.shape[1]
        s = self.scale if self.scale is not None else 1 / self.pixel_max
        m, d = self.channel("mean", c).view(1, -1, 1, 1), self.channel("std", c).view(1, -1, 1, 1)
        return ((X.double() * s - m) / d).to(X.dtype if X.is_floating_point() else torch.float32)


@dataclass
class Step:
    name: str
    kind: str  # input conv linear bn relu add cat maxpool gap flatten output
    args: list[str] = field(default_factory=list)
    mod: str | None = None  # the module attribute of conv / linear / bn / maxpool / gap
    flat: bool = False  # gap: flatten after (mean without keepdim)
    q: str | None = None  # relu: the quantizer its output is stored with
    role: str = ""  # conv / linear: first, proj, last, ""
    main: tuple[str, str] | None = None  # add: (main conv, main bn) modules
    proj: str | None = None  # add: projection conv module
    short: str | None = None  # add: the shortcut's step


@dataclass
class _QV:
    """A quantize-mode value: the tensor, and where known its integer codes and their quantum."""

    v: Tensor
    codes: Tensor | None = None
    quantum: Tensor | None = None
    q: ActQuantizer | None = None
    proj_bias: Tensor | None = None  # a projection's output (without its bias)


def _one(v, what: str, node) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise PrepareError(f"{node.name}: {what} {tuple(v)} must be the same in both dimensions")
        v = v[0]
    return int(v)


def _read_graph(model: nn.Module) -> tuple[list[Step], dict[str, nn.Module], dict[str, tuple], float]:
    """The traced float model as steps (float modules by step name), pads by step name, and the factor
    by which the model scales its input itself (x / 255 in its forward: 1 / 255)."""
    check_model(model)
    gm = trace(model)
    steps: list[Step] = []
    mods: dict[str, nn.Module] = {}
    pads: dict[str, tuple] = {}
    alias: dict[str, str] = {}  # a no-op node -> the step whose value it is
    by_name: dict[str, str] = {}
    factor = [1.0]  # the model's own scaling of its input (x / 255 in forward)

    def src(a) -> str:
        return alias.get(a.name, a.name)

    for node in gm.graph.nodes:
        args = [src(a) for a in node.args if isinstance(a, torch.fx.Node)]
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        t = node.target
        f = t if node.op == "call_function" else None
        meth = t if node.op == "call_method" else None
        st = Step(node.name, "", args[:1])
        if node.op == "placeholder":
            st.kind, st.args = "input", []
        elif node.op == "output":
            st.kind = "output"
        elif node.op == "get_attr" or f is getattr or meth == "size":
            alias[node.name] = None
            continue
        elif isinstance(mod, nn.Conv2d):
            st.kind = "conv"
        elif isinstance(mod, nn.Linear):
            st.kind = "linear"
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            st.kind = "bn"
        elif isinstance(mod, nn.ReLU) or f in (F.relu, torch.relu) or meth == "relu":
            st.kind = "relu"
        elif f is torch.cat:
            st.kind, st.args = "cat", [src(a) for a in node.args[0]]
        elif f in (operator.add, torch.add) or meth == "add":
            if len(args) != 2:
                raise PrepareError(f"{node.name}: an add of two tensors only")
            st.kind, st.args = "add", args
        elif isinstance(mod, nn.MaxPool2d) or f is F.max_pool2d:
            if mod is None:
                kw = node.kwargs
                a = list(node.args) + [None] * 4
                k = a[1] if a[1] is not None else kw.get("kernel_size")
                mod = nn.MaxPool2d(k, a[2] if a[2] is not None else kw.get("stride"),
                                   a[3] if a[3] is not None else kw.get("padding", 0))
            st.kind = "maxpool"
        elif isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or f in (F.avg_pool2d, F.adaptive_avg_pool2d) \
                or meth == "mean":
            if f is F.avg_pool2d:
                mod = nn.AvgPool2d(node.args[1] if len(node.args) > 1 else node.kwargs["kernel_size"])
            elif f is F.adaptive_avg_pool2d or meth == "mean":
                mod = nn.AdaptiveAvgPool2d(1)
                st.flat = meth == "mean" and not node.kwargs.get("keepdim", len(node.args) > 2 and node.args[2])
            st.kind = "gap"
        elif isinstance(mod, nn.Flatten) or f is torch.flatten or meth in ("flatten", "view", "reshape"):
            st.kind = "flatten"
        elif isinstance(mod, nn.ZeroPad2d) or f is F.pad:
            p = tuple(mod.padding) if mod is not None else tuple(node.args[1])
            if len(p) != 4:
                raise PrepareError(f"{node.name}: pad the two spatial dimensions only")
            pads[node.name] = p  # (left, right, top, bottom)
            st.kind = "pad"
        elif isinstance(mod, (nn.Identity, nn.Dropout)) or f is F.dropout or meth == "contiguous":
            alias[node.name] = args[0]
            continue
        elif f in (operator.truediv, operator.mul) and args and by_name.get(args[0]) == "input" \
                and isinstance(node.args[1], (int, float)) and node.args[1] > 0:
            factor[0] *= node.args[1] if f is operator.mul else 1 / node.args[1]  # the model's own x / 255
            alias[node.name] = args[0]
            continue
        elif f in (operator.truediv, operator.mul):
            raise PrepareError(f"{node.name}: a scaling inside the model; declare the input preprocessing "
                               "(Preprocess / --input-scale, --input-mean, --input-std) instead")
        else:
            raise PrepareError(f"{node.name} ({node.op} {t}): outside the op set (docs/frontend.md)")
        if mod is not None:
            mods[node.name] = mod
        steps.append(st)
        by_name[st.name] = st.kind
    return steps, mods, pads, factor[0]


def _conv_padding(conv: nn.Conv2d, extra: tuple, name: str) -> tuple[int, int, int, int]:
    """(pad, front zeros, back zeros) of a square kernel with symmetric padding equal to conv's padding
    plus the pad before it (extra: left, right, top, bottom); raises if it has no square form."""
    if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1]:
        raise PrepareError(f"{name}: square kernels and equal strides only, not {conv.kernel_size} / {conv.stride}")
    if isinstance(conv.padding, str):
        if conv.padding == "same" and conv.kernel_size[0] % 2 == 0:
            raise PrepareError(f"{name}: padding='same' with an even kernel: pad explicitly")
        ph = pw = 0 if conv.padding == "valid" else conv.kernel_size[0] // 2
    else:
        ph, pw = conv.padding
    l, r, t, b = (int(v) for v in extra)
    t, b, l, r = t + ph, b + ph, l + pw, r + pw
    if min(t, b, l, r) < 0:
        raise PrepareError(f"{name}: negative padding (cropping) is not supported")
    if (t, b) != (l, r):
        raise PrepareError(f"{name}: padding top/bottom {t}/{b} differs from left/right {l}/{r}")
    p = max(t, b)
    return p, p - t, p - b


def _fold_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """conv <- bn(conv) (eval statistics), in float64 then rounded once."""
    a = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    b = bn.bias.detach().double() - bn.running_mean.double() * a
    w = conv.weight.detach().double() * a.view(-1, 1, 1, 1)
    cb = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(a)
    conv.weight.data = w.float()
    conv.bias = nn.Parameter((cb * a + b).float())


class _FixedStats:
    """A BatchNorm that normalises with its running statistics in training too: the identity BatchNorm that
    ``prepare`` puts after a layer without one stays an affine map (weight, bias) when the prepared model is
    fine-tuned, never a batch normalisation that the float model did not have."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class FixedBatchNorm2d(_FixedStats, nn.BatchNorm2d):
    pass


class FixedBatchNorm1d(_FixedStats, nn.BatchNorm1d):
    pass


IDENTITY_EPS = 1e-30


def _identity_bn(n: int, dim: int) -> nn.Module:
    # eps: positive (some torch versions refuse eps 0 in eval too), below float64 resolution at variance 1
    bn = (FixedBatchNorm2d if dim == 4 else FixedBatchNorm1d)(n, eps=IDENTITY_EPS)
    return bn.eval()


class PreparedNet(nn.Module):
    """A user model's graph with APoT layers (module doc). forward(X): X integer pixels (N, C, H, W) as float."""

    def __init__(self, name: str, pixel_max: int) -> None:
        super().__init__()
        self.quantize = False
        self.model_name = name
        self.pixel_max = pixel_max
        self.plan: list[Step] = []

    def _m(self, key: str) -> nn.Module:
        return self.get_submodule(key)

    def forward(self, X: Tensor) -> Tensor:
        return self._forward_q(X) if self.quantize else self._forward_f(X)

    def _forward_f(self, X: Tensor) -> Tensor:
        env: dict = {}
        for s in self.plan:
            a = [env[x] for x in s.args]
            if s.kind == "input":
                env[s.name] = X / self.pixel_max
            elif s.kind in ("conv", "linear", "bn", "maxpool"):
                env[s.name] = self._m(s.mod)(a[0])
            elif s.kind == "gap":
                y = self._m(s.mod)(a[0])
                env[s.name] = torch.flatten(y, 1) if s.flat else y
            elif s.kind == "relu":
                env[s.name] = F.relu(a[0])
            elif s.kind == "add":
                env[s.name] = a[0] + a[1]
            elif s.kind == "cat":
                env[s.name] = torch.cat(a, 1)
            elif s.kind == "flatten":
                env[s.name] = torch.flatten(a[0], 1)
            elif s.kind == "output":
                return a[0]
        raise PrepareError("the plan has no output")

    def _forward_q(self, X: Tensor) -> Tensor:
        from .lower import residual_gain
        from .models.digits import POOL_SHIFT, _Replace

        env: dict[str, _QV] = {}
        for s in self.plan:
            a = [env[x] for x in s.args]
            if s.kind == "input":
                env[s.name] = _QV(X / self.pixel_max, X, torch.tensor(1 / self.pixel_max, dtype=X.dtype))
            elif s.kind in ("conv", "linear"):
                m = self._m(s.mod)
                x = a[0]
                if s.role == "first":
                    env[s.name] = _QV(m(x.v, x.codes, x.quantum))
                elif s.role == "proj":
                    env[s.name] = _QV(m(x.v, x.codes, x.quantum) - m.bias.view(1, -1, 1, 1), proj_bias=m.bias)
                elif s.role == "last":
                    if x.codes is None:
                        raise PrepareError(f"{s.name}: the last linear layer's input has no codes")
                    env[s.name] = _QV(m(x.v, x.codes.flatten(1), x.quantum))
                else:
                    env[s.name] = _QV(m(x.v))
            elif s.kind == "bn":
                env[s.name] = _QV(self._m(s.mod)(a[0].v))
            elif s.kind == "relu":
                q = self._m(s.q)
                vq, codes = q.quantize(F.relu(a[0].v))
                env[s.name] = _QV(vq, codes, q.scale(), q)
            elif s.kind == "maxpool":
                m = self._m(s.mod)
                env[s.name] = _QV(m(a[0].v), m(a[0].codes), a[0].quantum, a[0].q)
            elif s.kind == "cat":  # the branches share their readers' quantizer (_place_quantizers)
                env[s.name] = _QV(torch.cat([x.v for x in a], 1), torch.cat([x.codes for x in a], 1),
                                  a[0].quantum, a[0].q)
            elif s.kind == "flatten":
                x = a[0]
                env[s.name] = _QV(torch.flatten(x.v, 1), None if x.codes is None else torch.flatten(x.codes, 1),
                                  x.quantum, x.q)
            elif s.kind == "gap":
                x = a[0]
                npix = x.v.shape[2] * x.v.shape[3]
                shift = npix.bit_length() - 1 - POOL_SHIFT
                if npix != 1 << (shift + POOL_SHIFT):
                    raise PrepareError(f"{s.name}: global average pooling needs 2^k >= 4 pixels, not {npix}")
                u_int = torch.floor(x.codes.sum((2, 3), keepdim=True) / (1 << shift))
                quantum = (x.q.alpha / (x.q.denominator << POOL_SHIFT)).detach()
                u = _Replace.apply(u_int * quantum, x.v.mean((2, 3), keepdim=True))
                if s.flat:
                    u, u_int = torch.flatten(u, 1), torch.flatten(u_int, 1)
                env[s.name] = _QV(u, u_int, quantum)
            elif s.kind == "add":
                main = a[0] if s.args[0] != s.short else a[1]
                sc = a[1] if s.args[0] != s.short else a[0]
                conv, bn = self._m(s.main[0]), self._m(s.main[1])
                r = sc.v
                if not self.training:  # eval: the shortcut scale the integer model uses
                    src = env[self._step(s.proj).args[0]] if s.proj else sc
                    s_r = float(src.q.alpha.detach()) / src.q.denominator
                    if s.proj:
                        s_r *= float(self._m(s.proj).weight_quantum())
                    r = r * residual_gain(conv, bn, s_r).to(r).view(1, -1, 1, 1)
                if sc.proj_bias is not None:
                    r = r + sc.proj_bias.view(1, -1, 1, 1)
                env[s.name] = _QV(main.v + r)
            elif s.kind == "output":
                return a[0].v
        raise PrepareError("the plan has no output")

    def _step(self, mod: str) -> Step:
        return next(s for s in self.plan if s.mod == mod)

    # ---------------------------------------------------------------- pruning (sw/prune.py's interface)
    def _groups(self) -> tuple[list[list[tuple]], list[list[nn.Module]]]:
        parent: dict[str, str] = {}

        def find(g: str) -> str:
            while parent.get(g, g) != g:
                g = parent[g]
            return g

        gid: dict[str, str | None] = {}
        pinned: set[str | None] = set()  # groups that feed a concatenation: kept whole
        producers: list[tuple[str, str | None]] = []  # (layer step, bn module)
        readers: list[tuple[str | None, str]] = []  # (group, layer module)
        bn_of = {s.args[0]: s.mod for s in self.plan if s.kind == "bn"}
        for s in self.plan:
            if s.kind == "input":
                gid[s.name] = None
            elif s.kind in ("conv", "linear"):
                readers.append((gid[s.args[0]], s.mod))
                if s.role != "last":
                    gid[s.name] = s.name
                    producers.append((s.name, bn_of.get(s.name)))
            elif s.kind == "add":
                g0, g1 = (find(gid[x]) for x in s.args)
                parent[g1] = g0
                gid[s.name] = g0
            elif s.kind == "cat":
                pinned.update(gid[x] for x in s.args)
                gid[s.name] = None
            elif s.kind != "output":
                gid[s.name] = gid[s.args[0]]
        roots: dict[str, int] = {}
        groups: list[list[tuple]] = []
        for name, bn in producers:
            r = find(name)
            if r not in roots:
                roots[r] = len(groups)
                groups.append([])
            layer = self._m(next(s.mod for s in self.plan if s.name == name))
            groups[roots[r]].append((layer, None if bn is None else self._m(bn)))
        consumers: list[list[nn.Module]] = [[] for _ in groups]
        for g, mod in readers:
            if g is not None:
                consumers[roots[find(g)]].append(self._m(mod))
        whole = sorted({roots[find(g)] for g in pinned if g is not None})
        return groups, consumers, whole

    def prune_groups(self) -> list[list[tuple]]:
        return self._groups()[0]

    def group_consumers(self) -> list[list[nn.Module]]:
        return self._groups()[1]

    def forced_keep(self, i: int, masks: list[Tensor]) -> Tensor | None:
        """Every channel of a group that feeds a concatenation (sw/prune.compute_masks)."""
        groups, _, whole = self._groups()
        if i not in whole:
            return None
        conv = groups[i][0][0]
        return torch.ones(conv.weight.shape[0], dtype=torch.bool, device=conv.weight.device)

    def last_linear(self) -> QLinear:
        return self._m(next(s.mod for s in self.plan if s.role == "last"))


def _key(net: nn.Module, name: str) -> str:
    key = "".join(c if c.isalnum() or c == "_" else "_" for c in name).strip("_") or "m"
    if key[0].isdigit():
        key = "m" + key
    while hasattr(net, key):
        key += "_"
    return key


@torch.no_grad()
def build_prepared(model: nn.Module, w_bits: int, a_bits: int, pre: Preprocess) -> PreparedNet:
    """The PreparedNet of a float model (module doc), before prepare's post-training scale folding: in
    float mode it computes the float model's logits of the preprocessed pixels (up to the mean at
    zero-padded borders)."""
    model = copy.deepcopy(model).eval()
    steps, fmods, pads, factor = _read_graph(model)
    by = {s.name: s for s in steps}
    users: dict[str, list[Step]] = {s.name: [] for s in steps}
    for s in steps:
        for x in s.args:
            users[x].append(s)
    net = PreparedNet(type(model).__name__, pre.pixel_max)

    def through(name: str, kinds=("pad",)) -> Step:
        s = by[name]
        while s.kind in kinds:
            s = by[s.args[0]]
        return s

    out = next(s for s in steps if s.kind == "output")
    last = through(out.args[0], ("flatten",))
    if last.kind != "linear":
        raise PrepareError(f"the output must be a linear layer's logits, not {last.name} ({last.kind})")
    # ---- roles: first conv, projections (convs beside a conv + BN at an add), last linear
    bn_after = {s.args[0]: s for s in steps if s.kind == "bn" and by[s.args[0]].kind in ("conv", "linear")}
    for s in steps:
        if s.kind == "bn" and s.args[0] not in bn_after:
            raise PrepareError(f"{s.name}: a BatchNorm must follow a conv or linear layer")
        if s.kind == "pad" and any(u.kind != "conv" for u in users[s.name]):
            raise PrepareError(f"{s.name}: a pad must go into a conv (and only into convs)")
    last.role = "last"
    for s in steps:
        if s.kind == "conv" and through(s.args[0]).kind == "input":
            s.role = "first"
        if s.kind == "cat":
            _check_concat(s, by, [through(x, ("maxpool",)) for x in s.args], users[s.name])
    order = {t.name: i for i, t in enumerate(steps)}
    for s in steps:
        if s.kind != "add":
            continue
        sides = []  # (step, conv step or None, has BatchNorm)
        for x in s.args:
            st = by[x]
            if st.kind == "bn" and by[st.args[0]].kind == "conv":
                sides.append((st, by[st.args[0]], True))
            else:
                sides.append((st, st if st.kind == "conv" else None, False))
        convs = [sd for sd in sides if sd[1] is not None]
        if len(convs) == 2:
            # two convs meet: the projection is the one without BatchNorm, else the one reading the
            # earlier tensor (the block input)
            if sides[0][2] != sides[1][2]:
                pi = 0 if not sides[0][2] else 1
            else:
                pi = 0 if order[through(sides[0][1].args[0]).name] < order[through(sides[1][1].args[0]).name] else 1
            proj, main = sides[pi], sides[1 - pi]
            proj[1].role = "proj"
            s.proj, s.short = proj[1].name, proj[0].name
        elif len(convs) == 1:
            main = convs[0]
            s.short = next(sd[0].name for sd in sides if sd[1] is None)
        else:
            raise PrepareError(f"{s.name}: an add needs a conv (+ BatchNorm) on one side")
        if len(users[main[0].name]) != 1 or main[1].role == "first":
            raise PrepareError(f"{s.name}: the conv {main[1].name} before an add must have no other reader")
        if s.proj and through(by[s.proj].args[0]).kind == "cat":
            raise PrepareError(f"{s.name}: a 1x1 projection shortcut cannot read a concatenation")
        s.main = (main[1].name, None)
    # ---- modules
    for s in steps:
        if s.kind in ("conv", "linear"):
            f = fmods[s.name]
            if s.kind == "conv":
                if f.groups != 1 or tuple(f.dilation) != (1, 1):
                    raise PrepareError(f"{s.name}: groups 1 and dilation 1 only")
                extra = (0, 0, 0, 0)
                if by[s.args[0]].kind == "pad":
                    extra = pads[s.args[0]]
                    s.args = [through(s.args[0]).name]
                p, front, back = _conv_padding(f, extra, s.name)
                w = f.weight.detach()
                if front or back:
                    w = F.pad(w, (front, back, front, back))
                k = w.shape[-1]
                first, proj = s.role == "first", s.role == "proj"
                q = QConv2d(f.in_channels, f.out_channels, k, stride=f.stride[0], padding=p, bias=f.bias is not None,
                            w_bits=8 if first else w_bits, a_bits=None if first or proj else a_bits, denorm=proj)
                q.weight.data = w.clone()
                if f.bias is not None:
                    q.bias.data = f.bias.detach().clone()
                if first:
                    c = f.in_channels
                    sc = (pre.scale if pre.scale is not None else 1 / pre.pixel_max) * pre.pixel_max
                    std, mean = pre.channel("std", c), pre.channel("mean", c)
                    w64 = q.weight.detach().double() * factor
                    shift = (w64 * (mean / std).view(1, -1, 1, 1)).sum((1, 2, 3))
                    q.weight.data = (w64 * (sc / std).view(1, -1, 1, 1)).float()
                    b = (q.bias.detach().double() if q.bias is not None else 0) - shift
                    q.bias = nn.Parameter(b.float() if isinstance(b, Tensor) else torch.as_tensor(b).float())
                if proj and s.name in bn_after:
                    bn_step = bn_after[s.name]
                    _fold_bn(q, fmods[bn_step.name])
                    bn_step.kind = "noop"
                if proj and (q.kernel_size != (1, 1) or q.padding != (0, 0)):
                    raise PrepareError(f"{s.name}: a conv shortcut must be a 1x1 projection without padding")
            else:
                last_ = s.role == "last"
                q = QLinear(f.in_features, f.out_features, bias=f.bias is not None, w_bits=8 if last_ else w_bits,
                            a_bits=None if last_ else a_bits)
                q.weight.data = f.weight.detach().clone()
                if f.bias is not None:
                    q.bias.data = f.bias.detach().clone()
            s.mod = _key(net, s.name)
            net.add_module(s.mod, q)
        elif s.kind in ("bn", "maxpool", "gap"):
            s.mod = _key(net, s.name)
            net.add_module(s.mod, fmods[s.name])
    # drop pads and folded BatchNorms (their consumers read what they read)
    alias = {s.name: s.args[0] for s in steps if s.kind in ("pad", "noop")}
    steps = [s for s in steps if s.kind not in ("pad", "noop")]
    for s in steps:
        s.args = [alias.get(x, x) for x in s.args]
        if s.short in alias:
            s.short = alias[s.short]
    # ---- identity BatchNorms: a conv / hidden linear that is not followed by one (and is no projection)
    plan: list[Step] = []
    renamed: dict[str, str] = {}
    for s in steps:
        s.args = [renamed.get(x, x) for x in s.args]
        if s.short in renamed:
            s.short = renamed[s.short]
        plan.append(s)
        if s.kind in ("conv", "linear") and s.role not in ("proj", "last") and s.name not in \
                {t.args[0] for t in steps if t.kind == "bn"}:
            layer = net._m(s.mod)
            n = layer.out_channels if s.kind == "conv" else layer.out_features
            bn = Step(s.name + "_bn", "bn", [s.name], _key(net, s.name + "_bn"))
            net.add_module(bn.mod, _identity_bn(n, 4 if s.kind == "conv" else 2))
            plan.append(bn)
            renamed[s.name] = bn.name
    by = {s.name: s for s in plan}
    for s in plan:
        if s.kind == "add":
            main_conv = s.main[0]
            bn = next(t for t in plan if t.kind == "bn" and t.args[0] == main_conv)
            s.main = (by[main_conv].mod, bn.mod)
            if s.proj:
                s.proj = by[s.proj].mod
    net.plan = plan
    _place_quantizers(net, a_bits)
    return net.eval()


def _check_concat(s: Step, by: dict[str, Step], branches: list[Step], readers: list[Step]) -> None:
    """A concatenation joins ReLU outputs (``branches``: each branch through its max pools) and only
    convolutions read it: the op of a conv reading it takes every branch as one source; a pool, add or
    linear layer would need the same."""
    for x, b in zip(s.args, branches):
        if b.kind != "relu":
            raise PrepareError(f"{s.name}: a concatenation joins ReLU outputs (or their max pools), not {x} ({by[x].kind})")
    for u in readers:
        if u.kind not in ("conv", "pad"):
            raise PrepareError(f"{s.name}: a concatenation is read by convolutions only, not by {u.name} ({u.kind}); "
                               "put a conv after it")


def _place_quantizers(net: PreparedNet, a_bits: int) -> None:
    """Each ReLU output's quantizer: its consumers' (shared if several layers read it, and across the
    branches of a concatenation), or the free ``qfc`` for the last linear layer and global average pooling."""
    users: dict[str, list[Step]] = {s.name: [] for s in net.plan}
    for s in net.plan:
        for x in s.args:
            users[x].append(s)
    free: list[ActQuantizer] = []

    def the_free() -> ActQuantizer:
        if not free:
            free.append(ActQuantizer(a_bits))
            net.add_module(_key(net, "qfc"), free[0])
        return free[0]

    readers: list[tuple[Step, list[nn.Module], bool]] = []
    for s in net.plan:
        if s.kind != "relu":
            continue
        layers, stack, pooled = [], list(users[s.name]), False
        while stack:
            u = stack.pop()
            if u.kind in ("maxpool", "flatten", "cat"):
                stack.extend(users[u.name])
            elif u.kind == "gap" or u.kind == "linear" and u.role == "last":
                pooled = True
            elif u.kind in ("conv", "linear") and u.role != "proj":
                layers.append(net._m(u.mod))
            elif u.kind not in ("add", "conv"):
                raise PrepareError(f"{u.name} ({u.kind}) reads the ReLU output {s.name}: outside the op set")
        if pooled and layers:
            raise PrepareError(f"{s.name}: read both by the classifier and by a layer (quantized differently)")
        if not pooled and not layers:
            raise PrepareError(f"{s.name}: no layer reads this ReLU output")
        readers.append((s, layers, pooled))
    # one tensor, one quantizer: the layers that read a tensor share one, and a concatenation's reader
    # joins its branches' readers (union-find over the layers)
    root: dict[int, nn.Module] = {}

    def find(m: nn.Module) -> nn.Module:
        while root.get(id(m), m) is not m:
            m = root[id(m)]
        return m

    for _, layers, _ in readers:
        for m in layers[1:]:
            a, b = find(layers[0]), find(m)
            if a is not b:
                root[id(b)] = a
    for s, layers, pooled in readers:
        for m in layers:
            m.aq = find(m).aq
        q = the_free() if pooled else layers[0].aq
        s.q = next(k for k, m in net.named_modules() if m is q)
    for s in net.plan:
        if s.kind == "gap" and not any(t.kind == "relu" for t in net.plan if t.name == s.args[0]):
            raise PrepareError(f"{s.name}: global average pooling must read a ReLU output")


__all__ = ["Preprocess", "PreparedNet", "PrepareError", "UnsupportedModel", "build_prepared"]
