"""What each command of ``apotflow`` does: its checks, run before any work, and then its steps.

``check_<command>(args)`` looks at everything the command was given (options, the model file, the output
folder) and raises :class:`UserError` (or the checked library's own one-line error) before anything is
written; ``cmd_<command>(args)`` then runs it and returns the exit status. sim/cli.py holds the grammar.
Heavy packages are imported inside the functions that need them: torch only for training, checkpoints
and the golden model of a co-simulation.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import fields, replace
from pathlib import Path

from apotflow.sw.zoo import APOT_CHECKPOINT_ARCHS as IMPORT_ARCHS  # noqa: F401  (cli.py reads it; torch-free)
from apotflow.sw.zoo import CIFAR_MODELS  # noqa: F401  (cli.py reads it; torch-free)

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
    "lane_groups": "most lane groups a layer of fewer pixels than lanes splits into (power of two; 1: none)",
    "wb_words": "words the writeback requantizes and writes a cycle: 1, or 2 (a second requantizer and ACT "
                "write port; a group of n valid lanes then writes in ceil(n / 2) cycles)",
}
SWITCH_FLAGS = {  # flag without a value -> AcceleratorConfig field set to 1
    "wgt_ram": "weights in a RAM the host loads at boot (wgt.hex through the WGT write port), not a ROM: "
               "SPRAM on the iCE40 UP5K",
}


class UserError(Exception):
    """An error the user can fix; printed as one line."""


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
    return {k: getattr(args, k) for k in (*CONFIG_FLAGS, *SWITCH_FLAGS) if getattr(args, k, None) is not None}


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


def _program(args, net, reuse: bool = False):
    """The one compile of a command: memories fitted to the network unless --no-fit. ``reuse``: a
    deployment build (synth), tensors share ACT words by liveness."""
    from apotflow.hw.compile import compile_net
    from apotflow.hw.fit import fit
    from apotflow.sw.progress import heartbeat

    with heartbeat(_progress, f"compiling {net.meta.get('model', 'the model')} for {args.cfg.lanes} lanes"):
        if getattr(args, "no_fit", False):
            return compile_net(net, args.cfg, reuse=reuse)
        return fit(net, args.cfg, keep=set(_given_config(args)), reuse=reuse)


# ----------------------------------------------------------------------------- commands
CIFAR_ONLY = ("data", "dataset", "cache", "teacher", "float_init", "qat_teacher", "prune_stages", "qat_lr",
              "qat_wd", "ema", "cutout", "schedule", "warmup_epochs", "step_mode", "eval_every", "distill",
              "distill_temp", "residual_bits")
CIFAR_SWITCHES = ("nesterov", "no_bf16", "no_channels_last")
TRAIN_FLAGS = ("epochs", "stage_epochs", "qat_epochs", "lr", "qat_lr", "wd", "batch_size", "prune_rate",
               "w_bits", "a_bits", "schedule", "warmup_epochs", "step_mode", "eval_every", "train_subset",
               "distill", "distill_temp", "prune_stages", "qat_teacher", "qat_wd", "ema", "cutout", "residual_bits")


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
        from apotflow.sw.fasttrain import DigitsConfig

        try:
            args.recipe = {k: getattr(args, k) for k in TRAIN_FLAGS if k in recipe and getattr(args, k) is not None}
            DigitsConfig(method=args.method, seed=args.seed, **args.recipe)
        except (ValueError, TypeError) as e:
            raise UserError(f"train: {e}") from None
        return
    if not args.data:
        raise UserError(f"--model {args.model} needs --data (cifar-10-batches-py folder or cifar10-jpeg tarball)")
    if not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or folder")
    for flag, what in (("teacher", "teacher"), ("float_init", "--float-init")):  # sw/cifar_run.load_teacher's words
        if getattr(args, flag) and not Path(getattr(args, flag)).is_file():
            raise UserError(f"{what} checkpoint {getattr(args, flag)} does not exist")
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
    if args.fast.residual_bits is not None:  # option A only: the model's own check, before any work
        from apotflow.sw.cifar_run import build_model

        try:
            build_model(args.model, args.fast.w_bits, args.fast.a_bits, args.fast.residual_bits)
        except ValueError as e:
            raise UserError(f"train --model {args.model}: {e}") from None
    import torch

    if not torch.cuda.is_available():
        _progress(f"apotflow: note: --model {args.model} is a GPU recipe and no CUDA GPU is visible: it runs on the "
                  "CPU, about a hundred times slower (fine for --train-subset smoke runs)")


def command_line(args, argv: list[str]) -> str:
    """The command as a user could type it again: with --config FILE replaced by the file's options (the
    command line's own options after them, so they still win). ``argv`` is sys.argv[1:]."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--config":
            skip = True
        elif not a.startswith("--config="):
            out.append(a)
    if getattr(args, "recipe_flags", None) is not None:
        out[1:1] = args.recipe_flags
    return " ".join(["apotflow", *(shlex.quote(a) for a in out)])


def cmd_train(args) -> int:
    if args.model == "digits":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError("train: --model digits trains in one process; torchrun is for the CIFAR networks")
        from apotflow.sw.digits_run import train_and_export

        info = train_and_export(args.out, seed=args.seed, method=args.method, log=_progress, **args.recipe)
        print(json.dumps({k: info[k] for k in ("accuracy", "accuracy_int", "agreement", "model")}, indent=1))
        return 0
    from apotflow.sw.cifar_run import run

    res = run(args.model, args.data, args.out, args.fast, dataset=args.dataset, cache=args.cache,
              command=command_line(args, sys.argv[1:]), log=_progress, progress=_Bar(args.fast),
              teacher=args.teacher, float_init=args.float_init)
    if res is None:  # torchrun: a rank other than 0 (rank 0 writes and prints the result)
        return 0
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
    print(f"{'total':<18}{total:>10}{ideal:>12.1f}{f'{total / ideal:.3f}' if ideal else '-':>8}")
    print(f"ideal = MACs with a non-zero weight / {prog.config.lanes} lanes; model = the RTL's exact cycle count")
    return 0


def check_cosim(args) -> None:
    check_out_dir(args.out)
    check_images(args.images)
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {args.jobs}")
    if args.data and not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or folder")
    args.cfg = check_config(args)
    check_model(args)


def cmd_cosim(args) -> int:
    from apotflow.sim.flow import cosim_model

    summary = cosim_model(args.net, _program(args, args.net, reuse=args.reuse), Path(args.out), args.images,
                          seed=args.seed,
                          waves=args.waves, log=_progress, data=args.data, jobs=args.jobs, pgo=args.pgo)
    keys = ("images", "mismatches", "cycle_mismatches", "cycles_total", "cycles_model", "cycles_ideal",
            "cycles_ratio", "sim_seconds", "sim_seconds_per_image", "wall_seconds_per_image", "build_seconds",
            "first_mismatch", "first_cycle_mismatch", "hang", "waveform")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
    return 0 if summary["passed"] else 1


def check_synth(args) -> None:
    check_out_dir(args.out)
    if args.bitstreams:
        check_out_dir(args.bitstreams, "--bitstreams")
    if args.freq is not None and not args.freq > 0:
        raise UserError(f"--freq must be a positive frequency in MHz, not {args.freq}")
    args.pnr_seed_list = check_pnr_seeds(args)
    check_pnr_timeout(args)
    args.cfg = check_config(args)
    if args.cfg.lane_groups > 1 and args.cfg.wgt_ram:
        raise UserError(f"--lane-groups {args.cfg.lane_groups} with --wgt-ram: lane groups read their weights from a "
                        "ROM of lane_groups words a row (not from a RAM the host loads); drop one of the two")
    args.net = _load_model(args.model) if args.model else None


def check_pnr_seeds(args) -> list[int] | None:
    """--pnr-seed N / --pnr-seeds LIST as a list of seeds (None: neither given), or a UserError naming the flag."""
    from apotflow.hw.flows.nextpnr import PNR_TARGETS, parse_seeds

    flag, text = next(((f, v) for f, v in (("--pnr-seed", args.pnr_seed), ("--pnr-seeds", args.pnr_seeds))
                       if v is not None), (None, None))
    if flag is None:
        return None
    if args.no_pnr:
        raise UserError(f"{flag} chooses a place-and-route seed; --no-pnr runs no place and route")
    if args.target not in PNR_TARGETS:
        raise UserError(f"{flag}: target {args.target} has no place and route here (it has: {', '.join(PNR_TARGETS)})")
    try:
        seeds = parse_seeds(text)
    except ValueError as e:
        raise UserError(f"{flag}: {e}") from None
    if flag == "--pnr-seed" and len(seeds) != 1:
        raise UserError(f"--pnr-seed takes one seed, not {text!r} (several: --pnr-seeds)")
    return seeds


def check_pnr_timeout(args) -> None:
    """--pnr-timeout: a positive, finite number of seconds, on a run that places and routes."""
    from apotflow.hw.flows.nextpnr import PNR_TARGETS

    t = args.pnr_timeout
    if t is None:
        return
    if not 0 < t < float("inf"):
        raise UserError(f"--pnr-timeout must be a positive number of seconds, not {t:g}")
    if args.no_pnr:
        raise UserError("--pnr-timeout limits place and route; --no-pnr runs no place and route")
    if args.target not in PNR_TARGETS:
        raise UserError(f"--pnr-timeout: target {args.target} has no place and route here "
                        f"(it has: {', '.join(PNR_TARGETS)})")


def cmd_synth(args) -> int:
    from apotflow.sim.flow import synth_model

    prog = _program(args, args.net, reuse=True) if args.net is not None else None  # ACT sized to live tensors
    res = synth_model(prog.config if prog else args.cfg, Path(args.out), args.target, log=_progress, program=prog,
                      meta=args.net.meta if args.net is not None else None, lane_kind=args.lane_kind,
                      pnr=not args.no_pnr, freq_mhz=args.freq, nodsp=args.nodsp, design=args.design,
                      bitstreams=args.bitstreams, seed=args.seed, router=args.router,
                      pnr_seeds=args.pnr_seed_list, pnr_timeout=args.pnr_timeout,
                      command=" ".join(["apotflow", *sys.argv[1:]]))
    keys = ("target", "lut", "ff", "carry", "lc", "lc_source", "bram", "spram", "dsp", "fits", "over", "fmax_mhz",
            "pnr_seed", "pnr_seeds", "cycles_per_image",
            "latency_us", "images_per_s", "bitstream",
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
                  targets=args.targets, log=_progress, reuse=args.reuse, pnr=args.pnr,
                  command="apotflow " + " ".join(sys.argv[1:]))
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


# ----------------------------------------------------------------------------- import (a user's ONNX model)
def _import_data_shape(data: str) -> tuple[tuple[int, int, int], int]:
    """(image shape, pixel max) of --data: the named digits set, else a CIFAR-10 path (sw.zoo.DATASETS)."""
    from apotflow.sw.zoo import DATASETS

    if data == "digits":
        return DATASETS["digits"]
    if not Path(data).exists():
        raise UserError(f"--data {data}: no such file or folder (digits, or a CIFAR-10 .tar.xz / folder)")
    return DATASETS["cifar10"]


def check_import(args) -> None:
    """Every option, the model file (an ONNX file read and its op set checked; with --arch, a checkpoint of the
    APoT authors' code read and its every key and shape checked), the data and the output folder: before any
    work."""
    from apotflow.sw.api import QuantConfig
    from apotflow.sw.graph_prepare import Preprocess

    check_out_dir(args.out)
    if not Path(args.model).is_file():
        raise UserError(f"{args.model}: no such {'checkpoint' if args.arch else 'ONNX file'}")
    args.qconfig = QuantConfig(args.w_bits, args.a_bits, args.act_percentile)
    if not 0.0 <= args.prune < 1.0:
        raise UserError(f"--prune must be in [0, 1), not {args.prune}")
    if args.calib < 1:
        raise UserError(f"--calib must be a positive count of training images, not {args.calib}")
    if args.finetune < 0:
        raise UserError(f"--finetune must be a number of epochs >= 0, not {args.finetune}")
    check_images(args.images)
    shape, pixel_max = _import_data_shape(args.data)
    mean, std = (0.0,), (1.0,)
    if args.arch:
        from apotflow.sw import apot_checkpoint
        from apotflow.sw.zoo import ZOO

        if shape != ZOO[args.arch].input_shape:
            raise UserError(f"--arch {args.arch} takes {'x'.join(map(str, ZOO[args.arch].input_shape))} images, "
                            f"--data {args.data} has {'x'.join(map(str, shape))}: give CIFAR-10")
        mean, std = apot_checkpoint.APOT_MEAN, apot_checkpoint.APOT_STD
    args.preprocess = Preprocess(pixel_max, args.input_scale, tuple(args.input_mean or mean),
                                 tuple(args.input_std or std))
    for k in ("mean", "std"):
        args.preprocess.channel(k, shape[0])
    if args.arch:  # ApotCheckpointError: one line naming the first key that does not fit
        state, args.source = apot_checkpoint.read(args.model, args.arch)
        args.float_model = apot_checkpoint.to_zoo(state, args.arch, args.preprocess)
        args.source_state = state
        return
    args.source = None
    from apotflow.sw.onnx_in import load_onnx

    args.float_model = load_onnx(args.model)  # OnnxError / UnsupportedModel: one line, every node listed
    if tuple(args.float_model.input_shape) != shape:
        raise UserError(f"{args.model}: input shape {tuple(args.float_model.input_shape)} but --data {args.data} "
                        f"has {shape} images")


def cmd_import(args) -> int:
    """load_onnx -> prepare -> [prune_] -> calibrate -> [finetune] -> lower -> evaluate; OUT/model.apot and OUT/result.json
    published together (sw/atomic.publish: a crash leaves the old set or none)."""
    from apotflow.sw import export
    from apotflow.sw.api import import_float_model
    from apotflow.sw.atomic import json_text, publish
    from apotflow.sw.progress import heartbeat

    if args.data == "digits":
        from apotflow.sw.data import load_digits_split

        split = load_digits_split(args.seed)
    else:
        from apotflow.sw.cifar import load_cifar10

        with heartbeat(_progress, f"loading {args.data}"):
            split = load_cifar10(args.data)
    from apotflow.sw.data import random_subsets

    calib, x, y = random_subsets(split, args.calib, args.images, args.seed)
    with heartbeat(_progress, f"quantizing {args.model} (W{args.w_bits}/A{args.a_bits}), lowering, evaluating "
                              f"{len(x)} images"):
        # a zoo model (--arch) takes the pixels itself, the preprocessing already folded into its stem
        net, report = import_float_model(args.float_model, calib, x, y, args.qconfig,
                                         None if args.arch else args.preprocess, args.prune, split, args.finetune,
                                         log=_progress)
    p = args.preprocess
    result = {"model_file": str(args.model), "data": args.data, "seed": args.seed,
              "preprocess": {"pixel_max": p.pixel_max, "scale": p.scale if p.scale is not None else 1 / p.pixel_max,
                             "mean": list(p.mean), "std": list(p.std)},
              **report, "model": "model.apot"}
    if args.source is not None:
        import torch

        from apotflow.sw.apot_checkpoint import source_forward

        with torch.no_grad():  # their network as they define it, on their normalised images
            pred = torch.cat([source_forward(args.source_state, p.apply(x[i:i + 500])).argmax(1)
                              for i in range(0, len(x), 500)])
        result["source"] = {**args.source, "accuracy_float_source": float((pred == y).float().mean())}
        if "note" in args.source:
            _progress(f"apotflow: note: {args.source['note']}")
    publish(args.out, {"model.apot": export.to_bytes(net), "result.json": json_text(result)}, "result.json")
    print(json.dumps({k: result[k] for k in ("accuracy_float", "accuracy_fakequant", "accuracy_int", "agreement")}))
    if result["agreement"] != 1.0:
        _progress(f"apotflow: warning: the integer model disagrees with the fake-quant model on "
                  f"{1 - result['agreement']:.4%} of the images")
        return 1
    return 0
