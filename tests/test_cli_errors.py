"""Impossible command lines, tried as a new user would: each ends at once with exit status 2, one line on
stderr starting ``apotflow: error:``, no traceback, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apotflow.sim.cli import main
from apotflow.sim.commands import CIFAR_MODELS
from apotflow.sw import export

DIGITS = Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot"

# {m}: a model file, {f}: an existing plain file, {d}: an existing folder, {o}: a folder that does not exist yet
IMPOSSIBLE = [
    ("rtl --model {m} --out {f}", "is an existing file"),
    ("rtl --model {m} --out {f}/sub", "is a file, not a folder"),
    ("rtl --model {m} --out {o} --lanes 3", "lanes must be a power of two"),
    ("rtl --model {m} --out {o} --lanes abc", "invalid int value"),
    ("rtl --model {m} --out {o} --bogus", "unrecognized arguments"),
    ("rtl --model {d}/absent.apot --out {o}", "no such model file"),
    ("cycles --model {m} --lanes 0", "lanes must be a positive integer"),
    ("info --model {d}/absent.apot", "no such model file"),
    ("cosim --model {m} --out {o} --images -1", "--images must be 0 (all) or a positive count"),
    ("cosim --model {m} --out {o} --images -9998", "--images must be 0 (all) or a positive count"),
    ("cosim --model {m} --out {o} --data {d}/no-cifar", "no such file or folder"),
    ("cosim --model {m} --out {f}", "is an existing file"),
    ("demo --out {o} --lanes 0", "lanes must be a positive integer"),
    ("demo --out {o} --lanes 3", "lanes must be a power of two"),
    ("demo --out {o} --targets bogus-fpga", "unknown target 'bogus-fpga'"),
    ("demo --out {o} --images -1", "--images must be 0 (all) or a positive count"),
    ("demo --out {f}", "is an existing file"),
    ("train --out {o} --epochs 1 --cutout 8", "--cutout does not apply to --model digits"),
    ("train --out {o} --nesterov --ema 0.99", "--ema, --nesterov do not apply to --model digits"),
    ("train --out {o} --epochs 0", "epochs must be a positive integer"),
    ("train --out {f}", "is an existing file"),
    ("train --model resnet20 --out {o}", "needs --data"),
    ("train --model resnet20 --data {d}/no-cifar --out {o}", "no such file or folder"),
    ("train --model vgg16 --data {d} --teacher {d}/t.pt --out {o}", "teacher checkpoint"),
    ("train --model resnet20 --data {d} --method spq --float-init {m} --out {o}", "replaces the float phase"),
    ("train --model resnet20 --data {d} --method spq --distill 0.5 --out {o}", "needs --teacher"),
    ("train --model resnet20 --data {d} --epochs -2 --out {o}", "epochs must be a positive integer"),
    ("export -o {d}/x.apot", "needs a CHECKPOINT"),
    ("export {d}/absent.pt -o {d}/x.apot", "no such checkpoint"),
    ("export --random -o {d}/x.apot", "takes --arch"),
    ("export --random --arch resnet20 --prune 1.5 -o {d}/x.apot", "--prune must be in [0, 1)"),
    ("export --random --arch resnet20 -o {d}", "is a folder, not a file"),
    ("export --random --arch resnet20 -o {f}/x.apot", "is a file, not a folder"),
    ("export --random --arch resnet9 -o {d}/x.apot", "invalid choice"),
    ("synth --model {m} --out {o} --freq 0", "--freq must be a positive"),
    ("synth --model {m} --out {o} --target bogus-fpga", "invalid choice"),
    ("synth --model {d}/absent.apot --out {o}", "no such model file"),
    ("synth --out {f}", "is an existing file"),
    ("synth --model {m} --out {o} --bitstreams {f}", "is an existing file"),
    ("synth --model {m} --out {o} --pnr-seeds 1,x", "--pnr-seeds: placement seeds must be integers"),
    ("synth --model {m} --out {o} --pnr-seeds 3,1,3", "--pnr-seeds: placement seed 3 given twice"),
    ("synth --model {m} --out {o} --pnr-seeds 4-2", "must run upwards"),
    ("synth --model {m} --out {o} --pnr-seed=-1", "--pnr-seed: placement seeds must be integers"),
    ("synth --model {m} --out {o} --pnr-seed 2147483648", "must be an integer 0 .. 2147483647"),
    ("synth --model {m} --out {o} --pnr-seed 1,2", "--pnr-seed takes one seed"),
    ("synth --model {m} --out {o} --pnr-timeout 0", "--pnr-timeout must be a positive number of seconds, not 0"),
    ("synth --model {m} --out {o} --pnr-timeout -60", "--pnr-timeout must be a positive number of seconds"),
    ("synth --model {m} --out {o} --no-pnr --pnr-timeout 60", "--no-pnr runs no place and route"),
    ("synth --model {m} --out {o} --pnr-seed 1 --pnr-seeds 2,3", "not allowed with argument"),
    ("synth --model {m} --out {o} --no-pnr --pnr-seeds 1,2", "--no-pnr runs no place and route"),
    ("synth --model {m} --out {o} --target xc7a100t --pnr-seed 2", "target xc7a100t has no place and route"),
    ("synth --model {m} --out {o} --lanes 16 --lane-groups 4 --wgt-ram", "lane groups read their weights from a ROM"),
    ("cycles --model {m} --lanes 16 --lane-groups 3", "lane_groups must be a power of two"),
    ("report --model {m} --out {o} --cosim {d}", "holds no cosim.json"),
    ("report --model {m} --out {o} --synth {d}", "holds no synth.json"),
    ("report --model {m} --out {f}", "is an existing file"),
    ("report --model {m} --out {o} --lanes 0", "lanes must be a positive integer"),
]


@pytest.fixture
def place(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    (d / "afile").write_text("not a folder\n")
    (d / "model.apot").write_bytes(DIGITS.read_bytes())
    return d


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("line, message", IMPOSSIBLE, ids=[line.split()[0] + ":" + m for line, m in IMPOSSIBLE])
def test_impossible_command_line(place, capsys, line, message):
    argv = line.format(m=place / "model.apot", f=place / "afile", d=place, o=place / "out").split()
    before = _tree(place)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own checks
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("apotflow: error:"), err
    assert message in err[0]
    assert _tree(place) == before, "an impossible command wrote something"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_not_writable(place, capsys):
    locked = place / "locked"
    locked.mkdir(mode=0o500)
    assert main(["rtl", "--model", str(place / "model.apot"), "--out", str(locked / "o")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_error_line_from_a_process(place):
    """The installed entry point prints the same one line (no traceback) and exits 2."""
    r = subprocess.run([sys.executable, "-m", "apotflow.sim.cli", "demo", "--out", str(place / "o"), "--lanes", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "apotflow: error: lanes must be a positive integer, not 0"
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_images_beyond_the_test_split_are_cut_and_said():
    from apotflow.sim.flow import input_images

    said = []
    digits = export.load(DIGITS)
    assert len(input_images(digits, 5, log=said.append)) == 5 and not said
    assert len(input_images(digits, 0, log=said.append)) == 450 and not said
    assert len(input_images(digits, 100000, log=said.append)) == 450
    assert said == ["--images 100000: the digits test split holds 450 images; co-simulating all 450"]


def test_cli_model_names_match_the_trainer():
    from apotflow.sw.cifar_run import MODELS
    from apotflow.sw.randmodel import ARCHS

    assert tuple(CIFAR_MODELS) == tuple(MODELS) == tuple(ARCHS)


def test_gpu_recipe_without_a_gpu_says_so_before_it_starts(tmp_path, capsys):
    import torch

    from apotflow.sim.cli import build_parser
    from apotflow.sim.commands import check_train

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    args = build_parser().parse_args(["train", "--model", "resnet20", "--data", str(tmp_path), "--out",
                                      str(tmp_path / "o")])
    check_train(args)  # the checks only: nothing is trained
    err = capsys.readouterr().err
    assert "is a GPU recipe and no CUDA GPU is visible" in err and not (tmp_path / "o").exists()
