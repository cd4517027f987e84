"""Amaranth views of the ISA records, and the read-only memories that hold them.

``struct(layout)`` turns an ``isa.Layout`` (LSB-first fields) into an ``amaranth.lib.data.StructLayout``
with the same bit positions, so the RTL decodes exactly what ``isa`` packs. ``rom()`` builds a
synchronous-read ROM either as an ``amaranth.lib.memory.Memory`` (simulation, init from the images) or
as an instance of ``apotflow_rom`` (``$readmemh`` of a hex file at elaboration time of the simulator or
synthesis tool, so weights can be swapped without regenerating Verilog).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from . import isa

ROM_STYLES = ("memory", "readmemh")


def reject(component, exc: Exception):
    """Raise a parameter error from a component's __init__ without Amaranth also warning, at exit,
    that the half-built component was never elaborated."""
    component._MustUse__silence = True
    raise exc


def struct(layout: isa.Layout) -> data.StructLayout:
    return data.StructLayout({f.name: (signed(f.width) if f.signed else unsigned(f.width)) for f in layout.fields})


def addr_bits(depth: int) -> int:
    """The address width of a memory of ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


def rom(m, name: str, width: int, depth: int, init, n_ports: int, rom_style: str, init_file: str,
        attrs: dict | None = None):
    """A ROM with ``n_ports`` (1 or 2) synchronous read ports, always enabled. ``attrs``: Verilog
    attributes of the memory (rom_style "memory" only; e.g. Yosys' ``rom_style``).

    Returns a list of ``(addr, data)`` signal pairs; data for the address presented in cycle t is
    valid in cycle t+1.
    """
    if rom_style not in ROM_STYLES:
        raise ValueError(f"rom_style must be one of {ROM_STYLES}, not {rom_style!r}")
    abits = addr_bits(depth)
    if rom_style == "memory":
        words = list(init or [])
        if len(words) > depth:
            raise ValueError(f"{name}: {len(words)} init words do not fit depth {depth}")
        mem = Memory(shape=unsigned(width), depth=depth, init=words + [0] * (depth - len(words)), attrs=attrs)
        m.submodules[name] = mem
        ports = []
        for _ in range(n_ports):
            rp = mem.read_port(domain="sync")
            ports.append((rp.addr, rp.data))
        return ports
    ports = [(Signal(abits, name=f"{name}_addr{i}"), Signal(width, name=f"{name}_data{i}")) for i in range(2)]
    m.submodules[name] = Instance(
        "apotflow_rom",
        p_WIDTH=width, p_DEPTH=depth, p_ABITS=abits, p_INIT_FILE=init_file,
        i_clk=ClockSignal("sync"),
        i_addr_a=ports[0][0], o_data_a=ports[0][1],
        i_addr_b=ports[1][0], o_data_b=ports[1][1],
    )
    return ports[:n_ports]
