"""iCE40 logic cells of a synthesised netlist, counted the way nextpnr-ice40 packs them.

An iCE40 logic cell (ICESTORM_LC) holds one LUT4, one flip-flop and one carry. Yosys' counts (SB_LUT4,
SB_DFF*, SB_CARRY) are not the cells a design needs: a flip-flop shares a cell only with the LUT that
drives its D input and nothing else, a carry only with the LUT that has its two operands on I1/I2, and
carry chains need cells to enter and leave the fabric. :func:`logic_cells` replays nextpnr's packer
(ice40/pack.cc: LUT-FF pairs, flip-flops alone, carries, LUT2s merged into carry-only cells; chains.cc:
feed-in and feed-out cells) on the JSON netlist that :func:`apotflow.hw.flows.yosys.synthesize` writes.
It is an estimate: the chains' splits at tiles of incompatible flip-flops are not modelled (a few cells;
docs/resources.md compares it with nextpnr), and nextpnr's own count replaces it once placed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

WHAT = ("estimated from the netlist by nextpnr's packing rules: a cell per LUT4, per flip-flop not driven "
        "by a LUT alone, per carry without a LUT on its operands, per carry-chain feed-in/out, and the "
        "constant drivers")


class _Lc:
    __slots__ = ("ins", "out", "ff", "carry", "cin", "cout", "name")

    def __init__(self, name, ins=None, out=None, ff=False):
        self.name, self.ins, self.out, self.ff = name, dict(ins or {}), out, ff
        self.carry, self.cin, self.cout = False, None, None


def _net(bit, vcc: str = "$VCC"):
    """A netlist bit as nextpnr sees it on a LUT/carry input: constant 0 (and x) disconnected, 1 the VCC net."""
    if bit in ("0", "x", "z"):
        return None
    return vcc if bit == "1" else bit


def logic_cells(netlist: dict | str | Path, top: str | None = None) -> dict:
    """``{"cells", "lut_only", "lut_ff", "ff_only", "carry_only", "merged", "feed", "const", "what"}`` for
    the iCE40 netlist (Yosys ``write_json``: a dict, its text or a path)."""
    if not isinstance(netlist, dict):
        text = Path(netlist).read_text() if not str(netlist).lstrip().startswith("{") else str(netlist)
        netlist = json.loads(text)
    mods = netlist["modules"]
    if top is None:
        tops = [n for n, m in mods.items() if int(m.get("attributes", {}).get("top", 0) or 0)]
        top = tops[0] if tops else max(mods, key=lambda n: len(mods[n].get("cells", {})))
    mod = mods[top]
    cells = mod["cells"]
    users: dict = defaultdict(list)  # bit -> [(cell, port)]
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c["connections"].items():
            if dirs.get(port, "input") == "output":
                continue
            for b in bits:
                if isinstance(b, int):
                    users[b].append((name, port))
    for pname, p in mod.get("ports", {}).items():
        if p["direction"] != "input":
            for b in p["bits"]:
                if isinstance(b, int):
                    users[b].append(("$port", pname))

    def one(c, port):
        bits = c["connections"].get(port, ["x"])
        return bits[0] if bits else "x"

    is_ff = {n for n, c in cells.items() if c["type"].startswith("SB_DFF")}
    lcs: list[_Lc] = []
    ff_packed = set()
    lut_ff = 0
    # LUT-FF pairs (pack_lut_lutffs): the LUT's output has one user, a flip-flop's D
    for n, c in cells.items():
        if c["type"] != "SB_LUT4":
            continue
        o = one(c, "O")
        ins = {p: _net(one(c, p)) for p in ("I0", "I1", "I2", "I3")}
        u = users.get(o, []) if isinstance(o, int) else []
        ff = len(u) == 1 and u[0][0] in is_ff and u[0][1] == "D"
        if ff:
            ff_packed.add(u[0][0])
            lut_ff += 1
        lcs.append(_Lc(n, ins, o if isinstance(o, int) else None, ff))
    lut_only = len(lcs) - lut_ff
    # flip-flops alone (pack_nonlut_ffs): a pass-through LUT on I0
    ff_only = 0
    for n in is_ff - ff_packed:
        lcs.append(_Lc(n, {"I0": _net(one(cells[n], "D"))}, None, True))
        ff_only += 1
    # carries (pack_carries): into the LC with the carry's I0 on I1 and I1 on I2, preferring the LC that
    # has the carry-in on I3 (the adder's sum LUT), else a new carry-only LC
    by_in: dict = defaultdict(list)  # (port, net) -> LCs
    for lc in lcs:
        for p, net in lc.ins.items():
            if net is not None:
                by_in[(p, net)].append(lc)
    exhausted, created, carry_lc = set(), set(), {}
    carry_only = 0
    carry_lcs: list[_Lc] = []
    for n, c in cells.items():
        if c["type"] != "SB_CARRY":
            continue
        ci_bit = one(c, "CI")
        ci_const = not isinstance(ci_bit, int)
        i0, i1 = _net(one(c, "I0")), _net(one(c, "I1"))
        m0 = {id(x): x for x in by_in.get(("I1", i0), []) if id(x) not in exhausted} if i0 is not None else {}
        m1 = {id(x): x for x in by_in.get(("I2", i1), []) if id(x) not in exhausted} if i1 is not None else {}
        if i1 is None:
            m1.update({k: x for k, x in m0.items() if x.ins.get("I2") is None})
        if i0 is None:
            m0.update({k: x for k, x in m1.items() if x.ins.get("I1") is None})
        both = {k: x for k, x in m0.items() if k in m1}
        ci_lc = None
        if not ci_const:
            ci_lc = next((x for x in by_in.get(("I3", ci_bit), [])), None)
        if ci_lc is not None and id(ci_lc) in both:
            lc = ci_lc
        elif ci_const and len(both) == 1:
            lc = next(iter(both.values()))
        else:
            lc = _Lc(n + "$CARRY", {"I1": i0, "I2": i1})
            carry_only += 1
            carry_lcs.append(lc)
            created.add(id(lc))
        lc.carry = True
        lc.cin = None if ci_const else ci_bit
        co = one(c, "CO")
        lc.cout = co if isinstance(co, int) and users.get(co) else None
        exhausted.add(id(lc))
        carry_lc[n] = lc
    lcs += carry_lcs
    # LUT2s merged into carry-only LCs (merge_carry_luts): a LUT-only LC on I1/I2 of a carry LC whose own
    # LUT output is free, using at most its I2 and I3
    driver = {lc.out: lc for lc in lcs if lc.out is not None}
    merged = set()
    for lc in lcs:
        if not lc.carry or lc.out is not None:
            continue
        for p in ("I1", "I2"):
            net = lc.ins.get(p)
            drv = driver.get(net) if isinstance(net, int) else None
            if drv is None or id(drv) in merged or drv.carry or drv.ff:
                continue
            if drv.ins.get("I0") is not None or drv.ins.get("I1") is not None:
                continue
            merged.add(id(drv))
            lc.out = drv.out
            driver[drv.out] = lc
            break
    # carry chains (chains.cc): a feed-in cell where a chain's carry-in comes from the fabric, a feed-out
    # cell where a carry-out reaches more than the next carry-in and that cell's own I3
    lc_of = {lc.name: lc for lc in lcs}
    lc_of.update(carry_lc)
    carry_outs = {lc.cout for lc in lcs if lc.carry and lc.cout is not None}
    feed = 0
    for lc in lcs:
        if not lc.carry:
            continue
        if lc.cin is not None and lc.cin not in carry_outs:
            feed += 1  # the chain starts from the fabric
        if lc.cout is None:
            continue
        u = set()  # the carry-out's users as (cell, port) after packing
        for cell, port in users.get(lc.cout, []):
            typ = cells[cell]["type"] if cell in cells else ""
            if typ == "SB_CARRY":
                if port == "CI":
                    u.add((id(lc_of[cell]), "CIN"))
                elif id(lc_of[cell]) in created:
                    u.add((id(lc_of[cell]), "I1" if port == "I0" else "I2"))
            elif cell in lc_of:
                u.add((id(lc_of[cell]), port if typ == "SB_LUT4" else "I0"))
            else:
                u.add((cell, port))
        i3 = [x for x, port in u if port == "I3"]
        cin = [x for x, port in u if port == "CIN"]
        if not cin:  # the chain's end: fine only if its one user is a carry-less cell's I3 (the chain's top)
            top = len(u) == 1 and i3 and not next(x for x in lcs if id(x) == i3[0]).carry
            feed += 0 if top else 1
        elif len(u) > 2 or (len(u) == 2 and (not i3 or i3[0] != cin[0])):
            feed += 1
    # nextpnr's constant drivers: the VCC cell always (carry legalisation may need it), GND where a 0 is used
    const = 1 + any(b == "0" for c in cells.values() for bits in c["connections"].values() for b in bits)
    total = lut_only + lut_ff + ff_only + carry_only - len(merged) + feed + const
    return {"cells": total, "lut_only": lut_only, "lut_ff": lut_ff, "ff_only": ff_only, "carry_only": carry_only,
            "merged": len(merged), "feed": feed, "const": const, "what": WHAT}
