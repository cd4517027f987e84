"""Named training recipes (configs/*.toml, `apotflow train --config FILE`): each is exactly the command that
made its docs/results.md row, and a bad recipe file is refused in one line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from apotflow.sim.cli import apply_recipe_file, build_parser, main

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "configs").glob("*.toml"))


def _results_commands() -> dict[str, list[str]]:
    """run name (the --out folder) -> the argv of every docs/results.md command."""
    out = {}
    for line in (ROOT / "docs" / "results.md").read_text().splitlines():
        if line.startswith("| ") and "`apotflow train" in line:
            argv = shlex.split(line.rsplit("`", 2)[1])[1:]
            out[Path(argv[argv.index("--out") + 1]).name] = argv
    return out


def _args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        args = apply_recipe_file(parser, args, argv)
    return {k: v for k, v in vars(args).items() if k not in ("config", "recipe_file", "recipe_flags", "check", "func")}


def test_there_is_a_recipe_per_main_row():
    assert len(RECIPES) == len(list((ROOT / "docs" / "cifar-runs").glob("*.json"))) >= 8


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_is_its_results_row_command(recipe):
    row = _results_commands()[recipe.stem]
    assert _args(["train", "--config", str(recipe)]) == _args(row)


def test_command_line_wins_over_the_recipe():
    a = _args(["train", "--config", str(ROOT / "configs" / "r20-ppq-fc8.toml"), "--epochs", "3", "--seed", "2"])
    assert a["epochs"] == 3 and a["seed"] == 2 and a["cutout"] == 8


@pytest.mark.parametrize("text, message", [
    ("bogus = 1\n", "unknown key 'bogus'"),
    ("epochs = \"ten\"\n", "epochs = 'ten' is not an int"),
    ("nesterov = 1\n", "nesterov = 1 is not a bool"),
    ("model = \"resnet9\"\n", "is not one of digits"),
    ("epochs = [\n", "not a TOML file"),
])
def test_bad_recipe_file(tmp_path, capsys, text, message):
    f = tmp_path / "r.toml"
    f.write_text(text)
    assert main(["train", "--config", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("apotflow: error: --config") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_recipes_are_written_from_the_run_jsons():
    """configs/ and configs/variants/ are what bench/recipes.py writes from docs/cifar-runs (one definition:
    the command recorded in each run JSON)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "bench" / "recipes.py"), "--check"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("**/*.toml")),
                         ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_recorded_command_replays_the_recipe(recipe):
    """A run started with --config records the command with the file's options written out: typed again, it
    gives the same options (and the command line's own options still win)."""
    from apotflow.sim.commands import command_line

    argv = ["train", "--config", str(recipe), "--seed", "7"]
    parser = build_parser()
    args = apply_recipe_file(parser, parser.parse_args(argv), argv)
    line = command_line(args, argv)
    assert "--config" not in line and line.endswith("--seed 7")
    assert _args(shlex.split(line)[1:]) == _args(argv)


def test_a_false_flag_is_not_recorded(tmp_path):
    """`nesterov = false` in a recipe: the recorded command has no --nesterov (it would turn it on)."""
    from apotflow.sim.commands import command_line

    f = tmp_path / "r.toml"
    f.write_text('model = "resnet20"\nnesterov = false\nepochs = 3\n')
    argv = ["train", "--config", str(f)]
    parser = build_parser()
    args = apply_recipe_file(parser, parser.parse_args(argv), argv)
    line = command_line(args, argv)
    assert line == "apotflow train --model resnet20 --epochs 3"
    assert _args(shlex.split(line)[1:]) == _args(argv)
