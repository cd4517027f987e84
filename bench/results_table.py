"""Build docs/results.json and docs/results.md from run JSONs (``apotflow train`` result.json files).

    python bench/results_table.py docs/cifar-runs/*.json [--variants docs/cifar-runs/variants/*.json]
                                  [--recheck bench/results/recheck-*.json]

Never typed by hand: every number comes from a run file; rows of the paper's table that have no run
say "not run", or, where bench/results/gpu-logs/<run>.log shows a started run, where it stopped. The
paper's numbers (its Table of CIFAR-10 results) are on PNG CIFAR-10; ours are on the JPEG copy.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

LOGS = Path("bench/results/gpu-logs")
RECIPES = Path("configs")  # configs/[variants/]<run>.toml: a run's recipe file (bench/recipes.py writes them)

PAPER = {  # model: (baseline, PPQ, SPQ, size reduction, BOPs reduction), CIFAR-10 PNG, W4/A4, 30%
    "resnet20": (92.61, 91.84, 90.47, 15.78, 115.85), "resnet32": (93.08, 92.96, 91.59, 15.84, 118.18),
    "resnet56": (94.30, 93.99, 92.09, 15.89, 119.88), "resnet110": (94.50, 94.56, 92.59, 15.94, 120.95),
    "vgg16": (94.05, 93.46, 93.81, 15.95, 126.24),
}
# a variant of a paper model, compared with that model's paper row (vgg16-1fc: VGG-16 with one fc instead of
# the FPGM classifier, the model of the runs before the zoo's vgg16 had it)
PAPER_ROW = {"vgg16-1fc": "vgg16"}
KEYS = ("model", "method", "dataset", "accuracy", "accuracy_int", "agreement", "size_reduction", "bops_reduction",
        "pre_qat_float_acc", "train_seconds", "wall_seconds", "command", "command_recorded", "note", "device", "torch",
        "counting_rules")


def schedule(cfg: dict) -> str:
    """The epochs of each phase, as the CLI names them."""
    if cfg.get("method") == "ppq":
        return f"{cfg['epochs']} + {cfg.get('prune_stages', 2)}x{cfg['stage_epochs']} + {cfg['qat_epochs']}"
    return str(cfg.get("epochs"))


def ordered(rows: list[dict]) -> list[dict]:
    models = list(PAPER)
    return sorted(rows, key=lambda r: (models.index(r["model"]) if r["model"] in models else 99, r["method"]))


# trained after commit 7330819 (device-independent weight statistics), before the run's config recorded
# prune_stages (commit 0fbe4e7), which every later run's does
LATE_BEFORE_PRUNE_STAGES = ("resnet20-ppq-jpeg-stage80", "resnet20-ppq-jpeg-stage80-seed1",
                            "resnet20-ppq-jpeg-stage80-seed2", "resnet20-ppq-jpeg-stage120")


def after_weight_stats(r: dict) -> bool:
    """Whether the run's GPU evaluation used the device-independent weight statistics (sw/quant.weight_stats)."""
    return r.get("prune_stages") is not None or Path(r["source"]).stem in LATE_BEFORE_PRUNE_STAGES


def float_acc(run: dict) -> float | None:
    """Test accuracy at the end of the float phase (ppq), from the run's history."""
    accs = [h["test_acc"] for h in run.get("history", []) if h.get("phase") == "float" and "test_acc" in h]
    return accs[-1] if accs else None


def out_dir(command: str | None) -> str | None:
    """The --out folder of a run's command (None without one)."""
    m = re.search(r"--out (\S+)", command or "")
    return m.group(1).rstrip("/") if m else None


def recipe(command: str | None) -> str | None:
    """configs/<run>.toml where the run (named by its command's --out folder) has a recipe file."""
    out = out_dir(command)
    for f in (RECIPES / f"{Path(out).name}.toml", RECIPES / "variants" / f"{Path(out).name}.toml") \
            if out else ():
        if f.is_file():
            return str(f)
    return None


def row(run: dict, path) -> dict:
    cfg = run.get("config", {})
    sched = schedule(cfg)
    if run.get("float_init"):
        sched = "(--float-init)" + sched[sched.index(" +"):]
    if cfg.get("qat_teacher", "float") != "float":
        sched += f" (QAT teacher: {cfg['qat_teacher']})"
    if cfg.get("qat_wd") is not None:
        sched += f" (QAT wd {cfg['qat_wd']:g})"
    if cfg.get("cutout"):
        sched += f" (cutout {cfg['cutout']})"
    if cfg.get("ema"):  # the final model is the average; the live one's accuracy beside it
        live, live_int = run.get("accuracy_live_fp32"), run.get("accuracy_live_int")
        sched += f" (weight average {cfg['ema']:g}" + \
            (f"; live model {100 * live:.2f}% fake-quant" if live is not None else "") + \
            (f", {100 * live_int:.2f}% integer" if live_int is not None else "") + ")"
    extra = {"schedule": sched, "distill": cfg.get("distill", 0.0), "teacher": run.get("teacher"),
             "float_init": run.get("float_init"), "prune_stages": cfg.get("prune_stages"),
             "float_phase_acc": float_acc(run), "source": str(path),
             "epochs": {k: cfg.get(k) for k in ("epochs", "stage_epochs", "qat_epochs")},
             "tf32_eval": run.get("eval_precision") is None,
             "fp64_eval": "accuracy_fp32" in run, "recipe": recipe(run.get("command")),
             "integer_from": run.get("integer_from")}
    return {**{k: run.get(k) for k in KEYS}, **extra}


def float_init_run(path: str) -> str:
    """The --out folder of the run whose float phase a --float-init file is: runs/NAME/float.pt, or its
    committed copy bench/models/NAME-float.pt (runs/NAME)."""
    p = Path(path)
    if p.parent == Path("bench/models") and p.name.endswith("-float.pt"):
        return f"runs/{p.name[:-len('-float.pt')]}"
    return str(p.parent)


def resolve_float_init(rows: list[dict], pool: list[dict]) -> None:
    """A ppq run started from another committed run's float phase (``--float-init runs/NAME/float.pt``, or
    that file committed as ``bench/models/NAME-float.pt``) has that float model: it takes that run's float
    accuracy and float epochs (``float_from``: that run's file), so its drop and schedule are measured as if
    it had trained the float phase itself. A float-init that names no committed run (or one without a float
    phase) stays unresolved: no float %, not full."""
    by_out = {out_dir(r.get("command")): r for r in pool}
    for r in rows:
        src = by_out.get(float_init_run(r["float_init"])) if r.get("float_init") else None
        if src is None or src.get("float_phase_acc") is None or src is r:
            continue
        r["float_phase_acc"], r["float_from"] = src["float_phase_acc"], src["source"]
        r["epochs"] = {**r["epochs"], "epochs": src["epochs"]["epochs"]}
        r["schedule"] = r["schedule"].replace(
            "(--float-init)", f"{src['epochs']['epochs']} (float phase of {Path(float_init_run(r['float_init'])).name})")


FULL = {"ppq": {"epochs": 200, "stage_epochs": 40, "qat_epochs": 120}, "spq": {"epochs": 200}}  # the paper's schedules
DROP_MARGIN = 0.3  # a row's drop may exceed the paper's by this many points (issue 22)
REDUCTION_MARGIN = 0.05  # size and BOPs reductions within this of the paper's


def targets(rows: list[dict]) -> list[dict]:
    """Per paper row: full schedule?, the drop from its own float model against the paper's + DROP_MARGIN,
    size / BOPs reductions against the paper's. An spq run has no float phase: its float model is the same
    model's ppq row's float phase (200 epochs on the same data), as the paper's baseline serves both. A drop
    counts as met only against a float model trained on the full float schedule (``float_full``): a short
    float phase would flatter the row."""
    ppq = {r["model"]: r for r in rows if r["method"] == "ppq" and not r.get("status")}
    out = []
    for r in rows:
        p = PAPER.get(r["model"])
        if p is None:
            continue
        paper_drop = round(p[0] - {"ppq": p[1], "spq": p[2]}[r["method"]], 2)
        t = {"model": r["model"], "method": r["method"], "paper_drop": paper_drop,
             "drop_target": round(paper_drop + DROP_MARGIN, 2)}
        if r.get("status"):
            out.append({**t, "status": r["status"]})
            continue
        t["full_schedule"] = all((r["epochs"].get(k) or 0) >= v for k, v in FULL[r["method"]].items()) \
            and (not r.get("float_init") or bool(r.get("float_from")))
        src = r if r["method"] == "ppq" else ppq.get(r["model"], {})
        fl = src.get("float_phase_acc")
        t["float_acc"] = fl
        t["float_full"] = ((src.get("epochs") or {}).get("epochs") or 0) >= FULL["ppq"]["epochs"]
        t["drop"] = round(100 * (fl - r["accuracy_int"]), 2) if fl is not None else None
        t["drop_met"] = t["drop"] is not None and t["drop"] <= t["drop_target"] + 1e-9 and t["float_full"]
        t["reductions_met"] = abs(r["size_reduction"] - p[3]) <= REDUCTION_MARGIN + 1e-9 and \
            abs(r["bops_reduction"] - p[4]) <= REDUCTION_MARGIN + 1e-9
        out.append(t)
    return out


def reduction_notes(goals: list[dict]) -> list[str]:
    """Why a row's reductions miss the paper's, from bench/results/paper-reductions.json (the nearest pair
    any kept-filter count gives under COUNTING_RULES), for the models whose reductions miss."""
    path = Path("bench/results/paper-reductions.json")
    missed = {t["model"] for t in goals if t.get("reductions_met") is False}
    if not missed or not path.exists():
        return []
    out = []
    for r in json.loads(path.read_text())["rows"]:
        if r["model"] not in missed:
            continue
        n, p = r["nearest"], r["paper"]
        kept = "/".join(str(k) for k in n["kept"].values())
        out.append(f"- {r['model']}: no pruned filter count reproduces the paper's {p['size_reduction']}x size / "
                   f"{p['bops_reduction']}x BOPs: the nearest pair over kept filters per stage width (ours +- 3), "
                   f"the stem pruned or not and the fc input at 4 or 8 bits is {n['size_reduction']:.2f}x / "
                   f"{n['bops_reduction']:.2f}x (kept {kept}), {n['max_error']:.2f}x off; ours is "
                   f"{r['ours']['size_reduction']:.2f}x / {r['ours']['bops_reduction']:.2f}x. The same rules give "
                   f"the paper's other ResNet rows within 0.05x (`{path.as_posix()}`, `python bench/paper_reductions.py`).")
    return ["", "Reductions that miss:", "", *out] if out else []


def stopped(model: str, method: str) -> str | None:
    """'stopped at <phase> <epoch>/<n>' from the run's log, if it was started and has no result."""
    short = model.replace("resnet", "r")
    log = LOGS / f"{short}-{method}.log"
    if not log.exists():
        return None
    last = [m for m in re.finditer(r"\] (\w+) (\d+)/(\d+) ", log.read_text())]
    return f"stopped at {last[-1][1]} epoch {last[-1][2]}/{last[-1][3]}" if last else "started, no epoch finished"


def seed_groups(rows: list[dict]) -> list[list[tuple[int, dict]]]:
    """Runs whose commands differ only in --seed: [(seed, row), ...] per command, seeds ascending. A run whose
    --float-init resolved to a committed run's float phase (``float_from``) counts that run's command (less
    its --seed) in place of the file's path, so runs from the float phases of seeds 1 and 2 of one recipe
    group as seeds 1 and 2."""
    by_source = {r.get("source"): r for r in rows}

    def key(r: dict) -> str:
        k = re.sub(r" --seed \d+", "", re.sub(r" --out \S+", "", r["command"]))
        src = by_source.get(r.get("float_from"))
        if src is not None and src.get("command") and src is not r:
            k = re.sub(r" --float-init \S+", "", k) + " | float phase of: " + key(src)
        return k

    groups: dict[str, list[tuple[int, dict]]] = {}
    for r in rows:
        cmd = r.get("command")
        if not cmd or not all(isinstance(r.get(k), (int, float)) for k in ("accuracy", "accuracy_int")):
            continue
        m = re.search(r" --seed (\d+)", cmd)
        groups.setdefault(key(r), []).append((int(m[1]) if m else 0, r))
    return [sorted(g, key=lambda t: t[0]) for g in groups.values() if len(g) > 1]


def with_recheck(run: dict, rechecked: dict[str, tuple[dict, str]]) -> dict:
    """A run that ended without an integer model (``accuracy_int`` null: a ``--residual-bits 8`` run trained
    before the 8-bit stream lowered) whose committed model, bench/models/NAME.pt (NAME: its --out folder), was
    re-checked on the CPU (bench/recheck_run.py): that re-check's fake-quant and integer accuracy, agreement,
    size and BOPs reductions, the file named in ``integer_from``. Any other run as it is."""
    out = out_dir(run.get("command"))
    rc = rechecked.get(f"bench/models/{Path(out).name}.pt") if out else None
    if isinstance(run.get("accuracy_int"), (int, float)) or rc is None or "size_reduction" not in rc[0]:
        return run
    r, path = rc
    return {**run, **{k: r[k] for k in ("accuracy", "accuracy_int", "agreement", "size_reduction", "bops_reduction")},
            "accuracy_fp32": None, "integer_from": path}


def paper_runs(paths: list[str], rechecked: dict | None = None) -> list[tuple[dict, str]]:
    """(run, path) of the runs that can be rows of the paper's table: one without an integer accuracy (a
    training experiment such as ``--residual-bits``, whose reason is its ``integer_note``, or a float run)
    is skipped with a message on stderr."""
    out = []
    for p in paths:
        run = with_recheck(json.loads(Path(p).read_text()), rechecked or {})
        if not isinstance(run.get("accuracy_int"), (int, float)):
            why = run.get("integer_note") or run.get("integer_error") or f"method {run.get('method')}"
            print(f"results_table: {p} skipped: no integer accuracy ({why})", file=sys.stderr)
            continue
        out.append((run, p))
    return out


def split_args(args: list[str], flags: tuple[str, ...]) -> dict[str, list[str]]:
    """Positional paths, then the paths after each flag: {"": [...], "--variants": [...], ...}."""
    out, key = {"": [], **{f: [] for f in flags}}, ""
    for a in args:
        if a in flags:
            key = a
        else:
            out[key].append(a)
    return out


def main(args: list[str]) -> None:
    a = split_args(args, ("--variants", "--recheck"))
    # sorted: the table is the same whatever order the shell expands the globs in
    paths, variants, rechecks = (sorted(a[k]) for k in ("", "--variants", "--recheck"))
    rechecked = {r["model_file"]: (r, p) for p in rechecks for r in json.loads(Path(p).read_text())["rows"]}
    rows = [row(run, p) for run, p in paper_runs(paths, rechecked)]
    vrows = [row(with_recheck(json.loads(Path(p).read_text()), rechecked), p) for p in variants]
    resolve_float_init(rows + vrows, rows + vrows)
    have = {(r["model"], r["method"]) for r in rows}
    for model in PAPER:
        for method in ("ppq", "spq"):
            if (model, method) not in have:
                rows.append({"model": model, "method": method, "dataset": None,
                             "status": stopped(model, method) or "not run"})
    rows = ordered(rows)
    goals = targets(rows)
    Path("docs/results.json").write_text(json.dumps({"rows": rows, "variants": vrows, "paper": PAPER,
                                                     "targets": goals}, indent=1) + "\n")

    def pct(v):
        return f"{100 * v:.2f}" if isinstance(v, (int, float)) else "—"

    def x(v):
        return f"{v:.2f}x" if isinstance(v, (int, float)) else "—"

    def agree(r):
        return f"{r['agreement']:.4f}" if isinstance(r.get("agreement"), (int, float)) else "—"

    lines = ["# CIFAR-10 results (generated by bench/results_table.py from docs/cifar-runs/*.json)", "",
             "Ours: the JPEG copy of CIFAR-10 (cifar10-jpeg), W4/A4 APoT, GM pruning 30%, first/last layer "
             "8-bit. Paper: PNG CIFAR-10 (not comparable in absolute accuracy; the JPEG copy costs a few "
             "points: ResNet-20 float 88.83% here after 200 epochs vs 92.61% in the paper).", "",
             "Schedule: epochs of each phase (ppq: float + 2 pruning stages + QAT). Distill: the weight of the "
             "distillation loss (0: the paper's plain cross-entropy); its teacher is the ppq run's own float "
             "phase, or the checkpoint named in the command. Float %: the ppq run's float model, before pruning "
             "(a run started with --float-init from another run's float phase: that run's). "
             "Train s: training time on the GPU, summed over resumed parts; the runs shared one GPU (MPS) with "
             "up to eight others, so these are not speed figures (bench/train_speed.py is). Recipe: the file "
             "`apotflow train --config FILE` runs the row's command from (docs/cli.md).",
             "",
             "| model | method | ours fake-quant % | ours integer % | float % | paper % | schedule | distill | "
             "size red. (ours / paper) | BOPs red. (ours / paper) | agreement | wall s | recipe | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    header = lines[-2:]  # the runs' table header, repeated over the variants

    def line(r: dict) -> str:
        p = PAPER.get(PAPER_ROW.get(r["model"], r["model"]), (None,) * 5)  # a model outside the paper: —
        paper_acc = {"ppq": p[1], "spq": p[2]}.get(r["method"]) or "—"
        p = p[:3] + tuple(x(v) for v in p[3:])
        if r.get("status"):
            return (f"| {r['model']} | {r['method']} | {r['status']} | — | — | {paper_acc} | — | — | — / {p[3]} | "
                    f"— / {p[4]} | — | — | — | — |")
        wall = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "—"
        mark = "§" if r.get("integer_from") else "†" if r["tf32_eval"] else ("" if r.get("fp64_eval") else "‡")
        return (f"| {r['model']} | {r['method']} | {pct(r['accuracy'])}{mark} | {pct(r['accuracy_int'])} | "
                f"{pct(r['float_phase_acc'])} | {paper_acc} | {r['schedule']} | {r['distill']} | "
                f"{x(r['size_reduction'])} / {p[3]} | {x(r['bops_reduction'])} / {p[4]} | {agree(r)} | {wall} | "
                f"{'`' + r['recipe'] + '`' if r.get('recipe') else '—'} | `{r['command']}` |")

    lines += [line(r) for r in rows]
    lines += ["", f"Targets: each row on the paper's full schedule (ppq {FULL['ppq']['epochs']} + 2x"
              f"{FULL['ppq']['stage_epochs']} + {FULL['ppq']['qat_epochs']}, spq {FULL['spq']['epochs']} epochs), its "
              f"drop from its own float model (integer accuracy; an spq row's float model is the same model's ppq "
              f"float phase, and it counts only where that float phase ran the full {FULL['ppq']['epochs']} epochs) at most "
              f"the paper's drop + {DROP_MARGIN} points, size and BOPs reductions within "
              f"{REDUCTION_MARGIN}x of the paper's.", "",
              "| model | method | full schedule | float % | drop (points) | paper drop | target | drop met | "
              f"reductions within {REDUCTION_MARGIN}x |", "|---|---|---|---|---|---|---|---|---|"]

    def yes(v):
        return "—" if v is None else ("yes" if v else "**no**")

    for t in goals:
        if t.get("status"):
            lines.append(f"| {t['model']} | {t['method']} | {t['status']} | — | — | {t['paper_drop']:.2f} | "
                         f"{t['drop_target']:.2f} | — | — |")
            continue
        miss = "" if t["drop_met"] or t["drop"] is None else f" (by {t['drop'] - t['drop_target']:.2f})" \
            if t["float_full"] else " (float reference: a short float phase)"
        lines.append(f"| {t['model']} | {t['method']} | {yes(t['full_schedule'])} | {pct(t['float_acc'])} | "
                     f"{'—' if t['drop'] is None else format(t['drop'], '.2f')} | {t['paper_drop']:.2f} | "
                     f"{t['drop_target']:.2f} | {yes(t['drop_met'] if t['drop'] is not None else None)}{miss} | "
                     f"{yes(t['reductions_met'])} |")
    met = [t for t in goals if t.get("full_schedule") and t.get("drop_met") and t.get("reductions_met")]
    lines += ["", f"{len(met)} of {len(goals)} rows meet all three."]
    lines += reduction_notes(goals)
    if vrows:
        lines += ["", "Variants tried (same table layout; not the rows above):", "", *header,
                  *[line(r) for r in vrows]]
    notes = [r for r in rows + vrows if r.get("note")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {Path(r['source']).name}: {r['note']}; recorded command: "
                                       f"`{r['command_recorded']}`" for r in notes]
    seeds = seed_groups(rows + vrows)
    if seeds:
        lines += ["", "The same command with other seeds (`--seed N`; seed 0 when absent):", "",
                  "| model | method | seeds | fake-quant % (mean; min .. max) | integer % (mean; min .. max) | "
                  "max abs(integer - fake-quant) |", "|---|---|---|---|---|---|"]
        for g in seeds:
            fq, it = [r["accuracy"] for _, r in g], [r["accuracy_int"] for _, r in g]
            gap = max(abs(a - b) for a, b in zip(fq, it))
            lines.append(f"| {g[0][1]['model']} | {g[0][1]['method']} | {', '.join(str(sd) for sd, _ in g)} | "
                         f"{pct(sum(fq) / len(fq))}; {pct(min(fq))} .. {pct(max(fq))} | "
                         f"{pct(sum(it) / len(it))}; {pct(min(it))} .. {pct(max(it))} | {100 * gap:.2f} |")
    if any(not r.get("tf32_eval") and not r.get("fp64_eval") for r in rows + vrows if not r.get("status")):
        lines += ["", "‡: fake-quant accuracy evaluated in float32 without TF32 (before the float64 check of "
                  "sw/quant.exact_copy): an activation within ~1e-7 of a decision point can take the other code "
                  "(docs/contract.md), so this column can differ from the integer one by a few tenths on a deep or "
                  "distilled net; the integer column is exact. Unmarked rows: the float64 check."]
    if any(r.get("integer_from") for r in rows + vrows):
        lines += ["", "§: the run ended without an integer model (trained with --residual-bits 8 before the 8-bit "
                  "residual stream lowered, docs/contract.md); its fake-quant and integer columns, agreement and "
                  "reductions are the CPU re-check of its committed model with the current code (the table of "
                  "re-checks below), which lowers it: conv_a quantizes the stream's 8-bit value, where its "
                  "training quantized the block input directly."]
    if any(r.get("tf32_eval") for r in rows + vrows):
        lines += ["", "†: the fake-quant accuracy of this run was evaluated with cuDNN's TF32 convolutions (before "
                  "sw/fasttrain.exact_fp32), which moves some activations across quantizer thresholds; the "
                  "integer column is exact."]
    late = [Path(r["source"]).stem for r in rows + vrows if not r.get("status") and after_weight_stats(r)]
    lines += ["", f"Every run above but {', '.join(late) or 'none'} (trained after commit 7330819) was "
              "evaluated on the GPU before the weight statistics were made "
              "device-independent (sw/quant.weight_stats): its fake-quant column is the accuracy of weight codes "
              "from the GPU's float32 reductions, which can differ from the CPU export's by a flipped code "
              "(docs/contract.md; this, not activation precision, is what pushes agreement below ~0.99). The "
              "integer column is the exported model's, exact."]
    recheck_rows = [(json.loads(Path(p).read_text()), p) for p in rechecks]
    if recheck_rows:
        lines += ["", "Re-checked on the CPU with the current code (fake-quant float64 copy vs the integer model, "
                  "every test image):", "", "| model file | fake-quant % | integer % | agreement | git | source |",
                  "|---|---|---|---|---|---|"]
        for rc, p in recheck_rows:
            for r in rc["rows"]:
                lines.append(f"| {r['model_file']} | {pct(r['accuracy'])} | {pct(r['accuracy_int'])} | "
                             f"{r['agreement']:.4f} | {r['git_rev']} | `{rc['command']}` ({p}) |")
    rules = next((r["counting_rules"] for r in rows if r.get("counting_rules")), "")
    devs = sorted({r["device"] for r in rows if r.get("device")})
    lines += ["", f"Device: {', '.join(devs) or '—'}.", "", f"Counting rules: {rules}", ""]
    Path("docs/results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
