"""Weight-memory bits per non-zero weight of each zoo network, the compact stream against the previous format.

    .venv/bin/python bench/weight_bits.py              -> bench/results/weight-bits.json (+ printed table)

For each network (digits and the trained ResNet-20 from bench/models; ResNet-20/32/56 and VGG-16 with
random weights, GM-pruned 0.3, seed 0, as bench/cosim_networks.py exports them) at 16 and 64 lanes, with
the memories fitted to the network for a deployment build (``fitted_config(..., reuse=True)``):

* ``compact``: the weight memory as built now: ``wgt_depth`` x the entry width (``isa.entry_layout``),
  the entries actually used (fillers included), and the value and tap tables beside it (VAL, TAP);
* ``previous``: the format before the compact stream (one entry per non-zero weight and pass: sign,
  ``terms`` x (enable, shift), signed dy, dx and an absolute ACT offset; ``hw.compile.weight_entries``
  passes; depth the next power of two; the ACT offset as wide as the ACT without reuse, as that flow
  fitted it). Its entry width is written out below: it is the reference, not a format in use.

bits per non-zero weight = memory bits / non-zero weights (sum over every source of every op).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from apotflow.hw import isa
from apotflow.hw.compile import compile_net, weight_entries
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sim.flow import export_random
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "bench" / "models"
OUT = ROOT / "bench" / "results" / "weight-bits.json"
LANES = (16, 64)


def previous_format(net, cfg: AcceleratorConfig) -> dict:
    """Entries and memory bits of the format before the compact stream (see the module docstring)."""
    raw = {op.out for op in net.ops if op.mode == "raw"}
    act_words = sum(int(np.prod(t.shape)) for n, t in net.tensors.items() if n not in raw)  # no reuse
    act = max(1 << max(0, (act_words - 1).bit_length()), cfg.lanes)
    addr_bits = max(1, (act - 1).bit_length())
    width = 1 + cfg.terms * (1 + cfg.shift_bits) + 2 * cfg.delta_bits + addr_bits
    cache: dict[int, int] = {}
    entries = 0
    for op in net.ops:
        per_ch = np.zeros(net.tensors[op.out].shape[0], dtype=np.int64)
        for s in op.sources:
            w = s.weight
            vals, counts = np.unique(w[w != 0], return_counts=True)
            for v, k in zip(vals.tolist(), counts.tolist()):
                if v not in cache:
                    cache[v] = len(weight_entries(v, cfg.terms, cfg.max_shift))
                entries += cache[v] * k
            per_ch += (w != 0).reshape(w.shape[0], -1).sum(axis=1)
        entries += int((per_ch == 0).sum())  # an empty channel kept one (empty) entry
    depth = 1 << max(0, (entries - 1).bit_length())
    return {"entries": entries, "entry_bits": width, "depth": depth, "memory_bits": depth * width}


def measure(name: str, net) -> list[dict]:
    """Rows for every lane count. The stream does not depend on the lane count, nor do the fitted depths
    (ACT: at least max(LANES) words for every zoo network, asserted), so one compile serves them all."""
    nz = sum(int((s.weight != 0).sum()) for op in net.ops for s in op.sources)
    cfg = fitted_config(net, AcceleratorConfig(lanes=max(LANES)), reuse=True)
    img = compile_net(net, cfg, reuse=True).images
    rows = []
    for lanes in LANES:
        c = replace(cfg, lanes=lanes)
        assert c.act_depth >= max(LANES)
        ent = isa.entry_layout(c).unpack_array(img.wgt)
        width = isa.entry_layout(c).width
        tables = c.val_depth * isa.val_layout(c).width + c.tap_depth * isa.tap_layout(c).width
        compact = {"entries": len(img.wgt), "fillers": int((ent["code"] == 0).sum()), "entry_bits": width,
                   "depth": c.wgt_depth, "memory_bits": c.wgt_depth * width, "table_bits": tables,
                   "bits_per_nz": round(c.wgt_depth * width / nz, 3),
                   "bits_per_nz_used": round(len(img.wgt) * width / nz, 3),
                   "bits_per_nz_with_tables": round((c.wgt_depth * width + tables) / nz, 3)}
        prev = previous_format(net, c)
        prev["bits_per_nz"] = round(prev["memory_bits"] / nz, 3)
        rows.append({"network": name, "lanes": lanes, "nonzero_weights": nz, "compact": compact, "previous": prev,
                     "config": c.to_dict()})
    return rows


def networks(tmp: Path):
    yield "digits", export.load(MODELS / "digits.apot")
    yield "resnet20 (trained, PPQ)", export.load(MODELS / "resnet20-ppq-jpeg.apot")
    for arch in ("resnet20", "resnet32", "resnet56", "vgg16"):
        path, _ = export_random(arch, tmp / f"{arch}.apot", prune=0.3, seed=0)
        yield f"{arch} (random)", export.load(path)


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in networks(Path(tmp)):
            t0 = time.perf_counter()
            for r in measure(name, net):
                r["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(r)
                c, p = r["compact"], r["previous"]
                print(f"{name:26s} {r['lanes']:3d} lanes  nz {r['nonzero_weights']:9d}  compact {c['bits_per_nz']:6.2f} "
                      f"(used {c['bits_per_nz_used']:.2f}, +tables {c['bits_per_nz_with_tables']:.2f}, "
                      f"fillers {c['fillers']})  previous {p['bits_per_nz']:6.2f}", flush=True)
            OUT.write_text(json.dumps({"command": "python bench/weight_bits.py", "rows": rows}, indent=1))  # per network
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
