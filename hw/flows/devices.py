"""Device capacities, and whether a synthesised design fits (which resource, by how much).

Numbers from the vendors' data sheets: Lattice iCE40 UltraPlus family data sheet (FPGA-DS-02008),
Lattice ECP5/ECP5-5G family data sheet (FPGA-DS-02012, LFE5U-25F / LFE5U-85F), Xilinx 7 Series
overview (DS180, XC7A100T). ``bram`` is counted in the family's block-RAM unit, the unit
:func:`apotflow.hw.flows.yosys.parse_stat` reports: SB_RAM40_4K (4 kbit), DP16KD (18 kbit),
RAMB18E1 (18 kbit; a RAMB36E1 is two).
"""

from __future__ import annotations

from collections.abc import Mapping

DEVICES: dict[str, dict] = {
    "ice40-up5k": {"family": "ice40", "lut": 5280, "ff": 5280, "lc": 5280, "bram": 30, "spram": 4, "dsp": 8,
                   "io": 39, "bram_kbit": 4, "name": "iCE40UP5K-SG48"},
    "ecp5-25k": {"family": "ecp5", "lut": 24288, "ff": 24288, "bram": 56, "spram": 0, "dsp": 28, "io": 197,
                 "bram_kbit": 18, "name": "LFE5U-25F-CABGA381"},
    "ecp5-85k": {"family": "ecp5", "lut": 83640, "ff": 83640, "bram": 208, "spram": 0, "dsp": 156, "io": 205,
                 "bram_kbit": 18, "name": "LFE5U-85F-CABGA381"},
    "xc7a100t": {"family": "xilinx", "lut": 63400, "ff": 126800, "bram": 270, "spram": 0, "dsp": 240, "io": 300,
                 "bram_kbit": 18, "name": "XC7A100T"},
}

RESOURCES = ("lut", "ff", "lc", "bram", "spram", "dsp")
# "lc": iCE40 logic cells (ICESTORM_LC: one LUT4, one flip-flop, one carry each), what nextpnr places. A
# design can fit the LUT4 and flip-flop counts and still need more cells (a flip-flop that does not pack
# with its LUT takes a cell of its own): hw/flows/ice40_cells.py estimates them from the netlist, nextpnr's
# count replaces that once placed. Only devices that list a resource are checked for it.
LABELS = {"lc": "logic cells"}


def device(target: str) -> dict:
    if target not in DEVICES:
        raise ValueError(f"Target must be one of {', '.join(DEVICES)}, not {target!r}")
    return DEVICES[target]


def fit(resources: Mapping[str, int], target: str) -> dict:
    """``{"fits", "over": {res: {"need", "have", "excess", "percent"}}, "utilisation": {res: fraction}}``.

    ``over`` names every resource the design needs more of than the device has, and by how much.
    """
    dev = device(target)
    over, util = {}, {}
    for r in RESOURCES:
        if r not in dev or (r == "lc" and resources.get(r) is None):  # lc: checked where counted
            continue
        need, have = int(resources.get(r, 0) or 0), dev[r]
        util[r] = round(need / have, 4) if have else (0.0 if need == 0 else float("inf"))
        if need > have:
            over[r] = {"need": need, "have": have, "excess": need - have,
                       "percent": round(100 * (need - have) / have, 1) if have else None}
    return {"fits": not over, "over": over, "utilisation": util}


def fit_message(report: Mapping, target: str) -> str:
    if report["fits"]:
        return f"fits {device(target)['name']}"
    parts = [f"{LABELS.get(r, r)}: needs {o['need']}, has {o['have']} ({o['excess']} over)"
             for r, o in report["over"].items()]
    return f"does not fit {device(target)['name']}: " + "; ".join(parts)
