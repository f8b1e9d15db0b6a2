"""Lua 5.4 integer arithmetic, evaluated in Python.

Owns the meaning of every integer operator of kernel Lua (docs/language.md,
"Integer semantics") for constant folding: the generated BPF code must give exactly these answers, and
the differential tests hold both to Lua 5.4 itself. Division by zero raises
`LuaArithError` with Lua's own message.
"""
from __future__ import annotations

MASK = (1 << 64) - 1
MAXINT = (1 << 63) - 1
MININT = -(1 << 63)


class LuaArithError(Exception):
    """An operation Lua would raise on (its message is Lua's)."""


def wrap(v: int) -> int:
    """Reduce to a signed 64-bit integer, as two's complement wrap-around."""
    v &= MASK
    return v - (1 << 64) if v >> 63 else v


def unsigned(v: int) -> int:
    return v & MASK


def idiv(a: int, b: int) -> int:
    if b == 0:
        raise LuaArithError("attempt to divide by zero")
    return wrap(a // b)        # Python's // is floored, like Lua's


def imod(a: int, b: int) -> int:
    if b == 0:
        raise LuaArithError("attempt to perform 'n%0'")
    return wrap(a % b)         # Python's % takes the divisor's sign, like Lua's


def shl(a: int, n: int) -> int:
    if n <= -64 or n >= 64:
        return 0
    if n >= 0:
        return wrap(unsigned(a) << n)
    return wrap(unsigned(a) >> -n)


def shr(a: int, n: int) -> int:
    return shl(a, wrap(-n))


BINARY = {
    "+": lambda a, b: wrap(a + b),
    "-": lambda a, b: wrap(a - b),
    "*": lambda a, b: wrap(a * b),
    "//": idiv,
    "/": idiv,                 # kernel Lua: `/` on integers is floor division
    "%": imod,
    "&": lambda a, b: wrap(a & b),
    "|": lambda a, b: wrap(a | b),
    "~": lambda a, b: wrap(a ^ b),
    "<<": shl,
    ">>": shr,
}

COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def neg(a: int) -> int:
    return wrap(-a)


def bnot(a: int) -> int:
    return wrap(~a)


def for_count(start: int, stop: int, step: int) -> int | None:
    """Iterations of `for i = start, stop, step` minus one (Lua's forprep), or None to skip."""
    if step > 0:
        if start > stop:
            return None
        count = unsigned(stop) - unsigned(start) & MASK
        return count // step
    if start < stop:
        return None
    count = unsigned(start) - unsigned(stop) & MASK
    return count // (unsigned(-(step + 1)) + 1)
