"""The shipped co-simulation checks: one accelerator config, a set of networks that together exercise
every path of the RTL, each co-simulated bit-exactly (every tensor, every cycle count) on Verilator.

The networks (``SUITE``): the trained digits net (bench/models/digits.apot, digits test images), a
small random-weight ResNet-8 and a VGG-16 at a sixteenth of its width (max pooling) on random pixels,
random integer networks (sw/randnet.py) whose seeds were chosen so that, together, the programs have
empty (one filler) and single-entry channels, writeback stalls (a group's last entry held back),
non-square tensors, partial lane groups, max pooling and all three requantizer modes; one of them
again with its empty channels turned into count-0 channels (``null_channels``: the RTL's null-entry
path, which compiled programs never take); and a hand-made max reduction with a filler between
negative products (``max_filler_net``). ``coverage`` names these facts of a compiled program;
tests/test_cosim_suite.py checks that the suite covers them all.

Every network is compiled for one config (``suite_config``: 8 lanes, the largest depth any of them
needs), so one Verilator build runs them all -- which is what bench/mutants.py needs: one build per
mutant of the Verilog. That config has no lane groups, so the lane-groups RTL is not generated there:
``GROUPS_SUITE`` (a few random networks and a random ResNet-8, on ``GROUPS_BASE``: 16 lanes,
lane_groups 8) exercises it, and ``group_coverage`` names what of it a program exercises. ``run_suite`` co-simulates them in order and returns one verdict per network:
passed, or the first check that failed (the layer and index of the first differing value, the layer
whose cycles differ from the model, or the layer running when the bench timed out).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from apotflow.hw import isa
from apotflow.hw.compile import Program, compile_net
from apotflow.hw.config import AcceleratorConfig
from apotflow.sw.intnet import IntNet

ROOT = Path(__file__).resolve().parents[1]
DIGITS_MODEL = "bench/models/digits.apot"
#: the config every suite network is compiled for (depths: the largest any network needs)
BASE = AcceleratorConfig(lanes=8, terms=2, act_bits=8, acc_bits=32)
#: the lane-groups config (docs/hardware.md, "Lane groups"): 16 lanes, up to 8 input-channel groups (a fold
#: tree of 3 levels), 4 copies of S3's padding registers (``top.pad_copies``)
GROUPS_BASE = AcceleratorConfig(lanes=16, terms=2, act_bits=8, acc_bits=32, lane_groups=8)
#: the two-word writeback config (docs/hardware.md, "Two words a cycle"): BASE with wb_words 2
WB2_BASE = AcceleratorConfig(lanes=8, terms=2, act_bits=8, acc_bits=32, wb_words=2)


@dataclass(frozen=True)
class SuiteNet:
    name: str
    kind: str  # "digits" | "zoo" (random weights, width-scaled) | "random" (sw/randnet.py) | "handmade"
    arch: str = ""  # zoo architecture
    width_scale: float = 1.0
    seed: int = 0  # weights (zoo), network (random) and input pixels
    images: int = 1
    null_channels: bool = False  # the program with count-0 channels (see ``null_channels``)


#: in the order run_suite runs them (cheap first: a mutant is usually caught by the first)
SUITE = (
    SuiteNet("digits", "digits", images=4),
    SuiteNet("rand-173", "random", seed=173, images=2),
    SuiteNet("rand-329", "random", seed=329, images=2),
    SuiteNet("rand-160", "random", seed=160, images=2),
    SuiteNet("rand-173-null", "random", seed=173, images=2, null_channels=True),
    SuiteNet("max-filler", "handmade", images=2),
    SuiteNet("resnet8-w0.25", "zoo", "resnet8", 0.25, seed=1),
    SuiteNet("vgg16-w0.0625", "zoo", "vgg16", 0.0625, seed=1),
)

#: the networks of the lane-groups config (GROUPS_BASE), chosen so that together their programs have
#: layers of every group count 2, 4 and 8 (fold levels 1..3), grouped convs over several rows,
#: grouped one-pixel layers (fc, global pooling) with groups of two lanes, a grouped depthwise layer,
#: grouped entries whose slot 0 is empty, long-jump fillers (delta > 0) in layers of fewer groups than
#: lane_groups whose WGT row holds other entries' codes past the layer's slots (what the filler test's
#: slot mask is for), and ungrouped layers of >= 16 pixels beside them (``group_coverage``)
GROUPS_SUITE = (
    SuiteNet("g-rand-26", "random", seed=26, images=2),
    SuiteNet("g-rand-0", "random", seed=0, images=2),
    SuiteNet("g-rand-5", "random", seed=5, images=2),
    SuiteNet("g-rand-59", "random", seed=59, images=2),
    SuiteNet("g-resnet8-w0.25", "zoo", "resnet8", 0.25, seed=1),
)

#: the networks of the two-word writeback config (WB2_BASE), chosen so that together their programs write
#: linear outputs from even and odd channel bases, phase-split outputs in the pair-2 order (k, k + 2),
#: one-pixel layers (a group of one lane: one word) and RAW outputs of several pixels through OUT's two write
#: ports (``wb_coverage``); rand-173 of SUITE is not here: its phase-split output of 2 columns and 4 rows
#: is one the two-word writeback refuses (``isa.wb_pairs_fit``)
WB2_SUITE = (
    SuiteNet("digits", "digits", images=2),
    SuiteNet("rand-12", "random", seed=12, images=2),
    SuiteNet("rand-160", "random", seed=160, images=2),
    SuiteNet("resnet8-w0.25", "zoo", "resnet8", 0.25, seed=1),
)


def max_filler_net() -> IntNet:
    """A max reduction whose result is negative and whose stream has a filler between its two weights
    (positions 0 and 31: a jump longer than a delta reaches): the filler must leave the running max
    alone (it is not a zero term; the golden model takes the max over the non-zero weights only)."""
    from apotflow.sw.intnet import Op, Source, TensorSpec

    w = np.zeros((1, 8, 2, 2), dtype=np.int64)
    w[0, 0, 0, 0], w[0, 7, 1, 1] = -1, -2
    net = IntNet({"x": TensorSpec("x", (8, 2, 2), 15, bits=8),
                  "y": TensorSpec("y", (1, 1, 1), 1000, signed=True, bits=32)},
                 [Op("pool", "pool", "y", [Source("x", w, 2, 0, "int", w_bits=0, role="pool")],
                     np.asarray([-1000], dtype=np.int64), "raw", reduce="max")], "x", "y")
    return net.validate()


def load_net(s: SuiteNet, cache: Path | None = None) -> tuple[IntNet, np.ndarray]:
    """The network and its input images; zoo exports are cached in ``cache`` (a few seconds each)."""
    from apotflow.sw import export

    if s.kind == "digits":
        from apotflow.sw.digits_run import digits_test_images

        return export.load(ROOT / DIGITS_MODEL), digits_test_images(0)[0][:s.images]
    if s.kind == "handmade":
        net = max_filler_net()
        x = np.random.default_rng(s.seed).integers(1, 16, size=(s.images, 8, 2, 2))  # no zero: products < 0
        return net, x
    if s.kind == "random":
        from apotflow.sim.differential import probe_images
        from apotflow.sw.randnet import random_net

        net = random_net(s.seed)
        return net, probe_images(net, s.seed, s.images)
    from apotflow.sw.convert import export_random

    path = Path(cache or ROOT / "runs" / "suite") / f"{s.name}-s{s.seed}.apot"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_random(s.arch, path, prune=0.3, seed=s.seed, width_scale=s.width_scale)
    net = export.load(path)
    spec = net.tensors[net.input]
    x = np.random.default_rng(s.seed).integers(0, spec.max_value + 1, size=(s.images, *spec.shape))
    return net, x


def suite_config(nets: list[IntNet], base: AcceleratorConfig = BASE) -> AcceleratorConfig:
    """base with every memory depth the largest any of the networks needs."""
    from apotflow.hw.fit import DEPTHS, fitted_config

    fitted = [fitted_config(n, base) for n in nets]
    return replace(base, **{k: max(getattr(c, k) for c in fitted) for k in DEPTHS})


def null_channels(prog: Program) -> Program:
    """The program with every channel that has no non-zero weight (one filler entry) turned into a
    count-0 channel without entries: a program the compiler does not write but the RTL runs (the
    sequencer issues one null entry per pixel group; hw/sequencer.py), with the same results. The
    fillers are removed from the weight stream and the later layers' ``w_start`` moved down."""
    cfg = prog.config
    dl, rl, el = isa.desc_layout(cfg), isa.rq_layout(cfg), isa.entry_layout(cfg)
    wgt, rq, descs = list(prog.images.wgt), list(prog.images.rq), [dl.unpack(w) for w in prog.images.prog]
    removed = []  # stream words removed (original indices)
    for d in descs[:len(prog.layers)]:
        w = d["w_start"]
        for c in range(d["n_ch"]):
            row = rl.unpack(rq[d["rq_start"] + c])
            if row["count"] == 1 and el.unpack(wgt[w])["code"] == 0:
                removed.append(w)
                rq[d["rq_start"] + c] = rl.pack(**{**row, "count": 0})
            w += row["count"]
    for k, d in enumerate(descs[:len(prog.layers)]):
        d["w_start"] -= sum(1 for r in removed if r < d["w_start"])
        descs[k] = d
    images = replace(prog.images, wgt=[v for i, v in enumerate(wgt) if i not in set(removed)], rq=rq,
                     prog=[dl.pack(**d) for d in descs[:len(prog.layers)]] + list(prog.images.prog[len(prog.layers):]))
    images.check()
    return replace(prog, images=images, stats={**prog.stats, "null_channels": len(removed)})


def coverage(prog: Program) -> dict[str, bool]:
    """Which of the RTL's paths a compiled program exercises."""
    cfg = prog.config
    dl, rl, el = isa.desc_layout(cfg), isa.rq_layout(cfg), isa.entry_layout(cfg)
    cov = dict.fromkeys(("empty channel", "null channel (count 0)", "single-entry channel", "filler in a max layer",
                         "writeback stall", "non-square tensor",
                         "partial lane group", "max pooling", "threshold mode", "shift mode", "raw mode",
                         "phase-split output", "depthwise (diag)"), False)
    for k in range(len(prog.layers)):
        d = dl.unpack(prog.images.prog[k])
        counts = [rl.unpack(prog.images.rq[(d["rq_start"] + c) % cfg.rq_depth])["count"] for c in range(d["n_ch"])]
        npix = 1 << (d["ho_log2"] + d["wo_log2"])
        nv = [min(cfg.lanes, npix - g * cfg.lanes) for g in range(-(-npix // cfg.lanes))]
        prev = 0
        for cnt in counts:
            for n in nv:
                cov["writeback stall"] |= max(cnt, 1) < prev
                prev = n
        # a channel without a non-zero weight holds one filler entry (code 0): count 1, like a single-entry one
        starts = d["w_start"] + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        single = [el.unpack(prog.images.wgt[w % cfg.wgt_depth])["code"] for w, c in zip(starts, counts) if c == 1]
        cov["empty channel"] |= 0 in single
        cov["null channel (count 0)"] |= 0 in counts
        codes = [el.unpack(prog.images.wgt[w % cfg.wgt_depth])["code"]
                 for w in range(d["w_start"], d["w_start"] + sum(counts))]
        cov["filler in a max layer"] |= bool(d["rmax"]) and 0 in codes and any(codes)
        cov["single-entry channel"] |= any(single)
        cov["non-square tensor"] |= d["ho_log2"] != d["wo_log2"]
        cov["partial lane group"] |= npix % cfg.lanes != 0
        cov["max pooling"] |= bool(d["rmax"])
        cov["threshold mode"] |= d["mode"] == isa.MODE_THRESH
        cov["shift mode"] |= d["mode"] == isa.MODE_SHIFT
        cov["raw mode"] |= d["mode"] == isa.MODE_RAW
        cov["phase-split output"] |= bool(d["out_phase"])
        cov["depthwise (diag)"] |= bool(d["diag"])
    return cov


def wb_coverage(prog: Program) -> dict[str, bool]:
    """Which of the two-word writeback's paths a compiled program exercises (all False at wb_words 1)."""
    cfg = prog.config
    dl = isa.desc_layout(cfg)
    cov = dict.fromkeys(("pairs k, k + 1 from an even base", "pairs k, k + 1 from an odd base", "pairs k, k + 2",
                         "one-word group", "two RAW words a cycle"), False)
    for k in range(len(prog.layers)):
        d = dl.unpack(prog.images.prog[k])
        npix, raw = 1 << (d["ho_log2"] + d["wo_log2"]), d["mode"] == isa.MODE_RAW
        if cfg.wb_words == 1 or d["n_ch"] == 0:
            continue
        pair2 = bool(d["out_phase"]) and d["wo_log2"] >= 2 and not raw
        cov["pairs k, k + 2"] |= pair2 and npix > 1
        cov["pairs k, k + 1 from an even base"] |= not pair2 and npix > 1 and d["out_base"] % 2 == 0 and not raw
        cov["pairs k, k + 1 from an odd base"] |= not pair2 and npix > 1 and d["out_base"] % 2 == 1 and not raw
        cov["one-word group"] |= npix == 1
        cov["two RAW words a cycle"] |= raw and npix > 1
    return cov


def group_coverage(prog: Program) -> dict[str, bool]:
    """Which of the lane-groups RTL's paths a compiled program exercises (all False at lane_groups 1)."""
    cfg = prog.config
    dl, el = isa.desc_layout(cfg), isa.entry_layout(cfg)
    cov = dict.fromkeys(("2 groups", "4 groups", "8 groups", "grouped conv over several rows",
                         "grouped one-pixel layer", "grouped depthwise (diag)", "grouped entry with slot 0 empty",
                         "long-jump filler beside other entries' slots", "ungrouped layer"), False)
    wgt, LG = prog.images.wgt, cfg.lane_groups
    for k in range(len(prog.layers)):
        d = dl.unpack(prog.images.prog[k])
        g = d.get("grp_log2", 0)
        G = 1 << g
        cov["ungrouped layer"] |= g == 0 and LG > 1
        for e in range(d["w_start"], d["w_start"] + prog.layers[k].entries * G, G) if G < LG else ():
            # a filler's slot j >= G reads word (e mod LG) | j of its WGT row (hw/top.wgt_rom_grouped)
            r, lo = e - e % LG, e % LG
            cov["long-jump filler beside other entries' slots"] |= (
                el.unpack(wgt[e])["delta"] > 0 and all(el.unpack(wgt[e + t])["code"] == 0 for t in range(G))
                and any(el.unpack(wgt[r + (lo | t)])["code"] for t in range(G, LG) if r + (lo | t) < len(wgt)))
        if not g:
            continue
        if f"{G} groups" in cov:
            cov[f"{G} groups"] = True
        cov["grouped conv over several rows"] |= d["ho_log2"] > 0
        cov["grouped one-pixel layer"] |= d["ho_log2"] + d["wo_log2"] == 0
        cov["grouped depthwise (diag)"] |= bool(d["diag"])
        words = prog.images.wgt[d["w_start"]:d["w_start"] + prog.layers[k].entries * G]
        cov["grouped entry with slot 0 empty"] |= any(
            el.unpack(words[e])["code"] == 0 and any(el.unpack(w)["code"] for w in words[e + 1:e + G])
            for e in range(0, len(words), G))
    return cov


@dataclass
class Loaded:
    spec: SuiteNet
    net: IntNet
    x: np.ndarray
    program: Program
    expected: dict  # the golden model's tensors (computed once; mutants do not change the golden side)


def load_suite(cache: Path | None = None, suite=SUITE, base: AcceleratorConfig = BASE, log=print) -> list[Loaded]:
    from .cosim import golden_tensors

    raw = []
    for s in suite:
        log(f"suite: loading {s.name} ...")
        raw.append((s, *load_net(s, cache)))
    cfg = suite_config([n for _, n, _ in raw], base)
    return [Loaded(s, n, x, null_channels(compile_net(n, cfg)) if s.null_channels else compile_net(n, cfg),
                   golden_tensors(n, x)) for s, n, x in raw]


def verdict(summary: dict) -> dict:
    """What a co-simulation summary says: passed, or the first check that failed and where."""
    if summary["passed"]:
        return {"passed": True}
    if summary.get("hang"):
        h = summary["hang"]
        return {"passed": False, "check": "hang", "image": h["image"], "layer": h["layer"],
                "layer_index": h["layer_index"], "cycles": h["cycles"]}
    if summary.get("first_mismatch"):
        f = summary["first_mismatch"]
        return {"passed": False, "check": "value", **{k: f.get(k) for k in ("image", "layer", "tensor", "index",
                                                                             "expected", "got", "act_address")}}
    if summary.get("first_cycle_mismatch"):
        return {"passed": False, "check": "cycles", **summary["first_cycle_mismatch"]}
    return {"passed": False, "check": "simulator"}


def run_suite(suite: list[Loaded], work: Path, *, verilog: str | None = None, build_cache: Path | None = None,
              stop_at_first: bool = False, tamper=None, build_in_place: bool = False, log=print) -> list[dict]:
    """Co-simulate every network (one Verilator build for all: one config); ``verilog``: the
    apotflow_top.v to build instead of the generated one; ``tamper(loaded, setup)``: called after
    prepare, before execute (a test or bench changes the memory images or inputs there); it returns
    False to skip the network. Returns one verdict per network run, with its seconds."""
    from . import runner
    from .cosim import execute, prepare

    work = Path(work)
    out = []
    for ld in suite:
        t0 = time.perf_counter()
        setup = prepare(ld.net, ld.program.config, ld.x, work / ld.spec.name, expected=ld.expected,
                        build_cache=build_cache or work / "builds", program=ld.program, verilog=verilog,
                        build_in_place=build_in_place,
                        log=lambda m: None)
        if tamper is not None and tamper(ld, setup) is False:
            continue
        try:
            v = verdict(execute(setup, waves_on_mismatch=False, log=lambda m: None))
        except runner.SimulationError as e:
            v = {"passed": False, "check": "simulator", "error": str(e).splitlines()[0][:200]}
        v = {"network": ld.spec.name, **v, "seconds": round(time.perf_counter() - t0, 2)}
        log(f"  {ld.spec.name}: {'passed' if v['passed'] else 'FAILED: ' + v['check']} ({v['seconds']:.1f} s)")
        out.append(v)
        if stop_at_first and not v["passed"]:
            break
    return out


def as_dict(s: SuiteNet) -> dict:
    return dataclasses.asdict(s)
