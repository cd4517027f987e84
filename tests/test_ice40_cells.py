"""iCE40 fit by logic cells, not LUT4s: hw/flows/ice40_cells.py (the netlist estimate), the estimator's
``lc`` and devices.fit. The digits net at 4 lanes is 3,989 LUT4 (fits the UP5K's 5,280 by that count)
but 6,163 logic cells in nextpnr: it must be refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit
from apotflow.hw.flows import devices
from apotflow.hw.flows.build import design_estimate
from apotflow.sw import export

DIGITS = Path(__file__).resolve().parent.parent / "bench" / "models" / "digits.apot"

# A LUT driving two flip-flops (neither packs with it), an adder (carries in their sum LUTs' cells), a
# comparator (carry-only cells, LUT2s merged into them, a feed-out) and flip-flops fed by flip-flops.
SMALL = """
module small (input wire clk, input wire [7:0] a, input wire [7:0] b, input wire sel,
              output reg [7:0] q, output reg ge, output reg t);
    reg [7:0] c, d, r, s;
    wire [7:0] x = a ^ b;
    always @(posedge clk) begin
        c <= x;
        if (sel) d <= x;
        q <= c + d;
        ge <= c >= a;
        r <= sel ? c : d;
        s <= d;
        t <= ^(r ^ s);
    end
endmodule
"""


def test_a_design_that_fits_by_lut4_but_not_by_logic_cells_is_refused():
    """Yosys' counts of the digits build at 4 lanes with nextpnr's logic cells (docs/resources.md)."""
    counts = {"lut": 3989, "ff": 2911, "bram": 30, "spram": 0, "dsp": 0}
    assert devices.fit(counts, "ice40-up5k")["fits"]  # by LUT4 and flip-flops alone it would fit
    rep = devices.fit({**counts, "lc": 6163}, "ice40-up5k")
    assert not rep["fits"] and set(rep["over"]) == {"lc"}
    assert "logic cells: needs 6163, has 5280 (883 over)" in devices.fit_message(rep, "ice40-up5k")
    assert devices.fit({**counts, "lc": 6163}, "ecp5-25k")["fits"]  # ECP5 lists no logic cells: not checked


def test_the_estimate_refuses_the_digits_net_at_4_lanes_on_the_up5k():
    """What `make demo` checks before Yosys: the LUT4 estimate fits, the logic cells do not."""
    net = export.load(DIGITS)
    est = design_estimate(fit(net, AcceleratorConfig(lanes=4)).config, "ice40-up5k",
                          fit(net, AcceleratorConfig(lanes=4)).images)
    assert est["lut"] <= 5280 < est["lc"]
    rep = devices.fit(est, "ice40-up5k")
    assert not rep["fits"] and "lc" in rep["over"] and "lut" not in rep["over"]


@pytest.mark.yosys
def test_netlist_logic_cells_equal_nextpnr(tmp_path):
    """The packing replayed on a Yosys netlist gives nextpnr-ice40's ICESTORM_LC count exactly."""
    from apotflow.hw.flows import nextpnr, yosys
    from apotflow.hw.flows.ice40_cells import logic_cells

    (tmp_path / "small.v").write_text(SMALL)
    res = yosys.synthesize([tmp_path / "small.v"], "small", "ice40-up5k", tmp_path)
    lc = logic_cells(res["netlist"], "small")
    assert lc["ff_only"] > 0 and lc["carry_only"] > 0 and lc["merged"] > 0 and lc["feed"] > 0
    assert lc["cells"] > res["lut"] + lc["carry_only"] - lc["merged"]  # the unpacked flip-flops count
    p = nextpnr.pnr(res["netlist"], "ice40-up5k", tmp_path, 24.0)
    assert p["success"]
    assert lc["cells"] == p["utilisation"]["ICESTORM_LC"]["used"]
