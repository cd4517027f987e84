"""apotflow export --random (in-process CLI): round trip of a reduced ResNet; full-width ResNet-56 (slow)."""

from __future__ import annotations

import time

import pytest

from apotflow.hw.compile import compile_net, first_mismatch, run_functional
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fitted_config
from apotflow.sim.cli import main
from apotflow.sw import export
from apotflow.sw.golden import run_integer
from apotflow.sw.randmodel import random_images


def test_export_random_round_trip(tmp_path, capsys):
    out = tmp_path / "r20.apot"
    argv = ["export", "--random", "--arch", "resnet20", "--prune", "0.3", "--seed", "3", "--width-scale", "0.25",
            "-o", str(out)]
    assert main(argv) == 0 and capsys.readouterr().out.strip() == str(out)
    net = export.load(out)
    assert net.meta["model"] == "resnet20" and net.meta["random_weights"] and net.meta["seed"] == 3
    assert {r["group"] for r in net.meta["prune_report"]} >= {"stream1", "stream2", "stream3", "s3b2a"}
    assert net.meta["fp32_shapes"]["stem"] == [4, 3, 3, 3] and net.tensors["stem"].shape[0] == 3  # 4 -> 3 kept
    x = random_images(1, seed=1).long().numpy()
    prog = compile_net(net, fitted_config(net, AcceleratorConfig()))
    exp = {k: v[0].numpy() for k, v in run_integer(net, x).items()}
    assert first_mismatch(exp, run_functional(prog, x[0]), list(prog.placements)) is None
    out2 = tmp_path / "again.apot"
    assert main(argv[:-1] + [str(out2)]) == 0
    assert out2.read_bytes() == out.read_bytes()  # seeded: the same file


def test_export_needs_checkpoint_or_random(tmp_path, capsys):
    assert main(["export", "-o", str(tmp_path / "m.apot")]) == 2
    assert "CHECKPOINT" in capsys.readouterr().err
    assert main(["export", "--random", "-o", str(tmp_path / "m.apot")]) == 2
    assert not (tmp_path / "m.apot").exists()


@pytest.mark.slow
def test_resnet56_full_width_export_compiles(tmp_path):
    out = tmp_path / "r56.apot"
    t0 = time.perf_counter()
    assert main(["export", "--random", "--arch", "resnet56", "-o", str(out)]) == 0
    t1 = time.perf_counter()
    net = export.load(out)
    assert len(net.ops) == 1 + 54 + 2 and net.meta["fp32_shapes"]["s3b8b"] == [64, 64, 3, 3]
    cfg = fitted_config(net, AcceleratorConfig())
    prog = compile_net(net, cfg)
    t2 = time.perf_counter()
    print(f"resnet56: export {t1 - t0:.1f} s, fit+compile {t2 - t1:.1f} s, {len(prog.images.wgt)} weight entries")
    x = random_images(1, seed=2).long().numpy()
    exp = {k: v[0].numpy() for k, v in run_integer(net, x).items()}
    assert first_mismatch(exp, run_functional(prog, x[0]), list(prog.placements)) is None


def test_export_checkpoint_of_a_masked_resnet(tmp_path):
    """A (masked, unsliced) ResNet checkpoint exports through the positional form, like DigitsNet's."""
    from apotflow.sw.checkpoint import save_checkpoint
    from apotflow.sw.lower import lower
    from apotflow.sw.randmodel import random_model

    m = random_model("resnet20", 0.3, seed=0, width_scale=0.25, batches=1, batch_size=4)
    save_checkpoint(m, tmp_path / "m.pt", {"method": "random"})
    assert main(["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.apot")]) == 0
    a, b = export.load(tmp_path / "m.apot"), lower(m)
    assert a.meta["model"] == "resnet20" and a.meta["fp32_shapes"] == b.meta["fp32_shapes"]
    assert all((x.thresholds == y.thresholds).all() for x, y in zip(a.ops, b.ops) if x.mode == "thresh")
