"""Kill points: a digits training run (CPU) killed with SIGKILL at random points, each time started again
in the same folder until it ends; its final model must equal an uninterrupted run's bit for bit.

The kills are of two kinds:
- targeted: the process kills itself at a crash point of the one writer (sw/atomic.py,
  ``APOTFLOW_CRASH_AT``): half-way through, after and around the rename of a checkpoint write (the n-th
  epoch's, n random over what is left), inside the publication of the outputs (a file half staged, all staged,
  each old file removed, each new one renamed in);
- timed: the bench sends SIGKILL after a random delay (mostly inside a training epoch).

Every run starts with an old, complete set of outputs (model.pt, model.apot, train.json of another seed) in
the folder. After each kill it checks that every visible file is either the old run's or the new run's (by
bytes; train.json by its seed and the sha256 it lists), that old and new files never stand side by side, that
a train.json is present only with its whole set, that train.ckpt (if present) loads, and that the temporary
files the killed process left are gone once the next process has started. After each chain: model.apot equal
to the uninterrupted run's byte for byte, model.pt's tensors equal, no temporary and no checkpoint left.

    nice -n 10 python bench/kill_points.py            # -> bench/results/kill-points.json
    python bench/kill_points.py --doc                  # docs/verification.md's "Kill points" section
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/verification.md"
BEGIN, END = "<!-- kill-points:begin (bench/kill_points.py --doc) -->", "<!-- kill-points:end -->"
SET = ("model.pt", "model.apot", "train.json")
TEMP = re.compile(r"^\.(.+\.\d+\.[0-9a-f]{8}\.tmp|publish-\d+-[0-9a-f]{8})$")
# a recipe of the digits trainer shortened so that two dozen kills and their resumes fit in minutes
RECIPE = {"epochs": 6, "stage_epochs": 2, "qat_epochs": 4}
PUBLISH_POINTS = ["write:model.pt:partial", "write:model.apot:partial", "write:model.apot:written",
                  "write:train.json:partial", "publish:staged", "publish:removed:train.json",
                  "publish:removed:model.pt", "publish:removed:model.apot", "publish:renamed:model.apot",
                  "publish:renamed:model.pt", "publish:renamed:train.json"]
CKPT_POINTS = ["write:train.ckpt:partial", "write:train.ckpt:written", "write:train.ckpt:replaced"]


def _argv(out: Path, seed: int, recipe: dict) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in recipe.items()]
    code = "import sys; from apotflow.sim.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "train", "--model", "digits", "--seed", str(seed), "--out", str(out), *flags]


def run_process(out: Path, seed: int, recipe: dict, point: str | None = None, delay: float | None = None,
                threads: int | None = None) -> dict:
    """One training process in ``out``: killed at ``point`` (a crash point) or after ``delay`` seconds."""
    env = {**os.environ}
    env.pop("APOTFLOW_CRASH_AT", None)
    if point:
        env["APOTFLOW_CRASH_AT"] = point
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    p = subprocess.Popen(_argv(out, seed, recipe), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate()
    return {"rc": p.returncode, "pid": p.pid, "seconds": time.perf_counter() - t0,
            "stderr_tail": err.decode(errors="replace")[-300:] if p.returncode not in (0, -9) else ""}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(folder: Path) -> dict:
    """sha256 of the set's files in ``folder`` (train.json: its seed), for telling old from new."""
    fp = {n: _sha(folder / n) for n in ("model.pt", "model.apot")}
    fp["train.json"] = json.loads((folder / "train.json").read_text())["seed"]
    return fp


def inspect(out: Path, old: dict, new: dict, old_seed: int, new_seed: int) -> dict:
    """Which run each visible file of the set belongs to, and what is wrong."""
    import torch

    state, problems = {}, []
    for name in SET:
        p = out / name
        if not p.exists():
            state[name] = "absent"
        elif name == "train.json":
            try:
                j = json.loads(p.read_text())
            except ValueError:
                state[name] = "unreadable"
                continue
            state[name] = {old_seed: "old", new_seed: "new"}.get(j.get("seed"), "other")
            listed = j.get("sha256", {})
            if any(not (out / n).exists() or _sha(out / n) != h for n, h in listed.items()):
                problems.append(f"train.json ({state[name]}) lists files that are not beside it")
        else:
            h = _sha(p)
            state[name] = "old" if h == old[name] else "new" if h == new[name] else "other"
    if any(v in ("other", "unreadable") for v in state.values()):
        problems.append(f"a file of neither run (half-written?): {state}")
    if "old" in state.values() and "new" in state.values():
        problems.append(f"old and new files side by side: {state}")
    if state["train.json"] != "absent" and "absent" in state.values():
        problems.append(f"train.json without its whole set: {state}")
    ckpt, epochs_done = out / "train.ckpt", None
    if ckpt.exists():
        try:
            epochs_done = len(torch.load(ckpt, map_location="cpu", weights_only=False)["history"])
        except Exception as e:
            problems.append(f"train.ckpt does not load: {type(e).__name__}")
    temps = sorted(p.name for p in out.iterdir() if TEMP.match(p.name))
    return {"files": state, "epochs_checkpointed": epochs_done, "temporaries": temps, "problems": problems}


def compare_final(out: Path, ref: Path) -> dict:
    import torch

    a = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(ref / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    tensors_equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    left = sorted(p.name for p in out.iterdir() if TEMP.match(p.name) or p.name == "train.ckpt")
    return {"model_apot_equal": (out / "model.apot").read_bytes() == (ref / "model.apot").read_bytes(),
            "state_dict_equal": tensors_equal, "left_over": left,
            "resumes": json.loads((out / "train.json").read_text()).get("resumes")}


def total_epochs(recipe: dict) -> int:
    from apotflow.sw.fasttrain import DigitsConfig, phases

    return sum(p.epochs for p in phases(DigitsConfig(**recipe)))


def run_chain(out: Path, old_dir: Path, ref: Path, points: list, seed: int, old_seed: int, recipe: dict,
              rng: random.Random, log=print) -> dict:
    """One run in ``out`` (holding a copy of the old set), killed at each of ``points`` in turn (a crash point
    name, ``"ckpt:<when>"`` for the n-th checkpoint write with n random over what is left, or a float: a
    delay in seconds), then run to its end."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(old_dir, out)
    old, new = fingerprint(old_dir), fingerprint(ref)
    n_total, kills, last_temps = total_epochs(recipe), [], []
    for spec in points:
        done = inspect(out, old, new, old_seed, seed)["epochs_checkpointed"] or 0
        point = delay = None
        if isinstance(spec, float):
            delay = spec
        elif spec.startswith("ckpt:"):
            point = f"write:train.ckpt:{spec[5:]}@{rng.randint(1, max(1, n_total - done))}"
        else:
            point = spec
        threads = rng.choice((1, 2))
        r = run_process(out, seed, recipe, point, delay, threads)
        st = inspect(out, old, new, old_seed, seed)
        # the previous kill's temporaries, still there although this process got past its start (remove_stale)
        started = point is not None or r["rc"] == 0 or (st["epochs_checkpointed"] or 0) > done
        stale = [t for t in last_temps if t in st["temporaries"]] if started else []
        if stale:
            st["problems"].append(f"temporaries of a killed process not removed by the next: {stale}")
        last_temps = st["temporaries"]
        k = {"point": point or f"timed {delay:.1f} s", "fired": r["rc"] == -9, "rc": r["rc"], "threads": threads,
             "epochs_checkpointed_before": done, "seconds": round(r["seconds"], 2), **st}
        if r["stderr_tail"]:
            k["stderr_tail"] = r["stderr_tail"]
        kills.append(k)
        how = "killed" if k["fired"] else f"ended (rc {r['rc']})"
        log(f"  {k['point']:<36} {how:<14} files {st['files']} "
            f"ckpt epochs {st['epochs_checkpointed']} temps {len(st['temporaries'])} "
            f"{'PROBLEM ' + '; '.join(st['problems']) if st['problems'] else 'ok'}")
        if r["rc"] != -9:
            break
    final_run = None
    if not (out / "train.json").exists() or kills and kills[-1]["fired"] or fingerprint(out)["train.json"] != seed:
        final_run = run_process(out, seed, recipe, threads=rng.choice((1, 2)))
    fin = compare_final(out, ref) if (out / "train.json").exists() else {"error": "no train.json after the last run",
                                                                         "final_rc": (final_run or {}).get("rc")}
    fin["stale_from_last_kill"] = [t for t in last_temps if (out / t).exists()]
    log(f"  final: {fin}")
    return {"kills": kills, "final": fin}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=24, help="kills that fire, at least (default 24)")
    p.add_argument("--chain", type=int, default=4, help="kills per run before it is let finish")
    p.add_argument("--seed", type=int, default=0, help="the training seed (the old set is seed + 1)")
    p.add_argument("--draw-seed", type=int, default=0, help="seed of the kill points' random draws")
    p.add_argument("--work", default="runs/kill-points")
    p.add_argument("--out", default=str(ROOT / "bench/results/kill-points.json"))
    p.add_argument("--full-recipe", action="store_true", help="the digits defaults instead of the shortened recipe")
    p.add_argument("--doc", action="store_true", help="only write docs/verification.md's section from --out")
    a = p.parse_args(argv)
    if a.doc:
        return write_doc(Path(a.out))
    recipe = {} if a.full_recipe else dict(RECIPE)
    work, rng = Path(a.work), random.Random(a.draw_seed)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_all = time.perf_counter()
    print(f"reference: an uninterrupted run ({recipe or 'digits defaults'}) ...", flush=True)
    ref_run = run_process(work / "reference", a.seed, recipe)
    old_run = run_process(work / "old", a.seed + 1, recipe)
    if ref_run["rc"] != 0 or old_run["rc"] != 0:
        raise SystemExit(f"the uninterrupted runs failed: {ref_run} {old_run}")
    t_ref = ref_run["seconds"]
    # targeted points first (each once), then checkpoint writes and timed kills up to --kills
    specs: list = list(PUBLISH_POINTS) + [f"ckpt:{w}" for w in ("partial", "written", "replaced")]
    while len(specs) < a.kills:
        specs.append(round(rng.uniform(0.1, 0.9) * t_ref, 2) if len(specs) % 2 else f"ckpt:{rng.choice(('partial', 'written', 'replaced'))}")
    rng.shuffle(specs)
    # a publication point ends the run it kills in: it goes last in its chain
    chains, cur = [], []
    for s in specs:
        cur.append(s)
        if len(cur) == a.chain or (isinstance(s, str) and not s.startswith("ckpt:")):
            chains.append(sorted(cur, key=lambda x: isinstance(x, str) and not x.startswith("ckpt:")))
            cur = []
    if cur:
        chains.append(cur)
    results = []
    for i, pts in enumerate(chains):
        print(f"chain {i + 1}/{len(chains)}: {pts}", flush=True)
        results.append(run_chain(work / f"chain{i}", work / "old", work / "reference", pts, a.seed, a.seed + 1, recipe,
                                 rng))
        fired = sum(k["fired"] for c in results for k in c["kills"])
        if i == len(chains) - 1 and fired < a.kills:  # timed kills that came too late: add a chain of timed ones
            chains.append([round(rng.uniform(0.1, 0.7) * t_ref, 2) for _ in range(a.chain)])
    kills = [k for c in results for k in c["kills"]]
    fired = [k for k in kills if k["fired"]]
    summary = {
        "kills_fired": len(fired), "kills_targeted": sum(not k["point"].startswith("timed") for k in fired),
        "kills_timed": sum(k["point"].startswith("timed") for k in fired),
        "kills_in_checkpoint_writes": sum("train.ckpt" in k["point"] for k in fired),
        "kills_in_publication": sum(k["point"].startswith(("publish", "write:model", "write:train.json")) for k in fired),
        "chains": len(results),
        "chains_bit_exact": sum(bool(c["final"].get("model_apot_equal") and c["final"].get("state_dict_equal"))
                                for c in results),
        "problems": sum(len(k["problems"]) for k in kills),
        "mixes_of_old_and_new": sum(any("side by side" in x for x in k["problems"]) for k in kills),
        "half_written_visible": sum(any("neither run" in x or "does not load" in x for x in k["problems"]) for k in kills),
        "stale_temporaries_left": sum(len(c["final"].get("left_over", [])) + len(c["final"]["stale_from_last_kill"])
                                      for c in results),
    }
    summary["passed"] = (summary["kills_fired"] >= 20 and summary["chains_bit_exact"] == summary["chains"]
                         and summary["problems"] == 0 and summary["stale_temporaries_left"] == 0)
    import torch

    blob = {"command": " ".join(["python bench/kill_points.py", *(sys.argv[1:] if argv is None else argv)]),
            "recipe": recipe or "digits defaults (sw.fasttrain.DigitsConfig)", "seed": a.seed, "old_seed": a.seed + 1,
            "draw_seed": a.draw_seed, "epochs": total_epochs(recipe), "reference_seconds": round(t_ref, 2),
            "summary": summary, "chains": [{"points": [k["point"] for k in c["kills"]], **c} for c in results],
            "wall_seconds": round(time.perf_counter() - t_all, 1), "cpus": os.cpu_count(),
            "load_average_after": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()}
    from apotflow.sw.atomic import write_json

    write_json(a.out, blob)
    print(json.dumps(summary, indent=1))
    return 0 if summary["passed"] else 1


def write_doc(path: Path) -> int:
    """Replace docs/verification.md's "Kill points" section (between its markers) with one made from ``path``."""
    r = json.loads(path.read_text())
    s = r["summary"]
    recipe = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["recipe"].items()) \
        if isinstance(r["recipe"], dict) else "(the digits defaults)"
    lines = [
        BEGIN,
        "## Kill points",
        "",
        "A digits training run (CPU) is killed with SIGKILL and started again in the same folder until it",
        "ends (bench/kill_points.py). The trainer checkpoints every epoch (`train.ckpt`, through the one atomic",
        "writer, sw/atomic.py) and resumes from it; a run publishes model.pt, model.apot and train.json as one",
        "set (staged in a hidden folder; the old set loses its train.json first, the new set gets its own last),",
        "and removes the temporaries a killed process left when it starts.",
        "",
        f"Recipe: `apotflow train --model digits {recipe}` ({r['epochs']} epochs), seed {r['seed']}; each run",
        f"starts with the complete outputs of seed {r['old_seed']} in its folder. {s['kills_fired']} kills fired "
        f"({s['kills_targeted']} at crash points of the writer,",
        f"{s['kills_in_checkpoint_writes']} of them inside checkpoint writes and {s['kills_in_publication']} inside "
        f"the publication of the outputs; {s['kills_timed']} at random times), in {s['chains']} runs, each",
        "resumed to its end (1 or 2 OpenMP threads per process, drawn at random).",
        "",
        "| check | result |",
        "|---|---|",
        f"| runs whose final model equals the uninterrupted run's (model.apot bytes, model.pt tensors) "
        f"| {s['chains_bit_exact']} of {s['chains']} |",
        f"| states after a kill with old and new files side by side | {s['mixes_of_old_and_new']} |",
        f"| states after a kill with a half-written file under a real name (or a train.ckpt that does not load) "
        f"| {s['half_written_visible']} |",
        f"| problems of any kind (incl. a train.json without its whole set, temporaries not removed) | {s['problems']} |",
        f"| temporaries or checkpoints left after the runs ended | {s['stale_temporaries_left']} |",
        "",
        "| kill point | fired | epochs in train.ckpt after the kill | visible set after the kill (model.pt / "
        "model.apot / train.json) |",
        "|---|---|---|---|",
    ]
    for c in r["chains"]:
        for k in c["kills"]:
            f = k["files"]
            lines.append(f"| `{k['point']}` | {'yes' if k['fired'] else 'no (the run ended first)'} "
                         f"| {k['epochs_checkpointed'] if k['epochs_checkpointed'] is not None else 'none'} of "
                         f"{r['epochs']} | {f['model.pt']} / {f['model.apot']} / {f['train.json']} |")
    lines += ["", f"Wall time {r['wall_seconds'] / 60:.1f} min on {r['cpus']} CPUs (load average "
              f"{r['load_average_after'][0]:.0f} at the end: other work ran beside it). Commands:", "", "```",
              f"nice -n 10 {r['command']}", "python bench/kill_points.py --doc   # this section", "```", END]
    text = DOC.read_text() if DOC.exists() else "# Verification\n\n"
    new = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + new + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
