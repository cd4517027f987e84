"""The graph lowering against an earlier revision's lowering, model by model: equal .apot bytes, or else
every integer equal (issue 19: the zoo's hand-written lowerings were replaced by sw/graph_lower.py).

    python bench/lowering_equivalence.py --old-rev 79774d7 [--new-rev REV] [--quick] [--out bench/results/lowering-equivalence.json]

The old revision's tree (``git archive REV``) is imported as ``apotflow`` in a subprocess, this tree (or
``--new-rev``'s) in another; both export the same models, and the .apot files are compared byte for byte and, where they
differ, field by field after reading them back (every tensor format, op, source and integer array, the
names and the meta). Models:

* ``checkpoint``: every committed training checkpoint bench/models/*.pt, as ``apotflow export CKPT -o``
  does it (sw/convert.export_checkpoint);
* ``random``: every CIFAR zoo entry with random weights at full width, GM-pruned 0.3, seed 0, as
  ``apotflow export --random --arch A`` does it (sw/convert.export_random);
* ``model``: random-weight models built once here and handed to both sides pickled: every zoo entry
  (digits included), unpruned and GM-pruned 0.5, lowered both masked (``lower`` slices) and already
  sliced (``slice_pruned``), plus ResNet variants outside the zoo's names (option B without biases,
  option A with conv biases, option-B ResNet-20), and the test suite's hand-initialised digits nets.

``--quick``: reduced widths and fewer checkpoints (a smoke run); the committed result is a full run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cases(tmp: Path, quick: bool, known: set[str]) -> list[dict]:
    """The models, built (random ones pickled into tmp) with this tree's code; zoo entries only where the
    old revision has them (``known``)."""
    import torch

    from apotflow.sw import zoo
    from apotflow.sw.models import CifarResNet, DigitsNet
    from apotflow.sw.randmodel import random_model

    out = []
    ckpts = sorted((ROOT / "bench" / "models").glob("*.pt"))
    for p in ckpts[:3] if quick else ckpts:
        out.append({"name": f"checkpoint/{p.stem}", "kind": "checkpoint", "path": str(p)})
    for arch in [a for a in zoo.CIFAR_MODELS if a in known]:
        ws = 0.25 if quick else 1.0
        out.append({"name": f"random/{arch}", "kind": "random", "arch": arch, "prune": 0.3, "seed": 0, "width_scale": ws})
    models = {}
    for name, entry in zoo.ZOO.items():
        if name not in known or quick and name in ("resnet32", "resnet56", "resnet110"):
            continue
        ws = 1.0 if entry.scaled == "none" else (0.25 if entry.scaled == "scale" else 0.5)
        for prune in (0.0, 0.5):
            models[f"{name}-p{prune}"] = lambda name=name, ws=ws, prune=prune: random_model(
                zoo.build(name, ws), prune, seed=1, batches=1, batch_size=8)
    variants = {"resnet20b": dict(depth=20, shortcut="B"), "resnet20a-bias": dict(depth=20, conv_bias=True),
                "resnet8b": dict(depth=8, shortcut="B", conv_bias=False)}
    for name, kw in variants.items():
        models[f"{name}-p0.5"] = lambda kw=kw: random_model(CifarResNet(widths=(8, 16, 32), **kw), 0.5, seed=2,
                                                             batches=1, batch_size=8)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import random_digits_net_model  # the test suite's hand-initialised digits nets

    for prune in (0.0, 0.4):
        models[f"digits-handinit-p{prune}"] = lambda prune=prune: random_digits_net_model(seed=3, prune=prune)
    models["digits-w8-p0.3"] = lambda: random_model(DigitsNet(widths=(8, 8, 16)), 0.3, seed=4, batches=1, batch_size=8)
    for name, make in models.items():
        path = tmp / f"{name}.pickle"
        t0 = time.perf_counter()
        torch.save(make(), path)
        print(f"built {name} in {time.perf_counter() - t0:.1f} s", flush=True)
        for sliced in (False, True):
            out.append({"name": f"model/{name}/{'sliced' if sliced else 'masked'}", "kind": "model",
                        "path": str(path), "slice": sliced})
    return out


def dump(cases_json: str, out_dir: str) -> None:
    """Export every case with whichever apotflow is importable; one <i>.apot (or <i>.err) per case."""
    import torch

    from apotflow.sw import convert, export
    from apotflow.sw.lower import lower
    from apotflow.sw.prune import slice_pruned

    out = Path(out_dir)
    seconds = {}
    for i, c in enumerate(json.loads(Path(cases_json).read_text())):
        t0 = time.perf_counter()
        try:
            if c["kind"] == "checkpoint":
                convert.export_checkpoint(c["path"], out / f"{i}.apot")
            elif c["kind"] == "random":
                convert.export_random(c["arch"], out / f"{i}.apot", c["prune"], c["seed"], c["width_scale"])
            else:
                model = torch.load(c["path"], weights_only=False)
                net = lower(slice_pruned(model).eval() if c["slice"] else model)
                (out / f"{i}.apot").write_bytes(export.to_bytes(net))
        except Exception as e:  # both sides must fail alike
            (out / f"{i}.err").write_text(f"{type(e).__name__}: {e}")
        seconds[i] = time.perf_counter() - t0
    (out / "seconds.json").write_text(json.dumps(seconds))


def differences(a, b) -> list[str]:
    """Every field in which two IntNets differ (names, formats, integer arrays, meta); [] if none."""
    import numpy as np

    def same(x, y) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return (x is None) == (y is None) and np.asarray(x).dtype == np.asarray(y).dtype \
                and np.array_equal(x, y)
        return x == y

    diff = []
    for k in ("input", "output", "meta"):
        if getattr(a, k) != getattr(b, k):
            diff.append(k)
    if list(a.tensors) != list(b.tensors):
        diff.append(f"tensor names {list(a.tensors)} != {list(b.tensors)}")
    for n in set(a.tensors) & set(b.tensors):
        if a.tensors[n] != b.tensors[n]:
            diff.append(f"tensor {n}")
    if [o.name for o in a.ops] != [o.name for o in b.ops]:
        diff.append(f"op names {[o.name for o in a.ops]} != {[o.name for o in b.ops]}")
    for oa, ob in zip(a.ops, b.ops):
        for f in dataclasses.fields(oa):
            if f.name == "sources":
                if len(oa.sources) != len(ob.sources):
                    diff.append(f"{oa.name}: {len(oa.sources)} != {len(ob.sources)} sources")
                for j, (sa, sb) in enumerate(zip(oa.sources, ob.sources)):
                    diff += [f"{oa.name} source {j} {g.name}" for g in dataclasses.fields(sa)
                             if not same(getattr(sa, g.name), getattr(sb, g.name))]
            elif not same(getattr(oa, f.name), getattr(ob, f.name)):
                diff.append(f"{oa.name} {f.name}")
    return diff


def archive(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` as an importable ``apotflow`` package under dest."""
    pkg = dest / "apotflow"
    pkg.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "sw", "hw", "sim"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(pkg)], input=tar, check=True)
    (pkg / "__init__.py").write_text("")  # a regular package: found before the installed one
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-rev", required=True, help="git revision whose lowering is the reference")
    ap.add_argument("--new-rev", help="git revision to compare (default: the working tree)")
    ap.add_argument("--quick", action="store_true", help="reduced widths and three checkpoints (smoke run)")
    ap.add_argument("--out", default="bench/results/lowering-equivalence.json")
    ap.add_argument("--dump", nargs=2, metavar=("CASES", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dump:
        dump(*args.dump)
        return 0
    from apotflow.sw import export

    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.old_rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.new_rev or "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = not args.new_rev and bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "sw"],
                                                     capture_output=True, text=True).stdout.strip())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_pkg = archive(rev, tmp / "old-tree")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(old_pkg)}
        known = set(subprocess.run([sys.executable, "-c", "from apotflow.sw.zoo import MODELS; print(*MODELS)"],
                                   env=env, check=True, capture_output=True, text=True, cwd=tmp).stdout.split())
        cs = cases(tmp, args.quick, known)
        (tmp / "cases.json").write_text(json.dumps(cs))
        new_pkg = archive(head, tmp / "new-tree") if args.new_rev else None
        sides = {}
        for side, pythonpath in (("old", str(old_pkg)), ("new", new_pkg and str(new_pkg))):
            d = tmp / side
            d.mkdir()
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            probe = "import os, apotflow.sw.lower as m; print(os.path.realpath(m.__file__))"
            where = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True,
                                   text=True, cwd=tmp).stdout.strip()
            subprocess.run([sys.executable, __file__, "--old-rev", rev, "--dump", str(tmp / "cases.json"), str(d)],
                           env=env, check=True, cwd=tmp)
            sides[side] = (d, where, json.loads((d / "seconds.json").read_text()))
        rows = []
        for i, c in enumerate(cs):
            row = {k: v for k, v in c.items() if k != "path"} | ({"path": str(Path(c["path"]).relative_to(ROOT))}
                                                                  if c["kind"] == "checkpoint" else {})
            files = {s: (sides[s][0] / f"{i}.apot", sides[s][0] / f"{i}.err") for s in sides}
            row["seconds"] = {s: round(sides[s][2][str(i)], 2) for s in sides}
            if any(f[1].exists() for f in files.values()):
                errs = {s: f[1].read_text() if f[1].exists() else None for s, f in files.items()}
                row.update(error=errs, equal=errs["old"] == errs["new"])
            else:
                blobs = {s: f[0].read_bytes() for s, f in files.items()}
                row["sha256"] = {s: hashlib.sha256(b).hexdigest() for s, b in blobs.items()}
                row["bytes_equal"] = blobs["old"] == blobs["new"]
                nets = {s: export.load(f[0]) for s, f in files.items()}
                row["differences"] = differences(nets["old"], nets["new"])
                row["ops"] = len(nets["new"].ops)
                row["equal"] = row["bytes_equal"] and not row["differences"]
            print(f"{c['name']}: {'equal' if row['equal'] else 'DIFFERENT'}", flush=True)
            rows.append(row)
    command = f"python bench/lowering_equivalence.py --old-rev {args.old_rev}" + (
        f" --new-rev {args.new_rev}" if args.new_rev else "") + " --quick" * args.quick
    result = {"command": command, "zoo_models_compared": sorted(known),
              "old_rev": rev, "new_rev": head, "new_tree_dirty": dirty,
              "old_lower": sides["old"][1], "new_lower": sides["new"][1],
              "cases": len(rows), "all_equal": all(r["equal"] for r in rows),
              "bytes_equal": sum(bool(r.get("bytes_equal")) for r in rows),
              "errors_alike": sum("error" in r for r in rows),
              "seconds": round(time.perf_counter() - t0, 1), "python": platform.python_version(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['cases']} cases, all equal: {result['all_equal']} ({result['bytes_equal']} byte-identical, "
          f"{result['errors_alike']} failing alike) -> {args.out}")
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
