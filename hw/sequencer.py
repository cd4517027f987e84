"""The sequencer: walks the program and issues one weight entry per cycle to the lane pipeline.

Per layer: WAIT (PROG is addressed with pc, then RQ port A with the layer's first row, from a register,
then three fills of the current channel's (count, bias) and the two-deep prefetch; at least 6 cycles,
overlapped with the previous layer's drain; the layer starts -- descriptor latched -- in the cycle
after the one in which the previous layer had nothing left in flight but its final write) -> RUN (one
entry per cycle: entries, then pixel groups, then channels) -> WAIT of the next layer, or DRAIN after
the last layer (waits until every write has landed, plus two cycles) -> IDLE with a ``done`` pulse.
The new layer's first ACT read comes after every write of the previous one.

Flow control: issue never waits on the datapath except for one rule that keeps the writeback buffer
safe: the *last* entry of a (channel, group) is held back until ceil(``nvalid`` / ``wb_words``) cycles have
passed since the last entry of the previous group (``wb_wait``), because the writeback unit needs one cycle
per ``wb_words`` valid lanes. The (count, bias) of the next two channels are always prefetched (registered from read port A,
which points at the row after them), so moving to the
next channel costs no bubble. A channel with count 0 still issues one null entry per group (its lanes
add nothing) so that its bias is written.

The ``issue`` record is combinational (valid in the cycle its WGT address ``wgt_addr`` is presented);
the datapath registers it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .actmem import copies, kept_copies
from .config import AcceleratorConfig
from .layouts import reject, struct


def pix_bits(cfg: AcceleratorConfig) -> int:
    """Pixel counters: a layer has at most act_depth output pixels (ho_log2 + wo_log2 <= addr_bits)."""
    return cfg.addr_bits + 1


def issue_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    return data.StructLayout({
        "valid": 1, "first": 1, "last": 1, "null": 1,
        "p0": pix_bits(cfg),
        "nvalid": cfg.lane_bits + 1,
        "bias": signed(cfg.acc_bits),
        "ch_base": cfg.addr_bits,
        "pos0": cfg.pos_width,  # where the channel's stream positions start (isa: desc.diag)
        "rq_row": cfg.rq_addr_bits,
    })


class Sequencer(wiring.Component):
    """``wgt_copies`` (hw/top.wgt_copies): the WGT address register in that many kept copies, each with its
    own increment, driving ``wgt_addr`` (one copy) or ``wgt_addr[g]`` (several: one per group of WGT banks)."""

    def __init__(self, cfg: AcceleratorConfig, wgt_copies: int = 1):
        if not isinstance(cfg, AcceleratorConfig):
            reject(self, TypeError(f"Sequencer needs an AcceleratorConfig, not {cfg!r}"))
        if not (isinstance(wgt_copies, int) and wgt_copies >= 1):
            reject(self, ValueError(f"wgt_copies must be a positive int, not {wgt_copies!r}"))
        self.cfg, self.wgt_copies = cfg, wgt_copies
        self.dl, self.rl = isa.desc_layout(cfg), isa.rq_layout(cfg)
        super().__init__({
            "start": In(1),
            "front_busy": In(1),  # entries in S1..S9, lanes waiting in the writeback buffer, W0..W3b
            "pipe_busy": In(1),  # front_busy or a write in the last stage (W4)
            "busy": Out(1),
            "own": Out(1),  # busy & ~done, registered: the pipeline owns the ACT ports (else the host)
            "own_copies": Out(copies(cfg)),  # own, one kept copy per group of ACT banks (actmem.copies)
            "idle": Out(1, init=1),  # ~busy, registered: the host may write ACT
            "done": Out(1),
            "cycles": Out(32),
            "prog_addr": Out(cfg.prog_addr_bits),
            "prog_data": In(self.dl.width),
            "rq_addr": Out(cfg.rq_addr_bits),
            "rq_data": In(self.rl.width),
            "wgt_addr": Out(cfg.wgt_addr_bits if wgt_copies == 1 else data.ArrayLayout(cfg.wgt_addr_bits, wgt_copies)),
            "desc": Out(struct(self.dl)),
            "npix": Out(pix_bits(cfg)),
            "issue": Out(issue_layout(cfg)),
            "perf_we": Out(1),
            "perf_waddr": Out(cfg.prog_addr_bits),
            "perf_wdata": Out(32),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        L = cfg.lanes
        pb = pix_bits(cfg)
        prog = struct(self.dl)(self.prog_data)
        row = struct(self.rl)(self.rq_data)
        desc = self.desc

        pc = Signal(cfg.prog_addr_bits)
        e = Signal(cfg.count_bits)
        # The WGT address: w_ptr, and from 64 lanes on (``wgt_copies``) kept copies of it, one per group of WGT
        # banks, each incrementing itself and loading from registers only (ch_w, ch_w_next, the descriptor):
        # one register driving all 64 WGT block RAMs of the 64-lane ResNet-20 build spent 12.34 ns in routing
        w_ptr = Signal(cfg.wgt_addr_bits)
        w_ptrs = [w_ptr, *kept_copies(cfg, "w_ptr", cfg.wgt_addr_bits, self.wgt_copies)[1:]]
        ch_w = Signal(cfg.wgt_addr_bits)
        ch_w_next = Signal(cfg.wgt_addr_bits)  # ch_w + cur_count, registered: the next channel's first entry
        p0 = Signal(pb)
        cur_count = Signal(cfg.count_bits)
        cur_bias = Signal(signed(cfg.acc_bits))
        ch_base = Signal(cfg.addr_bits)
        pos0 = Signal(cfg.pos_width)  # channel << diag_log2: the channel's first position in a diag layer
        rq_next = Signal(cfg.rq_addr_bits)  # the row RQ port A reads: rq_cur + 3 while running
        rq_next1 = Signal(cfg.rq_addr_bits)  # rq_next + 1, registered: port A's address at a shift comes
        # from a register through one multiplexer (no carry chain in front of the block RAMs)
        # The issue decisions come from registered flags (no carry chain between a register and the
        # control fan-out or the RQ address): each is recomputed when its inputs change.
        e2 = Signal(cfg.count_bits + 1)  # e + 2: the next entry is the last iff e2 == cur_count
        c2 = Signal(cfg.ch_bits + 1)  # channel + 2
        last_ch = Signal()  # this is the layer's last channel (channel + 1 == n_ch)
        rem = Signal(pb + 1)  # npix - p0, counted down
        null = Signal()  # cur_count == 0
        one = Signal()  # cur_count <= 1
        last_e = Signal()  # this entry is its group's last (null, or e == cur_count - 1)
        last_group = Signal()  # rem <= lanes
        lg_layer = Signal()  # npix <= lanes
        wb_free = Signal(init=1)  # wb_wait == 0
        rq_cur = Signal(cfg.rq_addr_bits)
        # Each WGT address copy decides its next value from its own registered copies of the RUN state and
        # of last_e, wb_free and last_group (``w_flags``), so the FSM and issue decode no longer fan out to
        # every copy: at 13b89e8 (64-lane ResNet-20, ECP5-85k) FSM state -> last_e decode -> ch_w select ->
        # w_ptr_g7 was the critical path (11.75 ns, 10.28 of it routing). Outside RUN every copy loads the
        # descriptor's w_start (the address is not read then), so RUN starts with it.
        # With several WGT address copies there is one set of copies more, the last, for RQ port A's address at a
        # channel change (below): at e55aa42 the flow's seed 3 ran the RUN flag -> the WGT pointer logic, with
        # which synthesis had merged the change decode -> port A's address select (12.90 ns, 11.18 routing).
        nw = self.wgt_copies
        nf = nw + (nw > 1)
        run_q = kept_copies(cfg, "run", 1, nf)

        def w_flags(sig, name):  # the flag and its kept copies, one per WGT address copy (and port A's)
            return [sig, *kept_copies(cfg, name, 1, nf, init=sig.init)[1:]]

        last_es, wb_frees = w_flags(last_e, "last_e"), w_flags(wb_free, "wb_free")
        last_groups = w_flags(last_group, "last_group")

        def set_all(sigs, v):
            return [s.eq(v) for s in sigs]
        # Two-deep prefetch of the next channels' (count, bias): n1 = row rq_cur + 1 with its flags,
        # n2 = row rq_cur + 2 as read. A channel change shifts port A's word into n2, n2 into n1 (its
        # flags computed from n2's register) and n1 into the current channel, so no flag is computed
        # from a block RAM output; port A's address moves on at each shift, and its word is there one
        # cycle later, in time for a channel change in the very next cycle.
        pf = data.StructLayout({"count": cfg.count_bits, "bias": signed(cfg.acc_bits)})
        n1, n2 = Signal(pf), Signal(pf)
        n1_null, n1_one = Signal(), Signal()
        wb_wait = Signal(cfg.lane_bits + 1)
        # lane groups (cfg.lane_groups > 1): a grouped layer's entry is 2**grp_log2 WGT words (w_ptr and
        # ch_w_next step by that many)
        grouped = cfg.lane_groups > 1
        if grouped:
            w_step = Signal(cfg.lane_groups.bit_length(), name="w_step")
        layer_cyc = Signal(32)
        total = Signal(32)
        # restart: a layer started in the previous cycle (X_k): layer_cyc, which counted on through X_k,
        # takes 2 (cycles X_k, X_k + 1 of the new layer). Registered, so the 32-bit counter's load
        # follows one flip-flop instead of the layer-start decode (the FSM state, settle, the front's idleness).
        restart = Signal()

        m.d.comb += [
            self.prog_addr.eq(pc),
            self.wgt_addr.eq(w_ptr) if self.wgt_copies == 1 else self.wgt_addr.eq(Cat(*w_ptrs)),
            self.rq_addr.eq(rq_next),
            self.perf_waddr.eq(pc),
            self.perf_wdata.eq(Mux(restart, 2, layer_cyc + 1)),
        ]
        m.d.sync += [layer_cyc.eq(layer_cyc + 1), total.eq(total + 1), restart.eq(0)]
        with m.If(wb_wait != 0):
            m.d.sync += [wb_wait.eq(wb_wait - 1), *set_all(wb_frees, wb_wait == 1)]

        nvalid = Mux(last_group, rem, L)
        W = cfg.wb_words
        go = ~last_e | wb_free

        # The pipeline's emptiness, registered (one cycle late: a layer starts, and done comes, one
        # cycle after the last write instead of during it; the OR of every stage's valid bit then
        # drives only two flip-flops, pipe_idle and layer_go, instead of the layer-start and done logic).
        pipe_idle = Signal(init=1)
        m.d.sync += pipe_idle.eq(~(self.pipe_busy | self.issue.valid))

        # own(t) = busy(t) & ~done(t) from a register: the ACT ports' host/pipeline select fans out to every
        # bank, so it comes from a flip-flop, and its next value is one LUT of registers (the FSM state,
        # start, pipe_idle) beside each copy: IDLE start, DRAIN ~pipe_idle, else 1. For that, DRAIN ends (done)
        # when pipe_idle2, pipe_idle a cycle later, is high, and never in its first cycle (first_drain: after
        # RUN that cycle's issue is not in pipe_idle2 yet; after WAIT, an empty last layer, own is 1 there).
        # Before (13b89e8 and s26), the pipeline's busy OR and the FSM decode fed the copies across the die:
        # the critical path of three builds (PROG word -> the empty-layer decode -> pipe_busy -> own_g6, 12.42
        # ns; settle -> the WAIT decode -> own_g4, 12.04 ns; last_e -> own_g1). One cycle per image.
        # empty_q, last_q: the layer's n_ch == 0 and last bit registered in WAIT (its PROG word is there from
        # settle 1; they are read at settle 6).
        pipe_idle2, empty_q, last_q, first_drain = Signal(init=1), Signal(), Signal(), Signal()
        m.d.sync += pipe_idle2.eq(pipe_idle)
        drain_end = pipe_idle2 & ~first_drain
        # own_copies: the same register, one copy per group of ACT banks (kept apart in synthesis), each
        # driving only its group's address selects
        own_q = kept_copies(cfg, "own")
        m.d.comb += self.own_copies.eq(Cat(*own_q))


        first_layer = Signal()
        settle = Signal(3)
        with m.If(settle != 6):
            m.d.sync += settle.eq(settle + 1)
        # layer_go: the layer starts in this cycle (WAIT, settle 6, front_idle), as one register computed a
        # cycle ahead from what front_idle registers (at t - 1 WAIT holds settle 5, or settle 6 without a
        # start; a start leaves settle 6). The layer's loads (descriptor, channel pointers, ch_base, ...) are
        # enabled by it alone: the flow's seed 2 of the 64-lane two-word ResNet-20 build (76.72 MHz) ran
        # settle -> the WAIT / settle / front_idle decode -> the load select of ch_w_next (11.55 ns of routing).
        layer_go = Signal()
        m.d.sync += layer_go.eq(0)

        def fill():  # port A's word into n2, n2 into n1 (the current channel takes n1 where it is read)
            m.d.sync += [
                n2.count.eq(row.count), n2.bias.eq(row.bias), n1.eq(n2),
                n1_null.eq(n2.count == 0), n1_one.eq((n2.count >> 1) == 0),
            ]

        def shift():  # RUN's channel change: port A's address moves on in this cycle, from a register
            if nf == nw:
                m.d.comb += self.rq_addr.eq(rq_next1)
            m.d.sync += [rq_next.eq(rq_next1), rq_next1.eq(rq_next1 + 1)]
            fill()

        if nf > nw:  # the change (RUN, go = wb_free at a last entry, last group) from port A's own flag copies
            a_shift = run_q[-1] & last_es[-1] & wb_frees[-1] & last_groups[-1]
            m.d.comb += self.rq_addr.eq(Mux(a_shift, rq_next1, rq_next))

        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                m.d.sync += self.idle.eq(~self.start)
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), settle.eq(0), layer_cyc.eq(0), total.eq(0), first_layer.eq(1)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                # PROG (address pc; its word in settle 1), then RQ port A's address register rq_next takes
                # the new layer's first row S (settle 2: it is read) and moves on by one in settles 2, 3 and
                # 4; three fills (settles 3, 4, 5) take rows S, S + 1, S + 2, the last one moving row S
                # into the current channel's registers: 6 cycles, overlapped with the previous layer's
                # drain. The layer starts (port A at S + 3, as in RUN) as soon as the previous layer's last
                # write is in its final stage (front_busy low; registered, so one cycle later). Port A's
                # address in WAIT is always the register (at s26e seed 1 the WAIT decode -> a multiplexer
                # of PROG's rq_start and rq_next / rq_next1 -> port A was the critical path, 12.44 ns): two
                # cycles for the first layer, hidden behind the drain for the others.
                m.d.comb += self.busy.eq(1)
                m.d.sync += self.idle.eq(0)
                m.d.sync += [empty_q.eq(prog.n_ch == 0), last_q.eq(prog.last)]
                front_idle = ~(self.front_busy | self.issue.valid)  # (registered, this was the start's front_idle)
                at_start = ~layer_go & ((settle == 5) | (settle == 6))
                m.d.sync += layer_go.eq(at_start & front_idle)
                with m.If(settle == 1):
                    m.d.sync += rq_next.eq(prog.rq_start)
                with m.If((settle >= 2) & (settle <= 4)):
                    m.d.sync += [rq_next.eq(rq_next + 1), rq_next1.eq(rq_next + 2)]
                with m.If((settle >= 3) & (settle <= 5)):
                    fill()
                with m.If(settle == 5):  # the first channel's row moves out of n1
                    m.d.sync += [cur_count.eq(n1.count), cur_bias.eq(n1.bias), null.eq(n1_null),
                                 one.eq(n1_one), *set_all(last_es, n1_one)]
                with m.If(layer_go):  # (the layer's loads: below the FSM)
                    with m.If(~first_layer):
                        m.d.comb += [self.perf_we.eq(1), self.perf_waddr.eq(pc - 1), self.perf_wdata.eq(layer_cyc)]
                        m.d.sync += restart.eq(1)
                    with m.If(~empty_q):
                        m.d.sync += set_all(run_q, 1)
                        m.next = "RUN"
                    with m.Elif(last_q):
                        m.d.sync += first_drain.eq(1)
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += [pc.eq(pc + 1), settle.eq(0)]
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += self.idle.eq(0)
                with m.If(go & last_e & last_group & last_ch):
                    with m.If(desc.last):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "WAIT"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [self.idle.eq(drain_end), first_drain.eq(0)]
                with m.If(drain_end):
                    m.d.comb += [self.perf_we.eq(1), self.done.eq(1)]
                    m.d.sync += self.cycles.eq(total + 1)
                    m.next = "IDLE"
        with m.If(layer_go):  # the layer's loads (layer_go is high only in WAIT: never beside RUN's below)
            npix = 1 << (prog.ho_log2 + prog.wo_log2)
            small = prog.ho_log2 + prog.wo_log2 <= cfg.lane_bits
            m.d.sync += [
                desc.eq(prog), first_layer.eq(0), self.npix.eq(npix), rem.eq(npix),
                *set_all(last_groups, small), lg_layer.eq(small),
                c2.eq(2), last_ch.eq(prog.n_ch == 1), e.eq(0), e2.eq(2), p0.eq(0),
                ch_w.eq(prog.w_start),
                ch_w_next.eq(prog.w_start + cur_count),
                ch_base.eq(prog.out_base), pos0.eq(0),
                rq_cur.eq(prog.rq_start),
            ]
            if grouped:  # (the later assignment wins)
                m.d.sync += [w_step.eq(1 << prog.grp_log2),
                             ch_w_next.eq(prog.w_start + (cur_count << prog.grp_log2))]
        # RUN's datapath: enabled by the registered RUN flag (run_q[0], = the FSM in RUN), not the FSM state's
        # decode, so each register's enable is one LUT of flip-flops (run, last_e, wb_free, last_group):
        # at s26d seed 1 the FSM state -> the go / last-entry decode -> p0's enable was the critical path
        # (12.31 ns, four LUT levels)
        # The issue record: only its valid bit depends on RUN (the rest is read only beside a valid one), so
        # the issue's first register (S1) is a plain copy but for one bit: the RUN flag gating the whole record
        # became a synchronous reset net from run_g0 to S1's flip-flops across the die (9.46 ns of routing,
        # the 64-lane ResNet-20 build's critical path at a seed)
        iss = self.issue
        m.d.comb += [
            iss.valid.eq(run_q[0] & go), iss.first.eq(e == 0), iss.last.eq(last_e), iss.null.eq(null),
            iss.p0.eq(p0), iss.nvalid.eq(nvalid), iss.bias.eq(cur_bias),
            iss.ch_base.eq(ch_base), iss.rq_row.eq(rq_cur), iss.pos0.eq(Mux(desc.diag, pos0, 0)),
        ]
        with m.If(run_q[0]):
            with m.If(go):
                with m.If(~last_e):
                    m.d.sync += [e.eq(e + 1), e2.eq(e2 + 1), *set_all(last_es, e2 == cur_count)]
                with m.Else():
                    # the writeback takes W = wb_words lanes a cycle: ceil(nvalid / W) - 1 cycles more
                    m.d.sync += [wb_wait.eq((nvalid - 1) >> (W - 1)), *set_all(wb_frees, Mux(last_group, rem <= W, L <= W)),
                                 e.eq(0), e2.eq(2), *set_all(last_es, one)]
                    with m.If(~last_group):
                        m.d.sync += [
                            p0.eq(p0 + L), rem.eq(rem - L),
                            # rem - L <= L
                            *set_all(last_groups, ((rem >> (cfg.lane_bits + 1)) == 0) | (rem == 2 * L)),
                        ]
                    with m.Else():
                        # Next channel: its (count, bias) was prefetched; shift the prefetch.
                        shift()
                        m.d.sync += [
                            c2.eq(c2 + 1), last_ch.eq(c2 == desc.n_ch), p0.eq(0), rem.eq(self.npix),
                            *set_all(last_groups, lg_layer),
                            ch_w.eq(ch_w_next), ch_w_next.eq(ch_w_next + n1.count),
                            cur_count.eq(n1.count), cur_bias.eq(n1.bias),
                            null.eq(n1_null), one.eq(n1_one), *set_all(last_es, n1_one),
                            rq_cur.eq(rq_cur + 1),
                            ch_base.eq(ch_base + self.npix), pos0.eq(pos0 + (1 << desc.diag_log2)),
                        ]
                        if grouped:  # (the later assignment wins)
                            m.d.sync += ch_w_next.eq(ch_w_next + (n1.count << desc.grp_log2))
                        with m.If(last_ch):  # the FSM leaves RUN (above)
                            m.d.sync += set_all(run_q, 0)
                            with m.If(desc.last):
                                m.d.sync += first_drain.eq(1)
                            with m.Else():
                                m.d.sync += [pc.eq(pc + 1), settle.eq(0)]
        with m.If(restart):
            m.d.sync += layer_cyc.eq(2)
        own_next = Mux(fsm.ongoing("IDLE"), self.start, Mux(fsm.ongoing("DRAIN"), ~pipe_idle, 1))
        m.d.sync += [self.own.eq(own_next), *(o.eq(own_next) for o in own_q)]
        for w, run, le, free, lg in zip(w_ptrs, run_q, last_es, wb_frees, last_groups):
            # RUN's go (~last_e, or wb_free): the next entry (a grouped entry is 2**grp_log2 words), or after a
            # group's last entry the channel's first (another pixel group) or the next channel's
            with m.If(~run):
                m.d.sync += w.eq(prog.w_start)
            with m.Elif(~le):
                m.d.sync += w.eq(w + (w_step if grouped else 1))
            with m.Elif(free):
                m.d.sync += w.eq(Mux(lg, ch_w_next, ch_w))
        return m
