"""eBPF opcode enums carrying the kernel's own bit values (include/uapi/linux/bpf.h,
bpf_common.h).

This module owns the numbers: instruction classes, sizes, modes, operand sources, ALU and
jump operations, atomic operations and the pseudo-source constants used by the loader --
and the instruction record those numbers fill (``Insn``, ``Label``, ``Register``) with its
text form (``format_insn``, one instruction in the verifier's syntax).  ``insn`` re-exports
the record with the other builders; ``disasm`` prints listings.  Imports in compiler/bpf
run one way: ``helpers`` <- ``opcode`` <- ``insn`` <- ``encode`` <- ``disasm`` <- ``asm``.
It does not own encoding (``encode``) or parsing text (``asm``).  The builder methods on
``ALUOp`` and ``JumpOp`` return ``Insn`` records, so generated code reads like assembly::

    ALUOp.ADD.imm(R1, 22)            # r1 += 22
    ALUOp.SUB.reg32(R1, R2)          # w1 -= w2
    JumpOp.JSGT.imm(R1, 4, "Lexit")  # if r1 s> 0x4 goto Lexit

The 8-bit opcode has two formats, selected by the low three bits (the class)::

      7   6   5   4   3   2   1   0
    +---------------+---+-----------+
    |  operation    |src|   class   |   ALU, ALU64, JMP, JMP32
    +---------------+---+-----------+
       ALUOp/JumpOp  Source

    +-------+-------+-----------+
    | mode  | size  |   class   |       LD, LDX, ST, STX
    +-------+-------+-----------+
      Mode    Size

v4 ISA extensions reuse existing opcodes and are told apart by other fields:

* signed div/mod: ``ALUOp.DIV``/``ALUOp.MOD`` with ``off == 1``;
* sign-extending move (movsx): ``ALUOp.MOV`` with source X and ``off`` in {8, 16, 32};
* sign-extending loads: ``Mode.MEMSX`` in the LDX class;
* unconditional byte swap: ``ALUOp.END`` in the ALU64 class (source K), ``imm`` = width;
* long jump ``gotol``: ``JMP32 | JA`` with the 32-bit offset in ``imm``;
* ``may_goto``: ``JMP | JCOND | K`` with ``src == MAY_GOTO (0)``;
* atomics: ``STX | ATOMIC | size`` with the operation (``AtomicOp``) in ``imm``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum

from .helpers import helper_name

# Field masks (bpf_common.h BPF_CLASS / BPF_SIZE / BPF_MODE / BPF_OP / BPF_SRC).
CLASS_MASK = 0x07
SIZE_MASK = 0x18
MODE_MASK = 0xE0
OP_MASK = 0xF0
SOURCE_MASK = 0x08

# Pseudo values carried in the src register field (uapi bpf.h).
PSEUDO_MAP_FD = 1  # ld_imm64: imm is a map fd
PSEUDO_MAP_VALUE = 2  # ld_imm64: imm is a map fd, second imm an offset into its value
PSEUDO_CALL = 1  # call: imm is a pc-relative offset to a bpf-to-bpf function
PSEUDO_KFUNC_CALL = 2  # call: imm is a BTF id of a kernel function
PSEUDO_FUNC = 4  # ld_imm64: imm is a pc-relative offset to a callback (bpf_loop's)
MAY_GOTO = 0  # JCOND: the only defined condition

# Sizes of ALU64 END (bswap) / ALU END (be/le) and movsx offsets.
ENDIAN_WIDTHS = (16, 32, 64)
MOVSX_WIDTHS = (8, 16, 32)


class Class(IntEnum):
    """Instruction class, bits 0-2."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07

    @classmethod
    def of(cls, code: int) -> Class:
        return cls(code & CLASS_MASK)


class Size(IntEnum):
    """Access width of loads and stores, bits 3-4."""

    W = 0x00  # 4 bytes
    H = 0x08  # 2 bytes
    B = 0x10  # 1 byte
    DW = 0x18  # 8 bytes

    @classmethod
    def of(cls, nbytes: int) -> Size:
        """The size for an access of ``nbytes`` (1, 2, 4 or 8)."""
        try:
            return _SIZE_BY_BYTES[nbytes]
        except KeyError:
            raise ValueError(f"no load/store size of {nbytes} bytes") from None

    @classmethod
    def from_code(cls, code: int) -> Size:
        return cls(code & SIZE_MASK)

    @property
    def bytes(self) -> int:
        return {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}[self]

    @property
    def bits(self) -> int:
        return self.bytes * 8


_SIZE_BY_BYTES = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}


class Mode(IntEnum):
    """Addressing mode of loads and stores, bits 5-7."""

    IMM = 0x00  # only LD | DW | IMM: the 16-byte ld_imm64
    ABS = 0x20  # legacy packet access
    IND = 0x40  # legacy packet access
    MEM = 0x60
    MEMSX = 0x80  # v4: sign-extending load
    ATOMIC = 0xC0


class Source(IntEnum):
    """Operand source, bit 3 of ALU/JMP opcodes: immediate (K) or register (X)."""

    K = 0x00
    X = 0x08


class Endian(IntEnum):
    """Direction of ALU (32-bit class) END, stored in the source bit."""

    TO_LE = 0x00
    TO_BE = 0x08


class ALUOp(IntEnum):
    """ALU operation, bits 4-7 of ALU/ALU64 opcodes."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0

    @classmethod
    def from_code(cls, code: int) -> ALUOp:
        return cls(code & OP_MASK)

    def op(self, cls: Class, src: Source) -> int:
        """The full 8-bit opcode of this operation in ``cls`` with operand ``src``."""
        return self | src | cls

    def imm(self, dst: int, value: int, *, off: int = 0, loc: object | None = None):
        """64-bit ``dst op= value`` (ALU64 | op | K)."""
        return _alu(self, Class.ALU64, Source.K, dst, 0, value, off, loc)

    def reg(self, dst: int, src: int, *, off: int = 0, loc: object | None = None):
        """64-bit ``dst op= src`` (ALU64 | op | X)."""
        return _alu(self, Class.ALU64, Source.X, dst, src, 0, off, loc)

    def imm32(self, dst: int, value: int, *, off: int = 0, loc: object | None = None):
        """32-bit ``wdst op= value`` (ALU | op | K); upper 32 bits of dst are zeroed."""
        return _alu(self, Class.ALU, Source.K, dst, 0, value, off, loc)

    def reg32(self, dst: int, src: int, *, off: int = 0, loc: object | None = None):
        """32-bit ``wdst op= wsrc`` (ALU | op | X)."""
        return _alu(self, Class.ALU, Source.X, dst, src, 0, off, loc)


def _alu(op: ALUOp, cls: Class, src_kind: Source, dst, src, imm, off, loc):
    if op in (ALUOp.NEG, ALUOp.END):
        raise ValueError(f"use neg()/to_be()/to_le()/bswap() for {op.name}")
    if src_kind is Source.K:
        imm = check_imm32(imm, allow_unsigned=cls is Class.ALU)
    return Insn(op.op(cls, src_kind), int(dst), int(src), off, imm, loc=loc)


class JumpOp(IntEnum):
    """Jump operation, bits 4-7 of JMP/JMP32 opcodes."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0  # may_goto

    @classmethod
    def from_code(cls, code: int) -> JumpOp:
        return cls(code & OP_MASK)

    @property
    def is_conditional(self) -> bool:
        return self not in (JumpOp.JA, JumpOp.CALL, JumpOp.EXIT, JumpOp.JCOND)

    def op(self, cls: Class, src: Source) -> int:
        return self | src | cls

    def imm(self, dst: int, value: int, target: str | int, *, loc: object | None = None):
        """``if dst op value goto target`` comparing 64 bits (JMP | op | K).

        ``target`` is a label name (resolved at encode) or a literal slot offset."""
        return _jmp(self, Class.JMP, Source.K, dst, 0, value, target, loc)

    def reg(self, dst: int, src: int, target: str | int, *, loc: object | None = None):
        """``if dst op src goto target`` comparing 64 bits (JMP | op | X)."""
        return _jmp(self, Class.JMP, Source.X, dst, src, 0, target, loc)

    def imm32(self, dst: int, value: int, target: str | int, *, loc: object | None = None):
        """``if wdst op value goto target`` comparing 32 bits (JMP32 | op | K)."""
        return _jmp(self, Class.JMP32, Source.K, dst, 0, value, target, loc)

    def reg32(self, dst: int, src: int, target: str | int, *, loc: object | None = None):
        """``if wdst op wsrc goto target`` comparing 32 bits (JMP32 | op | X)."""
        return _jmp(self, Class.JMP32, Source.X, dst, src, 0, target, loc)


def _jmp(op: JumpOp, cls: Class, src_kind: Source, dst, src, imm, target, loc):
    if not op.is_conditional:
        raise ValueError(f"{op.name} is not a conditional jump; use ja()/call()/exit_()")
    if src_kind is Source.K:
        imm = check_imm32(imm, allow_unsigned=cls is Class.JMP32)
    label, off = split_target(target)
    return Insn(op.op(cls, src_kind), int(dst), int(src), off, imm, label=label, loc=loc)


class AtomicOp(IntEnum):
    """Atomic operation carried in ``imm`` of ``STX | ATOMIC | size``."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1  # always fetches
    CMPXCHG = 0xF1  # always fetches; compares with r0, old value lands in r0

    @property
    def fetch(self) -> bool:
        return bool(self & FETCH)

    @property
    def alu(self) -> ALUOp:
        """The ALU operation of an add/or/and/xor atomic."""
        return ALUOp(self & ~FETCH)


FETCH = 0x01


# -- immediate helpers shared by the builders -----------------------------------------

def check_imm32(value: int, *, allow_unsigned: bool = False) -> int:
    """Return ``value`` as a signed 32-bit immediate or raise ValueError.

    64-bit operations sign-extend their immediate, so there only the signed range is
    accepted (0xffffffff would silently become -1).  32-bit operations also accept
    unsigned values up to 2**32-1, wrapped to the same bit pattern."""
    value = int(value)
    if -(1 << 31) <= value < (1 << 31):
        return value
    if allow_unsigned and 0 <= value < (1 << 32):
        return value - (1 << 32) if value >= (1 << 31) else value
    hint = "" if allow_unsigned else " (sign-extended to 64 bits; use ld_imm64)"
    raise ValueError(f"immediate {value:#x} does not fit in a signed 32-bit field{hint}")


def split_target(target: str | int) -> tuple[str | None, int]:
    """A jump target as (label, off): a label name, or a literal slot offset."""
    if isinstance(target, str):
        if not target:
            raise ValueError("empty jump label")
        return target, 0
    if isinstance(target, bool) or not isinstance(target, int):
        raise TypeError(f"jump target must be a label name or an int offset, not {target!r}")
    return None, int(target)


# -- the instruction record ------------------------------------------------------------

LD_IMM64 = Class.LD | Mode.IMM | Size.DW  # 0x18, the only 16-byte instruction
_U64 = (1 << 64) - 1


class Register(IntEnum):
    """eBPF registers.  R0 return value, R1-R5 arguments (clobbered by calls), R6-R9
    callee-saved, R10 read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10
    FP = 10  # alias of R10

    def __str__(self) -> str:
        return f"r{self.value}"


@dataclass(frozen=True)
class Insn:
    """One eBPF instruction (two slots for ld_imm64); see the module docstring."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    label: str | None = None
    map_ref: str | None = None
    loc: object | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        if not 0 <= self.code <= 0xFF:
            raise ValueError(f"opcode {self.code:#x} is not 8 bits")
        for name in ("dst", "src"):
            value = getattr(self, name)
            if not 0 <= value <= 0xF:
                raise ValueError(f"{name} register {value} is not 4 bits")
            put(self, name, int(value))
        put(self, "code", int(self.code))
        if not -(1 << 15) <= self.off < (1 << 15):
            raise ValueError(f"offset {self.off} does not fit in a signed 16-bit field")
        put(self, "off", int(self.off))
        imm = int(self.imm)
        if self.code == LD_IMM64:
            if not -(1 << 63) <= imm <= _U64:
                raise ValueError(f"ld_imm64 value {imm:#x} does not fit in 64 bits")
            put(self, "imm", imm & _U64)
        else:
            put(self, "imm", check_imm32(imm, allow_unsigned=True))

    # -- decoded fields ------------------------------------------------------------
    @property
    def cls(self) -> Class:
        return Class.of(self.code)

    @property
    def slots(self) -> int:
        """Number of 8-byte ``struct bpf_insn`` slots: 2 for ld_imm64, else 1."""
        return 2 if self.code == LD_IMM64 else 1

    @property
    def target_in_imm(self) -> bool:
        """True when the pc-relative target lives in ``imm`` (gotol, bpf-to-bpf call,
        a callback's address loaded by ``ld_func``)."""
        return self.code == Class.JMP32 | JumpOp.JA or (
            self.code == Class.JMP | JumpOp.CALL and self.src == PSEUDO_CALL
        ) or (self.code == LD_IMM64 and self.src == PSEUDO_FUNC)

    def replace(self, **changes) -> Insn:
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        return format_insn(self)


@dataclass(frozen=True)
class Label:
    """A jump-target marker in an instruction list; encodes to nothing."""

    name: str
    loc: object | None = field(default=None, compare=False, repr=False)
    slots = 0

    def __str__(self) -> str:
        return f"{self.name}:"


# -- one instruction as text (kernel/bpf/disasm.c; listings are disasm's) -------------

ALU_STRING = {
    ALUOp.ADD: "+=", ALUOp.SUB: "-=", ALUOp.MUL: "*=", ALUOp.DIV: "/=",
    ALUOp.OR: "|=", ALUOp.AND: "&=", ALUOp.LSH: "<<=", ALUOp.RSH: ">>=",
    ALUOp.MOD: "%=", ALUOp.XOR: "^=", ALUOp.MOV: "=", ALUOp.ARSH: "s>>=",
}
ALU_SIGN_STRING = {ALUOp.DIV: "s/=", ALUOp.MOD: "s%="}
JMP_STRING = {
    JumpOp.JEQ: "==", JumpOp.JGT: ">", JumpOp.JLT: "<", JumpOp.JGE: ">=",
    JumpOp.JLE: "<=", JumpOp.JSET: "&", JumpOp.JNE: "!=", JumpOp.JSGT: "s>",
    JumpOp.JSLT: "s<", JumpOp.JSGE: "s>=", JumpOp.JSLE: "s<=",
}
LDST_STRING = {Size.W: "u32", Size.H: "u16", Size.B: "u8", Size.DW: "u64"}
LDSX_STRING = {Size.W: "s32", Size.H: "s16", Size.B: "s8"}
ATOMIC_ALU_STRING = {ALUOp.ADD: "add", ALUOp.AND: "and", ALUOp.OR: "or", ALUOp.XOR: "xor"}


def _mem(size: Size, base: int, off: int, names=LDST_STRING) -> str:
    return f"*({names[size]} *)(r{base} {off:+d})"


def _target(insn: Insn, value: int) -> str:
    return insn.label if insn.label is not None else f"pc{value:+d}"


def format_insn(insn: Insn) -> str:
    """One instruction in verifier syntax, without the ``N: (code)`` prefix."""
    code, d, s, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    cls = Class.of(code)
    if cls in (Class.ALU, Class.ALU64):
        return _format_alu(insn, cls)
    size = Size.from_code(code)
    mode = code & MODE_MASK
    if cls is Class.STX:
        if mode == Mode.MEM:
            return f"{_mem(size, d, off)} = r{s}"
        if mode == Mode.ATOMIC and size in (Size.W, Size.DW):
            return _format_atomic(insn, size)
        return f"BUG_{code:02x}"
    if cls is Class.ST:
        if mode == Mode.MEM:
            return f"{_mem(size, d, off)} = {imm}"
        return f"BUG_st_{code:02x}"
    if cls is Class.LDX:
        if mode == Mode.MEM:
            return f"r{d} = {_mem(size, s, off)}"
        if mode == Mode.MEMSX and size in LDSX_STRING:
            return f"r{d} = {_mem(size, s, off, LDSX_STRING)}"
        return f"BUG_ldx_{code:02x}"
    if cls is Class.LD:
        if mode == Mode.ABS:
            return f"r0 = *({LDST_STRING[size]} *)skb[{imm}]"
        if mode == Mode.IND:
            return f"r0 = *({LDST_STRING[size]} *)skb[r{s} + {imm}]"
        if code == LD_IMM64:
            return f"r{d} = {_format_imm64(insn)} ll"
        return f"BUG_ld_{code:02x}"
    return _format_jump(insn, cls)


def _format_alu(insn: Insn, cls: Class) -> str:
    code, d, s, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    r = "w" if cls is Class.ALU else "r"
    op = ALUOp.from_code(code) if code & OP_MASK <= ALUOp.END else None
    if op is None:
        return f"BUG_alu_{code:02x}"
    if op is ALUOp.END:
        if cls is Class.ALU64:
            return f"r{d} = bswap{imm} r{d}"
        kind = "be" if code & SOURCE_MASK == Endian.TO_BE else "le"
        return f"r{d} = {kind}{imm} r{d}"
    if op is ALUOp.NEG:
        return f"{r}{d} = -{r}{d}"
    opstr = ALU_SIGN_STRING[op] if op in ALU_SIGN_STRING and off == 1 else ALU_STRING[op]
    if code & SOURCE_MASK == Source.X:
        cast = ""
        if op is ALUOp.MOV and off in (8, 16, 32):
            cast = f"(s{off})"
        return f"{r}{d} {opstr} {cast}{r}{s}"
    return f"{r}{d} {opstr} {imm}"


def _format_atomic(insn: Insn, size: Size) -> str:
    d, s, off, imm = insn.dst, insn.src, insn.off, insn.imm
    mem = f"({LDST_STRING[size]} *)(r{d} {off:+d})"
    wide = "64" if size is Size.DW else ""
    try:
        op = AtomicOp(imm)
    except ValueError:
        return f"BUG_{insn.code:02x}"
    if op is AtomicOp.XCHG:
        return f"r{s} = atomic{wide}_xchg({mem}, r{s})"
    if op is AtomicOp.CMPXCHG:
        return f"r0 = atomic{wide}_cmpxchg({mem}, r0, r{s})"
    if op.fetch:
        return f"r{s} = atomic{wide}_fetch_{ATOMIC_ALU_STRING[op.alu]}({mem}, r{s})"
    return f"lock *{mem} {ALU_STRING[op.alu]} r{s}"


def _format_imm64(insn: Insn) -> str:
    lo, hi = insn.imm & 0xFFFFFFFF, insn.imm >> 32
    if insn.src == PSEUDO_MAP_FD:
        return f"map[id:{insn.map_ref}]" if insn.map_ref is not None else f"map[fd:{lo}]"
    if insn.src == PSEUDO_MAP_VALUE:
        ref = f"id:{insn.map_ref}" if insn.map_ref is not None else f"fd:{lo}"
        return f"map[{ref}][0]+{hi}"
    return f"{insn.imm:#x}"


def _format_jump(insn: Insn, cls: Class) -> str:
    code, d, s, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    op = JumpOp.from_code(code)
    if op is JumpOp.CALL:
        if s == PSEUDO_CALL:
            return f"call {_target(insn, imm)}"
        if s == PSEUDO_KFUNC_CALL:
            return f"call kernel-function#{imm}"
        return f"call {helper_name(imm)}#{imm}"
    if code == Class.JMP | JumpOp.JA:
        return f"goto {_target(insn, off)}"
    if code == Class.JMP | JumpOp.JCOND and s == MAY_GOTO:
        return f"may_goto {_target(insn, off)}"
    if code == Class.JMP32 | JumpOp.JA:
        return f"gotol {_target(insn, imm)}"
    if code == Class.JMP | JumpOp.EXIT:
        return "exit"
    if op not in JMP_STRING:
        return f"BUG_jmp_{code:02x}"
    r = "w" if cls is Class.JMP32 else "r"
    rhs = f"{r}{s}" if code & SOURCE_MASK == Source.X else f"{imm & 0xFFFFFFFF:#x}"
    return f"if {r}{d} {JMP_STRING[op]} {rhs} goto {_target(insn, off)}"
