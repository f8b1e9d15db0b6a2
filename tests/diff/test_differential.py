"""Differential tests: kernel Lua in the real kernel against Lua 5.4 (lupa).

Properties (docs/language.md: results equal Lua 5.4's on generated programs and on
integer cases in the style of Lua's own test suite):
- generated integer expressions, parameters passed at run time (codegen);
- the same expressions with the parameters written as literals (folding);
- `/` in the kernel's text against `//` in Lua's (kernel Lua's one exception);
- expressions of any kind of value (booleans, nil, `and`/`or`, `==`);
- whole generated programs (loops, helpers, several returns, errors);
- a table of integer cases after lua-5.4-tests/math.lua, checked against
  both the expected value written here and lupa;
- every generated program that compiles also passes the verifier.

A case agrees when both sides return equal values of the same types (True is
not 1), or both raise at the same line with Lua's message containing the
kernel's. A CompileError on generated text or a LoadError is a failure:
the generators stay inside kernel Lua, and every accepted program must verify.
Hypothesis settings come from the profile tests/conftest.py loads ("ci":
derandomized; LUABPF_HYPOTHESIS=long: a longer random search); the
per-test example counts below apply to "ci" only.
"""
from __future__ import annotations

import collections
import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import luabpf
from luabpf.api import compile_function

from . import strategies as S
from .oracle import TALLY, OracleBug, outcome, same_value

pytestmark = pytest.mark.kernel

LONG = os.environ.get("LUABPF_HYPOTHESIS", "ci") == "long"


def examples(n: int):
    """n examples under the ci profile; the long profile's own count otherwise."""
    return settings() if LONG else settings(max_examples=n)


class KnownLimits:
    """The two open limits of docs/language.md ("Known limits"), each a located refusal:
    a program with more values alive at once than the 512-byte stack holds, and a loop
    body with more paths than the verifier's budget. They are
    counted and printed at the end of the run, never passed silently, and at most
    MAX_SHARE of a test's own cases may end so: more is a regression."""
    MAX_SHARE = 0.02          # none were seen once spill slots were shared

    def __init__(self):
        self.seen: dict[str, int] = collections.Counter()
        self.per_test: dict[str, int] = collections.Counter()

    def count(self, kind: str, source: str) -> bool:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split("[")[0].split(" ")[0]
        self.seen[kind] += 1
        self.per_test[test] += 1
        return self.per_test[test] <= max(10, int(TALLY[test] * self.MAX_SHARE))


LIMITS = KnownLimits()


def tally() -> None:
    """Count one case under the running test's function name."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split("[")[0].split(" ")[0]
    TALLY[test] += 1


def kernel_outcome(source: str, name: str, *args, max_loop: int | None = None):
    try:
        return ("ok", luabpf.run_function(source, name, *args, max_loop=max_loop))
    except luabpf.LuaRuntimeError as exc:
        return ("error", exc.line, exc.message)


def agree(source: str, *args, name: str = "f", lua_source: str | None = None,
          max_loop: int | None = None) -> None:
    """Assert that the kernel and Lua 5.4 agree on name(*args)."""
    tally()
    want = outcome(lua_source if lua_source is not None else source, name, *args)
    try:
        got = kernel_outcome(source, name, *args, max_loop=max_loop)
    except luabpf.CompileError as exc:
        if "bytes of stack" in str(exc) and LIMITS.count("stack", source):
            return
        pytest.fail(f"CompileError on kernel-Lua text:\n{source}\n{exc}", pytrace=False)
    except luabpf.LoadError as exc:
        if "too many paths" in str(exc) and exc.line and LIMITS.count("paths", source):
            return
        pytest.fail(f"the verifier refused an accepted program:\n{source}\nargs={args}\n{exc}",
                    pytrace=False)
    detail = f"\n--- source ---\n{source}--- args {args!r}\nLua 5.4: {want!r}\nkernel:  {got!r}"
    if want[0] == "ok":
        assert got[0] == "ok" and same_value(got[1], want[1]), "different results" + detail
    else:
        _, line, message = want
        assert got[0] == "error", "Lua raises, the kernel does not" + detail
        assert got[2] and got[2] in message, "different error messages" + detail
        if line is not None:
            assert got[1] == line, "different error lines" + detail


def expr_function(expr: str, params=S.PARAMS) -> str:
    return f"function f({', '.join(params)})\n  return {expr}\nend\n"


# ---- generated expressions ---------------------------------------------------

@examples(800)
@given(S.expression_cases())
def test_expression_runtime_args(case):
    expr, args = case
    agree(expr_function(expr), *args)


@examples(400)
@given(S.expression_cases())
def test_expression_folded(case):
    expr, args = case
    agree(expr_function(S.substitute(expr, S.PARAMS, args), ()))


@examples(300)
@given(S.expression_cases(depth=3))
def test_slash_is_floor_division(case):
    expr, args = case
    src = expr_function(expr)
    agree(S.slash_variant(src), *args, lua_source=src)


@examples(400)
@given(S.value_expression_cases())
def test_value_expressions(case):
    expr, args = case
    agree(expr_function(expr, S.PARAMS + ("d",)), *args)


# ---- generated programs --------------------------------------------------------

# Generated loops run a few trips (at most 9, strategies.py); nested ones (helpers called
# in loops too) at the function hook's default bound would be over its cost budget
# (docs/language.md, "Cost of a run"). This bound is far above any generated trip count,
# and a loop that went past it would differ from Lua ("loop bound exceeded").
GENERATED_LOOP_BOUND = 16


@examples(1200)
@given(S.program_cases())
def test_programs(case):
    src, args = case
    agree(src, *args, max_loop=GENERATED_LOOP_BOUND)


@contextlib.contextmanager
def bpf_calls_everywhere():
    """Every function that can be a BPF function becomes one (compiler/lower/calls.py's size
    thresholds at zero), so the generated programs exercise BPF-to-BPF calls: frames,
    several results, errors raised in callees, globals, nested calls."""
    from luabpf.compiler.lower import calls
    saved = calls.SMALL, calls.BIG
    calls.SMALL = calls.BIG = -1
    try:
        yield
    finally:
        calls.SMALL, calls.BIG = saved


@examples(600)
@given(S.program_cases())
def test_programs_with_bpf_calls(case):
    src, args = case
    with bpf_calls_everywhere():
        agree(src, *args, max_loop=GENERATED_LOOP_BOUND)


CALLS_PROGRAM = """\
g = 3
local function bump()
  g = g + 1
end
local function maybe(x)
  if x > 0 then return nil end
  return x
end
local function pair(x, y)
  if y == 0 then error("no zero here") end
  return x // y, x % y
end
local function mid(x)
  local q, r = pair(x, g)
  g = g + 1
  return q + r, pair(q + 100, r - 1)
end
local function top(x)
  local a, b, c = mid(x)
  local d, e, f = mid(a + x)
  return a + b + c + d + e + (f or 0)
end
function f(a, b, c, d)
  g = 3 + (c % 2)
  bump()
  bump()
  g = g - 2
  local m = (maybe(a) or 7) + (maybe(b) or 9)
  return top(a) + top(b) + top(a + b) + m, g
end
"""


@examples(150)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.integers(0, 9))
def test_nested_calls_several_results_and_errors_in_callees(a, b, c):
    """Calls in calls, several results through frames, a global changed in a callee and
    an error raised two calls down (at its own line), with and without BPF calls."""
    agree(CALLS_PROGRAM, a, b, c, None)
    with bpf_calls_everywhere():
        agree(CALLS_PROGRAM, a, b, c, None)


@examples(200)
@given(S.program_cases())
def test_programs_folded(case):
    """The entry's parameters as top-level constants: the whole program folds."""
    src, args = case
    consts = "".join(f"local {p.upper()}_ <const> = {S.lua_int(v)}\n"
                     for p, v in zip(S.PARAMS, args[:3]))
    src = consts + src.replace("function f(a, b, c, d)",
                               "function f(d)\n  local a, b, c = A_, B_, C_", 1)
    agree(src, args[3], max_loop=GENERATED_LOOP_BOUND)


KINDS = ("int", "bool", "nil")


def compiles_and_verifies(src: str, kinds, loops: str | None) -> None:
    tally()
    try:
        prog = compile_function(src, "f", kinds, loops=loops)
    except luabpf.CompileError:
        # a located refusal is allowed here (a boolean where a global holds
        # integers, a loop without --@bound under plain back-edges); refusals of
        # well-typed programs fail in test_programs, which runs them
        return
    try:
        with prog.load():
            pass
    except luabpf.LoadError as exc:
        pytest.fail(f"the verifier refused an accepted program (arg kinds {kinds}, loops={loops}):"
                    f"\n{src}\n{exc}", pytrace=False)


@examples(300)
@given(S.programs(), st.tuples(*(st.sampled_from(KINDS) for _ in range(4))))
def test_accepted_programs_verify(src, kinds):
    """Whatever the argument kinds (nil where integers are expected included),
    a program the compiler accepts must pass the verifier (loops: the running
    kernel's choice)."""
    compiles_and_verifies(src, kinds, None)


BOUNDED_LOOPS = [
    "function f(a, b, c, d)\n  local w = 0\n  while w < (a % 5) do\n    w = w + 1\n  end\n  return w\nend\n",
    "function f(a, b, c, d)\n  local n = 0\n  for i = 1, a % 6 do\n    n = n + i\n  end\n  return n\nend\n",
    "function f(a, b, c, d)\n  local r = 0\n  repeat\n    r = r + 1\n  until r >= 3 or r > a\n  return r\nend\n",
]


@pytest.mark.parametrize("src", BOUNDED_LOOPS, ids=["while", "for", "repeat"])
def test_bounded_loops_verify(src):
    """With plain bounded back-edges (kernels without may_goto) the compiler may
    refuse a loop, but what it accepts must verify. (Generated programs are not
    used here: a verifier walking a million iterations takes seconds each.)"""
    compiles_and_verifies(src, ("int",) * 4, "bounded")


# ---- integer cases after lua-5.4-tests/math.lua --------------------------------

MAXI, MINI = S.MAXINT, S.MININT
DIV0 = "attempt to divide by zero"
MOD0 = "attempt to perform 'n%0'"

# (expression over a, b; (a, b); expected value or ("error", message))
INT_CASES = [
    ("a // b", (MINI, -1), MINI),
    ("a % b", (MINI, -1), 0),
    ("a // b", (MINI, 1), MINI),
    ("a // b", (7, -3), -3),
    ("a % b", (7, -3), -2),
    ("a // b", (-7, 3), -3),
    ("a % b", (-7, 3), 2),
    ("a // b", (-7, -3), 2),
    ("a % b", (-7, -3), -1),
    ("a // b", (7, 3), 2),
    ("a % b", (7, 3), 1),
    ("a // b", (0, -5), 0),
    ("a % b", (0, -5), 0),
    ("a % b", (MINI, MAXI), MAXI - 1),
    ("a % b", (MAXI, MINI), -1),
    ("a // b", (MAXI, MINI), -1),
    ("a // b", (MINI, MAXI), -2),
    ("a % b", (MINI, MINI), 0),
    ("a // b", (MINI, MINI), 1),
    ("a % b", (-1, MAXI), MAXI - 1),
    ("a % b", (1, MINI), MINI + 1),
    ("a // b", (1, 0), ("error", DIV0)),
    ("a % b", (1, 0), ("error", MOD0)),
    ("a // b", (0, 0), ("error", DIV0)),
    ("a % b", (MINI, 0), ("error", MOD0)),
    ("a << b", (1, 63), MINI),
    ("a << b", (1, 64), 0),
    ("a << b", (1, 62), 1 << 62),
    ("a >> b", (-1, 1), MAXI),
    ("a >> b", (-1, 63), 1),
    ("a >> b", (-1, 64), 0),
    ("a >> b", (3, -1), 6),
    ("a << b", (3, -1), 1),
    ("a << b", (-1, -64), 0),
    ("a >> b", (MINI, -1), 0),
    ("a << b", (1, MINI), 0),
    ("a >> b", (1, MINI), 0),
    ("a << b", (1, MAXI), 0),
    ("a >> b", (-1, 65), 0),
    ("a & b", (-1, MINI), MINI),
    ("a | b", (0, MAXI), MAXI),
    ("a ~ b", (-1, MAXI), MINI),
    ("~a + b", (0, 0), -1),
    ("-a + b", (MINI, 0), MINI),
    ("a + b", (MAXI, 1), MINI),
    ("a - b", (MINI, 1), MAXI),
    ("a * b", (MAXI, 2), -2),
    ("a * b", (MINI, -1), MINI),
    ("a * b", (1 << 32, 1 << 32), 0),
    ("math.abs(a) + b", (MINI, 0), MINI),
    ("math.abs(a) + b", (-5, 0), 5),
    ("math.abs(a) + b", (MAXI, 0), MAXI),
    ("math.min(a, b)", (MINI, MAXI), MINI),
    ("math.max(a, b)", (MINI, MAXI), MAXI),
    ("math.max(a, b, -1)", (MINI, -2), -1),
    ("math.maxinteger + a", (1, 0), MINI),
    ("math.mininteger - a", (1, 0), MAXI),
    ("math.maxinteger // a", (-1, 0), -MAXI),
    ("0xffffffffffffffff + a", (0, 0), -1),
    ("0x7fffffffffffffff + a", (1, 0), MINI),
    ("a < b", (MINI, MAXI), True),
    ("a > b", (MINI, MAXI), False),
    ("a <= b", (-1, 0), True),
    ("a == b", (MINI, MINI), True),
    ("a ~= b", (MINI, MAXI), True),
    ("(a < b) and a or b", (3, 4), 3),
    ("(a > b) and a or b", (3, 4), 4),
    ("a and b", (0, 5), 5),
    ("a or b", (0, 5), 0),
    ("not a", (0, 0), False),
]


@pytest.mark.parametrize("expr,args,expected", INT_CASES,
                         ids=[f"{e} {a}" for e, a, _ in INT_CASES])
@pytest.mark.parametrize("form", ["runtime", "folded"])
def test_integer_table(expr, args, expected, form):
    src = expr_function(expr, ("a", "b"))
    if form == "folded":
        src = expr_function(S.substitute(expr, ("a", "b"), args), ())
        args = ()
    want = outcome(src, "f", *args)
    if isinstance(expected, tuple):
        assert want[0] == "error" and expected[1] in want[2], f"table entry disagrees with Lua: {want}"
    else:
        assert want == ("ok", expected) and same_value(want[1], expected), \
            f"table entry disagrees with Lua: {want}"
    agree(src, *args)


# (function body over a, b; (a, b); expected value or ("error", message))
LOOP_CASES = [
    ("local n = 0\nfor i = math.maxinteger - 1, math.maxinteger do n = n + 1 end\nreturn n", (), 2),
    ("local n, last = 0, 0\nfor i = math.maxinteger - 2, math.maxinteger do n = n + 1; last = i end\n"
     "return n, last", (), (3, MAXI)),
    ("local n, last = 0, 0\nfor i = math.mininteger, math.mininteger + 2 do n = n + 1; last = i end\n"
     "return n, last", (), (3, MINI + 2)),
    ("local n = 0\nfor i = math.mininteger + 2, math.mininteger, -1 do n = n + 1 end\nreturn n", (), 3),
    ("local n = 0\nfor i = math.maxinteger, math.maxinteger - 2, -1 do n = n + 1 end\nreturn n", (), 3),
    ("local n = 0\nfor i = 1, 0 do n = n + 1 end\nreturn n", (), 0),
    ("local n = 0\nfor i = 3, 1, -1 do n = n * 10 + i end\nreturn n", (), 321),
    ("local n = 0\nfor i = 1, 3 do n = n * 10 + i end\nreturn n", (), 123),
    ("local n = 0\nfor i = 1, 6, 2 do n = n * 10 + i end\nreturn n", (), 135),
    ("local n = 0\nfor i = 1, 2, 0 do n = n + 1 end\nreturn n", (), ("error", "'for' step is zero")),
    ("local n = 0\nfor i = 1, 2, a do n = n + 1 end\nreturn n", (0, 0), ("error", "'for' step is zero")),
    ("local n = 0\nfor i = a, b do n = n + 1 end\nreturn n", (MAXI - 1, MAXI), 2),
    ("local n = 0\nfor i = a, b do n = n + 1 end\nreturn n", (MAXI, MAXI), 1),
    ("local n = 0\nfor i = a, b, -1 do n = n + 1 end\nreturn n", (MINI + 1, MINI), 2),
    ("local n = 0\nfor i = a, b do n = n + 1 end\nreturn n", (MAXI, MINI), 0),
    ("local n = 0\nfor i = a, b, -1 do n = n + 1 end\nreturn n", (MINI, MAXI), 0),
    ("local n = 0\nfor i = math.mininteger, math.maxinteger, math.maxinteger do n = n + 1 end\n"
     "return n", (), 3),
    ("local n = 0\nfor i = math.mininteger, math.maxinteger, a do n = n + 1 end\nreturn n",
     (MAXI, 0), 3),
    ("local n = 0\nfor i = math.maxinteger, math.mininteger, math.mininteger do n = n + 1 end\n"
     "return n", (), 2),
    ("local n = 0\nfor i = math.maxinteger, math.mininteger, a do n = n + 1 end\nreturn n",
     (MINI, 0), 2),
    ("local n = 0\nfor i = 0, math.maxinteger, 0x4000000000000000 do n = n + 1 end\nreturn n", (), 2),
    ("local s = 0\nfor i = 1, a do s = s + i end\nreturn s", (100, 0), 5050),
    ("local s = 0\nfor i = a, 1, -1 do s = s + i end\nreturn s", (100, 0), 5050),
    ("local i = 0\nwhile i < a do i = i + 1; if i == b then break end end\nreturn i", (10, 4), 4),
    ("local i = 0\nrepeat local j = i * 2; i = i + 1 until j >= a\nreturn i", (6, 0), 4),
    ("local x = nil\nif a > b then x = a end\nreturn x", (1, 2), None),
    ("local x = nil\nif a > b then x = a end\nreturn x", (3, 2), 3),
    ("local x, y = a\nreturn x, y", (1, 0), (1, None)),
    ("assert(a ~= 0, \"a is zero\")\nreturn b // a", (0, 1), ("error", "a is zero")),
    ("if a == 0 then error(\"zero!\") end\nreturn a", (0, 1), ("error", "zero!")),
    ("return a == nil, a == false, 0 == false", (0, 0), (False, False, False)),
]


@pytest.mark.parametrize("body,args,expected", LOOP_CASES,
                         ids=[" ".join(c[0].split("\n")[:2])[:60] + f" {c[1]}" for c in LOOP_CASES])
def test_statement_table(body, args, expected):
    args = args or (0, 0)
    src = "function f(a, b)\n" + "".join(f"  {line}\n" for line in body.split("\n")) + "end\n"
    want = outcome(src, "f", *args)
    if isinstance(expected, tuple) and expected and expected[0] == "error":
        assert want[0] == "error" and expected[1] in want[2], f"table entry disagrees with Lua: {want}"
    else:
        assert want[0] == "ok" and same_value(want[1], expected), \
            f"table entry disagrees with Lua: {want}"
    agree(src, *args)


# Values of the wrong kind where integers are needed: both sides raise, at the
# same line, and Lua's message contains the kernel's. (function body over a, d)
TYPE_ERROR_CASES = [
    ("return d + a", (1, None)),
    ("return a - d", (1, True)),
    ("return d * a", (1, False)),
    ("return d // a", (1, None)),
    ("return a % d", (1, True)),
    ("return -d", (1, None)),
    ("return ~d", (1, False)),
    ("return d & a", (1, None)),
    ("return a << d", (1, True)),
    ("return a < d", (1, None)),
    ("return d <= a", (1, False)),
    ("return d > a", (1, True)),
    ("return math.abs(d)", (1, None)),
    ("return math.min(a, d)", (1, True)),
    ("return math.max(d, a)", (1, None)),
    ("local n = 0\nfor i = 1, d do n = n + 1 end\nreturn n", (1, None)),
    ("local n = 0\nfor i = d, 3 do n = n + 1 end\nreturn n", (1, True)),
    ("local n = 0\nfor i = 1, 3, d do n = n + 1 end\nreturn n", (1, False)),
    ("local x\nif a > 5 then x = a end\nreturn x + 1", (1, None)),
    ("assert(d)\nreturn a", (1, None)),
    ("assert(d, \"d is needed\")\nreturn a", (1, False)),
]


@pytest.mark.parametrize("body,args", TYPE_ERROR_CASES,
                         ids=[f"{c[0].replace(chr(10), ' ')[:50]} {c[1]}" for c in TYPE_ERROR_CASES])
def test_type_error_table(body, args):
    src = "function f(a, d)\n" + "".join(f"  {line}\n" for line in body.split("\n")) + "end\n"
    assert outcome(src, "f", *args)[0] == "error"
    agree(src, *args)


def test_oracle_is_lua54_integers():
    """The oracle itself: Lua 5.4, integer division and wrap-around, no floats."""
    assert outcome(expr_function("a // b"), "f", 7, 2, 0) == ("ok", 3)
    assert outcome(expr_function("a / b"), "f", 7, 2, 0) == ("ok", 3)   # kernel Lua's `/`
    assert outcome(expr_function("a + b"), "f", S.MAXINT, 1, 0) == ("ok", S.MININT)
    with pytest.raises(OracleBug):
        outcome(expr_function("a + 0.5"), "f", 1, 1, 1)
