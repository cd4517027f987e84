"""The one atomic writer (sw/atomic.py): a process killed inside a write leaves the old file whole, a run's
set is never a mix of old and new files, and the temporaries of a killed process are removed."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apotflow.sw import atomic

OLD = {"model.pt": b"old-pt" * 1000, "model.apot": b"old-apot" * 1000, "train.json": '{"run": "old"}'}
NEW = {"model.pt": b"new-pt" * 1000, "model.apot": b"new-apot" * 1000, "train.json": '{"run": "new"}'}


def _killed(code: str, point: str, cwd: Path) -> None:
    """Run ``code`` in a fresh interpreter that SIGKILLs itself at ``point``."""
    env = {**os.environ, atomic.CRASH_ENV: point}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, timeout=60)
    assert r.returncode == -9, (point, r.returncode, r.stderr.decode()[-500:])


def _read(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("point", ["write:x.bin:partial", "write:x.bin:written"])
def test_killed_write_leaves_the_old_file(tmp_path, point):
    (tmp_path / "x.bin").write_bytes(b"A" * 100_000)
    _killed("from apotflow.sw.atomic import write_atomic; write_atomic('x.bin', b'B' * 100_000)", point, tmp_path)
    assert (tmp_path / "x.bin").read_bytes() == b"A" * 100_000  # not half B (a direct write would be)
    stale = [p for p in tmp_path.iterdir() if p.name != "x.bin"]
    assert len(stale) == 1 and stale[0].name.startswith(".x.bin.") and stale[0].name.endswith(".tmp")
    assert atomic.remove_stale(tmp_path) == stale and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_write_replaces_and_leaves_nothing(tmp_path):
    atomic.write_atomic(tmp_path / "sub" / "a.txt", "one")
    atomic.write_json(tmp_path / "sub" / "a.txt", {"x": Path("p"), "n": [1, 2]})
    assert json.loads((tmp_path / "sub" / "a.txt").read_text()) == {"x": "p", "n": [1, 2]}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.txt"]


def test_remove_stale_keeps_live_and_foreign_files(tmp_path):
    mine = tmp_path / f".a.txt.{os.getpid()}.0123abcd.tmp"  # this (live) process's
    other = tmp_path / ".notes.tmp"  # not of our pattern: somebody else's file
    dead = tmp_path / ".a.txt.999999999.0123abcd.tmp"  # no such process
    stage = tmp_path / ".publish-999999999-0123abcd"
    for p in (mine, other, dead):
        p.write_bytes(b"")
    stage.mkdir()
    (stage / "model.pt").write_bytes(b"x")
    assert sorted(atomic.remove_stale(tmp_path)) == sorted([dead, stage])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])


PUBLISH_POINTS = ["write:model.apot:partial", "publish:staged", *(f"publish:removed:{n}" for n in NEW),
                  *(f"publish:renamed:{n}" for n in NEW)]


@pytest.mark.parametrize("point", PUBLISH_POINTS)
def test_killed_publish_never_mixes_old_and_new(tmp_path, point):
    atomic.publish(tmp_path, dict(OLD), marker="train.json")
    assert _read(tmp_path) == {k: v.encode() if isinstance(v, str) else v for k, v in OLD.items()}
    _killed(f"from apotflow.sw.atomic import publish; publish('.', {NEW!r}, marker='train.json')", point, tmp_path)
    atomic.remove_stale(tmp_path)
    got = _read(tmp_path)
    old = {k: v for k, v in got.items() if v == (OLD[k].encode() if isinstance(OLD[k], str) else OLD[k])}
    new = {k: v for k, v in got.items() if v == (NEW[k].encode() if isinstance(NEW[k], str) else NEW[k])}
    assert len(old) + len(new) == len(got), "a file that is neither the old nor the new one"
    assert not (old and new), f"old {sorted(old)} beside new {sorted(new)}"
    assert "train.json" not in got or len(got) == 3, "a marker without its whole set"


def test_publish_removes_a_file_the_new_set_lacks(tmp_path):
    atomic.publish(tmp_path, dict(OLD), marker="train.json")
    atomic.publish(tmp_path, {**NEW, "model.apot": None}, marker="train.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "train.json"]


def test_the_writers_of_the_project_are_this_one(tmp_path, monkeypatch):
    """Exports, checkpoints and the hardware side's JSON go through write_atomic (its crash point fires)."""
    from apotflow.sim import flow
    from apotflow.sw import checkpoint, export
    from apotflow.sw.models import DigitsNet
    from apotflow.sw.randnet import random_net

    seen = []
    monkeypatch.setattr(atomic, "crash_point", seen.append)
    export.save(random_net(0), tmp_path / "m.apot")
    checkpoint.save_checkpoint(DigitsNet(), tmp_path / "m.pt")
    flow.write_json(tmp_path / "m.json", {})
    flow.write_text_atomic(tmp_path / "m.md", "")
    assert [p for p in seen if p.endswith(":replaced")] == [f"write:m.{e}:replaced" for e in ("apot", "pt", "json", "md")]


def test_remove_stale_removes_the_older_writers_temporaries(tmp_path):
    """The names the writers before sw/atomic.write_atomic gave their temporaries (no process of this version
    writes them) are removed too; the outputs themselves and other people's files stay."""
    legacy = ["train.ckpt.tmp", "model.ptab_3k9zq.tmp", "float.pt0123abcd.tmp", ".model.apot.x_1y2z3w",
              ".train.json.tmp", ".result.json.tmp", ".cosim.json.tmp", ".report.md.tmp", ".report.html.tmp",
              ".cifar10-jpeg-0123.npz.999999999.tmp.npz"]
    keep = ["train.ckpt", "model.pt", "model.apot", "train.json", ".notes.tmp", "notes.tmp", "model.pt.bak",
            f".cifar10-jpeg-0123.npz.{os.getpid()}.tmp.npz"]  # the last: a live process's
    for name in legacy + keep:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in atomic.remove_stale(tmp_path)) == sorted(legacy)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_hardware_outputs_clear_what_a_killed_run_left(tmp_path):
    """sim/flow's writers (manifest, cosim.json, synth.json, reports) remove a dead writer's temporaries."""
    from apotflow.sim.flow import write_json

    dead = tmp_path / ".synth.json.999999999.0123abcd.tmp"
    mine = tmp_path / f".cosim.json.{os.getpid()}.0123abcd.tmp"
    dead.write_bytes(b"{")
    mine.write_bytes(b"")
    write_json(tmp_path / "synth.json", {"fmax_mhz": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["synth.json", mine.name])
