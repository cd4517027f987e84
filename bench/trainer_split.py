"""The trainer's numerics, fingerprinted: short CPU runs of the one trainer (digits: every method and the
knobs that take other paths through the loop; a tiny CIFAR-shaped ResNet-20 ppq run with distillation and
a weight average), each model's every tensor and the run's figures recorded, so that a change to the
trainer's code that must not change its numerics (the split of sw/fasttrain.py by concern, issue 21) is
checked by running this before and after it.

    python bench/trainer_split.py --save /tmp/before   # before the change: the states (.pt), a checkpoint
                                                      # stopped in the QAT phase, and the fingerprints
    python bench/trainer_split.py --against /tmp/before --out bench/results/trainer-split.json

``--against``: every parameter and buffer torch.equal to the saved run's, the same accuracies and loss
histories, and the checkpoint written by the older code (stopped mid-QAT) resumed by this code to the model
of the run that never stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
SMOKE = {"epochs": 2, "stage_epochs": 1, "qat_epochs": 2, "train_subset": 256}
DIGITS = {
    "fp": {"method": "fp"},
    "apot": {"method": "apot"},
    "fpgm": {"method": "fpgm"},
    "spq": {"method": "spq"},
    "ppq": {"method": "ppq"},
    "ppq-knobs": {"method": "ppq", "prune_stages": 3, "distill": 0.5, "ema": 0.5, "qat_wd": 1e-4,
                  "warmup_epochs": 0.5, "nesterov": True},
    "spq-plateau": {"method": "spq", "schedule": "plateau", "ema": 0.9},
    "ppq-qat-teacher-pruned": {"method": "ppq", "distill": 0.5, "qat_teacher": "pruned"},
}
CIFAR = {"method": "ppq", "epochs": 1, "stage_epochs": 1, "qat_epochs": 3, "batch_size": 8, "step_mode": "eager",
         "bf16": False, "channels_last": False, "distill": 0.5, "ema": 0.5, "eval_every": 1}


def _digits(name: str):
    from apotflow.sw.data import load_digits_split
    from apotflow.sw.fasttrain import DigitsConfig
    from apotflow.sw.models import DigitsNet

    cfg = DigitsConfig(seed=0, **SMOKE, **DIGITS[name])
    torch.manual_seed(cfg.seed)
    return DigitsNet(w_bits=cfg.w_bits, a_bits=cfg.a_bits), load_digits_split(seed=0), cfg


def _cifar():
    from apotflow.sw.fasttrain import FastConfig
    from apotflow.sw.models.resnet import CifarResNet

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x_train=torch.randint(0, 256, (16, 3, 32, 32), generator=g).to(torch.uint8),
                           y_train=torch.arange(16) % 10, x_test=torch.randint(0, 256, (8, 3, 32, 32), generator=g)
                           .to(torch.uint8), y_test=torch.arange(8))
    torch.manual_seed(0)
    return CifarResNet(20), data, FastConfig(**CIFAR)


def _runs():
    for name in DIGITS:
        yield f"digits-{name}", (lambda n=name: _digits(n))
    yield "cifar-resnet20-ppq", _cifar


def _digest(state: dict) -> str:
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _figures(info: dict) -> dict:
    return {"accuracy": info["accuracy"], "accuracy_live": info["accuracy_live"],
            "pre_qat_float_acc": info["pre_qat_float_acc"], "sparsity": info["sparsity"],
            "losses": [r["loss"] for r in info["history"]],
            "test_acc": [r.get("test_acc") for r in info["history"]],
            "phases": [r["phase"] for r in info["history"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", help="folder to save the states, a stopped checkpoint and the fingerprints in")
    ap.add_argument("--against", help="a folder --save wrote: compare with it")
    ap.add_argument("--out", help="JSON of the comparison (with --against)")
    a = ap.parse_args(argv)
    if bool(a.save) == bool(a.against):
        ap.error("give one of --save or --against")
    from apotflow.sw.fasttrain import train_fast

    folder = Path(a.save or a.against)
    folder.mkdir(parents=True, exist_ok=True)
    quiet = lambda *args: None  # noqa: E731
    runs, t0 = {}, time.perf_counter()
    for name, make in _runs():
        model, data, cfg = make()
        ts = time.perf_counter()
        info = train_fast(model, data, cfg, ckpt=str(folder / name / "train.ckpt") if a.save else None, log=quiet,
                          save_float=False)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        rec = {"state_sha256": _digest(state), "seconds": round(time.perf_counter() - ts, 2), **_figures(info)}
        if a.save:
            torch.save(state, folder / f"{name}.pt")
            ck = torch.load(folder / name / "train.ckpt", map_location="cpu", weights_only=False)
            rec["checkpoint_keys"] = sorted(ck)
        else:
            ref = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
            saved = json.loads((folder / "fingerprints.json").read_text())["runs"][name]
            rec["tensors"] = len(state)
            rec["tensors_equal"] = state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
            rec["figures_equal"] = all(rec[k] == saved[k] for k in _figures(info))
        runs[name] = rec
        print(name, "sha256", rec["state_sha256"][:16], "acc", rec["accuracy"],
              "" if a.save else f"equal {rec['tensors_equal']} figures {rec['figures_equal']}", flush=True)
    resume = _stopped_checkpoint(folder, save=bool(a.save))
    out = {"command": " ".join(["python", "bench/trainer_split.py", *(argv or sys.argv[1:])]),
           "torch": torch.__version__, "python": platform.python_version(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "seconds": round(time.perf_counter() - t0, 1),
           "runs": runs, "resume": resume}
    if a.save:
        (folder / "fingerprints.json").write_text(json.dumps(out, indent=1))
        return 0
    out["all_equal"] = all(r["tensors_equal"] and r["figures_equal"] for r in runs.values()) and resume["equal"]
    print("all equal:", out["all_equal"])
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out["all_equal"] else 1


class _Stop(Exception):
    pass


def _stopped_checkpoint(folder: Path, save: bool) -> dict:
    """--save: the CIFAR-shaped run stopped in its QAT phase (its checkpoint kept); --against: that checkpoint
    (written by the older code) resumed by this code, whose model must equal the run that never stopped."""
    from apotflow.sw.fasttrain import train_fast

    ck = folder / "stopped" / "train.ckpt"
    if save:
        def stop(rec):
            if rec["phase"] == "qat" and rec["epoch"] == 2:
                raise _Stop

        model, data, cfg = _cifar()
        ck.parent.mkdir(parents=True, exist_ok=True)
        try:
            train_fast(model, data, cfg, ckpt=str(ck), progress=stop, log=lambda *a: None, save_float=False)
        except _Stop:
            pass
        return {"checkpoint": str(ck), "keys": sorted(torch.load(ck, map_location="cpu", weights_only=False))}
    import shutil

    again = folder / "resumed" / "train.ckpt"  # a copy: the stopped checkpoint stays for the next comparison
    again.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ck, again)
    model, data, cfg = _cifar()
    info = train_fast(model, data, cfg, ckpt=str(again), log=lambda *a: None, save_float=False)
    ref = torch.load(folder / "cifar-resnet20-ppq.pt", map_location="cpu", weights_only=True)
    state = model.state_dict()
    equal = state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
    saved = json.loads((folder / "fingerprints.json").read_text())["runs"]["cifar-resnet20-ppq"]
    return {"resumes": info["resumes"], "equal": bool(equal and info["resumes"] == 1
                                                      and [r["loss"] for r in info["history"]] == saved["losses"]),
            "what": "a checkpoint written by the code before the change (stopped after QAT epoch 1), resumed by "
                    "this code: its final model torch.equal to the uninterrupted run's"}


if __name__ == "__main__":
    sys.exit(main())
