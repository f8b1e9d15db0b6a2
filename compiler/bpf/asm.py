"""A text assembler for eBPF in the kernel verifier's syntax.

This module owns ``assemble(text) -> list[Insn | Label]``, the inverse of
``disasm.disassemble`` (both of its forms).  One instruction per line::

    Lloop:                          ; a label; may share a line with an instruction
    r1 = 5                          ; mov; `w1 = 5` is the 32-bit class
    r1 s/= r2                       ; every ALU op: = += -= *= /= s/= %= s%= |= &= ^=
                                    ;   <<= >>= s>>=, neg `r1 = -r1`, `r1 = (s8)r2`,
    r1 = be16 r1                    ;   `le32`, `bswap64`
    r1 = 0x1234 ll                  ; ld_imm64 (the ` ll` is required)
    r1 = map[id:counts] ll          ; map fd load (map[fd:N] for a raw fd,
                                    ;   map[id:NAME][0]+OFF for a map value)
    r0 = *(u64 *)(r10 -8)           ; load; s8/s16/s32 for sign-extending loads
    *(u32 *)(r10 -8) = r1           ; store; `= 5` stores an immediate
    lock *(u64 *)(r0 +0) += r1      ; atomics, plus r1 = atomic64_fetch_add((u64 *)(r0 +0), r1),
                                    ;   atomic64_xchg(...), r0 = atomic64_cmpxchg(..., r0, r2)
    if r1 s> 0x4 goto Lloop         ; == != > >= < <= s> s>= s< s<= &; `if w1 ...` is JMP32
    goto pc+5                       ; also gotol, may_goto; targets `pc+N` or a label
    call bpf_map_lookup_elem#1      ; or `call 1`, `call map_lookup_elem`; a name that is no
    exit                            ;   helper is a bpf-to-bpf call to that label

Comments start with ``;``.  Verifier-log prefixes (``3: (bf) ``) are skipped, so a listing
pasted from ``bpftool prog dump xlated`` or ``disassemble`` reassembles.  Errors raise
``AsmError`` naming the line.  This module does not encode (``encode``) or resolve labels;
it only checks that every label used is defined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import insn as I
from .helpers import Helper
from .insn import Insn, Label, Register
from .opcode import ALUOp, AtomicOp, JumpOp, Size


class AsmError(ValueError):
    """Bad assembly text; ``line`` is 1-based."""

    def __init__(self, message: str, line: int, text: str = ""):
        self.message, self.line, self.text = message, line, text
        super().__init__(f"line {line}: {message}" + (f": {text.strip()!r}" if text else ""))


@dataclass(frozen=True)
class AsmLine:
    """The ``loc`` of an assembled instruction: its line in the assembly text."""

    line: int


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<reg>[rw]\d+)(?![\w.])
    | (?P<op>s>>=|s>=|s<=|s/=|s%=|s>|s<|<<=|>>=|==|!=|>=|<=|\+=|-=|\*=|/=|%=|\|=|&=|\^=)
    | (?P<num>[+-]?(?:0[xX][0-9a-fA-F]+|\d+))(?![\w])
    | (?P<name>[A-Za-z_.][\w.]*)
    | (?P<punct>[-+=*()\[\]:,#&<>])
    )""", re.VERBOSE)

_ALU_OPS = {
    "=": ALUOp.MOV, "+=": ALUOp.ADD, "-=": ALUOp.SUB, "*=": ALUOp.MUL, "/=": ALUOp.DIV,
    "%=": ALUOp.MOD, "|=": ALUOp.OR, "&=": ALUOp.AND, "^=": ALUOp.XOR,
    "<<=": ALUOp.LSH, ">>=": ALUOp.RSH, "s>>=": ALUOp.ARSH,
}
_SIGNED_OPS = {"s/=": ALUOp.DIV, "s%=": ALUOp.MOD}
_JMP_OPS = {
    "==": JumpOp.JEQ, "!=": JumpOp.JNE, ">": JumpOp.JGT, ">=": JumpOp.JGE,
    "<": JumpOp.JLT, "<=": JumpOp.JLE, "s>": JumpOp.JSGT, "s>=": JumpOp.JSGE,
    "s<": JumpOp.JSLT, "s<=": JumpOp.JSLE, "&": JumpOp.JSET,
}
_LOCK_OPS = {"+=": AtomicOp.ADD, "|=": AtomicOp.OR, "&=": AtomicOp.AND, "^=": AtomicOp.XOR}
_FETCH_OPS = {"add": AtomicOp.FETCH_ADD, "or": AtomicOp.FETCH_OR,
              "and": AtomicOp.FETCH_AND, "xor": AtomicOp.FETCH_XOR}
_SIZES = {"u8": Size.B, "u16": Size.H, "u32": Size.W, "u64": Size.DW}
_SX_SIZES = {"s8": Size.B, "s16": Size.H, "s32": Size.W}
_ATOMIC_CALL = re.compile(r"atomic(64)?_(fetch_(add|and|or|xor)|xchg|cmpxchg)")
_PREFIX = re.compile(r"\s*\d+:\s*(?:\([0-9a-fA-F]{2}\)\s*)?")
_LABEL = re.compile(r"\s*([A-Za-z_.][\w.]*)\s*:(.*)")


class _Reject(Exception):
    pass


class _Line:
    """Recursive-descent parser over the tokens of one line."""

    def __init__(self, text: str):
        self.toks: list[tuple[str, object]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise _Reject(f"unexpected character {text[pos:].lstrip()[:1]!r}")
            kind = m.lastgroup
            val = m.group(kind)
            if kind == "reg":
                val = (val[0], int(val[1:]))
            elif kind == "num":
                val = int(val, 0)
            elif kind == "punct":
                kind = "op"
            self.toks.append((kind, val))
            pos = m.end()
        self.i = 0

    # -- token helpers ------------------------------------------------------------------
    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eol", None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, kind: str, value=None) -> bool:
        k, v = self.peek()
        if k == kind and (value is None or v == value):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value=None, what: str | None = None):
        k, v = self.take()
        if k != kind or (value is not None and v != value):
            want = what or (repr(value) if value is not None else kind)
            got = "end of line" if k == "eol" else repr(v if k != "reg" else f"{v[0]}{v[1]}")
            raise _Reject(f"expected {want}, found {got}")
        return v

    def end(self) -> None:
        if self.peek()[0] != "eol":
            self.expect("eol", what="end of line")

    def reg(self, width: str | None = None) -> tuple[str, Register]:
        kind, n = self.expect("reg", what="a register")
        if n > 10:
            raise _Reject(f"no register {kind}{n}")
        if width is not None and kind != width:
            raise _Reject(f"mixed 32- and 64-bit registers ({width} vs {kind})")
        return kind, Register(n)

    def num(self) -> int:
        return self.expect("num", what="a number")

    def size(self, table=_SIZES) -> Size:
        name = self.expect("name", what="a size such as u32")
        if name not in table:
            raise _Reject(f"bad size {name!r} (one of {', '.join(table)})")
        return table[name]

    def offset(self) -> int:
        if self.accept("op", "+"):
            return self.num()
        if self.accept("op", "-"):
            return -self.num()
        if self.peek()[0] == "num":
            return self.num()
        return 0

    def memref(self, star: bool = True, table=_SIZES) -> tuple[Size, Register, int]:
        """``*(u64 *)(r10 -8)`` (or without the leading ``*``)."""
        if star:
            self.expect("op", "*")
        self.expect("op", "(")
        size = self.size(table)
        self.expect("op", "*")
        self.expect("op", ")")
        self.expect("op", "(")
        _, base = self.reg("r")
        off = self.offset()
        self.expect("op", ")")
        return size, base, off

    def target(self) -> str | int:
        kind, val = self.take()
        if kind == "name" and val == "pc":
            return self.offset()
        if kind == "name":
            return val
        raise _Reject("expected a jump target (pc+N or a label)")


def _jump_imm(value: int) -> int:
    # The kernel prints jump immediates as unsigned hex: 0xffffffff means -1.
    return value - (1 << 32) if (1 << 31) <= value < (1 << 32) else value


def _parse(p: _Line, loc: AsmLine) -> Insn:
    kind, word = p.peek()
    if kind == "name":
        if word == "exit":
            p.take()
            p.end()
            return I.exit_(loc=loc)
        if word in ("goto", "gotol", "may_goto"):
            p.take()
            target = p.target()
            p.end()
            build = {"goto": I.ja, "gotol": I.gotol, "may_goto": I.may_goto}[word]
            return build(target, loc=loc)
        if word == "call":
            p.take()
            return _parse_call(p, loc)
        if word == "if":
            p.take()
            return _parse_if(p, loc)
        if word == "lock":
            p.take()
            size, base, off = p.memref()
            op = p.expect("op", what="an atomic operator (+= |= &= ^=)")
            if op not in _LOCK_OPS:
                raise _Reject(f"no atomic {op}")
            _, src = p.reg("r")
            p.end()
            return I.atomic(_LOCK_OPS[op], size, base, off, src, loc=loc)
    if kind == "op" and word == "*":
        size, base, off = p.memref()
        p.expect("op", "=")
        if p.peek()[0] == "reg":
            _, src = p.reg("r")
            p.end()
            return I.store(size, base, off, src, loc=loc)
        imm = p.num()
        p.end()
        return I.store_imm(size, base, off, imm, loc=loc)
    if kind == "reg":
        return _parse_assign(p, loc)
    raise _Reject("not an instruction")


def _parse_call(p: _Line, loc: AsmLine) -> Insn:
    kind, val = p.take()
    if kind == "num":
        p.end()
        return I.call(val, loc=loc)
    if kind != "name":
        raise _Reject("expected a helper name or id after call")
    if val == "pc":
        off = p.offset()
        p.end()
        return I.call_local(off, loc=loc)
    number = p.num() if p.accept("op", "#") else None
    p.end()
    try:
        helper = Helper.lookup(val)
    except ValueError:
        if number is not None and val == "unknown":
            return I.call(number, loc=loc)
        if number is not None:
            raise _Reject(f"unknown helper {val!r}") from None
        return I.call_local(val, loc=loc)  # bpf-to-bpf call; checked as a label
    if number is not None and number != helper:
        raise _Reject(f"{helper.kernel_name} is #{int(helper)}, not #{number}")
    return I.call(helper, loc=loc)


def _parse_if(p: _Line, loc: AsmLine) -> Insn:
    width, dst = p.reg()
    op = p.expect("op", what="a comparison")
    if op not in _JMP_OPS:
        raise _Reject(f"unknown comparison {op!r}")
    jop = _JMP_OPS[op]
    wide = width == "r"
    if p.peek()[0] == "reg":
        _, src = p.reg(width)
        build, rhs = (jop.reg if wide else jop.reg32), src
    else:
        build, rhs = (jop.imm if wide else jop.imm32), _jump_imm(p.num())
    p.expect("name", "goto")
    target = p.target()
    p.end()
    return build(dst, rhs, target, loc=loc)


def _parse_assign(p: _Line, loc: AsmLine) -> Insn:
    width, dst = p.reg()
    wide = width == "r"
    op = p.expect("op", what="an assignment operator")
    if op in _SIGNED_OPS or op in _ALU_OPS and op != "=":
        signed = op in _SIGNED_OPS
        alu = _SIGNED_OPS[op] if signed else _ALU_OPS[op]
        if p.peek()[0] == "reg":
            _, src = p.reg(width)
            build, rhs = (alu.reg if wide else alu.reg32), src
        else:
            build, rhs = (alu.imm if wide else alu.imm32), p.num()
        p.end()
        return build(dst, rhs, off=1 if signed else 0, loc=loc)
    if op != "=":
        raise _Reject(f"unknown operator {op!r}")
    kind, val = p.peek()
    if kind == "reg":  # r1 = r2
        _, src = p.reg(width)
        p.end()
        return ALUOp.MOV.reg(dst, src, loc=loc) if wide else ALUOp.MOV.reg32(dst, src, loc=loc)
    if kind == "num":  # r1 = 5 / r1 = 0x5 ll
        value = p.take()[1]
        if p.accept("name", "ll"):
            p.end()
            _need64(wide)
            return I.ld_imm64(dst, value, loc=loc)
        p.end()
        return ALUOp.MOV.imm(dst, value, loc=loc) if wide else ALUOp.MOV.imm32(dst, value, loc=loc)
    if kind == "op" and val == "-":  # r1 = -r1
        p.take()
        _, src = p.reg(width)
        if src != dst:
            raise _Reject("neg must negate its own register")
        p.end()
        return I.neg(dst, loc=loc) if wide else I.neg32(dst, loc=loc)
    if kind == "op" and val == "(":  # r1 = (s8)r2
        p.take()
        cast = p.expect("name", what="a cast such as s8")
        p.expect("op", ")")
        _, src = p.reg(width)
        p.end()
        if cast not in ("s8", "s16", "s32"):
            raise _Reject(f"bad movsx cast ({cast})")
        bits = int(cast[1:])
        return I.movsx(dst, src, bits, loc=loc) if wide else I.movsx32(dst, src, bits, loc=loc)
    if kind == "op" and val == "*":  # r0 = *(u64 *)(r10 -8) / skb[...]
        _need64(wide)
        if p.peek(5) == ("name", "skb"):
            return _parse_skb(p, dst, loc)
        signed = p.peek(2)[1] in _SX_SIZES
        size, base, off = p.memref(table=_SX_SIZES if signed else _SIZES)
        p.end()
        build = I.load_sx if signed else I.load
        return build(size, dst, base, off, loc=loc)
    if kind == "name":
        _need64(wide)
        p.take()
        if val == "map":
            return _parse_map(p, dst, loc)
        m = re.fullmatch(r"(be|le|bswap)(16|32|64)", val)
        if m:
            _, src = p.reg("r")
            if src != dst:
                raise _Reject("byte swap must operate on its own register")
            p.end()
            build = {"be": I.to_be, "le": I.to_le, "bswap": I.bswap}[m.group(1)]
            return build(dst, int(m.group(2)), loc=loc)
        m = _ATOMIC_CALL.fullmatch(val)
        if m:
            return _parse_atomic_call(p, m, dst, loc)
    raise _Reject("cannot parse the right-hand side")


def _need64(wide: bool) -> None:
    if not wide:
        raise _Reject("this instruction takes a 64-bit r register")


def _parse_skb(p: _Line, dst: Register, loc: AsmLine) -> Insn:
    if dst != Register.R0:
        raise _Reject("legacy packet loads write r0")
    p.expect("op", "*")
    p.expect("op", "(")
    size = p.size()
    p.expect("op", "*")
    p.expect("op", ")")
    p.expect("name", "skb")
    p.expect("op", "[")
    if p.peek()[0] == "reg":
        _, src = p.reg("r")
        imm = p.offset()
        p.expect("op", "]")
        p.end()
        return I.ld_ind(size, src, imm, loc=loc)
    imm = p.num()
    p.expect("op", "]")
    p.end()
    return I.ld_abs(size, imm, loc=loc)


def _parse_map(p: _Line, dst: Register, loc: AsmLine) -> Insn:
    p.expect("op", "[")
    how = p.expect("name", what="id: or fd:")
    p.expect("op", ":")
    kind, ref = p.take()
    if how == "id" and kind != "name":
        raise _Reject("map[id:...] takes a map name (use map[fd:N] for a raw fd)")
    if how == "fd" and kind != "num":
        raise _Reject("map[fd:...] takes a number")
    if how not in ("id", "fd"):
        raise _Reject(f"expected map[id:NAME] or map[fd:N], found map[{how}:")
    p.expect("op", "]")
    value_off = None
    if p.accept("op", "["):
        if p.num() != 0:
            raise _Reject("only element [0] of a map value can be addressed")
        p.expect("op", "]")
        value_off = p.offset()
    p.accept("name", "ll")
    p.end()
    if value_off is None:
        if how == "id":
            return I.ld_map_fd(dst, ref, loc=loc)
        return Insn(I.LD_IMM64, dst, 1, 0, ref, loc=loc)
    if how == "id":
        return I.ld_map_value(dst, ref, value_off, loc=loc)
    return Insn(I.LD_IMM64, dst, 2, 0, (value_off << 32) | ref, loc=loc)


def _parse_atomic_call(p: _Line, m: re.Match, dst: Register, loc: AsmLine) -> Insn:
    p.expect("op", "(")
    size, base, off = p.memref(star=False)
    if (m.group(1) == "64") != (size is Size.DW):
        raise _Reject(f"{m.group(0)} does not match size {size.name}")
    p.expect("op", ",")
    if m.group(2) == "cmpxchg":
        if dst != Register.R0 or p.reg("r")[1] != Register.R0:
            raise _Reject("cmpxchg compares with and returns in r0")
        p.expect("op", ",")
    _, src = p.reg("r")
    p.expect("op", ")")
    p.end()
    if m.group(2) == "cmpxchg":
        return I.atomic_cmpxchg(size, base, off, src, loc=loc)
    if src != dst:
        raise _Reject("a fetching atomic returns into its source register")
    op = AtomicOp.XCHG if m.group(2) == "xchg" else _FETCH_OPS[m.group(3)]
    return I.atomic(op, size, base, off, src, loc=loc)


def assemble(text: str) -> list[Insn | Label]:
    """Parse ``text`` into instructions and ``Label`` markers (labels unresolved)."""
    out: list[Insn | Label] = []
    defined: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0]
        m = _PREFIX.match(line)
        if m:
            line = line[m.end():]
        m = _LABEL.fullmatch(line)
        if m:
            name, line = m.group(1), m.group(2)
            if name in defined:
                raise AsmError(f"label {name!r} already defined on line {defined[name]}",
                               lineno, raw)
            defined[name] = lineno
            out.append(Label(name, AsmLine(lineno)))
        if not line.strip():
            continue
        try:
            out.append(_parse(_Line(line), AsmLine(lineno)))
        except (_Reject, ValueError, TypeError) as e:
            raise AsmError(str(e), lineno, raw) from None
    for item in out:
        if isinstance(item, Insn) and item.label is not None and item.label not in defined:
            what = "label or helper" if item.code == 0x85 else "label"
            raise AsmError(f"unknown {what} {item.label!r}", item.loc.line,
                           text.splitlines()[item.loc.line - 1])
    return out
