"""Hypothesis strategies for the differential tests: kernel-Lua text that is
also plain Lua 5.4 text, so that lupa can be the oracle.

Owns two generators:
- `int_expr(...)`: integer expressions over parameters and constants (edge
  constants included), with every arithmetic, bitwise and unary operator,
  `math.abs/min/max`, and comparisons used as `((x < y) and e1 or e2)`;
  `any_expr(...)` adds booleans, nil, `not`, `==`/`~=` and `and`/`or` as values.
- `programs()`: whole programs — top-level constants, a global, helper
  functions (called, never recursive; each return gives at least as many
  integers as the helper promises, sometimes more, so `local p, q = h()` and
  `return h()` see varying counts), an entry function `f(a, b, c, d)` with
  locals, if/elseif/else, numeric `for` (small, parameter-dependent and
  integer-limit bounds, negative and huge steps, step 0), `while` and
  `repeat` with a counter that guarantees the exit, `break`, early returns,
  several return values, nil/booleans mixed in variables, assert and error,
  nested functions (`local function n5(q6)` / `local n5 = function(q6)`) that read
  and assign the enclosing locals (closures, by reference) and are called later.

Everything generated stays inside kernel Lua (docs/language.md): no floats, no
strings except assert/error messages, no tables, goto, recursion,
`^` or `..`. Every binary operation is parenthesised and negative literals are
written `(-N)`, so text never depends on precedence and never contains `--`.
Every expression sits on one line, so a runtime error has one Lua line.
Typing discipline: arithmetic only ever sees integers (`int` variables,
`(opt or K)` for int-or-nil variables), order comparisons only integers;
values of any kind are only tested for truth, compared with `==`/`~=`,
combined with `and`/`or`/`not`, and returned. Loops are short (at most a
few iterations each, nested at most two deep: deeper nests exceed the
verifier's path budget, docs/language.md).

`/` is never generated here (Lua 5.4's `/` is float division); the tests
swap `//` for `/` in the kernel's text instead (`slash_variant`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

MAXINT = (1 << 63) - 1
MININT = -(1 << 63)

# (Lua text, value) of the integer constants worth hitting.
EDGE_LITERALS: list[tuple[str, int]] = [
    ("0", 0), ("1", 1), ("(-1)", -1), ("2", 2), ("3", 3), ("(-2)", -2), ("7", 7), ("(-7)", -7),
    ("31", 31), ("32", 32), ("63", 63), ("64", 64), ("(-64)", -64), ("65", 65), ("(-63)", -63),
    ("255", 255), ("0xff", 255), ("1000", 1000), ("(-1000)", -1000),
    ("math.maxinteger", MAXINT), ("math.mininteger", MININT),
    ("0x7fffffffffffffff", MAXINT), ("0xffffffffffffffff", -1),
    ("0x8000000000000000", MININT), ("0x100000000", 1 << 32), ("0xffffffff", (1 << 32) - 1),
    ("2147483647", (1 << 31) - 1), ("(-2147483648)", -(1 << 31)), ("4294967296", 1 << 32),
    ("9223372036854775807", MAXINT), ("(-9223372036854775807)", -MAXINT),
]

EDGE_VALUES: list[int] = sorted({v for _, v in EDGE_LITERALS} | {
    MAXINT - 1, MININT + 1, 5, -5, 10, -10, 1 << 62, -(1 << 62), (1 << 31), -(1 << 31) - 1})

ARITH_OPS = ["+", "-", "*", "//", "%"]
BIT_OPS = ["&", "|", "~", "<<", ">>"]
BIN_OPS = ARITH_OPS + BIT_OPS
CMP_OPS = ["<", "<=", ">", ">=", "==", "~="]


def lua_int(v: int) -> str:
    """Lua text for the integer v (a literal, or math.mininteger)."""
    assert MININT <= v <= MAXINT
    if v == MININT:
        return "math.mininteger"
    return f"(-{-v})" if v < 0 else str(v)


def int_values() -> st.SearchStrategy[int]:
    """Run-time integers: edges, small values, anything."""
    return st.one_of(st.sampled_from(EDGE_VALUES), st.integers(-10, 10),
                     st.integers(MININT, MAXINT))


def any_values() -> st.SearchStrategy:
    """Run-time values of any kernel-Lua kind a function can take."""
    return st.one_of(int_values(), st.booleans(), st.none())


@st.composite
def int_constants(draw) -> str:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.sampled_from(EDGE_LITERALS))[0]
    if kind == 1:
        return lua_int(draw(st.integers(-10, 100)))
    return lua_int(draw(st.integers(MININT, MAXINT)))


# ---- expressions -------------------------------------------------------------

@dataclass
class Scope:
    """What an expression may name, by kind."""
    ints: list[str] = field(default_factory=list)        # always integers
    opts: list[str] = field(default_factory=list)        # integer or nil
    anys: list[str] = field(default_factory=list)        # nil, boolean or integer
    # (name, number of parameters, number of integers every return gives at least)
    helpers: list[tuple[str, int, int]] = field(default_factory=list)

    def child(self) -> "Scope":
        return Scope(list(self.ints), list(self.opts), list(self.anys), list(self.helpers))


@st.composite
def int_leaf(draw, scope: Scope) -> str:
    choices = ["const"]
    if scope.ints:
        choices += ["var", "var"]
    if scope.opts:
        choices.append("opt")
    c = draw(st.sampled_from(choices))
    if c == "var":
        return draw(st.sampled_from(scope.ints))
    if c == "opt":
        return f"({draw(st.sampled_from(scope.opts))} or {draw(int_constants())})"
    return draw(int_constants())


@st.composite
def int_expr(draw, scope: Scope, depth: int = 3) -> str:
    """An integer-valued expression (it may raise: division or modulo by zero)."""
    if depth <= 0:
        return draw(int_leaf(scope))
    kind = draw(st.integers(0, 11))
    sub = lambda: draw(int_expr(scope, depth - 1))  # noqa: E731
    if kind <= 2:
        return draw(int_leaf(scope))
    if kind <= 5:
        op = draw(st.sampled_from(BIN_OPS))
        return f"({sub()} {op} {sub()})"
    if kind == 6:
        op = draw(st.sampled_from(["-", "~"]))
        return f"({op}{sub()})"
    if kind == 7:
        fn = draw(st.sampled_from(["abs", "min", "max"]))
        if fn == "abs":
            return f"math.abs({sub()})"
        n = draw(st.integers(2, 3))
        return f"math.{fn}({', '.join(sub() for _ in range(n))})"
    if kind == 8:
        op = draw(st.sampled_from(CMP_OPS))
        return f"((({sub()}) {op} ({sub()})) and {sub()} or {sub()})"
    if kind == 9 and scope.opts:
        # the arithmetic runs only where the variable holds an integer
        v = draw(st.sampled_from(scope.opts))
        return f"({v} and ({v} {draw(st.sampled_from(BIN_OPS))} {sub()}) or {sub()})"
    if kind == 10 and scope.helpers and depth >= 2:
        name, nparams, _ = draw(st.sampled_from(scope.helpers))
        return f"{name}({', '.join(sub() for _ in range(nparams))})"
    op = draw(st.sampled_from(BIN_OPS))
    return f"({sub()} {op} {draw(int_leaf(scope))})"


@st.composite
def any_expr(draw, scope: Scope, depth: int = 2) -> str:
    """An expression whose value may be nil, a boolean or an integer."""
    kind = draw(st.integers(0, 9))
    sub = lambda: draw(any_expr(scope, depth - 1))  # noqa: E731
    if kind <= 2 or depth <= 0 and kind <= 6:
        return draw(int_expr(scope, min(depth, 2)))
    if kind == 3:
        return draw(st.sampled_from(["nil", "true", "false"]))
    if kind == 4 and (scope.opts or scope.anys):
        return draw(st.sampled_from(scope.opts + scope.anys))
    if kind <= 5 or depth <= 0:
        op = draw(st.sampled_from(CMP_OPS))
        return f"({draw(int_expr(scope, 1))} {op} {draw(int_expr(scope, 1))})"
    if kind == 6:
        return f"({sub()} {draw(st.sampled_from(['==', '~=']))} {sub()})"
    if kind == 7:
        return f"(not {sub()})"
    return f"({sub()} {draw(st.sampled_from(['and', 'or']))} {sub()})"


@st.composite
def cond_expr(draw, scope: Scope) -> str:
    """A condition: mostly integer comparisons, sometimes any value's truth."""
    if draw(st.integers(0, 3)) == 0:
        return draw(any_expr(scope, 2))
    op = draw(st.sampled_from(CMP_OPS))
    c = f"{draw(int_expr(scope, 1))} {op} {draw(int_expr(scope, 1))}"
    if draw(st.integers(0, 3)) == 0:
        c = f"({c}) {draw(st.sampled_from(['and', 'or']))} ({draw(cond_expr(scope))})"
    return c


PARAMS = ("a", "b", "c")


@st.composite
def expression_cases(draw, depth: int = 4):
    """(expression text over a, b, c; (a, b, c)) — the expression is an integer."""
    expr = draw(int_expr(Scope(ints=list(PARAMS)), depth))
    args = tuple(draw(int_values()) for _ in PARAMS)
    return expr, args


@st.composite
def value_expression_cases(draw, depth: int = 3):
    """(expression over a, b, c, d; args) — any kind of value; d is of any kind."""
    expr = draw(any_expr(Scope(ints=list(PARAMS), anys=["d"]), depth))
    args = tuple(draw(int_values()) for _ in PARAMS) + (draw(any_values()),)
    return expr, args


def substitute(expr: str, names, values) -> str:
    """expr with each parameter name replaced by the literal of its value."""
    import re
    table = dict(zip(names, values))

    def lit(v):
        if v is None:
            return "nil"
        if isinstance(v, bool):
            return "true" if v else "false"
        return lua_int(v)
    pattern = r"(?<![\w.])(" + "|".join(map(re.escape, names)) + r")(?!\w)"
    return re.sub(pattern, lambda m: lit(table[m.group(1)]), expr)


def slash_variant(source: str) -> str:
    """The kernel text with every `//` written `/` (kernel Lua: the same operator)."""
    return source.replace("//", "/")


# ---- programs ----------------------------------------------------------------

class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.indent = 0

    def line(self, text: str) -> None:
        self.lines.append("  " * self.indent + text)

    @property
    def lineno(self) -> int:
        return len(self.lines) + 1


class _ProgramGen:
    """Draws one program; names are fresh (v1, o2, x3, i4, w5 …) so scopes never clash."""

    def __init__(self, draw):
        self.draw = draw
        self.w = _Writer()
        self.n = 0
        self.messages = 0

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def message(self, what: str) -> str:
        self.messages += 1
        return f'"{what} {self.messages}"'

    # expression shorthands
    def ie(self, scope: Scope, depth: int = 2) -> str:
        return self.draw(int_expr(scope, depth))

    def ae(self, scope: Scope, depth: int = 2) -> str:
        return self.draw(any_expr(scope, depth))

    def ce(self, scope: Scope) -> str:
        return self.draw(cond_expr(scope))

    def small_int_expr(self, scope: Scope, lo: int, hi: int) -> str:
        """An integer in [lo, hi] that depends on run-time values."""
        k = hi - lo + 1
        base = self.draw(st.sampled_from(scope.ints)) if scope.ints else self.ie(scope, 1)
        text = f"({base} % {k})"
        return text if lo == 0 else f"({text} + {lua_int(lo)})"

    # blocks
    def block(self, scope: Scope, assignable: list[str], depth: int, loops: int,
              nret: int | None, max_stmts: int = 3) -> None:
        count = self.draw(st.integers(1 if depth == 0 else 0, max_stmts))
        for _ in range(count):
            self.stmt(scope, assignable, depth, loops, nret)

    def nested(self, scope: Scope, assignable: list[str], depth: int, loops: int,
               nret: int | None) -> None:
        self.w.indent += 1
        self.block(scope.child(), list(assignable), depth + 1, loops, nret, max_stmts=2)
        self.w.indent -= 1

    def returns(self, scope: Scope, nret: int | None) -> str:
        """A return list: helpers return nret to 3 integers (so their callers see
        from nret values up, extra ones nil); the entry returns 0–4 values of any kind."""
        if nret is not None:
            vals = [self.ie(scope) for _ in range(self.draw(st.integers(nret, 3)))]
            if scope.helpers and self.draw(st.integers(0, 3)) == 0:
                name, nparams, _ = self.draw(st.sampled_from(scope.helpers))
                vals[-1] = f"{name}({', '.join(self.ie(scope, 1) for _ in range(nparams))})"
            return ", ".join(vals)
        n = self.draw(st.integers(0, 3))
        vals = [self.ae(scope) for _ in range(n)]
        if scope.helpers and self.draw(st.integers(0, 3)) == 0:
            name, nparams, _ = self.draw(st.sampled_from(scope.helpers))
            vals.append(f"{name}({', '.join(self.ie(scope, 1) for _ in range(nparams))})")
        return ", ".join(vals)

    def stmt(self, scope: Scope, assignable: list[str], depth: int, loops: int,
             nret: int | None) -> None:
        d, w = self.draw, self.w
        deep = depth >= 3
        kinds = ["local", "local", "assign", "opt", "any", "if", "acc", "assert"]
        if not deep:
            kinds += ["if", "do"]
            if loops < 2:       # deeper loop nests exceed the verifier's path budget (docs/language.md)
                kinds += ["for", "for", "while", "repeat"]
        if loops:
            kinds += ["break"]
        kinds += ["return", "error", "multi"]
        if scope.helpers:
            kinds += ["call"]
        if not deep:
            kinds += ["closure"]
        if "g" in assignable:
            kinds += ["global"]
        if scope.anys:
            kinds += ["reany"]
        kind = d(st.sampled_from(kinds))
        if kind == "local":
            v = self.fresh("v")
            w.line(f"local {v} = {self.ie(scope)}")
            scope.ints.append(v)
            assignable.append(v)
        elif kind in ("assign", "acc") and assignable:
            targets = d(st.lists(st.sampled_from(assignable), min_size=1, max_size=2, unique=True))
            if kind == "acc":
                t = targets[0]
                w.line(f"{t} = {t} {d(st.sampled_from(['+', '-', '~', '*']))} {self.ie(scope, 1)}")
            else:
                w.line(f"{', '.join(targets)} = {', '.join(self.ie(scope) for _ in targets)}")
        elif kind in ("assign", "acc"):
            w.line(f"local {self.fresh('v')} = {self.ie(scope)}")
        elif kind == "opt":
            v = self.fresh("o")
            form = d(st.integers(0, 2))
            if form == 0:
                w.line(f"local {v} = nil")
                w.line(f"if {self.ce(scope)} then {v} = {self.ie(scope)} end")
            elif form == 1:
                w.line(f"local {v} = ({self.ce(scope)}) and {self.ie(scope)} or nil")
            else:
                w.line(f"local {v}")
                w.line(f"if {self.ce(scope)} then {v} = {self.ie(scope)} else {v} = nil end")
            scope.opts.append(v)
        elif kind == "any":
            v = self.fresh("x")
            w.line(f"local {v} = {self.ae(scope)}")
            if d(st.booleans()):
                w.line(f"if {self.ce(scope)} then {v} = {self.ae(scope)} end")
            scope.anys.append(v)
        elif kind == "if":
            w.line(f"if {self.ce(scope)} then")
            self.nested(scope, assignable, depth, loops, nret)
            for _ in range(d(st.integers(0, 2))):
                w.line(f"elseif {self.ce(scope)} then")
                self.nested(scope, assignable, depth, loops, nret)
            if d(st.booleans()):
                w.line("else")
                self.nested(scope, assignable, depth, loops, nret)
            w.line("end")
        elif kind == "do":
            w.line("do")
            self.nested(scope, assignable, depth, loops, nret)
            w.line("end")
        elif kind == "for":
            var = self.fresh("i")
            w.line(f"for {var} = {self.for_header(scope)} do")
            inner = scope.child()
            inner.ints.append(var)
            self.nested(inner, assignable, depth, loops + 1, nret)
            w.line("end")
        elif kind == "while":
            cnt = self.fresh("w")
            limit = d(st.one_of(st.integers(0, 4).map(str),
                                st.just(None).map(lambda _: self.small_int_expr(scope, 0, 4))))
            w.line(f"local {cnt} = 0")
            cond = f"{cnt} < {limit}"
            if d(st.integers(0, 2)) == 0:
                cond = f"{cond} and ({self.ce(scope)})"
            w.line(f"while {cond} do")
            inner = scope.child()
            inner.ints.append(cnt)
            self.nested(inner, assignable, depth, loops + 1, nret)
            w.line(f"  {cnt} = {cnt} + 1")
            w.line("end")
            scope.ints.append(cnt)
        elif kind == "repeat":
            cnt = self.fresh("r")
            limit = d(st.integers(1, 4))
            w.line(f"local {cnt} = 0")
            w.line("repeat")
            inner = scope.child()
            inner.ints.append(cnt)
            w.indent += 1
            body_scope = inner.child()
            self.block(body_scope, list(assignable), depth + 1, loops + 1, nret, max_stmts=2)
            w.line(f"{cnt} = {cnt} + 1")
            w.indent -= 1
            # the condition sees the body's locals (Lua 5.4 scoping of repeat-until)
            cond = f"{cnt} >= {limit}"
            if d(st.integers(0, 2)) == 0:
                cond = f"{cond} or ({self.ce(body_scope)})"
            w.line(f"until {cond}")
            scope.ints.append(cnt)
        elif kind == "break":
            w.line(f"if {self.ce(scope)} then break end")
        elif kind == "return":
            w.line(f"if {self.ce(scope)} then return {self.returns(scope, nret)} end")
        elif kind == "assert":
            if d(st.booleans()):
                w.line(f"assert({self.ce(scope)}, {self.message('assertion')})")
            else:
                w.line(f"assert({self.ae(scope)}, {self.message('assertion')})")
        elif kind == "error":
            w.line(f"if {self.ce(scope)} then error({self.message('error')}) end")
        elif kind == "multi" or kind == "call":
            if scope.helpers:
                name, nparams, nrets = d(st.sampled_from(scope.helpers))
                n = d(st.integers(1, 3))
                names = [self.fresh("m") for _ in range(n)]
                args = ", ".join(self.ie(scope, 1) for _ in range(nparams))
                w.line(f"local {', '.join(names)} = {name}({args})")
                for i, v in enumerate(names):
                    (scope.ints if i < nrets else scope.opts).append(v)
                    if i < nrets:
                        assignable.append(v)
            else:
                names = [self.fresh("m") for _ in range(d(st.integers(2, 3)))]
                vals = [self.ie(scope) for _ in range(d(st.integers(1, len(names))))]
                w.line(f"local {', '.join(names)} = {', '.join(vals)}")
                for i, v in enumerate(names):
                    (scope.ints if i < len(vals) else scope.opts).append(v)
                    if i < len(vals):
                        assignable.append(v)
        elif kind == "closure":
            scope.helpers.append(self.nested_helper(scope, assignable))
        elif kind == "reany":
            w.line(f"{d(st.sampled_from(scope.anys))} = {self.ae(scope)}")
        elif kind == "global":
            w.line(f"g = g {d(st.sampled_from(['+', '-', '~']))} {self.ie(scope, 1)}")

    def for_header(self, scope: Scope) -> str:
        d = self.draw
        form = d(st.integers(0, 5))
        if form <= 1:      # small constant bounds, any step
            s, e = d(st.integers(-3, 5)), d(st.integers(-3, 5))
            step = d(st.sampled_from([None, 1, 2, 3, -1, -2, -3]))
            text = f"{lua_int(s)}, {lua_int(e)}"
            return text if step is None else f"{text}, {lua_int(step)}"
        if form == 2:      # at the integer limits
            k = d(st.integers(0, 3))
            return d(st.sampled_from([
                f"math.maxinteger - {k}, math.maxinteger",
                f"math.maxinteger - {k}, math.maxinteger, 2",
                f"math.maxinteger, math.maxinteger - {k}, -1",
                f"math.mininteger, math.mininteger + {k}",
                f"math.mininteger + {k}, math.mininteger, -1",
                f"math.mininteger + {k}, math.mininteger, -2",
                "math.mininteger, math.maxinteger, math.maxinteger",
                "math.maxinteger, math.mininteger, math.mininteger",
                "0, math.maxinteger, 0x4000000000000000",
                "math.mininteger, math.maxinteger, 0x7000000000000000",
                f"math.maxinteger - {k}, math.mininteger",
                f"math.mininteger + {k}, math.maxinteger, -1",
                "1, 0",
                "3, 1, -1",
            ]))
        if form == 3:      # run-time bounds, small trip counts
            return d(st.sampled_from([
                f"1, {self.small_int_expr(scope, 0, 5)}",
                f"{self.small_int_expr(scope, -2, 2)}, 3",
                f"{self.small_int_expr(scope, 0, 4)}, 0, -1",
            ]))
        if form == 4:      # run-time start near anything: start + small, wrapping included
            v = d(st.sampled_from(scope.ints)) if scope.ints else "a"
            k = d(st.integers(0, 3))
            return d(st.sampled_from([
                f"{v}, {v} + {k}", f"{v}, {v} - {k}, -1", f"{v} - {k}, {v}, 2",
                f"math.maxinteger - {self.small_int_expr(scope, 0, 3)}, math.maxinteger",
                f"math.mininteger + {self.small_int_expr(scope, 0, 3)}, math.mininteger, -1",
            ]))
        # run-time step (zero included: "'for' step is zero")
        return d(st.sampled_from([
            f"1, 5, {self.small_int_expr(scope, 0, 2)}",
            f"5, 1, -{self.small_int_expr(scope, 1, 3)}",
            f"0, 4, {self.small_int_expr(scope, -1, 2)}",
        ]))

    def helper(self, scope: Scope, index: int) -> tuple[str, int, int]:
        d, w = self.draw, self.w
        name = f"h{index}"
        nparams = d(st.integers(1, 3))
        nrets = d(st.integers(1, 2))
        params = [f"p{index}_{k}" for k in range(nparams)]
        local = d(st.booleans())
        w.line(f"{'local ' if local else ''}function {name}({', '.join(params)})")
        w.indent += 1
        inner = Scope(ints=params + scope.ints, helpers=list(scope.helpers))
        globals_ = ["g"] if "g" in scope.ints else []
        # straight-line helpers: a helper's loop inlined into a caller's loop nests them
        # past the verifier's path budget (docs/language.md, "Known limit")
        self.block(inner, list(params) + globals_, 3, 0, nrets, max_stmts=2)
        w.line(f"return {self.returns(inner, nrets)}")
        w.indent -= 1
        w.line("end")
        return name, nparams, nrets

    def nested_helper(self, scope: Scope, assignable: list[str]) -> tuple[str, int, int]:
        """A function defined where it stands (`local function` or `local x = function`),
        a closure over the locals in scope: its body reads them and assigns them (by
        reference, so the caller sees it), and calls the helpers defined before it."""
        d, w = self.draw, self.w
        name = self.fresh("n")
        nparams = d(st.integers(1, 2))
        nrets = d(st.integers(1, 2))
        params = [self.fresh("q") for _ in range(nparams)]
        if d(st.booleans()):
            w.line(f"local function {name}({', '.join(params)})")
        else:
            w.line(f"local {name} = function({', '.join(params)})")
        w.indent += 1
        inner = Scope(ints=params + scope.ints, opts=list(scope.opts), anys=list(scope.anys),
                      helpers=list(scope.helpers))
        # straight-line, as top-level helpers are: called in a loop, their loops would nest
        self.block(inner, list(params) + list(assignable), 3, 0, nrets, max_stmts=2)
        w.line(f"return {self.returns(inner, nrets)}")
        w.indent -= 1
        w.line("end")
        return name, nparams, nrets

    def program(self) -> str:
        d, w = self.draw, self.w
        top = Scope()
        for k in range(d(st.integers(0, 2))):
            name = f"K{k}"
            w.line(f"local {name} <const> = {self.draw(int_constants())}")
            top.ints.append(name)
        use_global = d(st.booleans())
        if use_global:
            w.line(f"g = {lua_int(d(st.integers(-3, 3)))}")
            top.ints.append("g")
        helpers = []
        for i in range(d(st.integers(0, 2))):
            top.helpers = list(helpers)
            helpers.append(self.helper(top, i + 1))
        top.helpers = helpers
        scope = top.child()
        scope.ints += list(PARAMS)
        scope.anys.append("d")
        w.line("function f(a, b, c, d)")
        w.indent += 1
        assignable = list(PARAMS) + (["g"] if use_global else [])
        self.block(scope, assignable, 0, 0, None, max_stmts=5)
        if d(st.integers(0, 5)):
            w.line(f"return {self.returns(scope, None)}")
        w.indent -= 1
        w.line("end")
        return "\n".join(w.lines) + "\n"


@st.composite
def programs(draw) -> str:
    """A kernel-Lua program whose entry is f(a, b, c, d)."""
    return _ProgramGen(draw).program()


@st.composite
def program_cases(draw):
    """(program, (a, b, c, d)): a, b, c integers, d of any kind."""
    src = draw(programs())
    args = tuple(draw(int_values()) for _ in PARAMS) + (draw(any_values()),)
    return src, args
