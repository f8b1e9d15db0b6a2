"""Building eBPF instructions: the builders, and the instruction model (registers,
``Insn``, ``Label``) re-exported from ``opcode``.

This module owns the functions that build instructions and the registers by name
(``R0``..``R10``, ``FP``), and is where users import the instruction model from: the
record itself (``Insn``, ``Label``, ``Register``) is defined with the numbers it carries
in ``opcode`` and re-exported here.  It does not own the bytes
(``encode``), the text (``asm``/``disasm``) or the numbers (``opcode``, ``helpers``).

Model
-----
``Insn(code, dst, src, off, imm, label=None, map_ref=None, loc=None)`` is one
``struct bpf_insn`` -- except that ``ld_imm64`` is *one* ``Insn`` holding the full 64-bit
``imm`` (encoded as two 8-byte slots; ``Insn.slots`` is 1 or 2).  Two symbolic fields are
resolved late, never during lowering:

* ``label``: the name of a jump target.  ``encode.resolve`` turns it into ``off`` (or
  ``imm`` for ``gotol`` and bpf-to-bpf ``call_local``), counting 8-byte slots.
* ``map_ref``: the name of a map loaded by ``ld_map_fd``/``ld_map_value`` (src
  ``PSEUDO_MAP_FD``/``PSEUDO_MAP_VALUE``); the loader patches the fd into ``imm``
  (``encode.map_relocations`` lists where).

``loc`` is an opaque source location (anything with ``.line``); it is ignored by ``==``.
``Label(name)`` (built by ``label(name)``) marks a jump target in an instruction list and
emits no bytes (``slots == 0``).

Builders (all take a keyword-only ``loc=``; a ``Register`` argument means a register,
a plain ``int`` means an immediate; jump targets are a label name or a literal offset)::

    ALUOp.ADD.imm(dst, 22)   ALUOp.ADD.reg(dst, src)        r1 += 22 / r1 += r2
    ALUOp.ADD.imm32(dst, 22) ALUOp.ADD.reg32(dst, src)      w1 += 22 / w1 += w2
    mov(dst, src_or_imm)     mov32(dst, src_or_imm)         r1 = r2 / w1 = 5
    neg(dst) neg32(dst)      sdiv/smod/sdiv32/smod32(dst, src_or_imm)
    movsx(dst, src, bits)    movsx32(dst, src, bits)        r1 = (s8)r2
    to_be(dst, bits) to_le(dst, bits) bswap(dst, bits)      r1 = be16 r1 / bswap64
    ld_imm64(dst, value)     ld_map_fd(dst, name)           ld_map_value(dst, name, offset)
    ld_func(dst, target)                                    r2 = &callback (bpf_loop's)
    load(size, dst, base, off)   load_sx(size, dst, base, off)
    store(size, base, off, src)  store_imm(size, base, off, imm)
    atomic(op, size, base, off, src)  atomic_add/or/and/xor(size, base, off, src, fetch=False)
    atomic_xchg(size, base, off, src) atomic_cmpxchg(size, base, off, src)
    JumpOp.JSGT.imm(dst, 4, "L")  JumpOp.JEQ.reg(a, b, "L")  .imm32/.reg32 for JMP32
    ja(target) gotol(target) may_goto(target) call(helper) call_local(target) exit_()
    ld_abs(size, imm) ld_ind(size, src, imm) label(name)
"""

from __future__ import annotations

from .helpers import Helper
from .opcode import (  # the record (Insn, Label, Register) is re-exported: users build from here
    ENDIAN_WIDTHS,
    LD_IMM64,
    MOVSX_WIDTHS,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
    ALUOp,
    AtomicOp,
    Class,
    Endian,
    Insn,
    JumpOp,
    Label,
    Mode,
    Register,
    Size,
    Source,
    check_imm32,
    split_target,
)

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Register(i) for i in range(11))
FP = Register.FP


def label(name: str, *, loc: object | None = None) -> Label:
    """Place label ``name`` before the next instruction."""
    if not name:
        raise ValueError("empty label name")
    return Label(name, loc)


# -- ALU ---------------------------------------------------------------------------------

def _is_reg(x) -> bool:
    if isinstance(x, bool):
        raise TypeError("bool is neither a register nor an immediate")
    return isinstance(x, Register)


def mov(dst: int, src_or_imm: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = r<src>`` if given a ``Register``, else ``r<dst> = imm`` (sign-extended)."""
    if _is_reg(src_or_imm):
        return ALUOp.MOV.reg(dst, src_or_imm, loc=loc)
    return ALUOp.MOV.imm(dst, src_or_imm, loc=loc)


def mov32(dst: int, src_or_imm: int, *, loc: object | None = None) -> Insn:
    """``w<dst> = w<src>`` / ``w<dst> = imm`` (zero-extends into the upper half)."""
    if _is_reg(src_or_imm):
        return ALUOp.MOV.reg32(dst, src_or_imm, loc=loc)
    return ALUOp.MOV.imm32(dst, src_or_imm, loc=loc)


def neg(dst: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = -r<dst>``."""
    return Insn(ALUOp.NEG | Class.ALU64, int(dst), loc=loc)


def neg32(dst: int, *, loc: object | None = None) -> Insn:
    """``w<dst> = -w<dst>``."""
    return Insn(ALUOp.NEG | Class.ALU, int(dst), loc=loc)


def _signed(op: ALUOp, wide: bool, dst, src_or_imm, loc) -> Insn:
    if _is_reg(src_or_imm):
        build = op.reg if wide else op.reg32
    else:
        build = op.imm if wide else op.imm32
    return build(dst, src_or_imm, off=1, loc=loc)


def sdiv(dst: int, src_or_imm: int, *, loc: object | None = None) -> Insn:
    """``r<dst> s/= src`` (v4: DIV with off 1)."""
    return _signed(ALUOp.DIV, True, dst, src_or_imm, loc)


def smod(dst: int, src_or_imm: int, *, loc: object | None = None) -> Insn:
    """``r<dst> s%= src`` (v4: MOD with off 1)."""
    return _signed(ALUOp.MOD, True, dst, src_or_imm, loc)


def sdiv32(dst: int, src_or_imm: int, *, loc: object | None = None) -> Insn:
    return _signed(ALUOp.DIV, False, dst, src_or_imm, loc)


def smod32(dst: int, src_or_imm: int, *, loc: object | None = None) -> Insn:
    return _signed(ALUOp.MOD, False, dst, src_or_imm, loc)


def movsx(dst: int, src: int, bits: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = (s<bits>)r<src>``, bits in 8/16/32 (v4)."""
    if bits not in MOVSX_WIDTHS:
        raise ValueError(f"movsx width must be 8, 16 or 32, not {bits}")
    return ALUOp.MOV.reg(dst, src, off=bits, loc=loc)


def movsx32(dst: int, src: int, bits: int, *, loc: object | None = None) -> Insn:
    """``w<dst> = (s<bits>)w<src>``, bits in 8/16 (v4)."""
    if bits not in (8, 16):
        raise ValueError(f"32-bit movsx width must be 8 or 16, not {bits}")
    return ALUOp.MOV.reg32(dst, src, off=bits, loc=loc)


def _endian(cls: Class, src: int, dst, bits, loc) -> Insn:
    if bits not in ENDIAN_WIDTHS:
        raise ValueError(f"byte-swap width must be 16, 32 or 64, not {bits}")
    return Insn(ALUOp.END | src | cls, int(dst), 0, 0, bits, loc=loc)


def to_be(dst: int, bits: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = be<bits> r<dst>``: host to big endian, truncating to ``bits``."""
    return _endian(Class.ALU, Endian.TO_BE, dst, bits, loc)


def to_le(dst: int, bits: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = le<bits> r<dst>``: host to little endian, truncating to ``bits``."""
    return _endian(Class.ALU, Endian.TO_LE, dst, bits, loc)


def bswap(dst: int, bits: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = bswap<bits> r<dst>``: unconditional byte swap (v4, ALU64 END)."""
    return _endian(Class.ALU64, Source.K, dst, bits, loc)


# -- 64-bit immediates and maps --------------------------------------------------------

def ld_imm64(dst: int, value: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = value ll`` (two slots; value taken modulo 2**64)."""
    return Insn(LD_IMM64, int(dst), 0, 0, value, loc=loc)


def ld_func(dst: int, target: str | int, *, loc: object | None = None) -> Insn:
    """``dst = &target``: the callback a helper such as bpf_loop calls (ld_imm64, src
    PSEUDO_FUNC, the pc-relative offset in the low ``imm`` as for ``call_local``).  The
    kernel needs BTF func_info naming the callback as a static function."""
    name, off = split_target(target)
    return Insn(LD_IMM64, dst, PSEUDO_FUNC, imm=off & 0xFFFFFFFF, label=name, loc=loc)


def ld_map_fd(dst: int, map_name: str, *, loc: object | None = None) -> Insn:
    """``r<dst> = map[id:<map_name>] ll``: the map pointer; the loader patches the fd."""
    return Insn(LD_IMM64, int(dst), PSEUDO_MAP_FD, 0, 0, map_ref=map_name, loc=loc)


def ld_map_value(dst: int, map_name: str, offset: int = 0, *, loc: object | None = None) -> Insn:
    """``r<dst> = map[id:<map_name>][0]+offset ll``: address inside the value of element 0
    of an array map (global data).  The fd goes in the low half, ``offset`` in the high."""
    if not 0 <= offset < (1 << 32):
        raise ValueError(f"map value offset {offset} is not a u32")
    return Insn(LD_IMM64, int(dst), PSEUDO_MAP_VALUE, 0, offset << 32, map_ref=map_name, loc=loc)


# -- loads and stores --------------------------------------------------------------------

def _size(size) -> Size:
    if not isinstance(size, Size):
        raise TypeError(f"size must be a Size (use Size.of(nbytes)), not {size!r}")
    return size


def load(size: Size, dst: int, base: int, off: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = *(u<bits> *)(r<base> +off)`` (LDX | MEM, zero-extending)."""
    return Insn(Class.LDX | Mode.MEM | _size(size), int(dst), int(base), off, loc=loc)


def load_sx(size: Size, dst: int, base: int, off: int, *, loc: object | None = None) -> Insn:
    """``r<dst> = *(s<bits> *)(r<base> +off)`` (LDX | MEMSX, v4; size B, H or W)."""
    if _size(size) is Size.DW:
        raise ValueError("sign-extending load of 8 bytes does not exist; use load()")
    return Insn(Class.LDX | Mode.MEMSX | size, int(dst), int(base), off, loc=loc)


def store(size: Size, base: int, off: int, src: int, *, loc: object | None = None) -> Insn:
    """``*(u<bits> *)(r<base> +off) = r<src>`` (STX | MEM)."""
    return Insn(Class.STX | Mode.MEM | _size(size), int(base), int(src), off, loc=loc)


def store_imm(size: Size, base: int, off: int, imm: int, *, loc: object | None = None) -> Insn:
    """``*(u<bits> *)(r<base> +off) = imm`` (ST | MEM; imm sign-extended for u64)."""
    imm = check_imm32(imm, allow_unsigned=_size(size) is not Size.DW)
    return Insn(Class.ST | Mode.MEM | size, int(base), 0, off, imm, loc=loc)


def atomic(op: AtomicOp, size: Size, base: int, off: int, src: int,
           *, loc: object | None = None) -> Insn:
    """Atomic ``op`` on ``*(u32|u64 *)(r<base> +off)`` with ``r<src>`` (STX | ATOMIC)."""
    if _size(size) not in (Size.W, Size.DW):
        raise ValueError("atomic operations exist only for u32 and u64")
    return Insn(Class.STX | Mode.ATOMIC | size, int(base), int(src), off, AtomicOp(op), loc=loc)


def _atomic_alu(plain: AtomicOp):
    def build(size: Size, base: int, off: int, src: int, fetch: bool = False,
              *, loc: object | None = None) -> Insn:
        return atomic(AtomicOp(plain | fetch), size, base, off, src, loc=loc)

    build.__name__ = f"atomic_{plain.name.lower()}"
    build.__doc__ = (f"``lock *(size *)(base +off) {plain.alu.name.lower()}= src``; with "
                     "fetch=True the old value is returned in ``src``.")
    return build


atomic_add = _atomic_alu(AtomicOp.ADD)
atomic_or = _atomic_alu(AtomicOp.OR)
atomic_and = _atomic_alu(AtomicOp.AND)
atomic_xor = _atomic_alu(AtomicOp.XOR)


def atomic_xchg(size: Size, base: int, off: int, src: int, *, loc: object | None = None) -> Insn:
    """``r<src> = atomic_xchg((size *)(r<base> +off), r<src>)``."""
    return atomic(AtomicOp.XCHG, size, base, off, src, loc=loc)


def atomic_cmpxchg(size: Size, base: int, off: int, src: int,
                   *, loc: object | None = None) -> Insn:
    """``r0 = atomic_cmpxchg((size *)(r<base> +off), r0, r<src>)``."""
    return atomic(AtomicOp.CMPXCHG, size, base, off, src, loc=loc)


def ld_abs(size: Size, imm: int, *, loc: object | None = None) -> Insn:
    """Legacy ``r0 = *(u<bits> *)skb[imm]`` (socket filters only)."""
    return Insn(Class.LD | Mode.ABS | _size(size), 0, 0, 0, imm, loc=loc)


def ld_ind(size: Size, src: int, imm: int, *, loc: object | None = None) -> Insn:
    """Legacy ``r0 = *(u<bits> *)skb[r<src> + imm]``."""
    return Insn(Class.LD | Mode.IND | _size(size), 0, int(src), 0, imm, loc=loc)


# -- control flow ----------------------------------------------------------------------

def ja(target: str | int, *, loc: object | None = None) -> Insn:
    """``goto target`` (JMP | JA; resolve() widens it to gotol if out of 16-bit range)."""
    name, off = split_target(target)
    return Insn(Class.JMP | JumpOp.JA, off=off, label=name, loc=loc)


def gotol(target: str | int, *, loc: object | None = None) -> Insn:
    """``gotol target``: 32-bit offset in imm (JMP32 | JA, v4)."""
    name, off = split_target(target)
    return Insn(Class.JMP32 | JumpOp.JA, imm=off, label=name, loc=loc)


def may_goto(target: str | int, *, loc: object | None = None) -> Insn:
    """``may_goto target`` (JMP | JCOND | K, src 0): taken when the loop budget runs out."""
    name, off = split_target(target)
    return Insn(Class.JMP | JumpOp.JCOND | Source.K, off=off, label=name, loc=loc)


def call(helper: Helper | int, *, loc: object | None = None) -> Insn:
    """``call bpf_<helper>#<id>``."""
    if isinstance(helper, bool) or not isinstance(helper, int):
        raise TypeError(f"call() takes a Helper or a helper id, not {helper!r}")
    return Insn(Class.JMP | JumpOp.CALL, imm=int(helper), loc=loc)


def call_local(target: str | int, *, loc: object | None = None) -> Insn:
    """bpf-to-bpf ``call pc+N`` (src PSEUDO_CALL, offset in imm)."""
    name, off = split_target(target)
    return Insn(Class.JMP | JumpOp.CALL, src=PSEUDO_CALL, imm=off, label=name, loc=loc)


def exit_(*, loc: object | None = None) -> Insn:
    """``exit``: return r0."""
    return Insn(Class.JMP | JumpOp.EXIT, loc=loc)
