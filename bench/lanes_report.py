"""Table and plot of the lanes sweep (bench/results/lanes.jsonl from ``bench/synth_sweep.py lanes``).

    .venv/bin/python bench/lanes_report.py    -> bench/results/lanes.md, bench/results/lanes.svg

The SVG is written by hand (no plotting dependency): LUTs and images/s against lanes, log2 x axis.
"""

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RES = ROOT / "bench" / "results"


def _but_lanes(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k != "lanes"}


def load() -> list[dict]:
    """The lanes sweep's rows; lane counts it has not built come from the same design synthesised as
    an estimator hold-out (holdout.jsonl: same config and target, synthesis only, no Fmax)."""
    rows = {}
    for line in (RES / "lanes.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[r["lanes"]] = r  # the last run of a lane count wins
    base = next(iter(rows.values()), None)
    hold = RES / "holdout.jsonl"
    if base and hold.exists():
        for line in hold.read_text().splitlines():
            r = json.loads(line)
            same = _but_lanes(r["config"]) == _but_lanes(base["config"]) and r["target"] == base["target"]
            if r["lanes"] not in rows and same and r["design"].startswith("digits-board-shift"):
                rows[r["lanes"]] = r
    return [rows[k] for k in sorted(rows)]


def resnet_cycles() -> dict:
    f = RES / "cycles-resnet20-r.json"
    return {r["lanes"]: r["cycles"] for r in json.loads(f.read_text())["rows"]} if f.exists() else {}


def table(rows) -> str:
    from calibrate_estimator import used_of  # same directory

    from apotflow.hw.config import AcceleratorConfig
    from apotflow.hw.estimate import estimate

    rc = resnet_cycles()
    out = ["| lanes | LUT4 | FF | CCU2C | DP16KD | estimate LUT / FF / BRAM | Fmax (MHz) | digits cycles | digits images/s "
           "| ResNet-20 cycles | ResNet-20 images/s |",
           "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    done = set()
    for r in rows:  # the estimate as the estimator stands now (the row's own is from build time)
        e = estimate(AcceleratorConfig.from_dict(r["config"]), r["target"], rom_used=used_of(r))
        fmax = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else "-"
        ips = f"{r['images_per_s']:,.0f}" if r.get("images_per_s") else "-"
        rn = rc.get(r["lanes"])
        rips = f"{r['fmax_mhz'] * 1e6 / rn:,.0f}" if rn and r.get("fmax_mhz") else "-"
        out.append(f"| {r['lanes']} | {r['lut']} | {r['ff']} | {r['carry']} | {r['bram']} | "
                   f"{e['lut']} / {e['ff']} / {e['bram']} | {fmax} | {r['cycles_per_image']} | {ips} | "
                   f"{rn or '-':,} | {rips} |")
        done.add(r["lanes"])
    cfg0 = rows[0]["config"] if rows else {}
    for lanes in (8, 16, 32, 64, 128, 256):
        if lanes in done or not cfg0:
            continue
        cfg = AcceleratorConfig.from_dict({**cfg0, "lanes": lanes})
        e = estimate(cfg, "ecp5-85k")
        out.append(f"| {lanes} | (not synthesised) | | | | {e['lut']} / {e['ff']} / {e['bram']} | - | - | - | "
                   f"{rc.get(lanes, '-'):,} | - |")
    return "\n".join(out) + "\n"


def svg(rows) -> str:
    W, H, m = 640, 360, 60
    xs = [math.log2(r["lanes"]) for r in rows]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def X(v):
        return m + (v - x0) / (x1 - x0) * (W - 2 * m)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
             f'font-size="12"><rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">apotflow on ECP5-85k, digits model: '
             f'LUT4 (blue) and images/s (red) vs lanes</text>',
             f'<line x1="{m}" y1="{H - m}" x2="{W - m}" y2="{H - m}" stroke="black"/>']
    for r, xv in zip(rows, xs):
        parts.append(f'<text x="{X(xv)}" y="{H - m + 16}" text-anchor="middle">{r["lanes"]}</text>')
    for key, color, side in (("lut", "#1f77b4", "left"), ("images_per_s", "#d62728", "right")):
        pts = [(X(xv), r.get(key)) for r, xv in zip(rows, xs) if r.get(key)]
        if not pts:
            continue
        top = max(v for _, v in pts) * 1.1

        def Y(v, top=top):
            return H - m - v / top * (H - 2 * m)

        points = " ".join(f"{x:.1f},{Y(v):.1f}" for x, v in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        for x, v in pts:
            parts.append(f'<circle cx="{x:.1f}" cy="{Y(v):.1f}" r="3" fill="{color}"/>'
                         f'<text x="{x + 4:.1f}" y="{Y(v) - 6:.1f}" fill="{color}">{v:,.0f}</text>')
        ax = m if side == "left" else W - m
        parts.append(f'<line x1="{ax}" y1="{m}" x2="{ax}" y2="{H - m}" stroke="{color}"/>')
        label = "LUT4" if key == "lut" else "images/s"
        parts.append(f'<text x="{ax}" y="{m - 8}" text-anchor="middle" fill="{color}">{label}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 20}" text-anchor="middle">lanes (log scale)</text></svg>')
    return "\n".join(parts) + "\n"


def main() -> int:
    rows = load()
    (RES / "lanes.md").write_text(table(rows))
    (RES / "lanes.svg").write_text(svg(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
