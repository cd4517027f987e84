"""PROJECTION (no hardware): cycles per image with lane groups, from the compiled weight streams.

Written before lane groups were built (input-channel groups are now: config ``lane_groups``; output-channel
groups are not). This script takes the program the compiler makes without them (``hw/fit.fit``, lane_groups
1: every layer one output channel at a time, its pixels across the lanes), re-schedules the layers whose output map has fewer pixels P than the array has lanes L
into G = L / P lane groups, and runs the exact cycle model's recurrences (hw/cycles.py: issue units of
``count`` entries, the writeback's ``n`` words, the per-layer fixed cost) on that schedule. The design is
docs/hardware.md, "Lane groups" (input-channel groups are built since; this script projects from the
programs compiled without them, ``lane_groups`` 1). Two ways to use the idle lanes are projected:

* ``oc`` (output-channel groups): group j of a block computes output channel c0 + j on the same P
  pixels. All groups read the same P ACT words (lane l takes word l mod P), so the G weight streams of a
  block are position-aligned: a block issues one entry per position in the union of its channels'
  positions (a channel without a weight there gets a zero code), times the most entries any of them
  needs at that position (8-bit weights take several), plus fillers for gaps in the union. Writeback:
  n = G_used x P words a block. Not for depthwise (``diag``) layers: their groups would read different
  input channels. Assumed +1 cycle per layer (the groups' biases added in the writeback).
* ``ic`` (input-channel groups, a reduction split): group j of output channel c's lanes works on input
  channel b*G + j of block b; the lanes read L consecutive ACT words as today, so it needs the source's channel
  stride to be P (every tap row's ``ch_shift`` = log2 P: stride-1 sources of the output's size) or a
  one-pixel layer (fc, global pooling: the positions are addresses and the groups take G consecutive
  ones). A channel issues one entry per (input-channel block, tap) that any of its G input channels
  has a weight on; a fold tree of adders (or max) sums the G groups' accumulators before the
  writeback (n = P words a channel). Assumed +log2 G cycles per layer (the tree, a register a level).

``best`` takes, per layer, the fewest cycles of today's schedule and the applicable projections.
``oc_max`` is the oc block's longest channel instead of the union (independent streams per group: what
the ACT banks cannot serve in one read, shown only to separate the union's cost from the blocking).
Today's schedule is recomputed with the same code and must equal hw/cycles.layer_cycles (asserted).
``ic_functional`` runs the input-channel groups' arithmetic in numpy (the L-word read, the padding test
on pixel l mod P, the fold) on one image and compares every grouped layer's accumulators with the golden
model's: the design's addressing checked, still no hardware.

    .venv/bin/python bench/lane_groups_projection.py --max-groups 16 4 --out bench/results/lane-groups-projection.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

NETS = {  # name -> (model file, or an architecture exported with random seeded weights as bench/cosim_networks.py does)
    "vgg16": ("vgg16", None),
    "resnet20": ("resnet20", None),
    "resnet20-trained": (None, "bench/models/resnet20-ppq-jpeg.apot"),
    "digits": (None, "bench/models/digits.apot"),
}


def streams(cfg, images):
    """Per layer: (descriptor, counts, per channel: (positions of its real entries, entries there))."""
    from apotflow.hw import isa
    el, dl, rl, tl = isa.entry_layout(cfg), isa.desc_layout(cfg), isa.rq_layout(cfg), isa.tap_layout(cfg)
    ent = el.unpack_array(images.wgt)
    taps = tl.unpack_array(images.tap)
    for dword in images.prog:
        d = dl.unpack(dword)
        counts = [rl.unpack(images.rq[d["rq_start"] + c])["count"] for c in range(d["n_ch"])]
        w0 = d["w_start"]
        code, delta = ent["code"][w0:w0 + sum(counts)], ent["delta"][w0:w0 + sum(counts)]
        step = np.where(code == 0, delta << cfg.pos_bits, delta)
        chans, k = [], 0
        for c, n in enumerate(counts):
            pos = np.cumsum(step[k:k + n]) + ((c << d["diag_log2"]) if d["diag"] else 0)
            real = code[k:k + n] != 0
            p, m = np.unique(pos[real], return_counts=True)
            chans.append((p, m))
            k += n
        rows = range(d["tap_base"], d["tap_base"] + (1 << d["tap_log2"]))
        ch_shifts = {int(taps["ch_shift"][r]) for r in rows if taps["valid"][r]}
        yield d, counts, chans, ch_shifts
        if d["last"]:
            return


def fillers(keys: np.ndarray, start: int, pos_bits: int) -> int:
    """Fillers the compact stream needs for the gaps of a sorted position list (hw/compile.jump_fillers)."""
    from apotflow.hw.compile import jump_fillers
    gaps = np.diff(np.concatenate([[start], keys]))
    return sum(len(jump_fillers(int(d), pos_bits)) for d in gaps[gaps >= 1 << pos_bits])


def union_count(parts, pos_bits: int, start: int = 0) -> int:
    """Entries of a position-aligned stream: per position the most entries any member needs, + fillers."""
    parts = [(p, m) for p, m in parts if len(p)]
    if not parts:
        return 1
    p = np.concatenate([q for q, _ in parts])
    m = np.concatenate([n for _, n in parts])
    order = np.lexsort((-m, p))
    p, m = p[order], m[order]
    first = np.concatenate([[True], p[1:] != p[:-1]])
    return max(1, int(m[first].sum()) + fillers(p[first], start, pos_bits))


def run_model(cfg, layers):
    """hw/cycles.schedule_cycles on a schedule: per layer (last, [(count, n)...] or [], extra pipeline
    cycles). Returns the cycles of each layer (perf[k])."""
    from apotflow.hw.cycles import pipe, schedule_cycles
    return schedule_cycles((last, units, pipe(cfg) + extra) for last, units, extra in layers)


def project(net, prog, max_groups: int | None = None) -> dict:
    from apotflow.hw.cycles import layer_cycles
    cfg = prog.config
    L = cfg.lanes
    today, oc, ic, mx = [], [], [], []
    rows = []
    for li, (d, counts, chans, ch_shifts) in enumerate(streams(cfg, prog.images)):
        info = prog.layers[li]
        last = bool(d["last"])
        npix = 1 << (d["ho_log2"] + d["wo_log2"])
        nv = [min(L, npix - g * L) for g in range(-(-npix // L))]
        cur = [(c, n) for c in counts for n in nv] if counts else []
        today.append((last, cur, 0))
        row = {"layer": info.op, "kind": info.kind, "pixels": npix, "channels": d["n_ch"], "entries": sum(counts),
               "macs_nonzero": info.macs_nonzero, "ideal": info.macs_nonzero / L, "diag": bool(d["diag"]),
               "rmax": bool(d["rmax"])}
        o = i = m = None
        if counts and npix < L:
            G = min(L // npix, max_groups or L)
            row["groups"] = G
            if not d["diag"]:  # output-channel groups: blocks of G channels, position-aligned streams
                units, munits = [], []
                for b in range(0, len(chans), G):
                    blk = chans[b:b + G]
                    units.append((union_count(blk, cfg.pos_bits), len(blk) * npix))
                    munits.append((max(counts[b:b + G]), len(blk) * npix))
                o, m = (last, units, 1), (last, munits, 1)
            direct = npix == 1
            if direct or ch_shifts == {npix.bit_length() - 1}:  # input-channel groups: keys (ic block, tap)
                gl, tl2 = G.bit_length() - 1, d["tap_log2"]
                units = []
                def key_of(p, direct=direct, gl=gl, tl2=tl2):
                    return p >> gl if direct else ((p >> tl2) >> gl << tl2) | (p & ((1 << tl2) - 1))
                for c, (p, mult) in enumerate(chans):
                    start = int(key_of(np.int64(c << d["diag_log2"]))) if d["diag"] else 0
                    units.append((union_count([(key_of(p), mult)], cfg.pos_bits, start), npix))
                i = (last, units, gl)
                row["ic_entries"] = sum(u for u, _ in units)
        oc.append(o or today[-1])
        ic.append(i or today[-1])
        mx.append(m or o or today[-1])
        rows.append(row)
    cyc = {"today": run_model(cfg, today), "oc": run_model(cfg, oc), "ic": run_model(cfg, ic),
           "oc_max": run_model(cfg, mx)}
    exact = layer_cycles(cfg, prog.images)
    assert cyc["today"] == exact, "the re-implemented recurrences differ from hw/cycles.layer_cycles"
    # best: per layer the cheapest applicable schedule (each layer's own cycles; re-run as one program)
    pick = []
    for k in range(len(rows)):
        cands = [("today", today[k])] + [(s, v[k]) for s, v in (("oc", oc), ("ic", ic)) if v[k] is not today[k]]
        cost = {s: run_model(cfg, [(True, u[1], u[2])])[0] for s, u in cands}
        s = min(cost, key=cost.get)
        rows[k]["best"] = s
        pick.append(dict(cands)[s])
    cyc["best"] = run_model(cfg, pick)
    for k, r in enumerate(rows):
        for s in cyc:
            r[s] = cyc[s][k]
    ideal = prog.stats["cycles_ideal"]
    tot = {s: sum(v) for s, v in cyc.items()}
    # WGT words: a grouped entry holds one slot (code, delta: the entry width) per group
    words = {"today": len(prog.images.wgt)}
    for s, sched in (("oc", oc), ("ic", ic), ("best", pick)):
        words[s] = sum(rows[k]["entries"] if u is today[k] else sum(c for c, _ in u[1]) * rows[k]["groups"]
                       for k, u in enumerate(sched))
    return {"lanes": L, "ideal": ideal, "cycles": tot, "wgt_words": words, "ratio": {s: round(v / ideal, 4) for s, v in tot.items()},
            "cycles_model_today": sum(exact), "layers": rows}


def ic_functional(net, prog, x: np.ndarray, max_groups: int | None = None) -> dict:
    """The input-channel lane groups' arithmetic, run in numpy on one image and compared with the golden
    accumulators (sw/golden.op_accumulator), for every layer the ``ic`` projection groups: a functional
    model of the design's addressing (today's L-word ACT read at ``tap.off + b*L``, lane l = group
    j, pixel i = l mod P; the padding test on pixel i; a fold of the groups), not of any RTL.

    Returns per layer the grouped entries (excluding fillers) and whether the accumulators are equal."""
    import torch

    from apotflow.hw import isa
    from apotflow.sw.golden import op_accumulator, run_integer
    cfg, images = prog.config, prog.images
    L, depth = cfg.lanes, cfg.act_depth
    vals = run_integer(net, np.asarray(x)[None])
    act = np.zeros(depth, np.int64)
    for name, pl in prog.placements.items():
        if pl.memory == "act":
            act[pl.addresses().reshape(-1)] = vals[name][0].numpy().reshape(-1)
    el, dl, rl, tl, vl = (isa.entry_layout(cfg), isa.desc_layout(cfg), isa.rq_layout(cfg), isa.tap_layout(cfg),
                          isa.val_layout(cfg))
    ent, taps, vrows = el.unpack_array(images.wgt), tl.unpack_array(images.tap), vl.unpack_array(images.val)
    value = np.zeros(len(images.val), np.int64)
    for t in range(cfg.terms):
        value += vrows[f"en{t}"] << vrows[f"s{t}"]
    value = np.where(vrows["sign"] == 1, -value, value)
    out = []
    for dword, op in zip(images.prog, net.ops):
        d = dl.unpack(dword)
        npix = 1 << (d["ho_log2"] + d["wo_log2"])
        counts = [rl.unpack(images.rq[d["rq_start"] + c])["count"] for c in range(d["n_ch"])]
        rows = range(d["tap_base"], d["tap_base"] + (1 << d["tap_log2"]))
        direct = npix == 1
        if not counts or npix >= L or not (direct or {int(taps["ch_shift"][r]) for r in rows if taps["valid"][r]}
                                           == {npix.bit_length() - 1}):
            if d["last"]:
                break
            continue
        G = min(L // npix, max_groups or L)
        gl, tl2, P = G.bit_length() - 1, d["tap_log2"], npix
        wl = d["wo_log2"]
        ho, wo = 1 << d["ho_log2"], 1 << wl
        rmax = bool(d["rmax"])
        dbase = int(taps["off"][d["tap_base"]])
        w0 = d["w_start"]
        code, delta = ent["code"][w0:w0 + sum(counts)], ent["delta"][w0:w0 + sum(counts)]
        step = np.where(code == 0, delta << cfg.pos_bits, delta)
        acc = np.zeros((d["n_ch"], P), np.int64)
        entries, k = 0, 0
        lane_i = np.arange(P)
        for c, n in enumerate(counts):
            pos = np.cumsum(step[k:k + n]) + ((c << d["diag_log2"]) if d["diag"] else 0)
            cc = code[k:k + n]
            k += n
            real = cc != 0
            pos, cc = pos[real], cc[real]
            v = value[(d["val_base"] << cfg.code_bits) + cc]
            if direct:
                key, slot = pos >> gl, pos & (G - 1)
                addr = dbase + (key << gl) + slot  # lane slot of the G consecutive addresses at key*G
                word = act[addr % depth][:, None]
                mask = np.ones((len(pos), 1), bool)
            else:
                tap, ic = pos & ((1 << tl2) - 1), pos >> tl2
                b, slot = ic >> gl, ic & (G - 1)
                key = (b << tl2) | tap
                row = d["tap_base"] + tap
                base = taps["off"][row] + (b << (gl + npix.bit_length() - 1))  # ch_shift = log2 L (P * G)
                lane = (slot << (npix.bit_length() - 1))[:, None] + lane_i[None, :]  # l = j*P + i
                word = act[(base[:, None] + lane) % depth]
                dy = taps["dy"][row][:, None]
                dx = taps["dx"][row][:, None]
                y, xx = (lane_i >> wl)[None, :] + dy, (lane_i & (wo - 1))[None, :] + dx
                mask = (y >= 0) & (y < ho) & (xx >= 0) & (xx < wo)
            term = v[:, None] * np.where(mask, word, 0)  # lane j*P + i's term (slot j's code)
            # grouped entries: per key, the most entries any slot has there (stream order within a position)
            kk, mult = np.unique(np.stack([key, slot]), axis=1, return_counts=True)
            per_key = {}
            for (kv, _sv), m in zip(kk.T, mult):
                per_key[int(kv)] = max(per_key.get(int(kv), 0), int(m))
            entries += max(1, sum(per_key.values()))
            if rmax:  # groups j > 0 start below every term; group 0 from the bias; the fold takes the max
                lanes = np.full((G, P), np.iinfo(np.int64).min)
                lanes[0] = int(op.bias[c])
                np.maximum.at(lanes, slot, term)
                acc[c] = lanes.max(axis=0)
            else:  # group 0 starts from the bias, the others from 0; the fold sums the groups
                lanes = np.zeros((G, P), np.int64)
                np.add.at(lanes, slot, term)
                acc[c] = lanes.sum(axis=0) + int(op.bias[c])
        ref = op_accumulator(op, {s.tensor: vals[s.tensor] for s in op.sources})[0]
        ref = ref.to(torch.int64).numpy().reshape(d["n_ch"], P)
        out.append({"layer": op.name, "groups": G, "pixels": P, "grouped_entries": entries,
                    "equal": bool(np.array_equal(acc, ref))})
        if d["last"]:
            break
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="*", default=list(NETS))
    p.add_argument("--lanes", type=int, default=64)
    p.add_argument("--prune", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-groups", type=int, nargs="*", default=[None],
                   help="also project with at most this many groups (e.g. 16: the WGT read and value decode of 16 slots)")
    p.add_argument("--work", default="runs/lane-groups")
    p.add_argument("--out", default="bench/results/lane-groups-projection.json")
    args = p.parse_args(argv)
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.fit import fit
    from apotflow.sw import export

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = {"what": "PROJECTION: cycles with lane groups computed from today's compiled weight streams with the "
                   "cycle model's recurrences; no RTL, compiler or hw/cycles.py change behind it "
                   "(docs/hardware.md, 'Lane groups (design)')",
           "command": "python bench/lane_groups_projection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "ideal_rule": "MACs with a non-zero weight / lanes (zero-padded positions included), as docs/networks.md",
           "assumed_extra_cycles_per_grouped_layer": {"oc": 1, "ic": "log2 G"}, "networks": {}}
    for name in args.nets:
        arch, path = NETS[name]
        if path is None:
            path = work / f"{arch}-p{args.prune}-s{args.seed}.apot"
            if not path.exists():
                subprocess.run([sys.executable, "-m", "apotflow.sim.cli", "export", "--arch", arch, "--random",
                                "--prune", str(args.prune), "--seed", str(args.seed), "-o", str(path)], check=True)
        t = time.perf_counter()
        net = export.load(path)
        prog = fit(net, AcceleratorConfig(lanes=args.lanes))
        r = project(net, prog)
        for mg in args.max_groups:
            if mg:
                q = project(net, prog, mg)
                r[f"max_groups_{mg}"] = {"cycles": q["cycles"], "ratio": q["ratio"], "wgt_words": q["wgt_words"]}
        spec = net.tensors[net.input]
        x = np.random.default_rng(args.seed).integers(0, spec.max_value + 1, spec.shape)
        r["ic_functional"] = {"what": "input-channel groups' arithmetic (numpy) against the golden accumulators, "
                                      f"one random image (seed {args.seed}); not RTL",
                              "layers": ic_functional(net, prog, x)}
        r["model"] = str(path) if arch is None else f"apotflow export --arch {arch} --random --prune {args.prune} --seed {args.seed}"
        r["seconds"] = round(time.perf_counter() - t, 1)
        out["networks"][name] = r
        print(name, r["cycles"], r["ratio"], "ic functional:",
              sum(x["equal"] for x in r["ic_functional"]["layers"]), "of", len(r["ic_functional"]["layers"]),
              "grouped layers equal", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
