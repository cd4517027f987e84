"""The whole accelerator (Amaranth simulation) against isa.run_program, bit for bit, and against the
cycle model, cycle for cycle."""

import random
from dataclasses import replace

import numpy as np
import pytest

from apotflow.hw import isa
from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.cycles import ideal_cycles, layer_cycles, total_cycles
from apotflow.hw.randprog import random_config, random_program
from apotflow.hw.simrun import simulate

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def first_diff(name, exp, got):
    d = np.flatnonzero(np.asarray(exp) != np.asarray(got))
    if d.size:
        a = int(d[0])
        return f"{name}: {d.size} words differ; first at address {a}: expected {int(exp[a])}, got {int(got[a])}"
    return None


def check_program(cfg, images, act, **kw):
    exp_act, exp_out, _ = isa.run_program(cfg, images, act)
    r = simulate(cfg, images, act, **kw)
    for msg in (first_diff("ACT", exp_act, r["act"]), first_diff("OUT", exp_out, r["out"])):
        assert msg is None, msg
    model = layer_cycles(cfg, images)
    assert r["perf"][:len(model)] == model, f"per-layer cycles: RTL {r['perf']} model {model}"
    assert r["cycles"] == total_cycles(cfg, images) == r["busy_cycles"]
    assert r["done_pulses"] == 1
    return r


@pytest.mark.parametrize("seed", range(12))
def test_random_program_bit_exact(seed):
    rng = random.Random(seed)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng)
    check_program(cfg, images, act)


@pytest.mark.parametrize("seed", range(3))
def test_banked_weight_rom_same_words_and_cycles(seed):
    """The synthesised WGT form (hw/top.py wgt_rom: banks with registered outputs) in banks of 4 words, so
    that every program spans several banks: bit-exact and cycle-exact like the one-ROM form."""
    rng = random.Random(100 + seed)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng)
    assert len(images.wgt) > 4 * 2
    check_program(cfg, images, act, wgt_bank_words=4)


@pytest.mark.parametrize("seed", range(2))
def test_act_banks_with_output_registers_same_words_and_cycles(seed):
    """The ECP5 builds' ACT banks (hw/actmem.py ``outreg``: the word in the block's output register, the
    LUT RAM tail's registered beside it, the choice after both), simulated: bit-exact and cycle-exact."""
    rng = random.Random(200 + seed)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng)
    check_program(cfg, images, act, act_outreg="sim")


@pytest.mark.parametrize("seed", range(2))
def test_weight_ram_loaded_by_host(seed):
    """``wgt_ram``: WGT has no contents until the host writes the weight image through the WGT port
    (hw/top.py wgt_ram, the form SPRAM takes on iCE40); then the run is bit-exact and cycle-exact as with
    the ROM. A host stream that skips one word (the rest land one address early) must fail the check."""
    rng = random.Random(200 + seed)
    cfg = replace(random_config(rng), wgt_ram=1)
    images, act = random_program(cfg, rng)
    check_program(cfg, images, act)
    k = len(images.wgt) // 2
    skipped = images.wgt[:k] + images.wgt[k + 1:]
    with pytest.raises(AssertionError, match="words differ|cycles"):
        check_program(cfg, images, act, wgt_words=skipped)


def zero_biases(cfg, images):
    """Every RQ row's bias 0, so that the thresholds decide (the random programs' biases put most
    accumulators beyond every threshold)."""
    rl = isa.rq_layout(cfg)
    images.rq = [rl.pack(**{**rl.unpack(w), "bias": 0}) for w in images.rq]


@pytest.mark.parametrize("seed,part", [(0, 1), (2, 2)])
def test_thresholds_split_into_a_one_port_copy(seed, part):
    """The iCE40 wgt_ram build's RQ (hw/top.py rq_rom ``thr_block``): the highest thresholds (all, or
    all but one) from a one-port copy, the rest of the row from the two-port ROM: bit- and cycle-exact.
    The biases are zeroed so that the thresholds decide (the random programs' biases put most
    accumulators beyond every threshold: zeroing the copy's thresholds went unseen with them)."""
    rng = random.Random(300 + seed)
    cfg = replace(random_config(rng), wgt_ram=1)
    images, act = random_program(cfg, rng)
    zero_biases(cfg, images)
    check_program(cfg, images, act, rq_thr_block=cfg.max_levels - part)


@pytest.mark.parametrize("seed", range(3))
def test_split_thresholds_registered_same_words_and_cycles(seed):
    """The ECP5 builds' RQ (hw/top.py rq_rom ``split``): the thresholds' word registered beside its block
    RAMs, its row addressed a cycle earlier with the writeback buffer's next row: bit- and cycle-exact.
    Biases zeroed so that the thresholds decide (as in the test above)."""
    rng = random.Random(400 + seed)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng)
    zero_biases(cfg, images)
    check_program(cfg, images, act, rq_split=True)


def test_generator_covers_the_features():
    """Across the seeds above: every mode, phase-split outputs, empty channels, writeback stalls,
    both lane counts, and layers reading the previous layer's output."""
    seen = set()
    dl, rl = None, None
    for seed in range(12):
        rng = random.Random(seed)
        cfg = random_config(rng)
        images, _ = random_program(cfg, rng)
        dl, rl = isa.desc_layout(cfg), isa.rq_layout(cfg)
        seen.add(f"lanes{cfg.lanes}")
        for w in images.prog:
            d = dl.unpack(w)
            seen.add(isa.MODE_NAMES[d["mode"]])
            npix = 1 << (d["ho_log2"] + d["wo_log2"])
            if d["out_phase"]:
                seen.add("phase")
            for c in range(d["n_ch"]):
                cnt = rl.unpack(images.rq[d["rq_start"] + c])["count"]
                if cnt == 0:
                    seen.add("empty_channel")
                if cnt < min(npix, cfg.lanes):
                    seen.add("stall")
    assert {"thresh", "shift", "raw", "phase", "empty_channel", "stall", "lanes4", "lanes8"} <= seen, seen


def test_weight_bit_flip_is_detected():
    """Flip one bit of one weight entry: the golden result changes, and so does the RTL's (the
    comparison can fail); the RTL still matches the golden model of the flipped program."""
    rng = random.Random(5)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng)
    exp_act, exp_out, _ = isa.run_program(cfg, images, act)
    el = isa.entry_layout(cfg)
    flipped = None
    for e in range(len(images.wgt)):
        for bit in range(el.width):
            wgt = list(images.wgt)
            wgt[e] ^= 1 << bit
            img2 = isa.MemoryImages(cfg, wgt, images.rq, images.prog, images.val, images.tap)
            try:
                a2, o2, _ = isa.run_program(cfg, img2, act)
            except (OverflowError, ValueError):  # overflow, or a stream the load check rejects
                continue
            if (a2 != exp_act).any() or (o2 != exp_out).any():
                flipped = img2
                break
        if flipped:
            break
    assert flipped is not None
    r = check_program(cfg, flipped, act)
    assert (r["act"] != exp_act).any() or (r["out"] != exp_out).any()


def test_lanes_16_default_widths():
    """AcceleratorConfig() widths (16 lanes, 15 thresholds, 24-bit acc) on a smaller memory."""
    cfg = AcceleratorConfig(act_depth=512, wgt_depth=256, rq_depth=32, prog_depth=8)
    images, act = random_program(cfg, random.Random(7), n_layers=3)
    r = check_program(cfg, images, act)
    assert r["cycles"] >= ideal_cycles(cfg, images)


def test_lanes_128_registered_rotation():
    """From 128 lanes on the ACT rotation is registered mid-way (one more pipeline stage, ACT host
    latency 3): still bit-exact, and the cycle model follows it."""
    from apotflow.hw.actmem import read_latency

    cfg = AcceleratorConfig(lanes=128, act_depth=512, wgt_depth=128, rq_depth=32, prog_depth=8, act_bits=4,
                            acc_bits=16, max_levels=4)
    assert read_latency(cfg) == 3 and read_latency(AcceleratorConfig(lanes=64)) == 2
    images, act = random_program(cfg, random.Random(100), n_layers=2)
    check_program(cfg, images, act)


def test_parameter_validation():
    from apotflow.hw.top import Accelerator

    with pytest.raises(ValueError, match="rom_style"):
        Accelerator(AcceleratorConfig(), None, rom_style="rom")
    with pytest.raises(ValueError, match="out_depth"):
        Accelerator(AcceleratorConfig(act_depth=16, lanes=4, out_depth=32), None)
    with pytest.raises(ValueError, match="2 x lanes"):
        Accelerator(AcceleratorConfig(act_depth=16, lanes=16, out_depth=16), None)
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        Accelerator({"lanes": 4}, None)


@pytest.mark.parametrize("where", ["middle", "last"])
def test_empty_layer(where):
    """A descriptor with n_ch = 0 does nothing but still takes its (modelled) cycles."""
    rng = random.Random(11)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng, n_layers=3)
    dl = isa.desc_layout(cfg)
    prog = [dl.unpack(w) for w in images.prog]
    empty = dict(prog[0], n_ch=0, last=0)
    if where == "middle":
        prog.insert(1, empty)
    else:
        prog[-1]["last"] = 0
        prog.append(dict(empty, last=1))
    images = isa.MemoryImages(cfg, images.wgt, images.rq, [dl.pack(**d) for d in prog], images.val, images.tap)
    check_program(cfg, images, act)


@pytest.mark.parametrize("seed", range(3))
def test_one_pixel_layers_change_channel_every_cycle(seed):
    """Layers of one pixel with channels of 0..2 entries: a channel can end in every cycle, so the
    (count, bias) prefetch of the sequencer must keep up with back-to-back channel changes."""
    rng = random.Random(100 + seed)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng, max_ch=6, max_count=2)
    dl = isa.desc_layout(cfg)
    prog = [dict(dl.unpack(w), ho_log2=0, wo_log2=0, out_phase=0) for w in images.prog]
    images = isa.MemoryImages(cfg, images.wgt, images.rq, [dl.pack(**d) for d in prog], images.val, images.tap)
    check_program(cfg, images, act)


def test_register_copies_only_from_64_lanes():
    """One copy of each fanned-out register below actmem.COPY_LANES lanes, one per COPY_GROUP from it."""
    from apotflow.hw.actmem import COPY_GROUP, COPY_LANES, copies

    assert copies(AcceleratorConfig(lanes=16)) == 1 and copies(AcceleratorConfig(lanes=32)) == 1
    assert copies(AcceleratorConfig(lanes=COPY_LANES)) == COPY_LANES // COPY_GROUP == 16


def test_padding_register_copies_from_16_lanes():
    """S3's padding register (``top.pad_copies``): one copy below PAD_COPY_LANES lanes, one per COPY_GROUP
    lanes from it (16 lanes: 4 copies, while the other registers have one copy up to 32 lanes)."""
    from apotflow.hw.actmem import COPY_GROUP, copies
    from apotflow.hw.top import PAD_COPY_LANES, pad_copies

    assert PAD_COPY_LANES == 16 and pad_copies(AcceleratorConfig(lanes=8)) == 1
    assert pad_copies(AcceleratorConfig(lanes=16)) == 16 // COPY_GROUP == 4 and copies(AcceleratorConfig(lanes=16)) == 1
    assert pad_copies(AcceleratorConfig(lanes=64)) == 16 and pad_copies(AcceleratorConfig(lanes=128)) == 32


@pytest.mark.parametrize("seed", range(3))
def test_channel_changes_behind_writeback_stalls_with_wgt_copies(seed, monkeypatch):
    """With several WGT address copies RQ port A's address at a channel change comes from its own copies of
    the RUN flag, last_e, wb_free and last_group (hw/sequencer.py): channels of 0..2 entries over full pixel
    groups, so a channel's last entry often waits for the previous group's writeback before it changes the
    channel (the address must not move on while it waits). Bit- and cycle-exact."""
    from apotflow.hw import actmem
    from apotflow.hw.top import wgt_copies

    monkeypatch.setattr(actmem, "COPY_LANES", 8)
    rng = random.Random(701 + seed)  # seeds whose programs hold entries in more than one group of 4 banks
    cfg = replace(random_config(rng, wb_words=1 + seed % 2), lanes=8)
    images, act = random_program(cfg, rng, n_layers=4, max_ch=6, max_count=2)
    assert wgt_copies(cfg, True, 4, len(images.wgt)) > 1
    check_program(cfg, images, act, wgt_bank_words=4)


@pytest.mark.parametrize("seed", range(2))
def test_per_group_copies_at_8_lanes(seed, monkeypatch):
    """The per-group register copies (a copy per 4 lanes or banks, built from 64 lanes on; the WGT address
    a copy per 4 WGT banks; S3's padding register, from 16 lanes on; W2's accumulator value, a copy per
    requantizer comparator) at 8 lanes, with COPY_LANES and
    PAD_COPY_LANES lowered: bit-exact and cycle-exact like one copy
    (the 64-lane form, small enough to simulate)."""
    from apotflow.hw import actmem, top
    from apotflow.hw.top import wgt_copies

    monkeypatch.setattr(actmem, "COPY_LANES", 8)
    monkeypatch.setattr(top, "PAD_COPY_LANES", 8)
    rng = random.Random(300 + seed)
    cfg = replace(random_config(rng), lanes=8)
    assert actmem.copies(cfg) == 2 and wgt_copies(cfg, True, 4) > 1  # the WGT address too, in banks of 4 words
    assert top.pad_copies(cfg) == 2  # and S3's padding register
    assert top.rq_cmp_copies(cfg)  # and W2's accumulator value, a copy per comparator
    images, act = random_program(cfg, rng, n_layers=3)
    check_program(cfg, images, act, wgt_bank_words=4)


@pytest.mark.parametrize("seed", range(2))
def test_padding_copies_at_16_lanes(seed):
    """16 lanes as built: S3's padding register in 4 copies, the other registers in one: bit-exact and
    cycle-exact, on layers of 1 to 64 pixels (one to four lane groups, rows narrower than a group)."""
    from apotflow.hw.top import pad_copies

    rng = random.Random(400 + seed)
    cfg = replace(random_config(rng), lanes=16)
    assert pad_copies(cfg) == 4
    images, act = random_program(cfg, rng, n_layers=3)
    check_program(cfg, images, act)


@pytest.mark.parametrize("seed", range(3))
def test_registered_port_selects_equal_busy_and_done(seed, monkeypatch):
    """The sequencer's registered ``own`` (the pipeline owns the ACT ports) and ``idle`` (the host may
    write) equal busy & ~done and ~busy in every cycle, empty last layer included (hw/sequencer.py); seed 2
    ends in two empty layers, so that DRAIN starts on an empty pipeline (the cycle model's X + 2 term)."""
    from apotflow.hw.sequencer import Sequencer

    seqs, orig = [], Sequencer.elaborate
    monkeypatch.setattr(Sequencer, "elaborate", lambda self, platform: (seqs.append(self), orig(self, platform))[1])
    rng = random.Random(200 + seed)
    cfg = random_config(rng)
    images, act = random_program(cfg, rng, n_layers=3)
    if seed:  # an empty last layer: DRAIN is entered from WAIT
        dl = isa.desc_layout(cfg)
        prog = [dl.unpack(w) for w in images.prog]
        prog[-1]["last"] = 0
        prog += [dict(prog[0], n_ch=0, last=0)] * (seed - 1) + [dict(prog[0], n_ch=0, last=1)]
        images = isa.MemoryImages(cfg, images.wgt, images.rq, [dl.pack(**d) for d in prog], images.val, images.tap)
    bad = []

    def on_cycle(ctx, dut):
        seq = seqs[0]
        b, d, own, idle, oc = (ctx.get(s) for s in (seq.busy, seq.done, seq.own, seq.idle, seq.own_copies))
        if own != (b & ~d & 1) or idle != 1 - b or oc != own * (2 ** len(seq.own_copies) - 1):
            bad.append((b, d, own, idle))

    check_program(cfg, images, act, on_cycle=on_cycle)
    assert not bad, f"{len(bad)} cycles with own (or a copy) != busy & ~done or idle != ~busy, first (busy, done, own, idle) {bad[0]}"


@pytest.mark.parametrize("seed, groups", [(0, 16), (3, 4), (5, 16), (16, 8)])
def test_lane_groups_bit_exact(seed, groups):
    """Lane groups (docs/hardware.md, "Lane groups"): a random net compiled with lane_groups (grouped convs,
    one-pixel layers with groups of one lane and, capped, of several) on the Amaranth simulation equals
    isa.run_program word for word, and its cycles the model's (the fold tree's levels in every layer)."""
    from apotflow.hw.compile import compile_net
    from apotflow.sim.differential import probe_images
    from apotflow.sim.differential import random_config as net_config
    from apotflow.sw.randnet import random_net

    net = random_net(seed, max_ops=4, max_ch=8, max_hw=4)
    cfg = replace(net_config(net, seed, groups), act_rows=0)  # (simulate's host load writes every address)
    prog = compile_net(net, cfg)
    dl = isa.desc_layout(cfg)
    assert cfg.lane_groups == groups and any(dl.unpack(w).get("grp_log2", 0) for w in prog.images.prog)
    check_program(cfg, prog.images, prog.input_memory(probe_images(net, seed, 1)[0]))


@pytest.mark.parametrize("seed", range(8))
def test_two_word_writeback_bit_exact(seed):
    """wb_words 2 (hw/top.py: two requantizers, the pair's words through the even and the odd banks' write
    ports): random programs (linear and phase-split outputs, channels of odd and even bases, one-pixel layers,
    RAW layers into OUT's even and odd memories) equal isa.run_program word for word, and their cycles the model's
    (a group's writeback in ceil(n / 2) cycles)."""
    rng = random.Random(700 + seed)
    cfg = random_config(rng, wb_words=2)
    images, act = random_program(cfg, rng)
    r = check_program(cfg, images, act)
    one = replace(cfg, wb_words=1)
    assert r["cycles"] < total_cycles(one, replace(images, config=one))  # (the same layouts: wb_words adds no field)


@pytest.mark.parametrize("seed", range(3))
def test_wgt_select_registered_mid_way(seed, monkeypatch):
    """From WIDE_LANES lanes on (64) the WGT read has latency 3 (hw/top.py: the banked ROM's select
    registered after its first level, every other form's word registered once more), the lanes' operands
    and controls are registered twice (S5b), and the pipe has two stages more: here from 4 lanes on, with
    banks of 4 words (several groups of banks), on the banked and the one-ROM forms, both with one and two
    writeback words: bit-exact and cycle-exact."""
    from apotflow.hw import config
    from apotflow.hw.cycles import pipe

    rng = random.Random(300 + seed)
    cfg = random_config(rng, wb_words=1 + seed % 2)
    images, act = random_program(cfg, rng)
    before = pipe(cfg)
    monkeypatch.setattr(config, "WIDE_LANES", 4)
    assert cfg.wgt_read_latency == 3 and cfg.operand_stages == 2 and pipe(cfg) == before + 2
    assert len(images.wgt) > 4 * 4  # more than one group of four banks
    check_program(cfg, images, act, wgt_bank_words=4)
    check_program(cfg, images, act)


@pytest.mark.parametrize("seed, one_pixel, outreg", [(0, False, False), (1, False, False), (2, True, False),
                                                     (3, True, False), (4, False, True), (5, True, True)])
def test_thresholds_registered_twice_same_words_and_cycles(seed, one_pixel, outreg, monkeypatch):
    """The split RQ with a second threshold register (hw/top.rq_thr_stages 2, from 64 lanes on; here forced):
    the group's row addressed from S8's tail, a cycle earlier again, through a registered address (selected
    from S7's tail a cycle before); ``outreg``: the thresholds in 18-bit slices whose registers are rq_thr_q
    (hw/top.rq_thr_outreg's "sim" form of the DP16KD blocks). Bit- and cycle-exact, with one and two
    writeback words, on programs whose groups end in consecutive cycles (one-pixel layers of channels of
    0..2 entries) too. Biases zeroed so that the thresholds decide."""
    from apotflow.hw import top

    monkeypatch.setattr(top, "rq_thr_stages", lambda cfg: 2)
    if outreg:
        monkeypatch.setattr(top, "rq_thr_outreg", lambda cfg, dp16kd: "sim")
    rng = random.Random(500 + seed)
    cfg = random_config(rng, wb_words=1 + seed % 2)
    images, act = random_program(cfg, rng, max_ch=6, max_count=2) if one_pixel else random_program(cfg, rng)
    if one_pixel:
        dl = isa.desc_layout(cfg)
        prog = [dict(dl.unpack(w), ho_log2=0, wo_log2=0, out_phase=0) for w in images.prog]
        images = isa.MemoryImages(cfg, images.wgt, images.rq, [dl.pack(**d) for d in prog], images.val, images.tap)
    zero_biases(cfg, images)
    check_program(cfg, images, act, rq_split=True)


@pytest.mark.parametrize("seed, wide", [(0, False), (1, False), (2, True), (3, True)])
def test_decode_tables_in_output_registers_same_words_and_cycles(seed, wide, monkeypatch):
    """VAL and TAP as the ECP5 builds hold them from 64 lanes on (hw/top.table_outreg): 18-bit slices whose
    own registers are D3's rows, addressed in D1 (the "sim" form of the DP16KD blocks); ``wide``: with the
    other stages of 64 lanes and more too (WIDE_LANES forced to 4), as the ECP5 builds have them. Bit- and
    cycle-exact, with one and two writeback words."""
    from apotflow.hw import config, top

    monkeypatch.setattr(top, "table_outreg", lambda cfg, dp16kd: "sim")
    if wide:
        monkeypatch.setattr(config, "WIDE_LANES", 4)
    rng = random.Random(700 + seed)
    cfg = random_config(rng, wb_words=1 + seed % 2)
    images, act = random_program(cfg, rng)
    check_program(cfg, images, act)


@pytest.mark.parametrize("seed, groups", [(0, 16), (5, 16)])
def test_lane_groups_with_the_wide_stages(seed, groups, monkeypatch):
    """test_lane_groups_bit_exact's programs with the stages of 64 lanes and more (WIDE_LANES forced to 4):
    S5b's per-lane control registers of a lane-groups build and the grouped WGT form's extra register."""
    from apotflow.hw import config

    monkeypatch.setattr(config, "WIDE_LANES", 4)
    test_lane_groups_bit_exact(seed, groups)
