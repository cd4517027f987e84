"""AcceleratorConfig: the one source of truth for the sparse shift-add array.

The same object sizes the RTL (``apotflow.hw.top``), the memory images the compiler writes
(``apotflow.hw.compile``), the instruction formats (``apotflow.hw.isa``), the cycle model and the
resource estimator. It validates eagerly and serialises to a versioned dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

CONFIG_VERSION = 2  # 2: the compact weight stream (code_bits, pos_bits, tap_depth)
TAP_LOG2_MAX = 7  # a layer's tap table holds at most 2**7 rows (descriptor field tap_log2: 3 bits)

# Pipeline latencies the RTL is built with; the cycle model and the co-simulation read them from here
# (properties below), so neither imports the Amaranth code that implements them.
MAX_LEVELS = 256  # the most output levels max_levels may give the threshold requantizer (an 8-bit output)
LANE_LATENCY = 3  # cycles from a lane's inputs to its acc (hw/lane.py: shifted terms, product, accumulate)
WGT_BANK_WORDS = 2048  # words of one WGT bank (one ECP5 DP16KD at 9 bits) in the synthesised ROM (hw/top.py)
SPRAM_WORDS, SPRAM_BITS = 16384, 16  # one iCE40 UP5K SB_SPRAM256KA: 16k x 16, single-port (WGT with wgt_ram)
SPLIT_LANE_BITS = 7  # from 2**7 = 128 lanes on, the ACT read rotation has a register inside (hw/actmem.py)
# From this many lanes on, registers are added where routes cross the die (hw/top.py): inside the WGT read's
# bank select (wgt_read_latency 3) and in front of the lanes' operands and controls (operand_stages 2).
WIDE_LANES = 64


_ZERO_OK = ("act_rows", "wgt_ram")  # the fields that may be 0


class ConfigError(ValueError):
    """An impossible or inconsistent accelerator configuration."""


def _is_pow2(n: int) -> bool:
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


def _bits_for(n: int) -> int:
    """Bits to hold the values 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class AcceleratorConfig:
    lanes: int = 16  # shift-add lanes = output pixels computed in parallel; power of two
    terms: int = 2  # power-of-two terms a lane adds per cycle, (a << s0) + (a << s1)
    act_bits: int = 8  # stored activation width (unsigned): APoT ints (0..48), pixels, pooled sums
    acc_bits: int = 24  # accumulator width (signed); the export's worst-case bound must fit
    shift_bits: int = 4  # width of a term's shift field: shifts 0 .. 2**shift_bits - 1
    delta_bits: int = 3  # width of the signed dy/dx fields of a tap row (padding checks)
    code_bits: int = 5  # weight code of an entry: row of its layer's value table (code 0: a filler)
    pos_bits: int = 4  # position delta of an entry (a filler's delta counts 2**pos_bits times as much)
    max_levels: int = 16  # output levels of the threshold requantizer (15 thresholds for A4)
    act_depth: int = 4096  # activation memory words in all (split in `lanes` banks); power of two
    wgt_depth: int = 8192  # weight entries (non-zero weights x passes, and fillers), power of two
    tap_depth: int = 256  # tap rows (input offset and padding check of a position), all layers; power of two
    rq_depth: int = 256  # requantization rows (one per output channel of every layer), power of two
    prog_depth: int = 32  # layer descriptors, power of two
    out_depth: int = 16  # raw (logit) outputs, power of two
    act_rows: int = 0  # rows each ACT bank holds (the live tensors' words / lanes); 0: bank_depth (all)
    wgt_ram: int = 0  # 1: WGT is a RAM the host writes before the first start (no ROM contents; SPRAM on iCE40)
    lane_groups: int = 1  # most lane groups a layer of fewer pixels than lanes splits into (1: none); power of two
    wb_words: int = 1  # words the writeback requantizes and writes a cycle: 1, or 2 (two requantizers, ACT write ports)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            zero_ok = f.name in _ZERO_OK
            if not isinstance(v, int) or isinstance(v, bool) or v < (not zero_ok):
                raise ConfigError(f"{f.name} must be a {'non-negative' if zero_ok else 'positive'} "
                                  f"integer, not {v!r}")
        if self.wgt_ram not in (0, 1):
            raise ConfigError(f"wgt_ram must be 0 (WGT is a ROM) or 1 (a RAM the host loads), not {self.wgt_ram}")
        if not _is_pow2(self.lanes) or self.lanes > 1024:
            raise ConfigError(f"lanes must be a power of two between 1 and 1024, not {self.lanes}")
        if self.terms > 4:
            raise ConfigError(f"terms must be 1..4, not {self.terms}")
        if not 2 <= self.act_bits <= 16:
            raise ConfigError(f"act_bits must be 2..16, not {self.act_bits}")
        if not 8 <= self.acc_bits <= 48:
            raise ConfigError(f"acc_bits must be 8..48, not {self.acc_bits}")
        if not 2 <= self.shift_bits <= 6:
            raise ConfigError(f"shift_bits must be 2..6, not {self.shift_bits}")
        if not 2 <= self.delta_bits <= 6:
            raise ConfigError(f"delta_bits must be 2..6, not {self.delta_bits}")
        if not 2 <= self.code_bits <= 8:
            raise ConfigError(f"code_bits must be 2..8, not {self.code_bits}")
        if not 2 <= self.pos_bits <= 8:
            raise ConfigError(f"pos_bits must be 2..8, not {self.pos_bits}")
        if not 2 <= self.max_levels <= MAX_LEVELS:
            raise ConfigError(f"max_levels must be 2..{MAX_LEVELS}, not {self.max_levels}")
        for name in ("act_depth", "wgt_depth", "tap_depth", "rq_depth", "prog_depth", "out_depth"):
            if not _is_pow2(getattr(self, name)):
                raise ConfigError(f"{name} must be a power of two, not {getattr(self, name)}")
        if not _is_pow2(self.lane_groups) or self.lane_groups > self.lanes:
            raise ConfigError(f"lane_groups must be a power of two between 1 and lanes ({self.lanes}), "
                              f"not {self.lane_groups}")
        if self.wb_words not in (1, 2) or (self.wb_words == 2 and self.lanes < 4):
            raise ConfigError(f"wb_words must be 1, or 2 with at least 4 lanes (a writeback pairs the lanes of "
                              f"groups of 4), not {self.wb_words} (lanes {self.lanes})")
        if self.act_depth < self.lanes:
            raise ConfigError(f"act_depth ({self.act_depth}) must be at least lanes ({self.lanes})")
        if self.act_rows > self.bank_depth:
            raise ConfigError(f"act_rows ({self.act_rows}) must not exceed act_depth / lanes ({self.bank_depth})")

    # Derived widths, used by the ISA, the RTL and the compiler alike.
    @property
    def addr_bits(self) -> int:
        """Activation address width (addresses wrap modulo act_depth)."""
        return _bits_for(self.act_depth)

    @property
    def lane_bits(self) -> int:
        return _bits_for(self.lanes) if self.lanes > 1 else 0

    @property
    def bank_depth(self) -> int:
        return self.act_depth // self.lanes

    @property
    def grp_bits(self) -> int:
        """Width of the descriptor's ``grp_log2`` (0..log2 lane_groups): 0 bits when lane_groups is 1, so
        that a config without lane groups has today's descriptor, bit for bit."""
        return (self.lane_groups.bit_length() - 1).bit_length()

    @property
    def fold_levels(self) -> int:
        """Registered levels of the fold tree that sums the lane groups before the writeback (every layer
        passes through them, grouped or not): log2 lane_groups."""
        return self.lane_groups.bit_length() - 1

    @property
    def act_bank_rows(self) -> int:
        """Rows each ACT bank holds: ``act_rows`` (the live tensors), else all ``bank_depth``. Addresses
        still wrap modulo act_depth; a read of a row past the live ones (a padding tap, a lane beyond
        a group's last pixel) returns an unspecified word that the padding mask or the writeback drops."""
        return self.act_rows or self.bank_depth

    @property
    def act_capacity(self) -> int:
        """ACT words that exist: ``act_bank_rows x lanes``."""
        return self.act_bank_rows * self.lanes

    @property
    def wgt_addr_bits(self) -> int:
        return _bits_for(self.wgt_depth)

    @property
    def tap_addr_bits(self) -> int:
        return _bits_for(self.tap_depth)

    @property
    def val_depth(self) -> int:
        """Value-table rows: one table of 2**code_bits rows per layer descriptor."""
        return self.prog_depth << self.code_bits

    @property
    def val_addr_bits(self) -> int:
        return _bits_for(self.val_depth)

    @property
    def pos_width(self) -> int:
        """An entry's position (input channel << tap_log2 | tap) within its output channel's stream."""
        return self.addr_bits + TAP_LOG2_MAX

    @property
    def count_bits(self) -> int:
        """Entries per output channel: 0 .. wgt_depth."""
        return self.wgt_depth.bit_length()

    @property
    def rq_addr_bits(self) -> int:
        return _bits_for(self.rq_depth)

    @property
    def ch_bits(self) -> int:
        """Channels per layer: 1 .. rq_depth."""
        return self.rq_depth.bit_length()

    @property
    def prog_addr_bits(self) -> int:
        return _bits_for(self.prog_depth)

    @property
    def out_addr_bits(self) -> int:
        return _bits_for(self.out_depth)

    @property
    def level_bits(self) -> int:
        return _bits_for(self.max_levels)

    @property
    def max_shift(self) -> int:
        return (1 << self.shift_bits) - 1

    @property
    def delta_range(self) -> tuple[int, int]:
        return -(1 << (self.delta_bits - 1)), (1 << (self.delta_bits - 1)) - 1

    @property
    def acc_range(self) -> tuple[int, int]:
        return -(1 << (self.acc_bits - 1)), (1 << (self.acc_bits - 1)) - 1

    @property
    def wgt_sprams(self) -> int:
        """SB_SPRAM256KA blocks a ``wgt_ram`` WGT takes on iCE40: 16-bit slices of an entry side by side,
        16k-word slices of the depth stacked (``hw/top.wgt_spram``)."""
        from .isa import entry_layout

        width = entry_layout(self).width
        return -(-width // SPRAM_BITS) * -(-self.wgt_depth // SPRAM_WORDS)

    @property
    def lane_latency(self) -> int:
        """Cycles from a lane's inputs to its accumulator (hw/lane.py)."""
        return LANE_LATENCY

    @property
    def act_read_latency(self) -> int:
        """Cycles from an ACT read address to its data, for the pipeline and the host port (hw/actmem.py):
        2, or 3 where the read rotation is registered mid-way (128 lanes and more)."""
        return 3 if self.lane_bits >= SPLIT_LANE_BITS else 2

    @property
    def wgt_read_latency(self) -> int:
        """Cycles from a WGT address to its word (hw/top.py): 2, or 3 from ``WIDE_LANES`` lanes on, where
        the select among the banks' registered words is registered after its first level (per group of
        banks), in every WGT form alike."""
        return 3 if self.lanes >= WIDE_LANES else 2

    @property
    def operand_stages(self) -> int:
        """Registers between the ACT rotation and a lane's inputs (hw/top.py S5): 1, or 2 from ``WIDE_LANES``
        lanes on (S5b: the operand and the controls registered again, beside the lane)."""
        return 2 if self.lanes >= WIDE_LANES else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("lane_groups", "wb_words"):  # defaults left out: a config without them reads as before
            if d[k] == 1:
                del d[k]
        return {"version": CONFIG_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> AcceleratorConfig:
        d = dict(d)
        version = d.pop("version", CONFIG_VERSION)
        if version == 1:  # before the compact weight stream: the same fields, the new ones at their defaults
            version = CONFIG_VERSION
        if version != CONFIG_VERSION:
            raise ConfigError(f"accelerator config version {version} is not supported (expected {CONFIG_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown accelerator config keys: {', '.join(unknown)}")
        return cls(**d)
