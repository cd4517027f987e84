"""Which layers does FPGM prune on VGG-16, at which bits? Size and BOPs reductions of VGG-16 with the FPGM
classifier (fc 512 + BatchNorm1d + ReLU, fc 10) at the paper's 30% rate, for each choice: conv filters
only or the hidden fc's neurons too, hidden fc weights W4 or W8, against the paper's 15.95x / 126.24x
(and the one-fc vgg16-1fc of the earlier runs).

    python bench/vgg_classifier_counts.py --out bench/results/vgg16-classifier-counts.json

Counts: sw/metrics.py on the masked model (the FP32 reference: its unpruned shapes), with the integer
network's activation widths (pixels 8 bits, every later input A4 codes: tests/test_vgg_lowering.py
checks that this equals sw.intnet.size_and_bops of the lowered network). They depend on shapes, bits and
how many channels are pruned (int(N * rate) per group), not on the weights or on which channels.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from apotflow.sw.metrics import bops_metrics, size_metrics
from apotflow.sw.models import CifarVGG16
from apotflow.sw.prune import set_masks
from apotflow.sw.zoo import ZOO

PAPER = {"size_reduction": 15.95, "bops_reduction": 126.24}  # bench/results_table.PAPER["vgg16"]


class ConvsOnly(CifarVGG16):
    """VGG-16 whose hidden fc is not pruned (conv filters only)."""

    def prune_groups(self):
        return super().prune_groups()[:13]

    def group_consumers(self):
        return super().group_consumers()[:13]


def counts(model: CifarVGG16, rate: float) -> dict:
    """Size and BOPs of the model pruned at rate (COUNTING_RULES of sw/intnet.py)."""
    # which channels GM pruning picks does not change the counts, only how many: keep the first ones
    # (GM scoring of full-width VGG-16 takes minutes on a loaded CPU)
    groups = model.prune_groups()
    set_masks(model, [torch.arange(len(g[0][0].filter_mask)) < len(g[0][0].filter_mask) - int(len(g[0][0].filter_mask) * rate)
                      for g in groups])
    size = size_metrics(model, (3, 32, 32))
    bops = bops_metrics(model, (3, 32, 32), first_a_bits=8, other_a_bits=model.qfc.bits)
    return {"model_size_bits": size["model_size_bits"], "size_fp32_bits": size["size_fp32_bits"],
            "size_reduction": size["size_reduction"], "bops": bops["bops"], "bops_fp32": bops["bops_fp32"],
            "bops_reduction": bops["bops_reduction"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=0.3)
    ap.add_argument("--out", default="bench/results/vgg16-classifier-counts.json")
    a = ap.parse_args()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    rows = []
    for prune_fc1 in (False, True):
        for fc1_bits in (4, 8):
            cls = CifarVGG16 if prune_fc1 else ConvsOnly
            m = cls(**{**ZOO["vgg16"].kwargs, "fc1_bits": fc1_bits})
            rows.append({"model": "vgg16", "pruned": "conv filters and hidden fc" if prune_fc1 else "conv filters",
                         "fc1_bits": fc1_bits, **counts(m, a.rate)})
    rows.append({"model": "vgg16-1fc", "pruned": "conv filters", "fc1_bits": None,
                 **counts(CifarVGG16(**ZOO["vgg16-1fc"].kwargs), a.rate)})
    for r in rows:
        r["within_0.05x"] = all(abs(r[k] - v) <= 0.05 for k, v in PAPER.items())
        print(f"{r['model']:10s} pruned {r['pruned']:27s} fc1 W{r['fc1_bits']}: size {r['size_reduction']:.3f}x  "
              f"BOPs {r['bops_reduction']:.3f}x  (paper {PAPER['size_reduction']}x / {PAPER['bops_reduction']}x)"
              f"{'  <- within 0.05x' if r['within_0.05x'] else ''}")
    zoo = ZOO["vgg16"].kwargs
    Path(a.out).write_text(json.dumps({"command": "python bench/vgg_classifier_counts.py --out " + a.out,
                                       "prune_rate": a.rate, "paper": PAPER, "zoo_vgg16": zoo, "rows": rows,
                                       "seconds": round(time.perf_counter() - t0, 1)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
