"""An ECP5 DP16KD block RAM as a ROM whose word register is the block's own output register.

Yosys' ECP5 memory mapping (``memory_libmap`` with ``lattice/brams_16kd.txt``) leaves a block RAM's
output register unused (``REGMODE "NOREG"``), so a read port followed by a register becomes a DP16KD
and a fabric flip-flop fed by the block's slow clock-to-output and a route out of the RAM column.
:func:`dp16kd_rom` instantiates the DP16KD itself, 2,048 x 9 bits a block, with ``REGMODE_A
"OUTREG"``: the address of cycle t gives its word in cycle t+2 at the block's pins, the same latency
as a synchronous read port and one register (``hw/top.wgt_rom``'s banks). :func:`dp16kd_ram` is the same
for a RAM with one write and one read port (the ACT banks). The contents are the
block's ``INITVAL_00..3F`` parameters in the layout Yosys gives an inferred 2,048 x 9 memory
(:func:`initvals`; ``tests/test_ecp5_bram.py`` compares the two through Yosys).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal

WORDS, BITS = 2048, 9  # one DP16KD in its 2,048 x 9 mode
ADDR_BITS = 11  # its word address bits
ROW_BITS = 2 * BITS  # the word of its 1,024 x 18 mode
ADDR_LSB = 3  # the word address sits on ADA3..ADA13 in the 9-bit mode (ADA0..2: 0)
SLOT_BITS, SLOTS = 20, 16  # an INITVAL_xx parameter: 16 slots of 20 bits, each one 18-bit row
N_INITVAL = WORDS * BITS // (ROW_BITS * SLOTS)  # 64: INITVAL_00 .. INITVAL_3F


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


def _dp16kd(m: Module, name: str, data: Signal, params: dict, read: str, ports: dict) -> Signal:
    """One DP16KD in its 2,048 x 9 mode on both ports (1,024 x 18 where ``data`` has 18 bits), the ``read``
    port's output register on; ``ports``: the used ports' Amaranth Instance arguments (the rest tied off)."""
    width = len(data)
    tied = {f"i_{p}{s}{i}": Const(0, 1) for s in "AB" for p, n in (("AD", 14), ("DI", 18)) for i in range(n)}
    tied |= {f"i_{p}{s}": Const(0, 1) for s in "AB" for p in ("WE", "RST")}
    tied |= {f"i_CS{s}{i}": Const(0, 1) for s in "AB" for i in range(3)}
    used = "AB" if "i_WEA" in ports else read  # an unused port's clock and enables stay 0
    tied |= {f"i_{p}{s}": Const(int(s in used), 1) for s in "AB" for p in ("CE", "OCE")}
    tied |= {f"i_CLK{s}": ClockSignal("sync") if s in used else Const(0, 1) for s in "AB"}
    tied |= {f"o_DO{read}{i}": data[i] for i in range(width)}
    m.submodules[name] = Instance(
        "DP16KD", p_DATA_WIDTH_A=width, p_DATA_WIDTH_B=width, p_REGMODE_A="OUTREG" if read == "A" else "NOREG",
        p_REGMODE_B="OUTREG" if read == "B" else "NOREG", p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
        p_CSDECODE_A="0b000", p_CSDECODE_B="0b000", p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
        p_GSR="DISABLED", **params, **(tied | ports))
    return data


def _addr(port: str, addr, lsb: int = ADDR_LSB) -> dict:
    return {f"i_AD{port}{i}": addr[i - lsb] if i - lsb < len(addr) else Const(0, 1) for i in range(lsb, 14)}


def dp16kd_rom(m: Module, name: str, addr, words: list[int], width: int = BITS) -> Signal:
    """A ``WORDS`` x ``BITS`` ROM holding ``words`` (zero-filled), read latency 2 through the block's output
    register (port A); ``addr``: its word address (11 bits). Returns the data signal (DOA0..8). ``width`` 18:
    the block's 1,024 x 18 mode (a 10-bit address on ADA4..13, DOA0..17; row r is word r, the two 9-bit
    halves of the 2,048 x 9 layout), as Yosys maps a 1,024 x 18 memory."""
    if width not in (BITS, 2 * BITS):
        raise ValueError(f"a DP16KD ROM is {BITS} or {2 * BITS} bits wide, not {width}")
    if width == 2 * BITS:
        if len(words) > WORDS // 2 or any(not 0 <= w < 1 << width for w in words):
            raise ValueError(f"a 1,024 x 18 DP16KD ROM holds at most {WORDS // 2} words of 18 bits")
        words = [h for w in words for h in (w & (1 << BITS) - 1, w >> BITS)]
    params = {f"p_INITVAL_{k:02X}": Const(v, 320) for k, v in enumerate(initvals(words))}
    return _dp16kd(m, name, Signal(width, name=f"{name}_q"), params, "A",
                   _addr("A", addr, ADDR_LSB + (width == 2 * BITS)))


def dp16kd_ram(m: Module, name: str, raddr, waddr, wdata, we) -> Signal:
    """A ``WORDS`` x ``BITS`` RAM without contents: written through port A (``we``, ``waddr``, ``wdata``, at the
    clock edge), read through port B and its output register (the word at ``raddr`` of cycle t in cycle
    t+2), as Yosys maps a memory with one write and one read port (write A, read B). A read of the word
    written in the same cycle is not defined (the caller never does it). Returns the data signal (DOB0..8)."""
    ports = _addr("A", waddr) | _addr("B", raddr) | {f"i_DIA{i}": wdata[i] if i < len(wdata) else Const(0, 1)
                                                     for i in range(BITS)}
    return _dp16kd(m, name, Signal(BITS, name=f"{name}_q"), {}, "B", ports | {"i_WEA": we})
