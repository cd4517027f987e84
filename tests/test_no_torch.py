"""The hardware commands run where torch is not installed (and `cycles` / `info` without Amaranth too).

Each command runs in a fresh Python whose import system refuses the blocked packages, as an environment
without them would: any import of them, however indirect, fails the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DIGITS = Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot"

BLOCKER = """
import sys
BLOCKED = {blocked!r}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
sys.meta_path.insert(0, Blocker())
from apotflow.sim.cli import main
code = main({argv!r})
assert not BLOCKED & set(m.split(".")[0] for m in sys.modules), "a blocked package was imported"
sys.exit(code)
"""


def _run(argv: list[str], blocked: set[str]) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=blocked, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv, blocked", [
    (["info", "--model", str(DIGITS)], {"torch", "amaranth"}),
    (["cycles", "--model", str(DIGITS), "--json"], {"torch", "amaranth"}),
    (["rtl", "--model", str(DIGITS), "--out", "{tmp}/rtl"], {"torch"}),
    (["report", "--model", str(DIGITS), "--out", "{tmp}/report"], {"torch"}),
])
def test_command_without_torch(argv, blocked, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    r = _run(argv, blocked)
    assert r.returncode == 0, r.stderr[-2000:]
    if argv[0] == "cycles":
        from apotflow.hw.config import AcceleratorConfig
        from apotflow.hw.cycles import total_cycles
        from apotflow.hw.fit import fit
        from apotflow.sw import export

        prog = fit(export.load(DIGITS), AcceleratorConfig(lanes=16))  # the CLI's default: 16 lanes, fitted
        assert json.loads(r.stdout)["cycles_model"] == total_cycles(prog.config, prog.images)
    if argv[0] == "rtl":
        assert (tmp_path / "rtl" / "apotflow_top.v").is_file() and (tmp_path / "rtl" / "manifest.json").is_file()
    if argv[0] == "report":
        assert (tmp_path / "report" / "report.html").is_file()


def test_blocker_blocks():
    """The check can fail: a command that needs torch (training) does fail under the blocker."""
    r = _run(["train", "--out", "/nonexistent-dir-for-the-test/x"], {"torch"})
    assert r.returncode == 2 and "blocked by the test" in r.stderr
    assert r.stderr.startswith("apotflow: error: `apotflow train` needs torch") and "Traceback" not in r.stderr
