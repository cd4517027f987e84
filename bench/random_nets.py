"""Random integer networks: golden model = ISA interpreter on every tensor, and a sample on Verilator.

Networks from sw/randnet.py (seed i), configs from sim/differential.random_config (seed i): lanes 2..64,
terms 1..4, acc_bits exactly the worst case's or wider, memories fitted. Each network runs two images
(all max_value, and uniform random). ``refused`` counts networks the compiler refuses with a
CompileError (a config the network cannot fit; the reason is tallied). The Verilator sample compiles
networks for a few fixed configs (one Verilator build each: the ROMs are $readmemh files, so the same
build runs every program; the Verilog is generated once per config too) and co-simulates them with
sim/cosim.py.

    nice -n 10 .venv/bin/python bench/random_nets.py --nets 10000 --verilator 200 --verilator-budget 1500 --out bench/results/random-nets.json
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def isa_runs(n: int, start: int = 0, log=print, lane_groups: int = 1) -> dict:
    """Seeds start, start+1, ... until n networks are compared (refused ones do not count); each config's
    lane_groups is min(lane_groups, its lanes)."""
    from apotflow.sim.differential import run_one

    counts, reasons, mismatches = collections.Counter(), collections.Counter(), []
    t0 = time.time()
    seed = start
    while counts["equal"] + counts["mismatch"] < n:
        outcome, detail = run_one(seed, lane_groups=lane_groups)
        counts[outcome] += 1
        if outcome == "refused":
            reasons[re.sub(r"op \S+|-?\d+", "#", detail)[:90]] += 1
        elif outcome == "mismatch":
            mismatches.append([seed, detail])
        seed += 1
        if (seed - start) % 1000 == 0:
            log(f"{seed - start} networks, {time.time() - t0:.0f} s: {dict(counts)}")
    return {"networks": seed - start, "seeds": [start, seed - 1], "outcomes": dict(counts),
            "compared": counts["equal"] + counts["mismatch"], "mismatches": mismatches[:50],
            "refusal_reasons": dict(reasons.most_common()), "seconds": round(time.time() - t0, 1)}


VERILATOR_CONFIGS = [  # fixed configs for the Verilator sample (one build each)
    {"lanes": 4, "terms": 2, "acc_bits": 32, "act_bits": 8, "shift_bits": 5, "delta_bits": 4},
    {"lanes": 16, "terms": 1, "acc_bits": 40, "act_bits": 8, "shift_bits": 5, "delta_bits": 3},
]


def spec_key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def verilator_runs(n: int, start: int = 1_000_000, log=print, budget_s: float = float("inf")) -> dict:
    """n random networks co-simulated on Verilator (golden model = RTL on every tensor), or as many
    as budget_s seconds allow."""
    from apotflow.hw.compile import CompileError, compile_net
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.sim.cosim import execute, prepare, top_verilog
    from apotflow.sim.differential import probe_images
    from apotflow.sw.randnet import random_net

    counts, mismatches, per_config = collections.Counter(), [], collections.Counter()
    verilog: dict[str, str] = {}
    t0 = time.time()
    seed = start
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(n):
            if time.time() - t0 > budget_s:
                log(f"time budget of {budget_s:.0f} s spent after {k} networks")
                break
            spec = VERILATOR_CONFIGS[k % len(VERILATOR_CONFIGS)]
            cfg = AcceleratorConfig(**spec, max_levels=16, act_depth=4096, wgt_depth=4096, rq_depth=256,
                                    prog_depth=8, out_depth=128)
            while True:  # the next network this config holds
                seed += 1
                net = random_net(seed)
                try:
                    compile_net(net, cfg)
                    break
                except CompileError:
                    counts["skipped (does not fit the fixed config)"] += 1
            if spec_key(spec) not in verilog:  # the Verilog depends on the config alone: generated once
                verilog[spec_key(spec)] = top_verilog(cfg)
            setup = prepare(net, cfg, probe_images(net, seed), Path(tmp) / f"cfg{k % len(VERILATOR_CONFIGS)}",
                            log=lambda m: None, verilog=verilog[spec_key(spec)])
            s = execute(setup, waves_on_mismatch=False, log=lambda m: None)
            outcome = "equal" if s["mismatches"] == 0 else "mismatch"
            counts[outcome] += 1
            per_config[f"lanes={spec['lanes']} terms={spec['terms']}"] += 1
            if outcome == "mismatch":
                mismatches.append([seed, s["first_mismatch"]])
            if (k + 1) % 5 == 0:
                log(f"{k + 1} networks on Verilator, {time.time() - t0:.0f} s: {dict(counts)}")
    return {"networks": counts["equal"] + counts["mismatch"], "outcomes": dict(counts), "per_config": dict(per_config), "configs": VERILATOR_CONFIGS,
            "mismatches": mismatches, "seconds": round(time.time() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", type=int, default=10_000, help="networks to compare (golden = ISA)")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--verilator", type=int, default=0, help="networks to co-simulate on Verilator")
    ap.add_argument("--verilator-budget", type=float, default=float("inf"), help="seconds for the Verilator sample")
    ap.add_argument("--lane-groups", type=int, default=1, help="the ISA comparison's configs with lane groups "
                    "(at most their lanes)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "random-nets.json"))
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    res = {"command": "python bench/random_nets.py " + " ".join(sys.argv[1:]),
           "target": ">= 10,000 networks golden = ISA and >= 200 on Verilator, 0 mismatches"}
    if args.nets:
        res["isa"] = isa_runs(args.nets, args.start, log, args.lane_groups)
    if args.verilator:
        res["verilator"] = verilator_runs(args.verilator, log=log, budget_s=args.verilator_budget)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    bad = len(res.get("isa", {}).get("mismatches", [])) + len(res.get("verilator", {}).get("mismatches", []))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk in ("outcomes", "seconds")} if isinstance(v, dict)
                      else v for k, v in res.items()}))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
