"""Integer operators of kernel Lua as IR, with Lua 5.4's exact meaning.

Owns the instruction sequences for `+ - * // % & | ~ << >>`, unary `-` and
`~`, and signed comparisons, over operands already known to be integers
(VReg or constant). Constants are folded with `luaint`, which is the same
definition the generated code must meet. BPF's own division truncates and
yields 0 on a zero divisor; neither leaks through: every division checks its
divisor and corrects truncation to floor.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.front import luaint
from luabpf.compiler.lower.builder import Builder

SIMPLE = {"+": "add", "-": "sub", "*": "mul", "&": "and", "|": "or", "~": "xor"}
COMPARE = {"<": "slt", "<=": "sle", ">": "sgt", ">=": "sge", "==": "eq", "~=": "ne"}
DIV_ZERO = {"//": "attempt to divide by zero", "/": "attempt to divide by zero",
            "%": "attempt to perform 'n%0'"}


class IntOps:
    """Emits integer operations into a Builder; `fail(message)` ends the current
    path with a Lua runtime error (it is the lowering's, which owns error sites)."""

    def __init__(self, b: Builder, fail):
        self.b = b
        self.fail = fail

    def binary(self, op: str, x, y, y_range: tuple[int, int] | None = None):
        """x op y for an arithmetic or bitwise Lua operator; returns an operand.
        y_range bounds y when known: it spares divisor checks and shift cases."""
        if isinstance(x, int) and isinstance(y, int):
            try:
                return luaint.BINARY[op](x, y)
            except luaint.LuaArithError as e:
                self.fail(str(e))
                return 0
        if op in SIMPLE:
            return self._simple(SIMPLE[op], x, y)
        positive = y_range is not None and y_range[0] > 0
        if isinstance(y, int) and y > 1 and y & (y - 1) == 0 and op in ("//", "/", "%"):
            # floored division by 2^k is an arithmetic shift, floored modulo a mask: exact
            if op == "%":
                return self.b.bin("and", self.b.reg(x), y - 1)
            return self.b.bin("arsh", self.b.reg(x), y.bit_length() - 1)
        if op in ("//", "/"):
            return self._floor_div(x, y, DIV_ZERO[op], positive)
        if op == "%":
            return self._floor_mod(x, y, positive)
        if y_range is not None and 0 <= y_range[0] and y_range[1] <= 63 and op in ("<<", ">>"):
            return self.b.bin("lsh" if op == "<<" else "rsh", self.b.reg(x), y)
        if op == "<<":
            return self._shift_left(x, y)
        if op == ">>":
            return self._shift_left(x, self.neg(y))
        raise AssertionError(op)

    def neg(self, x):
        if isinstance(x, int):
            return luaint.neg(x)
        return self._neg(x)

    def bnot(self, x):
        if isinstance(x, int):
            return luaint.bnot(x)
        return self.b.bin("xor", x, -1)

    def _neg(self, x):
        d = self.b.vreg()
        self.b.emit(ir.Neg(d, x))
        return d

    def _simple(self, bpf_op: str, x, y):
        if isinstance(x, int) and bpf_op in ("add", "mul", "and", "or", "xor"):
            x, y = y, x                     # commutative: keep the constant on the right
        if isinstance(y, int):
            if y == 0 and bpf_op in ("add", "sub", "or", "xor"):
                return x
            if y == 1 and bpf_op == "mul":
                return x
            if y == 0 and bpf_op in ("mul", "and"):
                return 0
            if bpf_op == "mul" and y > 0 and y & (y - 1) == 0:
                return self.b.bin("lsh", x, y.bit_length() - 1)
            if not -(1 << 31) <= y < (1 << 31):
                y = self.b.copy(y)
        if isinstance(x, int):
            x = self.b.copy(x)
        return self.b.bin(bpf_op, x, y)

    def _divisor(self, y, message: str):
        """Checks a divisor that is not a constant: zero fails with Lua's message."""
        b = self.b
        ok, zero = b.block("div_ok"), b.block("div_zero")
        b.branch("eq", y, 0, zero, ok)
        b.start(zero)
        self.fail(message)
        b.start(ok)

    def _floor_div(self, x, y, message: str, positive: bool = False):
        b = self.b
        if isinstance(y, int):
            if y == 0:
                self.fail(message)
                return 0
            if y == 1:
                return x
            if y == -1:
                return self.neg(x)
        elif not positive:
            self._divisor(y, message)
        x = b.reg(x)
        q = b.bin("sdiv", x, y, "q")
        t = b.bin("mul", q, y)
        done, check_sign, adjust = b.block("div_done"), b.block("div_sign"), b.block("div_adj")
        b.branch("eq", t, x, done, check_sign)
        b.start(check_sign)
        if positive or isinstance(y, int):    # the sign of x ^ y is the sign of x for y > 0
            b.branch("sge" if positive or y > 0 else "sle", x, 0, done, adjust)
        else:
            s = b.bin("xor", x, y)
            b.branch("sge", s, 0, done, adjust)
        b.start(adjust)
        self._sub_one(q)
        b.jump(done)
        b.start(done)
        return q

    def _sub_one(self, q):
        self.b.emit(ir.Bin("sub", q, q, 1))

    def _floor_mod(self, x, y, positive: bool = False):
        b = self.b
        message = DIV_ZERO["%"]
        if isinstance(y, int):
            if y == 0:
                self.fail(message)
                return 0
            if y in (1, -1):
                return 0
        elif not positive:
            self._divisor(y, message)
        x = b.reg(x)
        r = b.bin("smod", x, y, "r")
        done, check_sign, adjust = b.block("mod_done"), b.block("mod_sign"), b.block("mod_adj")
        b.branch("eq", r, 0, done, check_sign)
        b.start(check_sign)
        if positive or isinstance(y, int):
            b.branch("sge" if positive or y > 0 else "sle", r, 0, done, adjust)
        else:
            s = b.bin("xor", r, y)
            b.branch("sge", s, 0, done, adjust)
        b.start(adjust)
        b.emit(ir.Bin("add", r, r, y))
        b.jump(done)
        b.start(done)
        return r

    def _shift_left(self, x, n):
        """Lua's x << n: logical, 0 when |n| >= 64, a negative n shifts right."""
        b = self.b
        if isinstance(n, int):
            if n >= 64 or n <= -64:
                return 0
            if n == 0:
                return x
            x = b.reg(x)
            return b.bin("lsh", x, n) if n > 0 else b.bin("rsh", x, -n)
        x = b.reg(x)
        res = b.copy(0, "shift")
        done, not_big, not_small, left, right = (b.block("sh_done"), b.block("sh_a"), b.block("sh_b"),
                                                 b.block("sh_left"), b.block("sh_right"))
        b.branch("sge", n, 64, done, not_big)
        b.start(not_big)
        b.branch("sle", n, -64, done, not_small)
        b.start(not_small)
        b.branch("sge", n, 0, left, right)
        b.start(left)
        b.emit(ir.Bin("lsh", res, x, n))
        b.jump(done)
        b.start(right)
        m = self._neg(n)
        b.emit(ir.Bin("rsh", res, x, m))
        b.jump(done)
        b.start(done)
        return res
