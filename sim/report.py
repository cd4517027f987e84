"""`apotflow demo`: the whole chain on the digits net with fixed seeds, and its report (JSON + Markdown)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from apotflow.hw.config import AcceleratorConfig

from . import flow


def demo(out: Path, images: int = 0, seed: int = 0, lanes: int = 16, targets=("ice40-up5k", "ecp5-25k"),
         log=print, reuse: bool = False) -> dict:
    from apotflow.hw.fit import fitted_config
    from apotflow.sw import export

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    steps = {}

    if reuse and (out / "train.json").is_file() and (out / "model.apot").is_file():
        log(f"[1/4] reusing the trained model in {out} (--reuse)")
        tr = json.loads((out / "train.json").read_text())
    else:
        log("[1/4] training the digits net (PPQ: float, GM pruning 15% -> 30%, APoT W4/A4 QAT) ...")
        tr = flow.train_and_export(out, seed=seed, method="ppq", log=log)
    steps["train_export"] = time.perf_counter() - t0
    net = export.load(out / "model.apot")  # what the hardware sees: the file, read back and validated
    cfg = fitted_config(net, AcceleratorConfig(lanes=lanes))

    log("[2/4] generating the RTL ...")
    t = time.perf_counter()
    manifest = flow.write_rtl(net, cfg, out / "rtl", log=log)
    steps["rtl"] = time.perf_counter() - t

    log("[3/4] bit-exact co-simulation on Verilator ...")
    t = time.perf_counter()
    cos = flow.cosim_model(net, cfg, out / "cosim", images, seed=seed, log=log)
    steps["cosim"] = time.perf_counter() - t

    log("[4/4] synthesis ...")
    resources = {}
    for target in [t for t in targets if t]:
        t = time.perf_counter()
        resources[target] = flow.synth_model(net, cfg, out, target, log=log)
        steps[f"synth_{target}"] = time.perf_counter() - t

    report = {
        "model": "digits", "dataset": f"sklearn-digits (test split: 25%, stratified, seed {seed})",
        "method": tr["method"], "seed": seed,
        "accuracy_float": tr["accuracy_float"], "accuracy_int": tr["accuracy_int"], "agreement": tr["agreement"],
        "accuracy_fp32_before_quant": tr["accuracy_fp32_before_quant"], "test_images": tr["test_images"],
        "bitexact_images": cos["bitexact_images"], "bitexact_mismatches": cos["mismatches"],
        "cosim_images": cos["images"], "first_mismatch": cos["first_mismatch"],
        "cycles_total": cos["cycles_total"], "cycles_ideal": cos["cycles_ideal"], "cycles_ratio": cos["cycles_ratio"],
        "cycles_per_layer": cos["per_layer"],
        "bops": tr["bops"], "bops_fp32": tr["bops_fp32"], "bops_reduction": tr["bops_reduction"],
        "model_size_bits": tr["model_size_bits"], "size_fp32_bits": tr["size_fp32_bits"],
        "size_reduction": tr["size_reduction"], "counting_rules": tr["counting_rules"],
        "cycle_rule": "cycles_total: measured on Verilator for one image, start to done; cycles_ideal: MACs with "
                      "a non-zero weight / lanes (conv and fc layers; pooling and the residual add are extra work)",
        "resources": resources, "config": cfg.to_dict(), "versions": manifest["versions"],
        "git_revision": manifest["git_revision"], "seconds": steps, "sim_seconds": cos["sim_seconds"],
        "command": "make demo",
    }
    flow._write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return report


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def render_markdown(r: dict) -> str:
    ok = "PASS" if r["bitexact_mismatches"] == 0 else "FAIL"
    lines = [
        "# apotflow demo report", "",
        f"Digits net, {r['method'].upper()} (30% GM filter pruning, APoT W4/A4, 8-bit first/last layers), "
        f"seed {r['seed']}, git {r['git_revision']}.", "",
        f"## Accuracy (test split, {r['test_images']} images)", "",
        "| model | top-1 |", "|---|---|",
        f"| float, pruned (before quantization) | {_fmt(r['accuracy_fp32_before_quant'])} |",
        f"| fake-quant (training model) | {r['accuracy_float']:.4f} |",
        f"| integer golden model | {r['accuracy_int']:.4f} |",
        f"| agreement fake-quant vs integer | {r['agreement']:.4f} |", "",
        f"## Bit-exact co-simulation: {ok}", "",
        f"{r['bitexact_images']} of {r['cosim_images']} images equal the golden model in every layer "
        f"(every activation word and every logit compared as integers on Verilator).", "",
        f"## Cycles (one image, {r['config']['lanes']} lanes)", "",
        "| layer | measured | ideal | ratio |", "|---|---|---|---|",
    ]
    for pl in r["cycles_per_layer"]:
        ratio = f"{pl['cycles'] / pl['cycles_ideal']:.2f}" if pl["cycles_ideal"] else "-"
        lines.append(f"| {pl['layer']} ({pl['kind']}) | {pl['cycles']} | {pl['cycles_ideal']:.1f} | {ratio} |")
    lines += [f"| **total** | **{r['cycles_total']}** | **{r['cycles_ideal']:.1f}** | **{r['cycles_ratio']:.3f}** |",
              "", r["cycle_rule"] + ".", "",
              "## Size and BOPs", "",
              f"- model size: {r['model_size_bits']} bits ({r['size_reduction']:.2f}x smaller than FP32)",
              f"- BOPs: {r['bops']} ({r['bops_reduction']:.2f}x fewer than FP32)",
              f"- rules: {r['counting_rules']}", "",
              "## FPGA resources (Yosys synthesis)", "",
              "| target | LUT | FF | carry | BRAM | DSP | fits |", "|---|---|---|---|---|---|---|"]
    for t, res in r["resources"].items():
        over = res.get("over") or {}
        fits = "yes" if res.get("fits") else "no: " + ", ".join(
            f"{k} {v['need']} of {v['have']}" for k, v in over.items() if isinstance(v, dict)) if over else "-"
        lines.append(f"| {t} | {res.get('lut')} | {res.get('ff')} | {res.get('carry')} | {res.get('bram')} | "
                     f"{res.get('dsp')} | {fits} |")
    lines += ["", "Fmax, place and route and bitstreams: `apotflow synth --target ... --out DIR` (docs/resources.md)."]
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in r["seconds"].items()]
    lines += ["", "Configuration: `" + ", ".join(f"{k}={v}" for k, v in r["config"].items()) + "`", ""]
    return "\n".join(lines)
