"""eBPF opcode enums carrying the kernel's own bit values (include/uapi/linux/bpf.h,
bpf_common.h).

This module owns the numbers: instruction classes, sizes, modes, operand sources, ALU and
jump operations, atomic operations and the pseudo-source constants used by the loader.
It does not own instructions (see ``insn``), encoding (``encode``) or text (``asm``,
``disasm``).  The builder methods on ``ALUOp`` and ``JumpOp`` are thin conveniences that
return ``insn.Insn`` objects, so generated code reads like assembly::

    ALUOp.ADD.imm(R1, 22)            # r1 += 22
    ALUOp.SUB.reg32(R1, R2)          # w1 -= w2
    JumpOp.JSGT.imm(R1, 4, "Lexit")  # if r1 s> 0x4 goto Lexit

The 8-bit opcode has two layouts, selected by the low three bits (the class)::

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

import enum
from enum import IntEnum

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


def _insn():
    # insn.py imports this module, so the Insn class is looked up on first use.
    from .insn import Insn

    return Insn


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

    @property
    def is_alu(self) -> bool:
        return self in (Class.ALU, Class.ALU64)

    @property
    def is_jump(self) -> bool:
        return self in (Class.JMP, Class.JMP32)

    @property
    def is_load_store(self) -> bool:
        return self <= Class.STX


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
    return _insn()(op.op(cls, src_kind), int(dst), int(src), off, imm, loc=loc)


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
    return _insn()(op.op(cls, src_kind), int(dst), int(src), off, imm, label=label, loc=loc)


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
