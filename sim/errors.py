"""The exceptions a user can cause, caught by the CLI and printed as one line (exit status 2)."""

from __future__ import annotations


def _collect() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [FileNotFoundError, IsADirectoryError, PermissionError]
    from apotflow.hw.config import ConfigError
    from apotflow.sw.export import ExportError
    from apotflow.sw.intnet import IntNetError

    errs += [ConfigError, ExportError, IntNetError]
    try:
        from apotflow.hw.compile import CompileError

        errs.append(CompileError)
    except ImportError:  # pragma: no cover
        pass
    from apotflow.hw.flows.tools import ToolError
    from apotflow.sim.runner import BuildError, SimulationError
    from apotflow.sim.toolpaths import ToolNotFound

    errs += [ToolError, BuildError, SimulationError, ToolNotFound]
    from apotflow.sim.flow import FlowError

    errs.append(FlowError)
    return tuple(errs)


USER_ERRORS = _collect()
