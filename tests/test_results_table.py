"""docs/results.{json,md} are generated, never edited: regenerating them from the committed run files
gives the committed files byte for byte (``make results`` regenerates them)."""

import glob
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_results_are_the_generated_ones(tmp_path):
    for d in ("docs/cifar-runs", "bench/results/gpu-logs", "configs"):
        shutil.copytree(ROOT / d, tmp_path / d)
    for p in glob.glob(str(ROOT / "bench/results/recheck-*.json")):
        shutil.copy(p, tmp_path / "bench/results")
    # the Makefile's arguments, globs expanded in the copy
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "--eval=print-args: ; @echo $(RESULTS_ARGS)", "print-args"],
                         capture_output=True, text=True, check=True).stdout.split()
    args = []
    for a in out:
        args += [str(Path(p).relative_to(tmp_path)) for p in glob.glob(str(tmp_path / a))] if "*" in a else [a]
    subprocess.run([sys.executable, str(ROOT / "bench/results_table.py"), *args], cwd=tmp_path, check=True)
    for f in ("docs/results.json", "docs/results.md"):
        assert (tmp_path / f).read_text() == (ROOT / f).read_text(), f"{f} is stale: run make results"
