"""The one atomic file writer, and a run's outputs published as one consistent set.

``write_atomic``: the bytes go to a temporary name in the same folder, are flushed to disk, and the
temporary is renamed over the target (``os.replace``, atomic on POSIX): a reader sees the old file or the
new one, never part of one. Every writer of the project goes through it (checkpoints, exports, run JSONs,
the hardware side's manifests and reports via sim/flow).

``publish``: the files of one run (model.pt, model.apot, train.json) are written into a hidden staging
folder beside them, then the old set is removed -- its marker (the run JSON) first -- and the new one
renamed in, the marker last. A kill at any point leaves the old set (perhaps without its marker), or part
of the new set (without its marker), or the new set: never old and new files side by side.

Temporary names carry the writer's process id (``.<name>.<pid>.<token>.tmp``, ``.publish-<pid>-<token>``),
so ``remove_stale`` deletes exactly those a killed process left, and nothing of a live one. It also deletes
the temporaries the writers before this one left (``_LEGACY``: the names they gave, which no process of this
version writes; the CIFAR cache's carried the process id too).

``crash_point``: a test hook. With ``APOTFLOW_CRASH_AT=<point>[@<n>]`` in the environment, the process kills
itself with SIGKILL the n-th time (default the first) it reaches ``<point>`` (bench/kill_points.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
from pathlib import Path

CRASH_ENV = "APOTFLOW_CRASH_AT"
_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")
_STAGE = re.compile(r"^\.publish-(\d+)-[0-9a-f]{8}$")
# the temporaries of the writers this module replaced (commit 254cd6d): a killed run of that code left them
# beside its outputs. tempfile.mkstemp's names end in 8 characters of [a-z0-9_].
_MKSTEMP = "[a-z0-9_]{8}"
_LEGACY = re.compile("|".join([
    r"^train\.ckpt\.tmp$",  # the trainer's checkpoint (f"{path}.tmp")
    rf"^.+\.pt{_MKSTEMP}\.tmp$",  # save_checkpoint: model.pt, float.pt (mkstemp, prefix the name)
    rf"^\..+\.apot\.{_MKSTEMP}$",  # export.save (mkstemp, prefix ".<name>.")
    # the run JSONs and the hardware side's manifests and reports (".<name>.tmp")
    r"^\.(train|result|manifest|synth|cosim|report)\.json\.tmp$",
    r"^\.report\.(md|html)\.tmp$",
]))
_LEGACY_PID = re.compile(r"^\..+\.npz\.(\d+)\.tmp\.npz$")  # the CIFAR cache (".<npz>.<pid>.tmp.npz")
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process here if APOTFLOW_CRASH_AT names this point (and this is its n-th visit)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes | bytearray | memoryview | str) -> Path:
    """Write ``data`` (str: UTF-8) to ``path`` so that the file is whole (old or new) or absent, never
    half-written; the folder is created if needed. Crash points: write:<name>:partial (half the bytes in
    the temporary), write:<name>:written (the whole temporary), write:<name>:replaced (renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = memoryview(data.encode() if isinstance(data, str) else data).cast("B")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            half = len(raw) // 2
            f.write(raw[:half])
            f.flush()
            crash_point(f"write:{path.name}:partial")
            f.write(raw[half:])
            f.flush()
            os.fsync(f.fileno())
        crash_point(f"write:{path.name}:written")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    crash_point(f"write:{path.name}:replaced")
    return path


def _jsonable(o):
    if hasattr(o, "tolist"):  # numpy scalars and arrays, torch tensors
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_text(data) -> str:
    """The project's JSON layout (indent 1; numpy / torch values as plain numbers or lists, paths as str)."""
    return json.dumps(data, indent=1, default=_jsonable)


def write_json(path: str | os.PathLike, data) -> Path:
    return write_atomic(path, json_text(data))


def digests(files: dict[str, bytes | str | None]) -> dict[str, str]:
    """sha256 of every file of a set that is written (a run JSON lists its set's, so a reader can check it)."""
    return {name: hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()
            for name, data in files.items() if data is not None}


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries (files and staging folders) that killed processes left in ``folder``;
    those of a process still running stay. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.iterdir():
        m = _TEMP.match(p.name) or _STAGE.match(p.name) or _LEGACY_PID.match(p.name)
        if m is not None and _alive(int(m.group(1))) or m is None and not _LEGACY.match(p.name):
            continue  # a live process's, or not a temporary of ours
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a pid the OS cannot name): leave its files
    return True


def publish(folder: str | os.PathLike, files: dict[str, bytes | str | None], marker: str) -> Path:
    """Replace the set ``files`` (name -> content; None: the set has no such file, an old one is removed)
    in ``folder`` as one set, ``marker`` (a name in ``files``, present) being the file whose presence says
    the set is complete. Crash points: publish:staged, publish:removed:<name>, publish:renamed:<name>."""
    folder = Path(folder)
    if files.get(marker) is None:
        raise ValueError(f"publish: the marker {marker!r} must be one of the files written")
    folder.mkdir(parents=True, exist_ok=True)
    stage = folder / f".publish-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        for name, data in files.items():
            if data is not None:
                write_atomic(stage / name, data)
        crash_point("publish:staged")
        order = [marker] + [n for n in files if n != marker]
        for name in order:  # the old set loses its marker first
            (folder / name).unlink(missing_ok=True)
            crash_point(f"publish:removed:{name}")
        for name in reversed(order):  # the new set gets its marker last
            if files[name] is not None:
                os.replace(stage / name, folder / name)
                crash_point(f"publish:renamed:{name}")
        _fsync_dir(folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder / marker
