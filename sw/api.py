"""The public Python API: a float model in, an exported integer network out.

    from apotflow.sw.api import QuantConfig, prepare, calibrate, prune_, lower, export
    q = prepare(float_model, QuantConfig(w_bits=8, a_bits=8))   # APoT layers, float weights kept
    prune_(q, 0.3)                                              # optional: GM filter pruning by add-groups
    calibrate(q, images)                                        # post-training: clipping thresholds from data
    net = lower(q)                                              # the IntNet (golden model's definition)
    export(net, "model.apot")

Scope today: ``prepare`` takes a model of the zoo (sw/zoo.py) in float mode -- a checkpoint trained
with ``apotflow train --method fp`` or the float phase of ppq (``float.pt``). A model outside the zoo
is refused with the list of what would have to change (sw/frontend.py checks its graph).

Post-training quantization (``prepare`` + ``calibrate``):

* The APoT weight quantizer normalises each layer's weights before quantizing (sw/quant.py). In QAT
  it subtracts their mean; ``prepare`` turns that off (``WeightQuantizer.center = False``: a trained
  float ResNet-20's layers have mean/std up to -0.16, and with the mean dropped, mean/std * sum(x) over
  a 3x3x16 window swamps the output: 1% top-1 measured). A quantized layer then computes about
  ``conv(x, w) / std``, and ``prepare`` folds that 1/std into the BatchNorm that follows (running mean /
  std and eps scaled, the conv's own bias divided by std): exact up to the quantization. A layer without
  BatchNorm keeps its float scale (``denorm``), except the last linear layer, whose bias is divided by
  its std instead (the logits are scaled by 1/std, the argmax is unchanged).
* ``calibrate``: weight clipping thresholds alpha (normalised units): the largest |w| for 8-bit weights,
  the alpha of a grid that minimises the squared quantization error for fewer bits; activation
  thresholds: a high percentile of each quantizer's input over the calibration images, quantizers set
  in network order in fake-quant mode (each sees already-quantized inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .quant import SUPPORTED_BITS, ActQuantizer, QConv2d, QLinear, set_quantize


class ApiError(ValueError):
    """A model or argument the API cannot take (one line)."""


@dataclass(frozen=True)
class QuantConfig:
    """Bits of the inner layers; the first conv and the last linear layer always have 8-bit weights
    (the first sees integer pixels, the last gives the logits). Everything lowers to integers: no layer
    stays in float."""

    w_bits: int = 4
    a_bits: int = 4
    act_percentile: float = 0.9999  # activation clipping threshold: this quantile of the calibration inputs

    def __post_init__(self) -> None:
        for k in ("w_bits", "a_bits"):
            if getattr(self, k) not in SUPPORTED_BITS:
                raise ApiError(f"{k} must be one of {SUPPORTED_BITS}, not {getattr(self, k)!r}")
        if not 0.5 < self.act_percentile <= 1.0:
            raise ApiError(f"act_percentile must be in (0.5, 1], not {self.act_percentile!r}")


def _zoo_class(model: nn.Module):
    """The zoo class of a zoo model, None for any other model."""
    from .checkpoint import arch_class

    cfg = getattr(model, "arch_config", None)
    return arch_class(cfg()["name"]) if callable(cfg) else None


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
    """Every prunable conv with the BatchNorm after it (None: none), from the model's prune groups."""
    return [pair for group in model.prune_groups() for pair in group]


@torch.no_grad()
def prepare(model: nn.Module, config: QuantConfig | None = None, preprocess=None) -> nn.Module:
    """A fake-quant copy of a float model with ``config``'s bits, its weights' scale folded (module doc).
    A zoo model keeps its class; any other traceable model over the op set becomes a
    ``graph_prepare.PreparedNet`` whose input is integer pixels, ``preprocess`` (a
    ``graph_prepare.Preprocess``, default pixels 0..255 seen by the float model as X / 255) declaring what
    the float model expects. The copy is in eval mode with quantization on; ``calibrate`` it before use."""
    config = config or QuantConfig()
    if getattr(model, "quantize", False) or any(isinstance(m, (QConv2d, QLinear)) and m.quantize
                                                for m in model.modules()):
        raise ApiError("prepare takes a float model (quantization is already on: this is a quantized model)")
    cls = _zoo_class(model)
    if cls is None:
        from .graph_prepare import Preprocess, build_prepared

        q = build_prepared(model, config.w_bits, config.a_bits, preprocess or Preprocess())
    else:
        if preprocess is not None:
            raise ApiError("a zoo model's input is fixed (pixels 0..255 for CIFAR): no preprocess")
        arch = dict(model.arch_config())
        arch.pop("name")
        arch.update(w_bits=config.w_bits, a_bits=config.a_bits)
        q = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})
        q.load_state_dict(model.state_dict())
    q.ptq_config = config
    for m in q.modules():
        if isinstance(m, (QConv2d, QLinear)):
            m.wq.center = False
    for conv, bn in conv_bn_pairs(q):
        s = float(conv.wq.std(conv.weight, conv.filter_mask, conv.in_mask))
        if bn is not None:
            bn.running_mean /= s
            bn.running_var /= s * s
            bn.eps /= s * s
            if conv.bias is not None:
                conv.bias /= s
        elif not getattr(conv, "denorm", False):
            raise ApiError(f"{type(conv).__name__} without BatchNorm and not de-normalised: cannot fold its scale")
    last = q.last_linear() if hasattr(q, "last_linear") else [m for m in q.modules() if isinstance(m, QLinear)][-1]
    if last.bias is not None:
        last.bias /= float(last.wq.std(last.weight, last.filter_mask, last.in_mask))
    set_quantize(q, True)
    return q.eval()


def _mse_alpha(wn: torch.Tensor, wq, grid: int = 100) -> float:
    """The clipping threshold (normalised units) that minimises the squared quantization error of wn."""
    top = float(wn.abs().max())
    best, best_err = top, float("inf")
    saved = float(wq.alpha)
    for a in torch.linspace(top / grid * 10, top, grid - 9).tolist():
        wq.alpha.fill_(a)
        err = float(((wq._quant(wn)[0] - wn) ** 2).sum())
        if err < best_err:
            best, best_err = a, err
    wq.alpha.fill_(saved)
    return best


@torch.no_grad()
def calibrate_weights(model: nn.Module) -> None:
    """Weight alphas: max |w| (normalised) for 8-bit weights, the squared-error-optimal one for fewer bits."""
    for m in model.modules():
        if isinstance(m, (QConv2d, QLinear)):
            om, im = m.wq._masks(m.weight, m.filter_mask, m.in_mask)
            kept = m.weight.detach().float()[om][:, im]
            from .quant import weight_stats

            mean, std = weight_stats(kept)
            wn = (kept - mean if m.wq.center else kept) / std
            m.wq.alpha.fill_(float(wn.abs().max()) if m.w_bits == 8 else _mse_alpha(wn, m.wq))


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, percentile: float | None = None) -> nn.Module:
    """Post-training calibration of a prepared model on integer images (N, C, H, W) (module doc)."""
    from .evaluation import calibrate_alphas

    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        raise ApiError("calibrate needs a non-empty (N, C, H, W) tensor of images")
    q = percentile if percentile is not None else getattr(model, "ptq_config", QuantConfig()).act_percentile
    calibrate_weights(model)
    set_quantize(model, True)
    calibrate_alphas(model, images.float(), q, passes=2)
    if not any(isinstance(m, ActQuantizer) for m in model.modules()):
        raise ApiError("the model has no activation quantizers: was it prepared?")
    return model.eval()


def prune_(model: nn.Module, rate: float) -> nn.Module:
    """GM filter pruning in place: the channels that meet at an add are one group (the model's groups)."""
    from .prune import compute_masks

    if not 0.0 <= rate < 1.0:
        raise ApiError(f"prune rate must be in [0, 1), not {rate!r}")
    compute_masks(model, rate)
    return model


def lower(model: nn.Module, example: torch.Tensor | None = None):
    """The IntNet of a quantized (calibrated or trained) model; pruned channels are sliced away. A zoo
    model, or any model built from sw/quant.py's layers whose graph is in the op set (sw/graph_lower.py;
    it needs ``example`` for the input shape; unsupported nodes raise frontend.UnsupportedModel, listed).
    ``example`` (optional for zoo models): integer images on which the integer model is checked against
    the float64 fake-quant model (top-1 agreement must be 1.0)."""
    from .lower import lower as _lower

    if not any(getattr(m, "quantize", False) is True for m in model.modules()):
        raise ApiError("lower takes a quantized model (prepare and calibrate it first)")
    from .zoo import input_shape_of

    if example is None and input_shape_of(model) is None:
        raise ApiError(f"{type(model).__name__} is not a zoo model: lower(model, example) needs example images "
                       "(the input's shape)")
    net = _lower(model, None if example is None else tuple(example.shape[1:]))
    if example is not None:
        from .golden import predict
        from .quant import exact_copy

        with torch.no_grad():
            pf = exact_copy(model).eval()(example.double()).argmax(1).numpy()
        pi = predict(net, example.long().numpy())
        if (pf != pi).any():
            raise ApiError(f"integer model disagrees with the fake-quant model on {int((pf != pi).sum())} of "
                           f"{len(pf)} example images")
    return net


def export(net, path):
    """Write the IntNet to a .apot file (sw/export.py); returns the path."""
    from . import export as _export

    return _export.save(net, path)


def accuracy_report(float_model, float_input, q: nn.Module, net, x: torch.Tensor, y: torch.Tensor,
                    batch: int = 500) -> dict:
    """Top-1 of the float model (on ``float_input(x)``), and the integer check of ``q`` against ``net`` on
    integer images x with labels y (``sw.evaluation.integer_check``: fake-quant and integer top-1, their
    agreement; 1.0: the integer model equals the fake-quant model)."""
    from .evaluation import integer_check

    with torch.no_grad():
        pf = torch.cat([float_model(float_input(x[i:i + batch])).argmax(1) for i in range(0, len(x), batch)])
    r = integer_check(q, net, x, y, batch=batch)
    return {"images": r["images"], "accuracy_float": float((pf == y).float().mean()),
            "accuracy_fakequant": r["accuracy_fakequant"], "accuracy_int": r["accuracy_int"],
            "agreement": r["agreement"]}


FINETUNE_LR = 0.01  # the learning rate of a fine-tune (the paper's QAT learning rate)


@torch.no_grad()
def batchnorms_for_training(model: nn.Module, images: torch.Tensor) -> int:
    """Each fixed BatchNorm of a prepared model (the identity one ``prepare`` puts after a layer without
    BatchNorm: every layer of an ONNX export, whose exporter folds BatchNorm into the convs) becomes a
    BatchNorm that normalises by the batch in training and computes what the fixed one did in eval: running
    statistics = its input's per-channel mean and variance over ``images`` (in the model's current mode),
    weight and bias set to undo them. Without normalisation, QAT at the usual learning rate diverges (a LeNet
    exported to ONNX at W2/A2: 27% after calibration, 22% after 4 epochs at 0.01). Returns how many it replaced."""
    from .graph_prepare import FixedBatchNorm1d, FixedBatchNorm2d

    fixed = {n: m for n, m in model.named_modules() if isinstance(m, (FixedBatchNorm1d, FixedBatchNorm2d))}
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: seen.__setitem__(n, a[0].detach().double()))
             for n, m in fixed.items()]
    was = model.training
    model.eval()
    try:
        model(images.float())
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    for n, old in fixed.items():
        x = seen[n]
        dims = [0, *range(2, x.dim())]
        mu, var = x.mean(dims), x.var(dims, unbiased=False)
        bn = (nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d)(len(mu)).double()
        a = old.weight.double() / torch.sqrt(old.running_var.double() + old.eps)  # old: y = a (x - rm) + b
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)
        bn.weight.copy_(a * torch.sqrt(var + bn.eps))
        bn.bias.copy_(old.bias.double() + a * (mu - old.running_mean.double()))
        parent, _, child = n.rpartition(".")
        (model.get_submodule(parent) if parent else model).add_module(child, bn.float().train(was))
    return len(fixed)


def finetune(model: nn.Module, data, epochs: int, lr: float = FINETUNE_LR, seed: int = 0, log=print,
             batchnorms: bool = True) -> dict:
    """QAT fine-tuning of a prepared, calibrated (and perhaps pruned) model in place: PPQ's QAT phase, run by
    the trainer of every network (sw/fasttrain.py), from the model's own weights and post-training
    thresholds, with its pruned filters frozen at zero. ``data``: a split with integer training and test
    images (x_train, y_train, x_test, y_test); digits-sized images take the digits recipe (no augmentation),
    others the CIFAR one (random crop and flip). ``batchnorms``: make the fixed BatchNorms trainable first
    (``batchnorms_for_training``; False: they train as fixed affine maps). Returns the trainer's summary."""
    from .evaluation import calibration_images
    from .fasttrain import train_fast
    from .progress import epoch_logger
    from .recipe import DigitsConfig, FastConfig
    from .zoo import DATASETS

    if not isinstance(epochs, int) or epochs < 1:
        raise ApiError(f"fine-tuning needs a positive number of epochs, not {epochs!r}")
    digits = tuple(data.x_train.shape[1:]) == DATASETS["digits"][0]
    pc = getattr(model, "ptq_config", QuantConfig())
    cfg = (DigitsConfig if digits else FastConfig)(
        method="ppq", prune_stages=0, qat_epochs=epochs, qat_lr=lr, calibrate=False, w_bits=pc.w_bits,
        a_bits=pc.a_bits, seed=seed, eval_every=max(1, epochs // 5))

    progress = epoch_logger(log, "fine-tuning", ("epoch", "loss", "test_acc"))

    if batchnorms:
        batchnorms_for_training(model, calibration_images(data.x_train))
    torch.manual_seed(seed)
    info = train_fast(model, data, cfg, None, progress=progress, log=log, float_init=model.state_dict(),
                      save_float=False)
    model.cpu().eval()
    return info


def import_float_model(model: nn.Module, calib: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       config: QuantConfig, preprocess, prune: float = 0.0, finetune_data=None,
                       finetune_epochs: int = 0, log=print) -> tuple:
    """A float model (a PyTorch module or load_onnx's GraphModule) -> (IntNet, report): prepare ->
    prune_ (if prune) -> calibrate on ``calib`` -> [``finetune`` for finetune_epochs on finetune_data] ->
    lower -> ``accuracy_report`` on (x, y) (the report has the post-training accuracies too when fine-tuned).
    ``preprocess`` None: a zoo model, which takes the integer pixels itself."""
    import time

    from .lower import lower as _lower

    t0 = time.perf_counter()
    float_input = torch.Tensor.float if preprocess is None else preprocess.apply
    q = prepare(model, config, preprocess)
    if prune:
        prune_(q, prune)
    calibrate(q, calib)
    report = {"w_bits": config.w_bits, "a_bits": config.a_bits, "first_last_bits": 8, "prune": prune,
              "act_percentile": config.act_percentile, "calib_images": len(calib)}
    if finetune_epochs:
        ptq = accuracy_report(model.eval(), float_input, q, _lower(q, tuple(x.shape[1:])), x, y)
        info = finetune(q, finetune_data, finetune_epochs, log=log)
        report["post_training"] = {k: ptq[k] for k in ("accuracy_fakequant", "accuracy_int", "agreement")}
        report["finetune"] = {"epochs": finetune_epochs, "lr": FINETUNE_LR, "train_images": len(finetune_data.x_train),
                              "seconds": round(info["train_seconds"], 1)}
    net = _lower(q, tuple(x.shape[1:]))
    report.update(**accuracy_report(model.eval(), float_input, q, net, x, y), ops=len(net.ops),
                  seconds=round(time.perf_counter() - t0, 1))
    return net, report
