"""An ECP5 DP16KD block RAM as a ROM whose word register is the block's own output register.

Yosys' ECP5 memory mapping (``memory_libmap`` with ``lattice/brams_16kd.txt``) leaves a block RAM's
output register unused (``REGMODE "NOREG"``), so a read port followed by a register becomes a DP16KD
and a fabric flip-flop fed by the block's slow clock-to-output and a route out of the RAM column.
:func:`dp16kd_rom` instantiates the DP16KD itself, 2,048 x 9 bits a block, with ``REGMODE_A
"OUTREG"``: the address of cycle t gives its word in cycle t+2 at the block's pins, the same latency
as a synchronous read port and one register (``hw/top.wgt_rom``'s banks). The contents are the
block's ``INITVAL_00..3F`` parameters in the layout Yosys gives an inferred 2,048 x 9 memory
(:func:`initvals`; ``tests/test_ecp5_bram.py`` compares the two through Yosys).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal

WORDS, BITS = 2048, 9  # one DP16KD in its 2,048 x 9 mode
ADDR_LSB = 3  # the word address sits on ADA3..ADA13 in the 9-bit mode (ADA0..2: 0)
SLOT_BITS, SLOTS = 20, 16  # an INITVAL_xx parameter: 16 slots of 20 bits, each one 18-bit row
N_INITVAL = WORDS * BITS // (18 * SLOTS)  # 64: INITVAL_00 .. INITVAL_3F


def initvals(words: list[int]) -> list[int]:
    """The 64 INITVAL parameters (320 bits each) of a 2,048 x 9 DP16KD holding ``words``: 18-bit row
    r = words 2r (bits 0..8) and 2r + 1 (bits 9..17), in slot r mod 16 of INITVAL r // 16."""
    if len(words) > WORDS or any(not 0 <= w < 1 << BITS for w in words):
        raise ValueError(f"a DP16KD ROM holds at most {WORDS} words of {BITS} bits")
    vals = [0] * N_INITVAL
    for a, w in enumerate(words):
        r = a >> 1
        vals[r // SLOTS] |= w << ((r % SLOTS) * SLOT_BITS + (a & 1) * BITS)
    return vals


def dp16kd_rom(m: Module, name: str, addr, words: list[int]) -> Signal:
    """A ``WORDS`` x ``BITS`` ROM holding ``words`` (zero-filled), read latency 2 through the block's output
    register; ``addr``: its 11-bit word address. Returns the data signal (the DP16KD's DOA0..8)."""
    data = Signal(BITS, name=f"{name}_q")
    ports = {f"i_ADA{i}": (addr[i - ADDR_LSB] if i >= ADDR_LSB else Const(0, 1)) for i in range(14)}
    ports |= {f"i_DIA{i}": Const(0, 1) for i in range(18)} | {f"i_ADB{i}": Const(0, 1) for i in range(14)}
    ports |= {f"i_DIB{i}": Const(0, 1) for i in range(18)}
    ports |= {f"o_DOA{i}": data[i] for i in range(BITS)}
    params = {f"p_INITVAL_{k:02X}": Const(v, 320) for k, v in enumerate(initvals(words))}
    m.submodules[name] = Instance(
        "DP16KD", p_DATA_WIDTH_A=BITS, p_DATA_WIDTH_B=BITS, p_REGMODE_A="OUTREG", p_REGMODE_B="NOREG",
        p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
        p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED", **params,
        i_CLKA=ClockSignal("sync"), i_CEA=Const(1, 1), i_OCEA=Const(1, 1), i_WEA=Const(0, 1), i_RSTA=Const(0, 1),
        i_CSA0=Const(0, 1), i_CSA1=Const(0, 1), i_CSA2=Const(0, 1),
        i_CLKB=Const(0, 1), i_CEB=Const(0, 1), i_OCEB=Const(0, 1), i_WEB=Const(0, 1), i_RSTB=Const(0, 1),
        i_CSB0=Const(0, 1), i_CSB1=Const(0, 1), i_CSB2=Const(0, 1), **ports)
    return data
