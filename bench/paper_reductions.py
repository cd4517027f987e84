"""Can any pruned channel count reproduce the paper's size and BOPs reductions? (issue 22)

The paper's ResNet rows give a size and a BOPs reduction for W4/A4 with 8-bit first and last layers and
30% of the filters pruned. Ours follow COUNTING_RULES (sw/intnet.count_totals) with each stage keeping
ceil(0.7 x width) filters. This bench counts every zoo ResNet from its float model's layers (weight shapes
and output maps, read with forward hooks) under the same rules, and searches the kept filters per stage
width (ours +- 3), with the stem's filters pruned or not and the fc's input at 8 or 4 bits, for the
combination nearest the paper's pair.

    python bench/paper_reductions.py --out bench/results/paper-reductions.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from results_table import PAPER  # noqa: E402

from apotflow.sw import zoo  # noqa: E402
from apotflow.sw.intnet import count_totals  # noqa: E402

PRUNE = 0.3


def layer_shapes(name: str) -> list[dict]:
    """Every conv and linear of the float zoo model in forward order: name, weight shape, output pixels."""
    model = zoo.build(name).eval()
    found = []

    def hook(mod, _inp, out):
        hw = out.shape[2] * out.shape[3] if out.dim() == 4 else 1
        found.append({"name": names[mod], "shape": list(mod.weight.shape) + [1] * (4 - mod.weight.dim()), "hw": hw})

    names = {m: n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    for m in names:
        m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, *zoo.ZOO[name].input_shape))
    return found


def reductions(layers: list[dict], kept: dict[int, int], stem_pruned: bool, fc_a_bits: int) -> tuple[float, float]:
    rows = []
    for i, layer in enumerate(layers):
        co, ci, kh, kw = layer["shape"]
        first, last = i == 0, i == len(layers) - 1
        kco = co if last or (first and not stem_pruned) else kept[co]
        kci = ci if first else kept[ci]
        n, n_fp = kco * kci * kh * kw, co * ci * kh * kw
        rows.append({"weights": n, "weights_fp32": n_fp, "macs": n * layer["hw"], "macs_fp32": n_fp * layer["hw"],
                     "w_bits": 8 if first or last else 4, "a_bits": 8 if first else (fc_a_bits if last else 4)})
    t = count_totals(rows)
    return t["size_reduction"], t["bops_reduction"]


def search(name: str) -> dict:
    layers = layer_shapes(name)
    widths = sorted({lay["shape"][0] for lay in layers[:-1]})
    ours_kept = {w: w - math.floor(PRUNE * w) for w in widths}
    size, bops = reductions(layers, ours_kept, True, 8)
    p_size, p_bops = PAPER[name][3], PAPER[name][4]
    best = None
    for ks in itertools.product(*[range(ours_kept[w] - 3, ours_kept[w] + 4) for w in widths]):
        kept = dict(zip(widths, ks))
        for stem_pruned, fc_a in itertools.product((True, False), (8, 4)):
            s, b = reductions(layers, kept, stem_pruned, fc_a)
            err = max(abs(s - p_size), abs(b - p_bops))
            if best is None or err < best["max_error"]:
                best = {"kept": {str(w): k for w, k in kept.items()}, "stem_pruned": stem_pruned, "fc_a_bits": fc_a,
                        "size_reduction": round(s, 3), "bops_reduction": round(b, 3), "max_error": round(err, 3)}
    return {"model": name, "paper": {"size_reduction": p_size, "bops_reduction": p_bops},
            "ours": {"kept": {str(w): k for w, k in ours_kept.items()}, "size_reduction": round(size, 3),
                     "bops_reduction": round(bops, 3)},
            "nearest": best}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet32", "resnet56", "resnet110"])
    p.add_argument("--out", default=str(ROOT / "bench/results/paper-reductions.json"))
    a = p.parse_args(argv)
    res = [search(m) for m in a.models]
    for r in res:
        print(r["model"], "paper", r["paper"], "ours", r["ours"], "nearest", r["nearest"])
    Path(a.out).write_text(json.dumps({"command": "python bench/paper_reductions.py", "rows": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
