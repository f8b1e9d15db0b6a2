"""eBPF instructions as text, in the kernel verifier's own syntax (kernel/bpf/disasm.c).

This module owns ``format_insn`` (one instruction) and ``disassemble`` (a listing).  The
spelling, spacing and number bases follow ``print_bpf_insn``: ALU and store immediates in
decimal (``r1 += 22``, ``*(u64 *)(r10 -16) = 5``), jump immediates in hex
(``if r1 s> 0x4 goto pc+3``), memory offsets signed (``(r10 -8)``), helper calls as
``call bpf_map_lookup_elem#1``.  Two deliberate additions, both accepted back by ``asm``:

* ld_imm64 ends in `` ll`` (as LLVM prints it) so ``r1 = 0x5 ll`` cannot be mistaken for
  ``r1 = 5`` when reassembled;
* a map load prints its symbolic name as ``r1 = map[id:NAME] ll`` (bpftool's
  ``map[id:N]`` layout); without a name, the raw fd as ``map[fd:N]``.  Map-value loads
  add ``[0]+OFFSET``.

Unresolved symbolic targets print as ``goto NAME``.  This module does not parse text
(``asm``) or produce bytes (``encode``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .encode import label_slots, resolve
from .helpers import helper_name
from .insn import LD_IMM64, Insn, Label
from .opcode import (
    MAY_GOTO,
    PSEUDO_CALL,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
    ALUOp,
    AtomicOp,
    Class,
    Endian,
    JumpOp,
    Mode,
    Size,
    Source,
)

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
    cls = Class(code & 0x07)
    if cls in (Class.ALU, Class.ALU64):
        return _format_alu(insn, cls)
    size = Size(code & 0x18)
    mode = code & 0xE0
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
    op = ALUOp(code & 0xF0) if (code & 0xF0) <= ALUOp.END else None
    if op is None:
        return f"BUG_alu_{code:02x}"
    if op is ALUOp.END:
        if cls is Class.ALU64:
            return f"r{d} = bswap{imm} r{d}"
        kind = "be" if code & Source.X == Endian.TO_BE else "le"
        return f"r{d} = {kind}{imm} r{d}"
    if op is ALUOp.NEG:
        return f"{r}{d} = -{r}{d}"
    opstr = ALU_SIGN_STRING[op] if op in ALU_SIGN_STRING and off == 1 else ALU_STRING[op]
    if code & Source.X:
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
    op = JumpOp(code & 0xF0)
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
    rhs = f"{r}{s}" if code & Source.X else f"{imm & 0xFFFFFFFF:#x}"
    return f"if {r}{d} {JMP_STRING[op]} {rhs} goto {_target(insn, off)}"


def disassemble(insns: Sequence[Insn | Label], source_lines: list[str] | None = None,
                with_offsets: bool = True) -> str:
    """A listing of ``insns``, one instruction per line.

    ``with_offsets=True`` (default) resolves labels and prints like the verifier log,
    ``3: (bf) r1 = r6``, with jump targets as ``pc+N`` and label names on lines of their
    own.  ``with_offsets=False`` prints plain, indented assembly that keeps symbolic
    targets (``goto Lname``) and ``Lname:`` lines.  Either form reassembles with
    ``asm.assemble``.  When instructions carry a ``loc`` with ``.line`` and
    ``source_lines`` is given, a comment ``; <source line>  @ line N`` precedes the first
    instruction of each new source line."""
    lines: list[str] = []
    last_line = None

    def source_comment(item) -> None:
        nonlocal last_line
        line = getattr(getattr(item, "loc", None), "line", None)
        if source_lines is None or line is None or line == last_line:
            return
        last_line = line
        if 1 <= line <= len(source_lines):
            lines.append(f"; {source_lines[line - 1].strip()}  @ line {line}")

    if not with_offsets:
        for item in insns:
            if isinstance(item, Label):
                lines.append(f"{item.name}:")
            else:
                source_comment(item)
                lines.append(f"    {format_insn(item)}")
        return "\n".join(lines) + ("\n" if lines else "")

    names_at: dict[int, list[str]] = {}
    for name, slot in label_slots(insns).items():
        names_at.setdefault(slot, []).append(name)
    slot = 0
    for insn in resolve(insns):
        for name in names_at.pop(slot, ()):
            lines.append(f"{name}:")
        source_comment(insn)
        lines.append(f"{slot}: ({insn.code:02x}) {format_insn(insn)}")
        slot += insn.slots
    for slot_names in names_at.values():  # labels after the last instruction
        lines.extend(f"{name}:" for name in slot_names)
    return "\n".join(lines) + ("\n" if lines else "")
