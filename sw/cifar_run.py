"""One CIFAR training run end to end: data -> GPU trainer -> export -> golden integer accuracy -> run JSON.

The JSON (``<out>/result.json``, written atomically) holds: fake-quant accuracy (``accuracy``: the
model's float64 copy, ``sw.quant.exact_copy``; ``accuracy_fp32``: the trainer's float32 evaluation), integer golden
accuracy and agreement (the exported IntNet on the whole test split; float64 backend on the GPU,
int64 on the CPU), size / BOPs with their reductions and counting rules (sw.intnet.size_and_bops),
the config, the command, the device, wall times and the per-epoch history.

Under torchrun (``torchrun --nproc-per-node N apotflow train ...``; sw/distributed.py) every rank trains
its share of each batch; rank 0 alone logs, writes the checkpoints, model.pt, model.apot and result.json
(``world_size`` in it), and the other ranks wait for it at a barrier.
"""

from __future__ import annotations

import copy
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .zoo import CIFAR_MODELS as MODELS  # (the zoo's CIFAR models, sw/zoo.py)


class RunError(ValueError):
    """A training run that cannot start as asked (one-line message)."""


def build_model(name: str, w_bits: int = 4, a_bits: int = 4, residual_bits: int | None = None):
    """A CIFAR zoo model; ``residual_bits`` (the training experiment of sw/models/resnet.py) only when set."""
    from .zoo import build

    if name not in MODELS:
        raise ValueError(f"unknown CIFAR model {name!r}; known: {', '.join(MODELS)}")
    extra = {} if residual_bits is None else {"residual_bits": residual_bits}
    return build(name, w_bits=w_bits, a_bits=a_bits, **extra)


def _float_arch(model) -> dict:
    """The architecture a float checkpoint must match: the keys float mode does not see aside
    (``sw.fasttrain.FLOAT_PHASE_BLIND``: residual_bits; in float mode the shortcut adds the block input itself
    whatever it is)."""
    from .fasttrain import float_phase_view

    return float_phase_view(model.arch_config())


def fakequant_accuracy(model, x: torch.Tensor, y: torch.Tensor, device: str, batch: int = 1000) -> float:
    """The fake-quant model's float64 copy on integer images x, as ``sw.evaluation.integer_check`` evaluates
    it (``exact_predictions``): a run without an integer model (residual_bits)."""
    from .evaluation import exact_predictions

    return float((exact_predictions(model, x, device, batch) == np.asarray(y)).mean())


def integer_eval(model, x: torch.Tensor, y: torch.Tensor, device: str, backend: str | None = None) -> dict:
    """Lower, then the integer check on every test image (``sw.evaluation.integer_check``: fake-quant vs
    integer accuracy and agreement), with the network's size and BOPs."""
    from .evaluation import integer_check
    from .intnet import size_and_bops
    from .lower import lower

    model = model.cpu().eval()
    net = lower(model)
    r = integer_check(model, net, x, y, device, backend)
    return {"net": net, "accuracy_fakequant_check": r["accuracy_fakequant"], "accuracy_int": r["accuracy_int"],
            "agreement": r["agreement"], "golden_backend": r["golden_backend"], "golden_seconds": r["golden_seconds"],
            **size_and_bops(net)}


def load_teacher(path: str, what: str = "teacher"):
    """A distillation teacher (or a float start): any CIFAR checkpoint (a run's model.pt, a ppq run's float.pt)."""
    from .checkpoint import load_checkpoint

    if not Path(path).is_file():
        raise RunError(f"{what} checkpoint {path} does not exist")
    try:
        model, _ = load_checkpoint(path)
    except Exception as e:
        raise RunError(f"{what} {path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return model


def run(model_name: str, data_path: str, out: str, cfg, dataset: str | None = None, cache=None,
        command: str | None = None, log=print, progress=None, teacher: str | None = None,
        float_init: str | None = None) -> dict | None:
    """Train, export and check one model; the result dict (None on the ranks other than 0 under torchrun)."""
    from . import distributed as ddp

    try:
        world = ddp.from_env()
        ddp.per_rank_batch(cfg.batch_size, world.size)
        started = ddp.init(world)
    except ValueError as e:
        raise RunError(f"torchrun: {e}") from None
    try:
        return _run(world, model_name, data_path, out, cfg, dataset, cache, command,
                    log if world.main else _quiet, progress if world.main else None, teacher, float_init)
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _quiet(*args) -> None:
    pass


def _run(world, model_name: str, data_path: str, out: str, cfg, dataset, cache, command, log, progress,
         teacher: str | None, float_init: str | None) -> dict | None:
    from . import distributed as ddp
    from . import export
    from .atomic import digests, json_text, publish, remove_stale
    from .checkpoint import checkpoint_bytes
    from .cifar import DEFAULT_CACHE, load_cifar10
    from .fasttrain import train_fast
    from .lower import integer_contract_refusal
    from .progress import heartbeat
    from .quant import set_quantize

    t_all = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if world.main:
        remove_stale(out_dir)  # what a killed run left half-written
    log(f"loading {data_path} (the first time decodes it, minutes for the JPEG tarball, and caches it in "
        f"{DEFAULT_CACHE if cache is None else cache}; APOTFLOW_CACHE moves the default) ...")
    for turn in (True, False):  # rank 0 decodes and caches the data set first, the other ranks read the cache
        if world.main == turn:
            with heartbeat(log, "loading CIFAR-10"):
                data = load_cifar10(data_path, dataset, DEFAULT_CACHE if cache is None else cache)
        ddp.barrier(world)
    log(f"{data.name}: {len(data.x_train)} train / {len(data.x_test)} test images from {data.source}")
    tmodel = load_teacher(teacher) if teacher else None
    if cfg.distill > 0 and tmodel is None and cfg.method != "ppq":
        raise RunError(f"--distill with --method {cfg.method} needs --teacher (ppq distils from its float phase)")
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(model_name, cfg.w_bits, cfg.a_bits, getattr(cfg, "residual_bits", None))
    except ValueError as e:
        raise RunError(f"{model_name}: {e}") from None
    init = None
    if float_init:
        if cfg.method != "ppq":
            raise RunError(f"--float-init replaces the float phase of ppq; method is {cfg.method}")
        fm = load_teacher(float_init, "--float-init")
        if _float_arch(fm) != _float_arch(model) or getattr(fm, "quantize", False):
            raise RunError(f"--float-init {float_init}: not a float {model_name} ({fm.arch_config()['name']}"
                           f"{', quantized' if getattr(fm, 'quantize', False) else ''})")
        init = fm.state_dict()
    info = train_fast(model, data, cfg, str(out_dir / "train.ckpt"), progress=progress, log=log, teacher=tmodel,
                      float_init=init)
    if not world.main:
        ddp.barrier(world)  # rank 0 exports, checks and writes the results
        return None
    quant = cfg.method in ("apot", "spq", "ppq")
    model.cpu()
    set_quantize(model, quant)
    files = {"model.pt": checkpoint_bytes(model, {"method": cfg.method, "accuracy": info["accuracy"]}),
             "model.apot": None, "result.json": None}
    result = {"model": model_name, "method": cfg.method, "dataset": data.name, "data": data.source,
              "accuracy": info["accuracy"],
              "pre_qat_float_acc": info["pre_qat_float_acc"], "config": cfg.to_dict(), "teacher": teacher,
              "float_init": float_init, "eval_precision": "float64 copy (sw.quant.exact_copy); accuracy_fp32: fp32, no TF32",
              "command": command or " ".join(shlex.quote(a) for a in sys.argv), "device": info["device"],
              "train_seconds": info["train_seconds"], "resumes": info["resumes"], "world_size": info["world_size"],
              "torch": torch.__version__,
              "python": platform.python_version()}
    if cfg.ema > 0:  # the live model's fp32 fake-quant accuracy: what the run gives without the average
        result["accuracy_live_fp32"] = info["accuracy_live"]
    if info["resumes"]:
        result["timing_note"] = (f"resumed {info['resumes']} time(s) from the checkpoint: train_seconds adds up every "
                                 "process's training time (each one captures its CUDA graphs again); wall_seconds is "
                                 "the last process's only")
    refusal = integer_contract_refusal(model) if quant else None
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if refusal:  # a training experiment: the fake-quant accuracy alone (float64 copy), no model.apot
        result["accuracy_fp32"] = info["accuracy"]
        result["accuracy"] = fakequant_accuracy(model, data.x_test, data.y_test, dev)
        result.update(accuracy_int=None, integer_note=refusal)
        log(f"no integer evaluation: {refusal}")
        set_quantize(model, True)
    elif quant:
        try:
            log(f"integer evaluation: the exported network on {len(data.x_test)} test images ({dev}) ...")
            with heartbeat(log, "integer evaluation"):
                ie = integer_eval(model, data.x_test, data.y_test, dev)
            net = ie.pop("net")
            files["model.apot"] = export.to_bytes(net)
            result.update(ie)
            # the fake-quant accuracy is the float64 copy's (the float32 one, from training, is kept beside it)
            result["accuracy_fp32"], result["accuracy"] = info["accuracy"], ie["accuracy_fakequant_check"]
            result["int_minus_fakequant"] = ie["accuracy_int"] - result["accuracy"]
        except Exception as e:  # report, do not lose the trained model
            result["accuracy_int"] = None
            result["integer_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"integer evaluation failed: {result['integer_error']}")
        if info.get("live_state") is not None:  # cfg.ema: the live model, lowered and checked the same way
            try:
                live = copy.deepcopy(model)
                live.load_state_dict(info["live_state"])
                with heartbeat(log, "integer evaluation of the live model"):
                    il = integer_eval(live, data.x_test, data.y_test, dev)
                result.update(accuracy_live=il["accuracy_fakequant_check"], accuracy_live_int=il["accuracy_int"],
                              agreement_live=il["agreement"])
            except Exception as e:  # the average's result stands
                log(f"integer evaluation of the live model failed: {type(e).__name__}: {e}")
        set_quantize(model, True)
    else:
        from .metrics import model_metrics

        mm = model_metrics(model.eval(), (3, 32, 32))
        result.update({k: mm[k] for k in ("size_reduction", "bops_reduction", "counting_rules")})
        result["accuracy_int"] = None
    result["wall_seconds"] = time.perf_counter() - t_all
    result["history"] = info["history"]
    result["sha256"] = digests(files)  # the set's other files, as published beside it
    files["result.json"] = json_text(result)
    publish(out_dir, files, marker="result.json")  # model.pt, model.apot, result.json: one set, never a mix
    ddp.barrier(world)
    log(f"{model_name} {cfg.method}: fake-quant {result['accuracy']:.4f}, integer {result.get('accuracy_int')}, "
        f"size x{result.get('size_reduction') or 0:.2f}, BOPs x{result.get('bops_reduction') or 0:.2f}, "
        f"{result['wall_seconds']:.0f} s")
    return result
