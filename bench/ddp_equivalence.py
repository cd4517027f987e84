"""How close two data-parallel ranks come to one process (CPU, gloo), and why the test uses a small lr.

    python bench/ddp_equivalence.py [--out bench/results/ddp-equivalence-cpu.json]

1. tests/test_ddp.py's run (small ResNet-20, whole ppq recipe with distillation, the weight average and
   Cutout, global batch 8) on two gloo ranks and in one process: the largest absolute and relative
   differences of the final state dicts, and whether the APoT weight codes are equal.
2. The sensitivity of ONE process to rounding-sized changes: the same run twice, the second with the
   initial weights multiplied by (1 + 1e-7 N(0, 1)), at the test's lr (0.01 / QAT 1e-4) and at the
   recipe's (0.1 / 0.01): the largest state difference after the first epoch (two steps) and at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_ddp as T  # noqa: E402  (the test's data, model, config and rank worker)


def _diff(a: dict, b: dict) -> dict:
    rows = [((a[k] - b[k]).abs().max().item(), ((a[k] - b[k]).abs() / b[k].abs().clamp_min(1e-3)).max().item(), k)
            for k in b if b[k].is_floating_point()]
    ab, rel = max(rows), max(rows, key=lambda r: r[1])
    return {"max_abs": ab[0], "max_abs_key": ab[2], "max_rel": rel[1], "max_rel_key": rel[2]}


def _perturbed_run(eps: float, over: dict) -> list[dict]:
    from apotflow.sw.fasttrain import train_fast

    m = T._net()
    torch.manual_seed(5)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1 + eps * torch.randn_like(p))
    snaps = []
    train_fast(m, T._data(), T._cfg(**over), log=lambda *a: None,
               progress=lambda r: snaps.append({k: v.clone() for k, v in m.state_dict().items()}))
    return snaps


def main() -> int:
    import torch.multiprocessing as mp

    from apotflow.sw.fasttrain import train_fast

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/ddp-equivalence-cpu.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(T._worker, args=(2, T._free_port(), out, {}), nprocs=2, join=True)
        r0 = torch.load(f"{out}/rank0.pt", weights_only=False)
    one = T._net()
    train_fast(one, T._data(), T._cfg(), log=lambda *a: None)
    res = {"device": "cpu (gloo)", "torch": torch.__version__, "command": "python bench/ddp_equivalence.py",
           "two_ranks_vs_one_process": {**_diff(r0["state"], one.state_dict()),
                                        "codes_equal": all(torch.equal(x, y) for x, y in zip(r0["codes"], T._codes(one)))},
           "one_process_sensitivity_1e-7": {}}
    for name, over in (("test lr 0.01 / qat 1e-4", {}), ("recipe lr 0.1 / qat 0.01", {"lr": 0.1, "qat_lr": 0.01})):
        x, y = _perturbed_run(0.0, over), _perturbed_run(1e-7, over)
        res["one_process_sensitivity_1e-7"][name] = {"after_epoch_1": _diff(y[0], x[0]), "at_the_end": _diff(y[-1], x[-1])}
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
