"""The one command line: ``apotflow <command>``.

Commands follow the data flow: train -> export -> rtl / cosim / synth, and ``demo`` runs them all.
Every failure a user can cause (bad file, impossible config, missing tool) ends in one line
``apotflow: error: ...`` and exit status 2; nothing half-written is left looking valid.
"""

from __future__ import annotations

import argparse
import json
import sys
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


class UserError(Exception):
    """An error the user can fix; printed as one line."""


def _add_config(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accelerator configuration (defaults: AcceleratorConfig; memories fitted to the model)")
    for name, help_ in CONFIG_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), type=int, dest=name, help=help_)
    g.add_argument("--no-fit", action="store_true", help="keep the default memory depths instead of fitting them")


def _config(args, net=None, reuse=False):
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fitted_config

    given = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}
    cfg = AcceleratorConfig(**given)
    if net is not None and not getattr(args, "no_fit", False):
        cfg = fitted_config(net, cfg, keep=set(given), reuse=reuse)
    return cfg


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- commands
TRAIN_FLAGS = ("epochs", "stage_epochs", "qat_epochs", "lr", "qat_lr", "wd", "batch_size", "prune_rate",
               "w_bits", "a_bits", "schedule", "warmup_epochs", "step_mode", "eval_every", "train_subset",
               "distill", "distill_temp", "prune_stages", "qat_teacher", "qat_wd", "ema", "cutout")


def cmd_train(args) -> int:
    if args.model == "digits":
        from apotflow.sim.flow import train_and_export

        info = train_and_export(args.out, seed=args.seed, method=args.method, log=_progress)
        print(json.dumps({k: info[k] for k in ("accuracy_float", "accuracy_int", "agreement", "model")}, indent=1))
        return 0
    if not args.data:
        raise UserError(f"--model {args.model} needs --data (cifar-10-batches-py folder or cifar10-jpeg tarball)")
    from apotflow.sw.cifar_run import run
    from apotflow.sw.fasttrain import FastConfig

    given = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    try:
        cfg = FastConfig(method=args.method, seed=args.seed, nesterov=args.nesterov, bf16=not args.no_bf16,
                         channels_last=not args.no_channels_last, **given)
    except (ValueError, TypeError) as e:  # an impossible option value: the config's own message
        raise UserError(f"train: {e}") from None
    bar = _Bar(cfg)
    res = run(args.model, args.data, args.out, cfg, dataset=args.dataset, cache=args.cache,
              command="apotflow " + " ".join(sys.argv[1:]), log=_progress, progress=bar, teacher=args.teacher,
              float_init=args.float_init)
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


def cmd_export(args) -> int:
    from apotflow.sim.flow import FlowError, export_checkpoint, export_random

    if args.random:
        if args.checkpoint is not None or args.arch is None:
            raise FlowError("export --random takes --arch and no checkpoint")
        path, info = export_random(args.arch, args.output, prune=args.prune, seed=args.seed,
                                   width_scale=args.width_scale)
        _progress(f"{info['model']}: random weights, prune {args.prune}, built in {info['seconds_model']:.1f} s, "
                  f"lowered and saved in {info['seconds_lower_save']:.1f} s")
    else:
        if args.checkpoint is None:
            raise FlowError("export needs a CHECKPOINT (or --random --arch ARCH)")
        path = export_checkpoint(args.checkpoint, args.output)
    print(path)
    return 0


def cmd_info(args) -> int:
    from apotflow.sw import export
    from apotflow.sw.intnet import macs

    net = export.load(args.model)
    print(json.dumps({"meta": net.meta, "tensors": {n: list(t.shape) for n, t in net.tensors.items()},
                      "ops": [o.name for o in net.ops], **{k: v for k, v in macs(net).items() if k != "per_op"}},
                     indent=1))
    return 0


def cmd_rtl(args) -> int:
    from apotflow.sim.flow import write_rtl
    from apotflow.sw import export

    net = export.load(args.model)
    manifest = write_rtl(net, _config(args, net), Path(args.out), log=_progress)
    print(json.dumps({"out": str(args.out), "files": manifest["files"]}, indent=1))
    return 0


def cmd_cycles(args) -> int:
    from apotflow.hw.compile import compile_net
    from apotflow.hw.cycles import layer_cycles
    from apotflow.sw import export

    net = export.load(args.model)
    cfg = _config(args, net)
    prog = compile_net(net, cfg)
    cyc = layer_cycles(cfg, prog.images)
    rows = [{"layer": li.op, "kind": li.kind, "cycles_model": c, "cycles_ideal": li.macs_nonzero / cfg.lanes,
             "entries": li.entries, "macs_nonzero": li.macs_nonzero} for li, c in zip(prog.layers, cyc)]
    total, ideal = sum(cyc), prog.stats["cycles_ideal"]
    if args.json:
        print(json.dumps({"lanes": cfg.lanes, "cycles_model": total, "cycles_ideal": ideal,
                          "ratio": total / ideal if ideal else None, "per_layer": rows}, indent=1))
        return 0
    print(f"{'layer':<12}{'kind':<6}{'model':>10}{'ideal':>12}{'ratio':>8}")
    for r in rows:
        ratio = f"{r['cycles_model'] / r['cycles_ideal']:.3f}" if r["cycles_ideal"] else "-"
        print(f"{r['layer']:<12}{r['kind']:<6}{r['cycles_model']:>10}{r['cycles_ideal']:>12.1f}{ratio:>8}")
    print(f"{'total':<18}{total:>10}{ideal:>12.1f}{total / ideal:>8.3f}")
    print(f"ideal = MACs with a non-zero weight / {cfg.lanes} lanes; model = the RTL's exact cycle count")
    return 0


def cmd_cosim(args) -> int:
    from apotflow.sim.flow import cosim_model
    from apotflow.sw import export

    net = export.load(args.model)
    summary = cosim_model(net, _config(args, net), Path(args.out), args.images, seed=args.seed,
                          waves=args.waves, log=_progress, data=args.data)
    keys = ("images", "mismatches", "cycles_total", "cycles_model", "cycles_ideal", "cycles_ratio", "sim_seconds",
            "sim_seconds_per_image", "build_seconds", "first_mismatch", "waveform")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
    return 0 if summary["mismatches"] == 0 else 1


def cmd_synth(args) -> int:
    from apotflow.sim.flow import synth_model

    net = None
    if args.model:
        from apotflow.sw import export

        net = export.load(args.model)
    cfg = _config(args, net, reuse=True)  # a deployment build: ACT sized to the live tensors
    if args.max_levels is not None:
        from dataclasses import replace

        cfg = replace(cfg, max_levels=args.max_levels)
    res = synth_model(net, cfg, Path(args.out), args.target, log=_progress,
                      lane_kind=args.lane_kind, pnr=not args.no_pnr, freq_mhz=args.freq, nodsp=args.nodsp,
                      design=args.design, bitstreams=args.bitstreams, seed=args.seed, router=args.router,
                      command=" ".join(["apotflow", *sys.argv[1:]]))
    keys = ("target", "lut", "ff", "carry", "bram", "spram", "dsp", "fits", "over", "fmax_mhz", "bitstream",
            "estimate", "transistors", "gates", "notes")
    print(json.dumps({k: res[k] for k in keys if k in res}, indent=1))
    return 0 if res.get("fits", True) else 1


def cmd_demo(args) -> int:
    from apotflow.sim.report import demo

    report = demo(Path(args.out), images=args.images, seed=args.seed, lanes=args.lanes,
                  targets=args.targets, log=_progress, reuse=args.reuse)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if report["bitexact_mismatches"] == 0 else 1


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from apotflow.hw.flows.nextpnr import ROUTERS  # stdlib only: no hardware imports for `train`

    p = argparse.ArgumentParser(prog="apotflow", description=(
        "Pruned APoT CNNs on a multiplier-free shift-add accelerator: train, export packed integer "
        "weights, generate Verilog (Amaranth), co-simulate bit-exactly (cocotb + Verilator), synthesise (Yosys)."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="the whole chain on the digits net -> OUT/report.{json,md}")
    s.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    s.add_argument("--images", type=int, default=0, help="test images to co-simulate (default: the whole test split)")
    s.add_argument("--lanes", type=int, default=16, help="shift-add lanes (default 16)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--targets", nargs="*", default=["ice40-up5k", "ecp5-25k"], help="synthesis targets ('' for none)")
    s.add_argument("--reuse", action="store_true", help="reuse OUT/model.apot and OUT/train.json if present (skip training)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("train", help="train a pruned APoT net (digits on the CPU; CIFAR nets on the GPU) and export it")
    s.add_argument("--model", default="digits",
                   choices=["digits", "resnet20", "resnet32", "resnet56", "resnet110", "vgg16"])
    s.add_argument("--method", default="ppq", choices=["fp", "apot", "fpgm", "spq", "ppq"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/train", help="folder for model.pt, model.apot, train.json / result.json")
    g = s.add_argument_group("CIFAR (defaults: sw.fasttrain.FastConfig, the paper's recipe)")
    g.add_argument("--data", help="cifar-10-batches-py folder or the cifar10-jpeg .tar.xz")
    g.add_argument("--dataset", choices=["cifar10", "cifar10-jpeg"], help="default: from --data (folder/tarball)")
    g.add_argument("--cache", help="decoded-data cache folder (default ~/.cache/apotflow)")
    for flag, typ, help_ in (("epochs", int, "main phase epochs (ppq: float phase)"),
                             ("stage-epochs", int, "ppq: epochs after each pruning stage"),
                             ("prune-stages", int, "ppq: pruning stages; the rate is reached in equal steps "
                              "(default 2: 15%% then 30%%)"),
                             ("qat-epochs", int, "ppq: final QAT epochs"), ("lr", float, "base learning rate"),
                             ("qat-lr", float, "ppq QAT learning rate"), ("wd", float, "weight decay"),
                             ("qat-wd", float, "ppq: the QAT phase's weight decay (default: --wd)"),
                             ("ema", float, "decay d of a weight average over the last phase, which becomes the "
                              "final model (e.g. 0.9998; default 0, off)"),
                             ("cutout", int, "side in pixels of a Cutout square zeroed in every training "
                              "image (default 0, off)"),
                             ("batch-size", int, "batch size"), ("prune-rate", float, "GM filter prune rate"),
                             ("w-bits", int, "inner-layer weight bits"), ("a-bits", int, "activation bits"),
                             ("schedule", str, "cosine | plateau"), ("warmup-epochs", float, "linear warm-up"),
                             ("step-mode", str, "graph | compile | eager"),
                             ("eval-every", int, "epochs between test evaluations"),
                             ("train-subset", int, "first N training images only (smoke tests)"),
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
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("export", help="export a training checkpoint (or a random-weight model) to the packed format")
    s.add_argument("checkpoint", nargs="?", help="training checkpoint (model.pt); omit with --random")
    s.add_argument("-o", "--output", required=True, help="the .apot file to write")
    s.add_argument("--random", action="store_true",
                   help="no checkpoint: random (seeded) weights, calibrated BN and clipping, GM-pruned (hardware work)")
    s.add_argument("--arch", choices=["resnet20", "resnet32", "resnet56", "resnet110", "vgg16"],
                   help="architecture for --random")
    s.add_argument("--prune", type=float, default=0.3, help="GM prune rate for --random (default 0.3)")
    s.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    s.add_argument("--width-scale", type=float, default=1.0, help="channel multiplier for --random (default 1)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("info", help="summarise an exported model")
    s.add_argument("--model", required=True)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("rtl", help="generate Verilog, $readmemh images and a manifest for a model")
    s.add_argument("--model", required=True, help="exported model (.apot)")
    s.add_argument("--out", required=True)
    _add_config(s)
    s.set_defaults(func=cmd_rtl)

    s = sub.add_parser("cycles", help="predict cycles per layer without simulating (exact model of the RTL)")
    s.add_argument("--model", required=True)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(s)
    s.set_defaults(func=cmd_cycles)

    s = sub.add_parser("cosim", help="bit-exact co-simulation of the RTL against the golden model (Verilator)")
    s.add_argument("--model", required=True)
    s.add_argument("--images", type=int, default=16, help="test images (default 16)")
    s.add_argument("--seed", type=int, default=0, help="data split seed")
    s.add_argument("--waves", action="store_true", help="dump a VCD waveform")
    s.add_argument("--data", help="CIFAR-10 (cifar-10-batches-py folder or the JPEG .tar.xz) for CIFAR nets; "
                                  "default: seeded random pixels")
    s.add_argument("--out", required=True)
    _add_config(s)
    s.set_defaults(func=cmd_cosim)

    s = sub.add_parser("synth", help="synthesis (Yosys), place and route (nextpnr), bitstream: resources, Fmax, fit")
    s.add_argument("--model", help="exported model (.apot); without it the ROMs hold a random program and the "
                   "memories are sized by the flags")
    s.add_argument("--target", default="ecp5-25k", choices=["ice40-up5k", "ecp5-25k", "ecp5-85k", "xc7a100t", "generic"],
                   help="FPGA (xc7a100t: synthesis counts only) or 'generic' (ASIC CMOS gate estimate)")
    s.add_argument("--out", required=True, help="folder for synth.json and the tool work folder")
    s.add_argument("--lane-kind", default="shift", choices=["shift", "mul"], help="mul: the multiplier baseline")
    s.add_argument("--no-pnr", action="store_true", help="synthesis only")
    s.add_argument("--freq", type=float, help="place-and-route constraint in MHz (default 24 iCE40, 100 ECP5)")
    s.add_argument("--nodsp", action="store_true", help="ECP5: no DSP blocks (synth_ecp5 -nodsp)")
    s.add_argument("--router", choices=ROUTERS,
                   help="nextpnr router (default: nextpnr's, router1; router2 is much faster on large designs)")
    s.add_argument("--design", help="design name for bitstreams/<target>/<design>/ (default from model and lanes)")
    s.add_argument("--bitstreams", help="bitstream root folder (default: the project's bitstreams/)")
    s.add_argument("--seed", type=int, default=0, help="random program seed (without --model)")
    s.add_argument("--max-levels", type=int, help="requantizer output levels (default 16)")
    _add_config(s)
    s.set_defaults(func=cmd_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from apotflow.sim.errors import USER_ERRORS
    except ImportError:  # a training-only install (GPU machine: no cocotb / amaranth)
        USER_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError)
    from apotflow.sw.cifar import CifarError
    from apotflow.sw.cifar_run import RunError

    USER_ERRORS = (*USER_ERRORS, UserError, CifarError, RunError)

    try:
        return args.func(args)
    except USER_ERRORS as e:
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
