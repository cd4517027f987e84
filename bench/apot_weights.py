"""Which weights does an APoT-authors checkpoint's network compute with? Float top-1 of their ResNet-20
(sw/apot_checkpoint.source_forward: their forward, quantization off, their Normalize) with each
QuantConv2d's stored weights read three ways: as stored, standardised per layer ((w - mean) / std), and
standardised then clipped at wgt_alpha (what ``apot_checkpoint.read`` imports).

    python bench/apot_weights.py CKPT [CKPT ...] --data data/cifar10-jpeg.tar.xz --images 500 \
        --out bench/results/apot-weights.json

The checkpoints are the authors' released files (github.com/yhhhli/APoT_Quantization,
CIFAR10/result/res20_*bit/model_best.pth.tar), not part of this repository; their sha256 is recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from apotflow.sw import apot_checkpoint as ac
from apotflow.sw.cifar import load_cifar10
from apotflow.sw.data import random_subsets
from apotflow.sw.graph_prepare import Preprocess


def readings(path) -> dict[str, dict]:
    """{reading: state} for the three readings of the QuantConv2d weights (all three equal for a float run)."""
    imported, _ = ac.read(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw = raw.get("state_dict", raw)
    raw = {k.removeprefix(ac.PREFIX): v.float() for k, v in raw.items()}
    stored, standard = dict(imported), dict(imported)
    for k in imported:
        if k.endswith(".weight") and k[:-len("weight")] + "act_alpha" in raw:
            w = raw[k].double()
            stored[k] = raw[k]
            standard[k] = ((w - w.mean()) / w.std()).float()
    return {"stored": stored, "standardised": standard, "standardised_clipped": imported}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/apot-weights.json")
    a = ap.parse_args(argv)
    split = load_cifar10(a.data)
    _, x, y = random_subsets(split, 1, a.images, a.seed)
    pre = Preprocess(255, None, ac.APOT_MEAN, ac.APOT_STD)
    rows = []
    for path in a.checkpoints:
        row = {"checkpoint": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
        with torch.no_grad():
            for name, state in readings(path).items():
                pred = ac.source_forward(state, pre.apply(x)).argmax(1)
                row[f"top1_{name}"] = round(float((pred == y).float().mean()), 4)
        print(json.dumps(row))
        rows.append(row)
    cmd = "python bench/apot_weights.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    Path(a.out).write_text(json.dumps({"command": cmd, "data": a.data, "images": len(x), "seed": a.seed,
                                       "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
