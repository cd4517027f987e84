"""The report of one build: what a model is, how accurate, how fast and how large on which FPGA.

:func:`build_report` gathers it from the exported model, its one compiled Program and whatever of the
flow ran (the training run's JSON, the co-simulation summary, synthesis results) into report.json's
dict; :func:`write_report` writes report.json, report.md and the self-contained report.html
(sim/report_html.py). Keys are stable (``REPORT_VERSION``); a part that did not run is ``null``.
"""

from __future__ import annotations

import json
from pathlib import Path

from apotflow.hw.compile import Program
from apotflow.hw.cycles import TIMING_RULES, timing
from apotflow.hw.flows.devices import LABELS
from apotflow.sw.intnet import IntNet, size_and_bops

from .flow import git_revision, versions, write_json, write_text_atomic

REPORT_VERSION = 1
CYCLE_RULES = ("measured: Verilator cycles of one image from start to done (the host's loading of the input and "
               "reading of the outputs not included); modelled: hw/cycles.py's exact model of the RTL; ideal: MACs "
               "with a non-zero weight / lanes (the bound of a perfectly busy array); lane utilisation = ideal / "
               "measured (modelled where not measured): the share of lane-cycles doing a non-zero MAC (none for a "
               "pooling layer, which has no MACs; the total counts its cycles as work beyond the bound)")
RESOURCE_KEYS = ("lut", "ff", "carry", "bram", "spram", "dsp")


def _accuracy(train: dict | None) -> dict:
    """Accuracies from a digits train.json or a CIFAR result.json (None where the run did not give one)."""
    t = train or {}
    return {
        "float": t.get("accuracy_fp32_before_quant", t.get("pre_qat_float_acc")),
        "fake_quant": t.get("accuracy", t.get("accuracy_float")),  # accuracy_float: digits runs before s16
        "integer": t.get("accuracy_int"),
        "agreement": t.get("agreement"),
        "test_images": t.get("test_images"),
        "rules": "float: the pruned float model before quantization; fake-quant: the trained model as PyTorch "
                 "runs it; integer: the exported integer network (the golden model, which the hardware equals "
                 "bit for bit); agreement: share of test images where fake-quant and integer predict the same class",
    }


def _layers(prog: Program, cosim: dict | None) -> list[dict]:
    from apotflow.hw.cycles import layer_cycles

    modelled = layer_cycles(prog.config, prog.images)
    measured = {pl["layer"]: pl["cycles"] for pl in (cosim or {}).get("per_layer", [])}
    rows = []
    for li, model in zip(prog.layers, modelled):
        ideal = li.macs_nonzero / prog.config.lanes
        meas = measured.get(li.op)
        rows.append({"layer": li.op, "kind": li.kind, "channels": li.n_ch, "pixels": li.npix, "macs": li.macs,
                     "macs_nonzero": li.macs_nonzero, "entries": li.entries, "cycles_measured": meas,
                     "cycles_model": int(model), "cycles_ideal": ideal,
                     "lane_utilisation": ideal / (meas or model) if ideal and (meas or model) else None})
    return rows


def _target(res: dict, cycles: int) -> dict:
    from apotflow.hw.flows import devices

    fmax = res.get("fmax_mhz")
    cycles = res.get("cycles_per_image") or cycles  # a target built with another configuration: its own
    dev = devices.device(res["target"]) if res["target"] in devices.DEVICES else {}
    return {
        "device": dev.get("name"),
        "capacity": {k: dev[k] for k in devices.RESOURCES if k in dev} or None,
        "synthesis": {k: res.get(k) for k in RESOURCE_KEYS},
        "estimate": {k: (res.get("estimate") or {}).get(k) for k in ("lut", "ff", "bram", "dsp")}
        if res.get("estimate") else None,
        "fits": res.get("fits"), "over": res.get("over") or None,
        **{k: v for k, v in timing(cycles, fmax).items() if k != "cycles_per_image"},
        "bitstream": res.get("bitstream"), "lane_kind": res.get("lane_kind", "shift"),
        "lanes": (res.get("config") or {}).get("lanes"),
        "notes": ([f"configuration: {res['choice']}"] if res.get("choice") else []) + (res.get("notes") or []),
        "synth_command": res.get("synth_command"),
        "choice": res.get("choice"), "skipped": bool(res.get("skipped")),
    }


def build_report(net: IntNet, prog: Program, *, model_path=None, cosim: dict | None = None,
                 synth: dict[str, dict] | None = None, train: dict | None = None, seconds: dict | None = None,
                 command: str | None = None) -> dict:
    """report.json's dict. ``synth``: target -> synth.json dict; ``train``: train.json / result.json dict."""
    meta = {**{k: (train or {}).get(k) for k in ("model", "method", "dataset", "seed")},
            **{k: v for k, v in net.meta.items() if v is not None}}  # the model file's own words win
    layers = _layers(prog, cosim)
    measured = cosim.get("cycles_total") if cosim else None
    modelled = sum(r["cycles_model"] for r in layers)
    cycles = measured or modelled
    sb = size_and_bops(net)
    bitexact = {"status": "not run", "images": 0, "bitexact_images": 0, "mismatches": 0, "first_mismatch": None}
    if cosim:
        bitexact = {"status": "pass" if cosim["mismatches"] == 0 else "fail", "images": cosim["images"],
                    "bitexact_images": cosim["bitexact_images"], "mismatches": cosim["mismatches"],
                    "first_mismatch": cosim.get("first_mismatch")}
    return {
        "report_version": REPORT_VERSION,
        "model": {"name": meta.get("model"), "file": str(model_path) if model_path else None,
                  "method": meta.get("method"), "dataset": meta.get("dataset"), "seed": meta.get("seed"),
                  "random_weights": bool(meta.get("random_weights")), "layers": len(prog.layers),
                  "input": list(net.tensors[net.input].shape)},
        "accuracy": _accuracy(train),
        "size": {"bits": sb["model_size_bits"], "fp32_bits": sb["size_fp32_bits"], "reduction": sb["size_reduction"],
                 "bops": sb["bops"], "bops_fp32": sb["bops_fp32"], "bops_reduction": sb["bops_reduction"],
                 "rules": sb["counting_rules"]},
        "cycles": {"measured": measured, "model": modelled, "ideal": prog.stats["cycles_ideal"],
                   "ratio": cycles / prog.stats["cycles_ideal"] if prog.stats["cycles_ideal"] else None,
                   "lane_utilisation": prog.stats["cycles_ideal"] / cycles if cycles else None,
                   "model_equals_measured": (measured == modelled) if measured is not None else None,
                   "rules": CYCLE_RULES},
        "layers": layers,
        "bitexact": bitexact,
        "targets": {t: _target(res, cycles) for t, res in (synth or {}).items()},
        "timing_rules": TIMING_RULES,
        "config": prog.config.to_dict(),
        "memory_words": {"act": prog.act_words, "wgt": len(prog.images.wgt), "rq": len(prog.images.rq),
                         "prog": len(prog.images.prog)},
        "seconds": seconds,
        "command": command,
        "git_revision": git_revision(),
        "versions": versions(),
    }


def _f(v, fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def render_markdown(r: dict) -> str:
    m, a, s, c, b = r["model"], r["accuracy"], r["size"], r["cycles"], r["bitexact"]
    name = m["name"] or "model"
    lines = [f"# apotflow report: {name}", "",
             f"{name}, {(m['method'] or 'n/a').upper()}, {m['dataset'] or 'no data set'}"
             f"{', random weights' if m['random_weights'] else ''}; {m['layers']} layers; "
             f"{r['config']['lanes']} lanes; git {r['git_revision']}.", "",
             "## Accuracy" + (f" ({a['test_images']} test images)" if a["test_images"] else ""), "",
             "| model | top-1 |", "|---|---|",
             f"| float, pruned (before quantization) | {_f(a['float'])} |",
             f"| fake-quant (training model) | {_f(a['fake_quant'])} |",
             f"| integer golden model | {_f(a['integer'])} |",
             f"| agreement fake-quant vs integer | {_f(a['agreement'])} |", "", a["rules"] + ".", "",
             f"## Bit-exact co-simulation: {b['status'].upper()}", ""]
    if b["status"] == "not run":
        lines.append("Not run (`apotflow cosim --model M --out DIR`, then `apotflow report --cosim DIR`).")
    else:
        lines.append(f"{b['bitexact_images']} of {b['images']} images equal the golden model in every layer "
                     "(every activation word and every logit compared as integers on Verilator).")
    lines += ["", "## Size and BOPs", "",
              f"- model size: {s['bits']} bits ({s['reduction']:.2f}x smaller than FP32)",
              f"- BOPs: {s['bops']} ({s['bops_reduction']:.2f}x fewer than FP32)",
              f"- rules: {s['rules']}", "",
              f"## Cycles per image ({r['config']['lanes']} lanes)", "",
              "| layer | kind | measured | modelled | ideal | lane utilisation |", "|---|---|---|---|---|---|"]
    for row in r["layers"]:
        meas = row["cycles_measured"] if row["cycles_measured"] is not None else "-"
        lines.append(f"| {row['layer']} | {row['kind']} | {meas} | {row['cycles_model']} | "
                     f"{row['cycles_ideal']:.1f} | {_f(row['lane_utilisation'], '.1%')} |")
    lines += [f"| **total** | | **{c['measured'] if c['measured'] is not None else '-'}** | **{c['model']}** | "
              f"**{c['ideal']:.1f}** | **{_f(c['lane_utilisation'], '.1%')}** |", "", c["rules"] + ".", ""]
    lines += ["## FPGA resources, Fmax and throughput", ""]
    if not r["targets"]:
        lines.append("No synthesis (`apotflow synth --model M --target T --out DIR`, then `--synth DIR`).")
    else:
        lines += ["| target | lanes | LUT (est.) | FF (est.) | BRAM (est.) | DSP | fits | Fmax MHz | latency µs | images/s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for t, x in r["targets"].items():
            sy, es = x["synthesis"], x["estimate"] or {}
            fits = "yes" if x["fits"] else "no" + (": " + ", ".join(
                f"{LABELS.get(k, k)} {v['need']} of {v['have']}" for k, v in (x["over"] or {}).items() if isinstance(v, dict))
                if x["over"] else "")
            lines.append(f"| {t} | {_f(x['lanes'], 'd')} | {_f(sy['lut'], 'd')} ({es.get('lut', '-')}) | {_f(sy['ff'], 'd')} "
                         f"({es.get('ff', '-')}) | {_f(sy['bram'], 'd')} ({es.get('bram', '-')}) | {_f(sy['dsp'], 'd')} | {fits} | {_f(x['fmax_mhz'], '.1f')} | "
                         f"{_f(x['latency_us'], '.1f')} | {_f(x['images_per_s'], ',.0f')} |")
        lines += ["", "Synthesis counts from Yosys; (est.) hw/estimate.py's analytical estimate of the same design. "
                  + r["timing_rules"] + "."]
        lines += [""] + [f"- {t}: {n}" for t, x in r["targets"].items() for n in x["notes"]]
    if r["seconds"]:
        lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in r["seconds"].items()]
    lines += ["", "## Configuration", "", "`" + ", ".join(f"{k}={v}" for k, v in r["config"].items()) + "`", ""]
    if r["command"]:
        lines += [f"Made by `{r['command']}`.", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> dict[str, Path]:
    """report.json, report.md and report.html in ``out``; returns their paths."""
    from .report_html import render_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    html = render_html(report)  # first: a plotting failure leaves no half-set of files
    write_json(paths["json"], report)
    write_text_atomic(paths["md"], render_markdown(report))
    write_text_atomic(paths["html"], html)
    return paths


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())
