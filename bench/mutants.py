"""RTL mutation testing: do the shipped co-simulation checks catch single faults in the hardware?

Each mutant changes one thing and runs the shipped checks (sim/cosim_suite.py: the digits net, random
networks that exercise empty and single-entry channels, writeback stalls, non-square tensors and max
pooling, a small random-weight ResNet-8 and VGG-16) on Verilator:

* Verilog mutants change one operator (or one operand, or swap one multiplexer's branches) in the
  generated Verilog. The design is generated with Amaranth's source attributes, so each expression
  carries the hw/*.py line it came from (``assign x = a + (* src = ".../hw/lane.py:81" *) b;``); a
  mutant names its Python line by a unique piece of its text (``anchor``), the operator, optionally a
  regular expression the Verilog statement must match (``where``) and the module, and states how
  many statements it must change (``count``). If the anchor is not on exactly one line of hw/, or the
  number of statements found differs, the bench stops with an error: a mutation never silently
  misses. Statements inside a process (``always @*``) carry no source attribute: a process mutant
  finds them by the registers they drive, and names the hw/ line it models by an anchor all the same.
  All networks of a suite share one config, so each mutant costs one Verilator build (started from a
  build folder shared by all mutants of that suite: only the C++ that changed is recompiled).
* Memory-image mutants change one word of what the RTL loads with $readmemh (a weight entry's code or
  delta, a value-table or tap-table row, a requant row's threshold, bias or count, a descriptor's
  shift) or the input image the RTL is given (the golden model still sees the original).

Two suites: the shipped checks (``SUITE``, 8 lanes, no lane groups) and the lane-groups suite
(``GROUPS_SUITE``: 16 lanes, lane_groups 8; the fold tree, the slots' decode, the grouped weight
stream and S3's padding copies exist only in such a build). A mutant runs on one of them (``suite``).

A mutant is "caught" when a check fails -- the first differing value (layer, tensor, index), a
cycle count that differs from the exact cycle model (layer), or a hang (the layer running) -- and
the result names it; by default the networks run in the suite's order and a mutant stops at the
first that catches it (``--all-networks``: every network, for the full matrix). A mutant that no
network catches is "survived" unless it is listed in ``EQUIVALENT`` with the argument why it cannot
change any result.

    nice -n 10 .venv/bin/python bench/mutants.py --out bench/results/mutants.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A mutation that does not apply where it should (the Verilog or hw/ changed): fix the bench."""


@dataclass(frozen=True)
class VerilogMutant:
    name: str
    kind: str  # adder, subtractor, shift, comparator, counter, enable, padding mask, mux, max select, mode decode
    py: str  # hw/<file>.py
    anchor: str  # a piece of text on exactly one line of py
    op: str  # the Verilog operator the statement's source attribute follows ("+", "?", "==", "<<", ...)
    new: str  # the replacement operator; "swap": exchange a multiplexer's branches; "=<text>": the right operand
    where: str = ""  # a regular expression the (attribute-free) statement must match
    module: str = "apotflow_top"  # the Verilog module ("apotflow_top.lane3", "apotflow_top.seq", ...)
    count: int | str = 1  # statements it must change (an int, or an expression of cfg)
    what: str = ""
    suite: str = "base"  # "base" (sim/cosim_suite.SUITE), "groups" (GROUPS_SUITE, the lane-groups config), "wb2"


@dataclass(frozen=True)
class ProcessMutant:
    """Statements inside a process, which carry no source attribute: ``edit(lines, first, last, cfg)``
    finds them in the module's lines (by the registers they drive) and returns {line index: new line};
    ``anchor`` names the hw/ line the statements come from (it must be on exactly one line, as above)."""
    name: str
    kind: str
    py: str
    anchor: str
    edit: Callable
    module: str = "apotflow_top"
    count: int | str = 1
    what: str = ""
    suite: str = "base"


@dataclass(frozen=True)
class MemoryMutant:
    name: str
    kind: str
    apply: Callable  # (loaded network, cosim setup) -> False when the network has nothing to mutate
    what: str = ""
    suite: str = "base"


_SRC = re.compile(r' \(\* src = "([^"]*)" \*\)')
_ASSIGN = re.compile(r"^  assign (.+) = (.+);$")


def py_line(py: str, anchor: str) -> int:
    """The line number of anchor in hw/<py>; a BenchError unless it is on exactly one line."""
    import apotflow.hw

    text = (Path(apotflow.hw.__file__).parent.parent / py).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(text) if anchor in line]
    if len(hits) != 1:
        raise BenchError(f"anchor {anchor!r} is on {len(hits)} lines of {py}, not 1")
    return hits[0]


def _modules(text: str):
    """(module name, first line index, last line index) of every module of the Verilog."""
    lines = text.split("\n")
    out, cur, start = [], None, 0
    for i, line in enumerate(lines):
        m = re.match(r"^module \\?(\S+) ?\(", line)
        if m:
            cur, start = m.group(1), i
        elif line.startswith("endmodule") and cur:
            out.append((cur, start, i))
            cur = None
    return lines, out


def _mutate_statement(line: str, py: str, n: int, op: str, new: str) -> str | None:
    """The statement with its op (the one followed by the source attribute of py:n) mutated; None if
    the statement has no such op."""
    m = re.search(r"(\S+)" + re.escape(' (* src = "') + r'[^"]*?/' + re.escape(f'{py}:{n}" *)'), line)
    if not m or m.group(1) != op:
        return None
    a, b = m.span(1)
    if new == "swap":  # c ? x : y  ->  c ? y : x  (Yosys writes one ? : per statement, operands without " : ")
        head, rest = line[:m.end()], line[m.end():]
        body = rest.rstrip().rstrip(";")
        if body.count(" : ") != 1:
            raise BenchError(f"cannot split the multiplexer {line.strip()!r}")
        x, y = body.split(" : ")
        return f"{head} {y.strip()} : {x.strip()} ;"
    if new.startswith("="):  # replace the right operand
        head, rest = line[:m.end()], line[m.end():]
        return f"{head} {new[1:]} ;"
    return line[:a] + new + line[b:]


def mutate(verilog: str, mu: VerilogMutant | ProcessMutant, cfg) -> tuple[str, list[dict]]:
    """The mutated Verilog and the statements changed (module, line, before, after)."""
    n = py_line(mu.py, mu.anchor)
    lines, mods = _modules(verilog)
    want = mu.count if isinstance(mu.count, int) else int(eval(mu.count, {"cfg": cfg}))  # noqa: S307
    changed = []
    for name, a, b in mods:
        if name != mu.module:
            continue
        if isinstance(mu, ProcessMutant):
            for i, new in sorted(mu.edit(lines, a, b, cfg).items()):
                changed.append({"module": name, "verilog_line": i + 1, "before": lines[i].strip(), "after": new.strip()})
                lines[i] = new
            continue
        for i in range(a, b):
            if not _ASSIGN.match(lines[i]) or f"{mu.py}:{n}\"" not in lines[i]:
                continue
            clean = _SRC.sub("", lines[i])
            if mu.where and not re.search(mu.where, clean):
                continue
            new = _mutate_statement(lines[i], mu.py, n, mu.op, mu.new)
            if new is None:
                continue
            changed.append({"module": name, "verilog_line": i + 1, "before": clean.strip(),
                            "after": _SRC.sub("", new).strip()})
            lines[i] = new
    if len(changed) != want and isinstance(mu, ProcessMutant):
        raise BenchError(f"mutant {mu.name}: {len(changed)} process statement(s) for {mu.py}:{n} ({mu.anchor!r}) "
                         f"in {mu.module}, expected {want}")
    if len(changed) != want:
        raise BenchError(f"mutant {mu.name}: {len(changed)} statement(s) of {mu.py}:{n} ({mu.anchor!r}) with "
                         f"{mu.op!r} in {mu.module}{' matching ' + repr(mu.where) if mu.where else ''}, expected {want}")
    return "\n".join(lines), changed


def generate(cfg) -> str:
    """apotflow_top.v of cfg with the source attributes (hw/*.py lines) the mutants are located by."""
    from apotflow.sim.cosim import top_verilog

    return top_verilog(cfg, emit_src=True)


L3, SEQ, RQU, ACT = "apotflow_top.lane3", "apotflow_top.seq", "apotflow_top.rqu", "apotflow_top.act"
VERILOG_MUTANTS = [
    # the lane (one lane of eight: lane 3)
    VerilogMutant("lane-terms-add", "adder", "hw/lane.py", "contrib.eq(sum(sh[1:], sh[0]))", "+", "-", module=L3,
                  what="the sum of the shifted terms subtracts"),
    VerilogMutant("lane-term-shift", "shift", "hw/lane.py", "Mux(c.en[t], self.a, 0) << c.s[t]", "<<", ">>",
                  module=L3, count="cfg.terms", what="the terms' barrel shifters shift right"),
    VerilogMutant("lane-term-enable", "enable", "hw/lane.py", "Mux(c.en[t], self.a, 0) << c.s[t]", "?", "swap",
                  module=L3, count="cfg.terms", what="a term's enable inverted"),
    VerilogMutant("lane-sign", "mux", "hw/lane.py", "term.eq(Mux(sign, -contrib, contrib))", "?", "swap", module=L3,
                  what="the product's sign inverted"),
    VerilogMutant("lane-acc-add", "adder", "hw/lane.py", "r.eq((base ^ c3.rmax", "+", "-", module=L3,
                  what="the accumulator subtracts"),
    VerilogMutant("lane-max-xor", "max select", "hw/lane.py", "r.eq((base ^ c3.rmax", "^", "&", module=L3,
                  what="max mode's complement of the base dropped (the adder no longer compares)"),
    VerilogMutant("lane-keep-base", "max select", "hw/lane.py", "keep_base = c3.rmax & r[-1]", "&", "|", module=L3,
                  count=2, what="max pooling keeps the base whenever the sign is set, in sum mode too"),
    VerilogMutant("lane-max-mux", "max select", "hw/lane.py", "Mux(keep_base, c3.bias, term)", "?", "swap", module=L3,
                  what="max pooling takes the smaller operand"),
    VerilogMutant("lane-first", "mux", "hw/lane.py", "base.eq(Mux(c3.first, c3.bias, self.acc))", "?", "swap",
                  module=L3, what="a group's first entry adds to the old accumulator instead of the bias"),
    VerilogMutant("lane-valid", "enable", "hw/lane.py", "with m.If(c3.valid & ~(keep_base", "&", "|", module=L3,
                  where=r"= c3\[0\] &", what="the accumulator is written without a valid entry"),
    # the requantizer
    VerilogMutant("rq-compare", "comparator", "hw/requant.py", "else self.acc) >= self.thr[j]", ">=", ">",
                  module=RQU, count="cfg.max_levels - 1", what="acc > threshold instead of >="),
    VerilogMutant("rq-popcount", "adder", "hw/requant.py", "vals[i] + vals[i + 1] if i + 1", "+", "-", module=RQU,
                  count="cfg.max_levels - 2", what="the level index subtracts the comparator bits"),
    VerilogMutant("rq-mode", "mode decode", "hw/requant.py", "with m.If(self.mode == isa.MODE_THRESH)", "!", "|",
                  module=RQU, what="threshold and shift modes swapped (MODE_THRESH is 0: ! mode becomes | mode)"),
    VerilogMutant("rq-shift", "shift", "hw/requant.py", "self.value.eq(acc_q >> self.shift)", ">>>", ">>", module=RQU,
                  what="the shift mode's arithmetic shift becomes logical"),
    # the sequencer
    VerilogMutant("seq-total-counter", "counter", "hw/sequencer.py", "m.d.sync += [layer_cyc.eq(layer_cyc + 1), total",
                  "+", "=2'h2", module=SEQ, where=r"= total \+", what="the total cycle counter counts in twos"),
    VerilogMutant("seq-perf-counter", "counter", "hw/sequencer.py", "self.perf_wdata.eq(Mux(restart, 2, layer_cyc + 1))",
                  "+", "=1'h0", module=SEQ, what="the last layer's perf counter one cycle short"),
    VerilogMutant("seq-done-cycles", "counter", "hw/sequencer.py", "self.cycles.eq(total + 1)", "+", "=1'h0",
                  module=SEQ, what="the reported cycle total one short"),
    VerilogMutant("seq-wptr", "counter", "hw/sequencer.py", "m.d.sync += w.eq(w + (w_step if grouped else 1))", "+", "=2'h2", module=SEQ,
                  where=r"= wgt_addr \+", what="the weight pointer skips every other entry"),
    VerilogMutant("seq-last-entry", "comparator", "hw/sequencer.py", "set_all(last_es, e2 == cur_count)", "==", "!=",
                  module=SEQ, what="a group's last entry misdetected"),
    VerilogMutant("seq-wb-stall", "enable", "hw/sequencer.py", "go = ~last_e | wb_free", "|", "=1'h1", module=SEQ,
                  count=4, where=r"\| wb_free", what="the writeback stall removed (a last entry never waits)"),
    VerilogMutant("seq-wb-wait", "subtractor", "hw/sequencer.py", "wb_wait.eq((nvalid - 1) >> (W - 1))", "-", "=2'h2", module=SEQ,
                  what="the stall two cycles shorter than the writeback needs"),
    VerilogMutant("seq-wb-free", "comparator", "hw/sequencer.py", "set_all(wb_frees, wb_wait == 1)", "==", "=2'h2",
                  module=SEQ, what="the writeback buffer freed a cycle early"),
    VerilogMutant("seq-last-group", "comparator", "hw/sequencer.py", "| (rem == 2 * L)", "==", "!=", module=SEQ,
                  what="the last pixel group misdetected"),
    VerilogMutant("seq-p0", "adder", "hw/sequencer.py", "p0.eq(p0 + L), rem.eq(rem - L)", "+", "-", module=SEQ,
                  what="the pixel group walks backwards"),
    VerilogMutant("seq-rem", "subtractor", "hw/sequencer.py", "p0.eq(p0 + L), rem.eq(rem - L)", "-", "+", module=SEQ,
                  what="the remaining-pixel count grows"),
    VerilogMutant("seq-ch-w", "adder", "hw/sequencer.py", "ch_w_next.eq(ch_w_next + n1.count)", "+", "-", module=SEQ,
                  what="the next channel's weights looked for before this one's"),
    VerilogMutant("seq-n-ch", "comparator", "hw/sequencer.py", "last_ch.eq(c2 == desc.n_ch)", "==", "!=", module=SEQ,
                  what="the last-channel flag misdetected (a layer ends at the wrong channel)"),
    VerilogMutant("seq-one-flag", "comparator", "hw/sequencer.py", "n1_one.eq((n2.count >> 1) == 0)", "!", "|",
                  module=SEQ, count=2, where=r"= ! \\\$\d+ ;", what="the single-entry flag inverted"),
    VerilogMutant("seq-ch-base", "adder", "hw/sequencer.py", "ch_base.eq(ch_base + self.npix)", "+", "-", module=SEQ,
                  where=r"= ch_base \+",
                  what="output channels placed downwards"),
    VerilogMutant("seq-diag", "adder", "hw/sequencer.py", "pos0.eq(pos0 + (1 << desc.diag_log2))", "+", "-",
                  module=SEQ, where=r"= pos0 \+", what="a depthwise layer's channels walk backwards"),
    VerilogMutant("seq-settle", "comparator", "hw/sequencer.py", "m.d.sync += layer_go.eq(at_start & front_idle)", "&",
                  "|", module=SEQ, count=1, what="a layer starts before the previous one has drained"),
    # the stream decode, addressing and padding (apotflow_top)
    VerilogMutant("pos-step", "mux", "hw/top.py", "step = Mux(word.code == 0, word.delta << cfg.pos_bits", "?",
                  "swap", what="fillers and real entries swap their position steps"),
    VerilogMutant("pos-first", "mux", "hw/top.py", "m.d.sync += pos.eq(Mux(s1b.iss.first, s1b.iss.pos0, pos) + step)",
                  "?", "swap", what="a group's position walk does not restart"),
    VerilogMutant("pos-add", "adder", "hw/top.py", "m.d.sync += pos.eq(Mux(s1b.iss.first, s1b.iss.pos0, pos) + step)",
                  "+", "-", what="positions walk backwards"),
    VerilogMutant("tap-mask", "enable", "hw/top.py", "tap_port[0].eq(desc.tap_base | (pos & tmask))", "&", "|",
                  what="the tap row address not masked"),
    VerilogMutant("in-channel", "shift", "hw/top.py", "d2.ic.eq(pos >> desc.tap_log2)", ">>", "<<",
                  what="the input channel of a position shifted the wrong way"),
    VerilogMutant("off-ch-shift", "shift", "hw/top.py", "ch_off.eq(d3.d.ic << trow.ch_shift)", "<<", ">>",
                  what="the input channel stride shifted the wrong way"),
    VerilogMutant("off-add", "adder", "hw/top.py", "base.eq(trow.off + ch_off + p0_base)", "+", "-",
                  where=r"= d3\[", what="tap offset minus channel offset"),
    VerilogMutant("filler-terms", "enable", "hw/top.py", "getattr(vrow, f\"en{t}\") & d3.d.real", "&", "|",
                  count="cfg.terms", what="a filler's terms enabled"),
    VerilogMutant("row-addr", "adder", "hw/top.py", "base.eq(trow.off + ch_off + p0_base)", "+", "-",
                  where=r"^\s*assign \\\$\d+ += \\\$\d+ +\+ \\\$\d+ ;", what="the ACT row of a read"),
    VerilogMutant("row1-addr", "adder", "hw/top.py", "s2.row1.eq((trow.off + ch_off + (d3_p0_row1 << lb))", "+",
                  "-", where=r"^\s*assign \\\$\d+ += \\\$\d+ +\+ \\\$\d+ ;",
                  what="the ACT row + 1 that banks below the rotation read"),
    VerilogMutant("p0-row1", "adder", "hw/top.py", "d3_p0_row1.eq((d2.iss.p0 >> lb) + 1)", "+", "-",
                  what="p0's ACT row + 1 (for the row R + 1) one below"),
    VerilogMutant("pad-dy", "adder", "hw/top.py", "m.d.comb += t.eq(o0 + d)", "+", "-", where=r"assign pad_ty ",
                  what="the padding test's tap row offset (dy) subtracted"),
    VerilogMutant("pad-dx", "adder", "hw/top.py", "m.d.comb += t.eq(o0 + d)", "+", "-", where=r"assign pad_tx ",
                  what="the padding test's tap column offset (dx) subtracted"),
    VerilogMutant("pad-lane-y", "padding mask", "hw/top.py", "cs.eq(lo + off[l])", "+", "-", where=r"assign pad_y2 ",
                  what="lane 2's padding row offset subtracted"),
    VerilogMutant("pad-mask-y", "padding mask", "hw/top.py", "ok.append(Mux(cs[lw], ok1, ok0)", "?", "swap",
                  where=r"= pad_y5\[", what="lane 5's row padding test takes the other carry's case"),
    VerilogMutant("pad-mask-x", "padding mask", "hw/top.py", "ok.append(Mux(cs[lw], ok1, ok0)", "&",
                  "=1'h0", where=r"= pad_x1\[", what="lane 1's column padding test of the low bits always passes"),
    VerilogMutant("pad-carry-y", "padding mask", "hw/top.py", "ok1.eq((hi == -1) | (ok0", "|", "&",
                  where=r"assign pad_yok1 ", what="the row test with a carry into the high bits broken (all lanes)"),
    VerilogMutant("null-mask", "padding mask", "hw/top.py", "s3b.mask.eq(Cat(*(Mux(c.null, 0, mask[g * pad_grp", "?", "swap",
                  what="an empty channel's operands not masked"),
    VerilogMutant("rmax-null", "max select", "hw/top.py", "desc.rmax & s4in.ent.real & ~s4in.iss.null", "&", "=1'h1",
                  where=r"= \\\$\d+ +& \\\$\d+ ;", what="a null entry (count-0 channel) of a max layer in max mode"),
    VerilogMutant("rmax-real", "max select", "hw/top.py", "desc.rmax & s4in.ent.real & ~s4in.iss.null", "&", "=1'h1",
                  where=r"& s3b\[", what="a filler of a max layer in max mode"),
    VerilogMutant("out-phase", "mux", "hw/top.py", "w2.addr.eq(w1.ch_base + Mux(desc.out_phase, phase_off, p))", "?",
                  "swap", what="the phase-split output layout inverted"),
    VerilogMutant("out-addr", "adder", "hw/top.py", "w2.addr.eq(w1.ch_base + Mux(desc.out_phase, phase_off, p))",
                  "+", "-", what="output addresses below the channel base"),
    VerilogMutant("raw-we", "enable", "hw/top.py", "w3.out_we.eq(w2.valid & raw)", "&", "|",
                  what="raw outputs written without a valid write"),
    VerilogMutant("act-we", "enable", "hw/top.py", "act_we2.eq(w2.valid & ~raw)", "&", "|",
                  what="activations written without a valid write"),
    VerilogMutant("wb-next", "comparator", "hw/top.py", "end_next.eq(wb_k == ((wb.nvalid - 1) >> (W - 1)) - 1)", "==", "!=",
                  what="the writeback buffer's last lane misdetected"),
    # the banked activation memory
    VerilogMutant("bank-we", "comparator", "hw/actmem.py", "pw.eq(self.wr_en[wp] & ((self.wr_addr[wp][:lb] if lb else 0) == b))",
                  "==", "!=", where=r"3'h5", module=ACT, what="bank 5's write enable inverted"),
]


def _proc_temp(lines: list[str], a: int, b: int, reg: str) -> str:
    """The process temporary a register is loaded from (``    reg <= \\$N ;``)."""
    pat = re.compile(r"^    " + re.escape(reg) + r" <= (\\\$\d+) ;$")
    hits = [m.group(1) for i in range(a, b) if (m := pat.match(lines[i]))]
    if len(hits) != 1:
        raise BenchError(f"register {reg!r} is loaded by {len(hits)} statements, not 1")
    return hits[0]


def _field_line(lines: list[str], a: int, b: int, temp: str, field: str) -> tuple[int, str]:
    """(line index, right-hand side) of the process statement ``temp [hi:lo] = rhs;``."""
    pat = re.compile(r"^    " + re.escape(temp) + " " + re.escape(field) + r" = (.+);$")
    hits = [(i, m.group(1)) for i in range(a, b) if (m := pat.match(lines[i]))]
    if len(hits) != 1:
        raise BenchError(f"{temp} {field} is set by {len(hits)} statements, not 1")
    return hits[0]


def _bias_every_group(lines: list[str], a: int, b: int, cfg) -> dict[int, str]:
    """Slots 1.. of a grouped entry's S4 controls take the bias s4 has (``c.bias.eq(0)`` undone)."""
    from apotflow.hw.lane import lane_ctrl_layout

    f = lane_ctrl_layout(cfg)["bias"]
    field = f"[{f.offset + f.width - 1}:{f.offset}]"
    _, bias = _field_line(lines, a, b, _proc_temp(lines, a, b, "s4"), field)  # s4.ctrl is s4's first field
    out = {}
    for j in range(1, cfg.lane_groups):
        i, rhs = _field_line(lines, a, b, _proc_temp(lines, a, b, f"ctrl_slot{j}"), field)
        out[i] = lines[i].replace(f"= {rhs};", f"= {bias};")
    return out


G_, FOLD = "groups", "Mux(grp > k, accs[l] + accs[l + stride], accs[l])"
#: mutants of what only a lane-groups build has (and of S3's padding copies, from 16 lanes on), on GROUPS_SUITE
GROUP_MUTANTS = [
    VerilogMutant("fold-add", "adder", "hw/top.py", FOLD, "+", "-", count="cfg.lanes - cfg.lanes // cfg.lane_groups",
                  suite=G_, what="the fold tree subtracts the upper lanes' partial sums"),
    VerilogMutant("fold-enable", "enable", "hw/top.py", FOLD, ">", ">=", count="cfg.lanes - cfg.lanes // cfg.lane_groups",
                  suite=G_, what="fold level k adds when grp_log2 >= k (level 0 in every layer, ungrouped ones too)"),
    VerilogMutant("fold-top-level", "enable", "hw/top.py", FOLD, ">", "=2'h3", where=r"grp > 2'h2",
                  count="cfg.lanes >> cfg.fold_levels", suite=G_,
                  what="the fold tree's last level never adds (8-group layers lose groups 4..7)"),
    ProcessMutant("grp-bias", "bias select", "hw/top.py", "c.bias.eq(0),", _bias_every_group,
                  count="cfg.lane_groups - 1", suite=G_, what="every group starts from the bias, not group 0 alone"),
    VerilogMutant("grp-yoff-mod", "padding mask", "hw/top.py", "(l >> gwl) & ((1 << ghl) - 1) if grouped", "&",
                  "={32{1'b1}}", count="cfg.lanes", suite=G_,
                  what="the padding test's row offset l >> wo_log2 not taken mod 2**ho_log2 (groups past 0)"),
    VerilogMutant("grp-filler", "enable", "hw/top.py", "filler = (word.code == 0) & (Cat(", "&", "|", suite=G_,
                  what="an entry whose slot 0 has no weight is a filler (the other slots' codes ignored)"),
    VerilogMutant("grp-slot-mask", "enable", "hw/top.py", "Mux((j >> grp) == 0, struct(el)(wgt_slots[j]).code, 0)",
                  ">>", "=4'hf", count="cfg.lane_groups - 1", suite=G_,
                  what="slots past the layer's 2**grp_log2 not masked (the filler test sees other entries' codes)"),
    VerilogMutant("seq-w-step", "counter", "hw/sequencer.py", "w_step.eq(1 << prog.grp_log2)", "<<", "=1'h0",
                  module=SEQ, where=r"= 1'h1 <<", suite=G_,
                  what="a grouped entry's weight pointer steps one word, not 2**grp_log2"),
    VerilogMutant("seq-ch-w-grp", "shift", "hw/sequencer.py", "ch_w_next.eq(ch_w_next + (n1.count << desc.grp_log2))",
                  "<<", ">>", module=SEQ, suite=G_,
                  what="a grouped layer's next channel looked for count >> grp_log2 words on (third channel on)"),
    VerilogMutant("pad-copy-mask-y", "padding mask", "hw/top.py", "ok.append(Mux(cs[lw], ok1, ok0)", "?", "swap",
                  where=r"= pad_y13\[", suite=G_, what="lane 13's row padding test (S3 copy 3) takes the other carry's case"),
    VerilogMutant("pad-copy-null", "padding mask", "hw/top.py", "s3b.mask.eq(Cat(*(Mux(c.null, 0, mask[g * pad_grp",
                  "?", "swap", where=r"s3_pad_g2\[", suite=G_, what="S3 copy 2's null flag inverted (lanes 8..11)"),
]
VERILOG_MUTANTS += GROUP_MUTANTS

W2_ = "wb2"
#: mutants of what only a two-word writeback build has (wb_words 2), on WB2_SUITE
WB2_MUTANTS = [
    VerilogMutant("wb2-steer", "mux", "hw/top.py", "words = [tuple(Mux(cb0, b, a) for a, b in zip(pair[w]", "?",
                  "swap", count=6, suite=W2_,
                  what="the pair steered to the ports against ch_base's parity"),
    VerilogMutant("wb2-pair2-load", "mux", "hw/top.py", "load = Mux(wb_swap[g], accs[l + 1 if l % 4 == 1", "?",
                  "swap", count="cfg.lanes // 2", suite=W2_, what="the pair-2 load order taken in linear layers, "
                  "the linear order in phase-split ones"),
    VerilogMutant("wb2-kb", "mux", "hw/top.py", "k_b.eq(k_a | Mux(wb_pair2, 2, 1))", "?", "swap", suite=W2_,
                  what="the second word's lane offset (+1 or +2) swapped"),
    VerilogMutant("wb2-ka", "mux", "hw/top.py", "k_a.eq(Mux(wb_pair2, Cat(wb_k[0], Const(0, 1), wb_k[1:])", "?",
                  "swap", suite=W2_, what="the first word's lane order (linear or pair-2) swapped"),
    VerilogMutant("wb2-one", "enable", "hw/top.py", "valid_b.eq(wb_pending & ~wb_one)", "&", "|", suite=W2_,
                  what="a one-lane group writes a second word"),
    VerilogMutant("wb2-end", "comparator", "hw/top.py", "end_next.eq(wb_k == ((wb.nvalid - 1) >> (W - 1)) - 1)", "==", "!=",
                  suite=W2_, what="the writeback buffer's last pair misdetected"),
    VerilogMutant("wb2-bank-we", "comparator", "hw/actmem.py", "pw.eq(self.wr_en[wp] & ((self.wr_addr[wp][:lb] if lb",
                  "==", "!=", where=r"3'h5", module=ACT, suite=W2_, what="bank 5's (port 1's) write enable inverted"),
]
VERILOG_MUTANTS += WB2_MUTANTS


def _edit_hex(path: Path, index: int, fn) -> None:
    from apotflow.hw import isa

    width = len(path.read_text().splitlines()[0].strip()) * 4
    words = isa.read_hex(path)
    words[index] = fn(words[index]) & ((1 << width) - 1)
    isa.write_hex(path, words, width)


def _layer_fields(prog, k: int) -> dict:
    from apotflow.hw import isa

    return isa.desc_layout(prog.config).unpack(prog.images.prog[k])


def _first_layer(prog, pred):
    return next((k for k in range(len(prog.layers)) if pred(_layer_fields(prog, k))), None)


def _entry_of(ld, pick) -> int | None:
    """The index of the first weight entry (of the second layer that has any, else the first) whose
    fields satisfy pick."""
    from apotflow.hw import isa

    prog = ld.program
    el = isa.entry_layout(prog.config)
    ks = [k for k in range(len(prog.layers)) if prog.layers[k].entries]
    for k in ks[1:] + ks[:1]:
        d = _layer_fields(prog, k)
        for w in range(d["w_start"], d["w_start"] + prog.layers[k].entries):
            if pick(el.unpack(prog.images.wgt[w])):
                return w
    return None


def _m_code(ld, setup):
    from apotflow.hw import isa

    el = isa.entry_layout(ld.program.config)
    w = _entry_of(ld, lambda e: e["code"] != 0)
    if w is None:
        return False
    _edit_hex(setup.sim_dir / "wgt.hex", w, lambda v: v ^ (1 << el.offsets["code"]))


def _m_delta(ld, setup):
    from apotflow.hw import isa

    el = isa.entry_layout(ld.program.config)
    w = _entry_of(ld, lambda e: e["code"] != 0 and e["delta"] > 0)
    if w is None:
        return False
    _edit_hex(setup.sim_dir / "wgt.hex", w, lambda v: v ^ (1 << el.offsets["delta"]))


def _m_val_sign(ld, setup):
    from apotflow.hw import isa

    prog = ld.program
    el = isa.entry_layout(prog.config)
    w = _entry_of(ld, lambda e: e["code"] != 0)
    if w is None:
        return False
    k = next(k for k in range(len(prog.layers)) if _layer_fields(prog, k)["w_start"] <= w
             < _layer_fields(prog, k)["w_start"] + prog.layers[k].entries)
    row = (_layer_fields(prog, k)["val_base"] << prog.config.code_bits) | el.unpack(prog.images.wgt[w])["code"]
    _edit_hex(setup.sim_dir / "val.hex", row, lambda v: v ^ (1 << isa.val_layout(prog.config).offsets["sign"]))


def _m_tap(ld, setup):
    from apotflow.hw import isa

    prog = ld.program
    k = _first_layer(prog, lambda d: d["n_ch"] and d["tap_log2"] > 0) if len(prog.layers) else None
    if k is None:
        return False
    row = _layer_fields(prog, k)["tap_base"] + 1  # the second tap of the layer: bit 0 of its input offset
    _edit_hex(setup.sim_dir / "tap.hex", row, lambda v: v ^ (1 << isa.tap_layout(prog.config).offsets["off"]))


def _rq_row(ld, pred):
    prog = ld.program
    k = _first_layer(prog, pred)
    return None if k is None else _layer_fields(prog, k)["rq_start"]


def _m_threshold(ld, setup):
    from apotflow.hw import isa

    prog = ld.program
    rl = isa.rq_layout(prog.config)
    r = _rq_row(ld, lambda d: d["mode"] == isa.MODE_THRESH)
    if r is None:
        return False
    # the first threshold moved next to the middle one (a level's range changes), within the field
    f = rl.unpack(prog.images.rq[r])
    thr = sorted(f[f"thr{j}"] for j in range(prog.config.max_levels - 1))
    lo, hi = prog.config.acc_range
    mid = thr[len(thr) // 2]
    f["thr0"] = next(v for v in (mid + 1, mid - 1, f["thr0"] + 1, f["thr0"] - 1) if lo <= v <= hi and v != f["thr0"])
    _edit_hex(setup.sim_dir / "rq.hex", r, lambda v: rl.pack(**f))


def _m_bias(ld, setup):
    from apotflow.hw import isa

    prog = ld.program
    rl = isa.rq_layout(prog.config)
    r = _rq_row(ld, lambda d: True)
    _edit_hex(setup.sim_dir / "rq.hex", r, lambda v: v ^ (1 << (rl.offsets["bias"] + 6)))


def _m_count(ld, setup):
    from apotflow.hw import isa

    prog = ld.program
    rl = isa.rq_layout(prog.config)
    k = _first_layer(prog, lambda d: d["n_ch"] > 1)
    if k is None:
        return False
    r = _layer_fields(prog, k)["rq_start"]
    f = rl.unpack(prog.images.rq[r])
    f["count"] += 1  # channel 0 claims one more entry (channel 1's first)
    _edit_hex(setup.sim_dir / "rq.hex", r, lambda v: rl.pack(**f))


def _desc_bit(mode: str, field: str):
    """A memory mutant: bit 0 of ``field`` in the descriptor of the first layer in ``mode`` (isa.MODE_*)."""
    def apply(ld, setup):
        from apotflow.hw import isa

        prog = ld.program
        dl = isa.desc_layout(prog.config)
        k = _first_layer(prog, lambda d: d["mode"] == getattr(isa, mode))
        if k is None:
            return False
        _edit_hex(setup.sim_dir / "prog.hex", k, lambda v: v ^ (1 << dl.offsets[field]))

    return apply


def _m_slot_code(ld, setup):
    """Bit 0 of the code of a grouped entry's slot past slot 0 (a lane-groups build's wgt.hex holds
    lane_groups words a row: hw/top.grouped_rows): the first such slot, in stream order, whose flip
    changes a tensor of the ISA interpreter (hw/isa.run_program) on the network's images -- most flips
    do not (a threshold absorbs a small change), and a flip no result shows tests nothing."""
    import dataclasses

    import numpy as np

    from apotflow.hw import isa
    from apotflow.hw.compile import run_functional

    prog = ld.program
    cfg, el = prog.config, isa.entry_layout(prog.config)
    base = [run_functional(prog, x) for x in ld.x]

    def shows(w: int) -> bool:
        wgt = list(prog.images.wgt)
        wgt[w] ^= 1 << el.offsets["code"]
        p = dataclasses.replace(prog, images=dataclasses.replace(prog.images, wgt=wgt))
        try:
            return any(not np.array_equal(b[n], v) for x, b in zip(ld.x, base) for n, v in run_functional(p, x).items())
        except ValueError:  # the stream no longer decodes (an entry became a filler): the RTL runs it all the same
            return True

    for k in range(len(prog.layers)):
        d = _layer_fields(prog, k)
        G = 1 << d.get("grp_log2", 0)
        for w in range(d["w_start"], d["w_start"] + prog.layers[k].entries * G) if G > 1 else ():
            if w % G and el.unpack(prog.images.wgt[w])["code"] and shows(w):
                bit = (w % cfg.lane_groups) * el.width + el.offsets["code"]
                _edit_hex(setup.sim_dir / "wgt.hex", w // cfg.lane_groups, lambda v, b=bit: v ^ (1 << b))
                return None
    return False


def _m_input(ld, setup):
    """The RTL's input image (not the golden model's): the first pixel of image 0 changed."""
    x = setup.x.copy()
    top = ld.net.tensors[ld.net.input].max_value
    x.reshape(len(x), -1)[0, 0] = top if x.reshape(len(x), -1)[0, 0] != top else 0
    setup.x = x


MEMORY_MUTANTS = [
    MemoryMutant("wgt-code", "weight stream code", _m_code, "bit 0 of a weight entry's code (second layer)"),
    MemoryMutant("wgt-delta", "weight stream delta", _m_delta, "bit 0 of a weight entry's position delta"),
    MemoryMutant("val-sign", "value table", _m_val_sign, "the sign of the value-table row a weight entry uses"),
    MemoryMutant("tap-offset", "tap table", _m_tap, "bit 0 of a tap row's input offset"),
    MemoryMutant("rq-threshold", "thresholds", _m_threshold, "a channel's first threshold moved next to the middle one"),
    MemoryMutant("rq-bias", "bias", _m_bias, "bit 6 of the first channel's bias"),
    MemoryMutant("rq-count", "entry counts", _m_count, "a channel's entry count + 1"),
    MemoryMutant("desc-shift", "shift", _desc_bit("MODE_SHIFT", "shift"), "bit 0 of a shift-mode layer's shift"),
    MemoryMutant("desc-levels", "output levels", _desc_bit("MODE_THRESH", "lv1"), "bit 0 of a threshold layer's level 1"),
    MemoryMutant("act-input", "activation input", _m_input, "the first pixel of the RTL's input image"),
    MemoryMutant("wgt-slot-code", "grouped weight slot", _m_slot_code,
                 "bit 0 of a grouped entry's slot code (slot > 0, a WGT row of lane_groups words), the first flip "
                 "the ISA interpreter's results show", suite=G_),
]

#: mutants that cannot change any result, with the argument (name -> why)
EQUIVALENT: dict[str, str] = {
    "rq-shift": "Shift mode is only valid where the op's lowest reachable accumulator is >= 0 (IntNet.validate, "
                "sw/intnet.py, refuses it otherwise), and for a non-negative acc the arithmetic (>>>) and logical "
                "(>>) right shifts are the same number: the only difference is the fill bit, which is the sign (0).",
    "rmax-null": "A null entry reaches the lanes with its operand masked to 0 (s3b.mask) and first = 1, so in max mode "
                 "the lane writes max(bias, 0) instead of bias + 0: different only for a negative bias. A max "
                 "layer's channel without weights and with a negative bias is refused by the compiler (CompileError "
                 "'has no weight and a negative bias'; tests/test_random_nets.py), and null_channels keeps biases, "
                 "so no program the RTL is given has one.",
    "raw-we": "The writeback registers (w1..w3) load every cycle from the writeback unit, which holds its last "
              "lane between groups, so outside a valid write w3 repeats the last write: inside a raw layer an "
              "extra OUT write stores the value that word already holds. The only other extra writes come between "
              "a raw layer's descriptor latch and its first write (w3 still holding the previous layer's last write, "
              "its address recomputed with the new layer's constants), and every word of the raw layer's output "
              "tensor is written after that; OUT words outside the raw tensors are nobody's output.",
}


def caught_by(runs: list[dict]) -> dict | None:
    return next(({k: v for k, v in r.items() if k not in ("passed", "seconds")} for r in runs if not r["passed"]), None)


SUITES = ("base", "groups", "wb2")  # mutant.suite -> (sim/cosim_suite's networks, base config): see _suite


def _suite(name: str):
    from apotflow.sim import cosim_suite as cs

    return {"base": (cs.SUITE, cs.BASE), "groups": (cs.GROUPS_SUITE, cs.GROUPS_BASE),
            "wb2": (cs.WB2_SUITE, cs.WB2_BASE)}[name]


def run(names: set[str] | None, out: Path, work: Path, all_networks: bool, log, merge: bool = False) -> dict:
    from apotflow.sim.cosim_suite import as_dict, coverage, group_coverage, load_suite, run_suite, wb_coverage
    from apotflow.sim.flow import git_revision

    t_all = time.perf_counter()
    suites, verilog, desc = {}, {}, {}
    for sn in SUITES:  # each suite: its networks, its config's Verilog, the baseline on it
        nets, base_cfg = _suite(sn)
        suites[sn] = load_suite(work / "models", nets, base_cfg, log=log)
        cfg = suites[sn][0].program.config
        verilog[sn] = generate(cfg)
        log(f"baseline ({sn}): the unmutated RTL must pass every network ...")
        t0 = time.perf_counter()
        base = run_suite(suites[sn], work / f"base-{sn}", verilog=verilog[sn], build_cache=work / f"builds-{sn}", log=log)
        if not all(r["passed"] for r in base):
            raise BenchError(f"the unmutated RTL fails the {sn} suite: {base}")
        desc[sn] = {"config": cfg.to_dict(),
                    "networks": [{**as_dict(ld.spec), "layers": len(ld.program.layers),
                                  "cycles": int(ld.program.stats["work_cycles"]),
                                  "covers": [k for k, v in {**coverage(ld.program), **group_coverage(ld.program),
                                                            **wb_coverage(ld.program)}.items() if v]}
                                 for ld in suites[sn]],
                    "baseline": {"runs": base, "seconds": round(time.perf_counter() - t0, 1)}}
    command = "python bench/mutants.py " + " ".join(sys.argv[1:])
    res = {"command": command, "commands": [command], "git_revision": git_revision(), **desc["base"],
           "groups_suite": desc["groups"], "wb2_suite": desc["wb2"],
           "all_networks": all_networks, "machine": f"{platform.machine()}, {platform.node()}", "mutants": []}
    earlier = 0.0
    if merge and out.exists():  # rows of the named mutants replaced, the others kept
        prev = json.loads(out.read_text())
        same = prev["config"] == res["config"] and prev["networks"] == res["networks"]
        for key in ("groups_suite", "wb2_suite"):  # (a results file written before a suite has no row of it)
            if key in prev:
                same &= all(prev[key][k] == res[key][k] for k in ("config", "networks"))
        if not same:
            raise BenchError(f"--merge: {out} was made with another config or suite")
        if prev.get("all_networks") != all_networks:
            raise BenchError("--merge: --all-networks must be as in the run being merged into")
        res.update(command=prev["command"], commands=prev.get("commands", [prev["command"]]) + [command],
                   mutants=prev["mutants"], git_revisions=prev.get("git_revisions", [prev.get("git_revision", "?")])
                   + [res["git_revision"]])
        earlier = prev["seconds"]
    order = [m.name for m in VERILOG_MUTANTS + MEMORY_MUTANTS]
    todo = [m for m in VERILOG_MUTANTS + MEMORY_MUTANTS if names is None or m.name in names]
    for i, mu in enumerate(todo):
        t0 = time.perf_counter()
        log(f"[{i + 1}/{len(todo)}] {mu.name} ({mu.kind}): {mu.what}")
        row = {"name": mu.name, "kind": mu.kind, "what": mu.what, "suite": mu.suite}
        suite, base_v = suites[mu.suite], verilog[mu.suite]
        if isinstance(mu, (VerilogMutant, ProcessMutant)):
            text, changed = mutate(base_v, mu, suite[0].program.config)
            n = py_line(mu.py, mu.anchor)
            row.update({"target": "verilog", "source": f"{mu.py}:{n}", "module": mu.module, "statements": changed})
            runs = run_suite(suite, work / "mut", verilog=text, build_cache=work / f"mutant-build-{mu.suite}",
                             build_in_place=True, stop_at_first=not all_networks, log=log)
        else:
            row.update({"target": "memory image"})
            runs = run_suite(suite, work / "mut", verilog=base_v, build_cache=work / f"builds-{mu.suite}",
                             tamper=mu.apply, stop_at_first=not all_networks, log=log)
        hit = caught_by(runs)
        if hit:
            outcome = "caught"
        elif mu.name in EQUIVALENT:
            outcome, row["equivalent_because"] = "equivalent", EQUIVALENT[mu.name]
        else:
            outcome = "survived"
        row.update({"outcome": outcome, "caught_by": hit, "runs": runs, "seconds": round(time.perf_counter() - t0, 1)})
        log(f"  -> {outcome}" + (f" by {hit['network']}: {hit['check']}" if hit else ""))
        res["mutants"] = sorted([m for m in res["mutants"] if m["name"] != mu.name] + [row],
                                key=lambda m: order.index(m["name"]) if m["name"] in order else len(order))
        out.write_text(json.dumps(_summary(res, t_all, earlier), indent=1) + "\n")  # partial results as it goes
    res = _summary(res, t_all, earlier)
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def _summary(res: dict, t_all: float, earlier: float = 0.0) -> dict:
    ms = res["mutants"]
    count = {o: sum(1 for m in ms if m["outcome"] == o) for o in ("caught", "equivalent", "survived")}
    return {**res, "totals": {"mutants": len(ms), "verilog": sum(1 for m in ms if m["target"] == "verilog"),
                              "memory": sum(1 for m in ms if m["target"] != "verilog"), **count},
            "seconds": round(earlier + time.perf_counter() - t_all, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="mutant names (default: all)")
    ap.add_argument("--all-networks", action="store_true", help="run every network, not only up to the first catch")
    ap.add_argument("--work", default=str(ROOT / "runs" / "mutants"), help="scratch folder (builds, models)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutants.json"))
    ap.add_argument("--merge", action="store_true", help="replace the named mutants' rows in --out, keep the others")
    ap.add_argument("--list", action="store_true", help="list the mutants and check each applies, then stop")
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.list:
        from apotflow.sim.cosim_suite import load_suite

        for sn in SUITES:
            nets, base_cfg = _suite(sn)
            cfg = load_suite(Path(args.work) / "models", nets[:1], base_cfg, log=log)[0].program.config
            text = generate(cfg)
            for mu in (m for m in VERILOG_MUTANTS if m.suite == sn):
                _, changed = mutate(text, mu, cfg)
                print(f"{mu.name:20s} {sn:6s} {mu.py}:{py_line(mu.py, mu.anchor)} {changed[0]['before']}  ->  "
                      f"{changed[0]['after']}" + (f"  (+{len(changed) - 1})" if len(changed) > 1 else ""))
        return 0
    res = run(set(args.only) if args.only else None, Path(args.out), Path(args.work), args.all_networks, log,
              args.merge)
    print(json.dumps(res["totals"]))
    return 0 if res["totals"]["survived"] == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"mutants: {e}", file=sys.stderr)
        sys.exit(2)
