"""The README is a recipe: every `apotflow` command in it parses with the real command line, and the cheap
ones run as written (in a temporary folder, in the README's order)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from apotflow.sim.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
# Commands cheap enough to run in the fast suite (seconds each); the rest are only parsed.
CHEAP = ("export", "cycles", "info")


def readme_commands() -> list[str]:
    """The `apotflow ...` lines of the README's sh blocks, continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line.startswith("apotflow "):
                out.append(re.sub(r"\s+", " ", line))
    return out


def _argv(cmd: str) -> list[str] | None:
    """argv after `apotflow`, optional `[...]` parts dropped; None for placeholders like `<command>`."""
    cmd = re.sub(r"\s*\[[^\]]*\]", "", cmd)
    if "<" in cmd or "..." in cmd:
        return None
    return shlex.split(cmd)[1:]


def test_readme_has_commands():
    cmds = readme_commands()
    assert len(cmds) >= 8, cmds
    assert any(c.startswith("apotflow train ") for c in cmds)


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command_parses(cmd):
    argv = _argv(cmd)
    if argv is None:
        pytest.skip("placeholder")
    build_parser().parse_args(argv)  # SystemExit(2) on an unknown option or a bad value


def test_readme_cheap_commands_run(tmp_path):
    ran = []
    for cmd in readme_commands():
        argv = _argv(cmd)
        if argv is None or argv[0] not in CHEAP:
            continue
        if argv[0] != "export" and not any((tmp_path / a).exists() for a in argv):
            continue  # needs a file another (not cheap) README step makes
        r = subprocess.run([sys.executable, "-m", "apotflow.sim.cli", *argv], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"
        ran.append(argv[0])
    assert "export" in ran and "cycles" in ran, ran
