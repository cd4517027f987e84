"""report.json -> one self-contained HTML page: tables, and the plots embedded as base64 PNG (matplotlib).

Nothing is fetched when the page is opened (no scripts, no web fonts, no external images), so the file
can be mailed or archived as it is.
"""

from __future__ import annotations

import base64
import html
import io

COLORS = {"measured": "#1f77b4", "modelled": "#ff7f0e", "ideal": "#2ca02c", "synthesis": "#1f77b4",
          "estimate": "#9ecae1", "util": "#d62728"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def plot_cycles(r: dict) -> str:
    """Per-layer measured / modelled / ideal cycles (bars) and lane utilisation (line, right axis)."""
    plt = _plt()
    rows = r["layers"]
    names = [row["layer"] for row in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 3.6))
    series = [("modelled", [row["cycles_model"] for row in rows]), ("ideal", [row["cycles_ideal"] for row in rows])]
    if any(row["cycles_measured"] is not None for row in rows):
        series.insert(0, ("measured", [row["cycles_measured"] or 0 for row in rows]))
    w = 0.8 / len(series)
    for k, (label, vals) in enumerate(series):
        ax.bar([i + (k - (len(series) - 1) / 2) * w for i in x], vals, w, label=label, color=COLORS[label])
    ax.set_xticks(list(x), names, rotation=45 if len(rows) > 8 else 0, ha="right" if len(rows) > 8 else "center")
    ax.set_ylabel("cycles per image")
    ax.set_title(f"Cycles per layer ({r['config']['lanes']} lanes)")
    ax2 = ax.twinx()
    util = [(i, 100 * row["lane_utilisation"]) for i, row in zip(x, rows) if row["lane_utilisation"] is not None]
    ax2.plot([i for i, _ in util], [u for _, u in util], "o", color=COLORS["util"], label="lane utilisation")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("lane utilisation (%)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    return _png(fig)


def plot_resources(r: dict) -> str | None:
    """Per target: synthesis and estimate as a share of the device (LUT, FF, BRAM, DSP)."""
    targets = {t: x for t, x in r["targets"].items() if x.get("capacity")}
    if not targets:
        return None
    plt = _plt()
    keys = ("lut", "ff", "bram", "dsp")
    fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets) + 0.6, 3.2), squeeze=False)
    for ax, (t, x) in zip(axes[0], targets.items()):
        cap = x["capacity"]
        syn = [100 * (x["synthesis"].get(k) or 0) / cap[k] if cap.get(k) else 0 for k in keys]
        est = [100 * ((x["estimate"] or {}).get(k) or 0) / cap[k] if cap.get(k) else 0 for k in keys]
        pos = range(len(keys))
        ax.bar([p - 0.2 for p in pos], syn, 0.4, label="synthesis (Yosys)", color=COLORS["synthesis"])
        ax.bar([p + 0.2 for p in pos], est, 0.4, label="estimate", color=COLORS["estimate"])
        ax.axhline(100, color="black", lw=0.8, ls="--")
        ax.set_xticks(list(pos), [k.upper() for k in keys])
        ax.set_title(f"{t} ({'fits' if x['fits'] else 'does not fit'})", fontsize=10)
        ax.set_ylabel("% of the device")
    axes[0][0].legend(fontsize=8, loc="upper left")
    return _png(fig)


def plot_accuracy(r: dict) -> str | None:
    a = r["accuracy"]
    vals = [(k, a[k]) for k in ("float", "fake_quant", "integer") if a.get(k) is not None]
    if not vals:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    bars = ax.barh([k.replace("_", "-") for k, _ in vals], [100 * v for _, v in vals], color="#6baed6")
    for b, (_, v) in zip(bars, vals):
        ax.text(b.get_width() - 1, b.get_y() + b.get_height() / 2, f"{100 * v:.2f}%", ha="right", va="center",
                fontsize=9, color="white")
    ax.set_xlim(0, 100)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.invert_yaxis()
    return _png(fig)


def _e(v, fmt: str = "") -> str:
    if v is None:
        return "n/a"
    return html.escape(format(v, fmt) if fmt else str(v))


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


CSS = """body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}.card{border:1px solid #ddd;border-radius:6px;
padding:.6em 1em;min-width:9em}.card b{display:block;font-size:1.4em}.pass{color:#1a7f37}.fail{color:#c62828}
.muted{color:#666;font-size:.9em}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}"""


def render_html(r: dict) -> str:
    m, a, s, c, b = r["model"], r["accuracy"], r["size"], r["cycles"], r["bitexact"]
    name = html.escape(m["name"] or "model")
    status = b["status"]
    cls = {"pass": "pass", "fail": "fail"}.get(status, "muted")
    best = max((x for x in r["targets"].values() if x.get("images_per_s")), key=lambda x: x["images_per_s"],
               default=None)
    cards = [("integer accuracy", _e(a["integer"], ".2%") if a["integer"] is not None else "n/a"),
             ("bit-exact", f'<span class="{cls}">{status.upper()}</span> <small>{b["bitexact_images"]}/{b["images"]}'
                           "</small>"),
             ("size", f"{s['reduction']:.1f}x smaller"), ("BOPs", f"{s['bops_reduction']:.1f}x fewer"),
             ("cycles / image", _e(c["measured"] if c["measured"] is not None else c["model"], ",")),
             ("lane utilisation", _e(c["lane_utilisation"], ".1%")),
             ("best images/s", f"{best['images_per_s']:,.0f}" if best else "n/a")]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>apotflow report: {name}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>apotflow report: {name}</h1>",
             f'<p class=muted>{_e(m["method"] or "n/a").upper()}, {_e(m["dataset"] or "no data set")}'
             f'{", random weights" if m["random_weights"] else ""}; {m["layers"]} layers; input {m["input"]}; '
             f'{r["config"]["lanes"]} lanes; git {_e(r["git_revision"])}'
             f'{"; made by <code>" + _e(r["command"]) + "</code>" if r["command"] else ""}.</p>',
             '<div class=cards>' + "".join(f"<div class=card><span class=muted>{k}</span><b>{v}</b></div>"
                                           for k, v in cards) + "</div>"]
    parts += ["<h2>Accuracy" + (f" ({a['test_images']} test images)" if a["test_images"] else "") + "</h2>",
              _table(["model", "top-1"], [["float, pruned (before quantization)", _e(a["float"], ".4f")],
                                          ["fake-quant (training model)", _e(a["fake_quant"], ".4f")],
                                          ["integer golden model", _e(a["integer"], ".4f")],
                                          ["agreement fake-quant vs integer", _e(a["agreement"], ".4f")]]),
              _img(plot_accuracy(r), "accuracy"), f"<p class=muted>{html.escape(a['rules'])}.</p>"]
    parts += [f'<h2>Bit-exact co-simulation: <span class="{cls}">{status.upper()}</span></h2>',
              "<p>" + (f"{b['bitexact_images']} of {b['images']} images equal the golden model in every layer (every "
                       "activation word and every logit compared as integers on Verilator)." if status != "not run"
                       else "Not run: <code>apotflow cosim --model M --out DIR</code>, then "
                            "<code>apotflow report --cosim DIR</code>.") + "</p>"]
    if b.get("first_mismatch"):
        fm = b["first_mismatch"]
        parts.append(f"<p class=fail>First mismatch: image {fm['image']}, layer {_e(fm['layer'])}, index "
                     f"{fm['index']}: expected {fm['expected']}, got {fm['got']}.</p>")
    parts += ["<h2>Size and BOPs</h2>",
              _table(["", "this model", "FP32 reference", "reduction"],
                     [["size (bits)", f"{s['bits']:,}", f"{s['fp32_bits']:,}", f"{s['reduction']:.2f}x"],
                      ["BOPs", f"{s['bops']:,}", f"{s['bops_fp32']:,}", f"{s['bops_reduction']:.2f}x"]]),
              f"<p class=muted>{html.escape(s['rules'])}</p>"]
    rows = [[_e(x["layer"]), _e(x["kind"]), _e(x["channels"]), _e(x["macs_nonzero"], ","),
             _e(x["cycles_measured"], ","), _e(x["cycles_model"], ","), _e(x["cycles_ideal"], ",.1f"),
             _e(x["lane_utilisation"], ".1%")] for x in r["layers"]]
    rows.append(["<b>total</b>", "", "", "", f"<b>{_e(c['measured'], ',')}</b>", f"<b>{_e(c['model'], ',')}</b>",
                 f"<b>{_e(c['ideal'], ',.1f')}</b>", f"<b>{_e(c['lane_utilisation'], '.1%')}</b>"])
    parts += [f"<h2>Cycles per image ({r['config']['lanes']} lanes)</h2>", _img(plot_cycles(r), "cycles per layer"),
              _table(["layer", "kind", "channels", "non-zero MACs", "measured", "modelled", "ideal",
                      "lane utilisation"], rows), f"<p class=muted>{html.escape(c['rules'])}.</p>"]
    parts.append("<h2>FPGA resources, Fmax and throughput</h2>")
    if r["targets"]:
        trows = []
        for t, x in r["targets"].items():
            sy, es = x["synthesis"], x["estimate"] or {}
            trows.append([_e(t), _e(x["device"]), _e(x["lanes"]), *(f"{_e(sy.get(k))} <span class=muted>({_e(es.get(k))})</span>"
                                                     for k in ("lut", "ff", "bram")),
                          _e(sy.get("dsp")), "yes" if x["fits"] else '<span class=fail>no</span>',
                          _e(x["fmax_mhz"], ".1f"), _e(x["latency_us"], ".1f"), _e(x["images_per_s"], ",.0f")])
        parts += [_table(["target", "device", "lanes", "LUT (est.)", "FF (est.)", "BRAM (est.)", "DSP", "fits", "Fmax MHz",
                          "latency µs", "images/s"], trows),
                  _img(plot_resources(r), "resources per target"),
                  f"<p class=muted>Synthesis counts from Yosys; (est.): hw/estimate.py's analytical estimate of the "
                  f"same design. {html.escape(r['timing_rules'])}. A target without Fmax was not placed and routed "
                  "(it does not fit, or place and route was not asked for).</p>"]
        notes = [f"{_e(t)}: {_e(n)}" for t, x in r["targets"].items() for n in x["notes"]]
        if notes:
            parts.append("<ul class=muted>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    else:
        parts.append("<p>No synthesis: <code>apotflow synth --model M --target T --out DIR</code>, then "
                     "<code>apotflow report --synth DIR</code>.</p>")
    if r["seconds"]:
        parts += ["<h2>Timings</h2>", _table(["step", "seconds"], [[_e(k), f"{v:.1f}"] for k, v in r["seconds"].items()])]
    parts += ["<h2>Configuration</h2>", _table(["field", "value"], [[_e(k), _e(v)] for k, v in r["config"].items()]),
              "<p class=muted>Memory words used: " + ", ".join(f"{k} {v:,}" for k, v in r["memory_words"].items())
              + ". Versions: " + ", ".join(f"{_e(k)} {_e(v)}" for k, v in r["versions"].items()) + ".</p>",
              "</body></html>"]
    return "\n".join(parts)
