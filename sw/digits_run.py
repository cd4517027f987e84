"""One digits training run end to end (the CPU counterpart of sw/cifar_run.py): train -> export ->
golden integer accuracy -> model.pt, model.apot and train.json in ``<out>``, published as one set
(sw/atomic.publish: a killed run never leaves a new model.pt beside an old model.apot or train.json)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .convert import lower_model
from .intnet import size_and_bops


def digits_test_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The digits test split as integers (pixels 0..16) and labels."""
    from .data import load_digits_split

    d = load_digits_split(seed=seed)
    return d.x_test.numpy().astype(np.int64), d.y_test.numpy()


def train_and_export(out_dir, seed: int = 0, method: str = "ppq", log=print, **recipe) -> dict:
    """Train the digits net with sw/fasttrain.py's loop (``recipe``: DigitsConfig fields overriding its
    defaults), checkpointing every epoch to ``<out>/train.ckpt`` (a killed run started again resumes from
    it, and ends with the same model bit for bit); publish model.pt, model.apot and train.json into out_dir
    as one set, then remove the checkpoint; return train.json's dict."""
    import torch

    from . import export
    from .atomic import digests, json_text, publish, remove_stale
    from .checkpoint import checkpoint_bytes
    from .data import load_digits_split
    from .evaluation import integer_check
    from .fasttrain import train_fast
    from .models import DigitsNet
    from .progress import epoch_logger
    from .recipe import DigitsConfig

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)  # what a killed run left half-written
    t0 = time.perf_counter()
    cfg = DigitsConfig(method=method, seed=seed, **recipe)

    progress = epoch_logger(log, "train")

    torch.manual_seed(seed)
    model = DigitsNet(w_bits=cfg.w_bits, a_bits=cfg.a_bits)
    ckpt = out_dir / "train.ckpt"
    info = train_fast(model, load_digits_split(seed=seed), cfg, str(ckpt), progress=progress, log=log,
                      save_float=False)
    files = {"model.pt": checkpoint_bytes(model, {"method": method, "seed": seed, "train": info["config"]})}
    net, sliced = lower_model(model)
    net.meta.update({"method": method, "seed": seed, "dataset": "sklearn-digits"})
    files["model.apot"] = export.to_bytes(net)
    x, y = digits_test_images(seed)
    check = integer_check(sliced, net, x, y)
    acc = {"accuracy": check["accuracy_fakequant"], "accuracy_int": check["accuracy_int"],
           "agreement": check["agreement"], "test_images": check["images"]}
    result = {**acc, "accuracy_fp32_before_quant": info["pre_qat_float_acc"], "method": method, "seed": seed,
              "train_seconds": info["train_seconds"], "resumes": info["resumes"], "cpu_threads": info["cpu_threads"],
              "cpu_capability": info["cpu_capability"],
              "wall_seconds": time.perf_counter() - t0, "model": str(out_dir / "model.apot"),
              "sparsity": info["sparsity"], **size_and_bops(net), "config": info["config"]}
    result["sha256"] = digests(files)  # the set's other files, as published beside it
    files["train.json"] = json_text(result)
    publish(out_dir, files, marker="train.json")
    ckpt.unlink(missing_ok=True)  # the published set holds the run; a new run in out_dir starts afresh
    log(f"trained and exported in {result['wall_seconds']:.1f} s: fake-quant {acc['accuracy']:.4f}, "
        f"integer {acc['accuracy_int']:.4f}, agreement {acc['agreement']:.4f}")
    return result
