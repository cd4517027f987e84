"""The end-to-end flow behind the CLI: train -> export -> RTL -> co-simulation -> synthesis -> report."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from apotflow.hw.config import AcceleratorConfig
from apotflow.sw.intnet import IntNet, size_and_bops


class FlowError(RuntimeError):
    """A step of the flow could not run (missing data, failed check)."""


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "") if rev.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    from apotflow.sim.toolpaths import tool_versions

    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        out.update(tool_versions())
    except Exception as e:  # a missing tool must not hide the rest of the report
        out["tools_error"] = str(e).splitlines()[0]
    return out


# ----------------------------------------------------------------------------- software side
def digits_test_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from apotflow.sw.data import load_digits_split

    d = load_digits_split(seed=seed)
    return d.x_test.numpy().astype(np.int64), d.y_test.numpy()


def integer_accuracy(net: IntNet, model, x: np.ndarray, y: np.ndarray) -> dict:
    """Fake-quant accuracy, golden integer accuracy, and their top-1 agreement on (x, y)."""
    import torch

    from apotflow.sw.golden import predict

    with torch.no_grad():
        pf = model(torch.from_numpy(x).float()).argmax(1).numpy()
    pi = predict(net, x)
    return {"accuracy_float": float((pf == y).mean()), "accuracy_int": float((pi == y).mean()),
            "agreement": float((pf == pi).mean()), "test_images": int(len(y))}


def _lower(model) -> IntNet:
    """(IntNet, sliced model) of any zoo model; fp32_shapes = the unpruned layers' shapes."""
    from apotflow.sw.lower import lower
    from apotflow.sw.prune import slice_pruned

    sliced = slice_pruned(model).eval()  # records the unpruned shapes, which lower() reports
    return lower(sliced), sliced


def train_and_export(out_dir, seed: int = 0, method: str = "ppq", log=print) -> dict:
    from apotflow.sw import export
    from apotflow.sw.checkpoint import save_checkpoint
    from apotflow.sw.train import train_digits

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def progress(rec: dict) -> None:
        log("train " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))

    model, info = train_digits(seed=seed, method=method, progress=progress)
    save_checkpoint(model, out_dir / "model.pt", {"method": method, "seed": seed, "train": info.get("config")})
    net, sliced = _lower(model)
    net.meta.update({"method": method, "seed": seed, "dataset": "sklearn-digits"})
    export.save(net, out_dir / "model.apot")
    x, y = digits_test_images(seed)
    acc = integer_accuracy(net, sliced, x, y)
    result = {**acc, "accuracy_fp32_before_quant": info.get("pre_qat_float_acc"), "method": method, "seed": seed,
              "train_seconds": time.perf_counter() - t0, "model": str(out_dir / "model.apot"),
              "sparsity": info.get("sparsity"), **size_and_bops(net)}
    _write_json(out_dir / "train.json", result)
    log(f"trained and exported in {result['train_seconds']:.1f} s: fake-quant {acc['accuracy_float']:.4f}, "
        f"integer {acc['accuracy_int']:.4f}, agreement {acc['agreement']:.4f}")
    return result


def export_checkpoint(checkpoint, output) -> Path:
    from apotflow.sw import export
    from apotflow.sw.checkpoint import load_checkpoint

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    model, meta = load_checkpoint(checkpoint)
    net, _ = _lower(model)
    net.meta.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float))})
    return export.save(net, output)


def export_random(arch: str, output, prune: float = 0.3, seed: int = 0, width_scale: float = 1.0) -> tuple[Path, dict]:
    """A pruned, quantized, calibrated model with random (seeded) weights, lowered and saved.

    Returns (path, info) with the achieved prune rate per group and the seconds each step took."""
    from apotflow.sw import export
    from apotflow.sw.randmodel import ARCHS, random_model

    if arch not in ARCHS:
        raise FlowError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    if not 0.0 <= prune < 1.0:
        raise FlowError(f"--prune must be in [0, 1), not {prune}")
    if not width_scale > 0:
        raise FlowError(f"--width-scale must be positive, not {width_scale}")
    t0 = time.perf_counter()
    model = random_model(arch, prune, seed, width_scale)
    t1 = time.perf_counter()
    net, _ = _lower(model)
    report = model.prune_report()
    net.meta.update({"model": arch, "random_weights": True, "seed": seed, "prune": prune,
                     "width_scale": width_scale, "prune_report": report})
    path = export.save(net, output)
    t2 = time.perf_counter()
    return path, {"model": arch, "path": str(path), "prune_report": report, "seconds_model": t1 - t0,
                  "seconds_lower_save": t2 - t1, **{k: v for k, v in size_and_bops(net).items() if k != "counting_rules"}}


# ----------------------------------------------------------------------------- hardware side
def write_rtl(net: IntNet, cfg: AcceleratorConfig, out_dir: Path, log=print) -> dict:
    from apotflow.hw import isa
    from apotflow.hw.compile import compile_net
    from apotflow.hw.rtl import generate_verilog, ports_manifest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prog = compile_net(net, cfg)
    log(f"generating Verilog for {cfg.lanes} lanes ...")
    t0 = time.perf_counter()
    generate_verilog(cfg, prog.images, out_dir)
    manifest = {
        "config": cfg.to_dict(), "interface": ports_manifest(cfg), "program": prog.to_dict(),
        "formats": {"entry": isa.entry_layout(cfg).to_dict(), "val": isa.val_layout(cfg).to_dict(),
                    "tap": isa.tap_layout(cfg).to_dict(), "rq": isa.rq_layout(cfg).to_dict(),
                    "desc": isa.desc_layout(cfg).to_dict()},
        "files": sorted(p.name for p in out_dir.iterdir() if p.suffix in (".v", ".hex")),
        "git_revision": git_revision(), "versions": versions(), "model_meta": net.meta,
        "seconds": time.perf_counter() - t0,
        "notes": "$readmemh files (wgt.hex, rq.hex, prog.hex, val.hex, tap.hex) are opened relative to the simulator's or "
                 "synthesis tool's working directory.",
    }
    _write_json(out_dir / "manifest.json", manifest)
    log(f"wrote {out_dir} ({len(manifest['files'])} files) in {manifest['seconds']:.1f} s")
    return manifest


def input_images(net: IntNet, n: int, seed: int = 0, data: str | None = None, log=print) -> np.ndarray:
    """Test images for a model: the digits test split, CIFAR-10 test images (data=path), or, for a
    CIFAR net without data, seeded random pixels (bit-exactness does not depend on the data)."""
    if net.meta.get("model") == "digits":
        x = digits_test_images(seed)[0]
        return x[:n] if n else x
    if data:
        from apotflow.sw.cifar import load_cifar10

        x = load_cifar10(data).x_test.numpy().astype(np.int64)
        return x[:n] if n else x
    spec = net.tensors[net.input]
    log(f"no --data given: {n or 16} random input images, integers 0..{spec.max_value} (seed {seed})")
    return np.random.default_rng(seed).integers(0, spec.max_value + 1, size=(n or 16, *spec.shape))


def cosim_model(net: IntNet, cfg: AcceleratorConfig, out_dir: Path, n_images: int = 16, seed: int = 0,
                waves: bool = False, log=print, x: np.ndarray | None = None, data: str | None = None) -> dict:
    from apotflow.sim.cosim import execute, prepare

    if x is None:
        x = input_images(net, n_images, seed, data, log)
    elif n_images:
        x = x[:n_images]
    setup = prepare(net, cfg, x, Path(out_dir), waves=waves, log=log)
    summary = execute(setup, waves=waves, log=log)
    log(f"co-simulation: {summary['bitexact_images']}/{summary['images']} images bit-exact, "
        f"{summary['cycles_total']} cycles/image ({summary['cycles_ratio']:.3f}x the ideal bound)")
    if summary["first_mismatch"]:
        fm = summary["first_mismatch"]
        log(f"first mismatch: image {fm['image']}, layer {fm['layer']} ({fm['tensor']}), index {fm['index']}: "
            f"expected {fm['expected']}, got {fm['got']}")
    return summary


def synth_model(net: IntNet | None, cfg: AcceleratorConfig, out_dir: Path, target: str, log=print, *,
                lane_kind: str = "shift", pnr: bool = False, freq_mhz: float | None = None, nodsp: bool = False,
                design: str | None = None, bitstreams: Path | None = None, seed: int = 0,
                router: str | None = None, command: str | None = None) -> dict:
    """Synthesise the accelerator for ``target`` (hw/flows/build.py): resources, fit, Fmax, bitstream.

    With ``net`` the ROMs hold its compiled program; without, a random program fills them (memories
    sized by ``cfg``). ``target="generic"`` gives the ASIC estimate (CMOS gates and transistors).
    Writes ``out_dir/synth.json`` (and ``out_dir/synth-<target>/synth.json``) and returns it.
    """
    from apotflow.hw.flows.build import build, filled_images

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if net is not None:
        from apotflow.hw.compile import compile_net

        images = compile_net(net, cfg, reuse=True).images  # deployment: tensors share ACT words by liveness
        name = design or f"{net.meta.get('model', 'model')}-l{cfg.lanes}"
    else:
        images = filled_images(cfg, seed)
        name = design or f"array-l{cfg.lanes}"
    if lane_kind != "shift":
        name += f"-{lane_kind}"
    if target == "generic":
        from apotflow.hw.flows.asic import asic_estimate

        res = asic_estimate(cfg, out_dir / "synth-generic", images, kind="board", lane_kind=lane_kind, log=log)
    else:
        root = Path(bitstreams) if bitstreams else Path(__file__).resolve().parent.parent / "bitstreams"
        res = build(cfg, target, out_dir, images, design=name, lane_kind=lane_kind, pnr=pnr, freq_mhz=freq_mhz,
                    router=router,
                    extra_synth_args="-nodsp" if nodsp else "", bitstream_root=root,
                    manifest_extra={"command": command, "git_revision": git_revision(), "versions": versions(),
                                    "model_meta": net.meta if net is not None else None},
                    log=log)
    _write_json(out_dir / "synth.json", res)
    work = out_dir / f"synth-{target}"
    if work.is_dir():
        _write_json(work / "synth.json", res)
    return res
