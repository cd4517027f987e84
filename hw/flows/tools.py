"""Running one external tool: log to a file, report progress, fail with the tool's own errors."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ToolError", "run_tool"]

_ERROR = re.compile(r"^(ERROR|Error|error)\b|^ERROR:|: error:")


class ToolError(RuntimeError):
    """An external tool exited with an error; the message holds its own ERROR lines."""

    def __init__(self, tool: str, lines: list[str], log: Path | None) -> None:
        self.tool, self.lines, self.log = tool, lines, log
        where = f"\n(full log: {log})" if log else ""
        super().__init__(f"{tool} failed:\n" + "\n".join(lines) + where)


def run_tool(
    cmd: Sequence[str],
    cwd: Path,
    log_path: Path,
    progress: Callable[[str], None] | None = None,
    progress_filter: re.Pattern[str] | None = None,
) -> float:
    """Run ``cmd`` in ``cwd`` with stdout and stderr going to ``log_path``; return the seconds taken.

    Lines matching ``progress_filter`` (all lines if it is ``None``) are passed to ``progress``.
    Raises :class:`ToolError` with the tool's error lines (or the log's tail) on a nonzero exit.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    errors: list[str] = []
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as proc,
    ):
        assert proc.stdout is not None
        tail: list[str] = []
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
        returncode = proc.wait()
    if returncode != 0:
        raise ToolError(Path(cmd[0]).name, errors or tail, log_path)
    return time.perf_counter() - start
