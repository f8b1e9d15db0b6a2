"""The compiler core, judged by execution in the kernel and by Lua 5.4 (lupa).

Tables of (source, function, arguments): each runs through `run_function` and
through Lua 5.4, and the two must agree — values, or the runtime error's
message and line.
"""
from __future__ import annotations

import pytest
from lupa import lua54

import luabpf
from luabpf.compiler.front.luaint import MAXINT, MININT

pytestmark = pytest.mark.kernel


def lua_call(source: str, name: str, *args):
    """What Lua 5.4 gives: ('ok', value-or-tuple) or ('error', message)."""
    lua = lua54.LuaRuntime(unpack_returned_tuples=True)
    lua.execute(source)
    fn = lua.globals()[name]
    try:
        result = fn(*args)
    except lua54.LuaError as e:
        return "error", str(e)
    return "ok", result


def kernel_call(source: str, name: str, *args, **kw):
    try:
        return "ok", luabpf.run_function(source, name, *args, filename="t.lua", **kw)
    except luabpf.LuaRuntimeError as e:
        return "error", e


def assert_same(source: str, name: str, *args, **kw):
    want = lua_call(source, name, *args)
    got = kernel_call(source, name, *args, **kw)
    assert got[0] == want[0], f"kernel {got}, Lua {want}"
    if want[0] == "ok":
        assert got[1] == want[1] and type(got[1]) is type(want[1]), f"kernel {got[1]!r}, Lua {want[1]!r}"
    else:
        assert got[1].message in want[1], f"kernel says {got[1].message!r}, Lua says {want[1]!r}"
        assert f":{got[1].line}:" in want[1], f"kernel line {got[1].line}, Lua: {want[1]!r}"


ARITH = """
function f(a, b)
  return a + b, a - b, a * b, a // b, a % b, a & b, a | b, a ~ b, a << b, a >> b, -a, ~a
end
"""

EDGE = [0, 1, -1, 2, -2, 3, -3, 7, -7, 63, 64, -64, 65, 100, MAXINT, MININT, MAXINT - 1,
        MININT + 1, 1 << 32, -(1 << 32)]


@pytest.mark.parametrize("a", EDGE)
@pytest.mark.parametrize("b", [1, -1, 2, -3, 7, 63, 64, -64, MAXINT, MININT])
def test_every_integer_operator_on_edge_values(a, b):
    assert_same(ARITH, "f", a, b)


@pytest.mark.parametrize("expr", [
    "math.mininteger // -1", "math.mininteger % -1", "7 // -3", "-7 // 3", "-7 % 3", "7 % -3",
    "1 << 63", "1 << 64", "-1 >> 1", "3 >> -1", "1 << -1", "-1 << 65", "math.abs(math.mininteger)",
    "math.maxinteger + 1", "math.mininteger - 1", "0xffffffffffffffff", "0x7fffffffffffffff + 1",
    "math.max(3, -2, 9, 4)", "math.min(3, -2, 9, 4)", "5 // 0", "5 % 0", "(1 < 2) and 3 or 4",
    "nil or false", "false and nil", "0 and 1", "not 0", "not nil", "2 == 2",
    "true == 1", "nil == false",
])
def test_constant_expressions_fold_like_lua(expr):
    src = f"function f() return {expr} end"
    assert_same(src, "f")


@pytest.mark.parametrize("x", [0, 5, -5, MININT, MAXINT])
def test_math_functions_at_run_time(x):
    src = "function f(x) return math.abs(x), math.min(x, 3), math.max(x, 3, -9), math.min(x) end"
    assert_same(src, "f", x)


LOOPS = """
function sum(n)
  local s = 0
  for i = 1, n do s = s + i end
  return s
end

function down(a, b, step)
  local s, count = 0, 0
  for i = a, b, step do s = s + i; count = count + 1 end
  return s, count
end

function first_square_over(limit)
  local i = 0
  while true do
    i = i + 1
    if i * i > limit then break end
  end
  return i
end

function digits(n)
  local count = 0
  repeat
    local last = n % 10
    n = n // 10
    count = count + 1
  until n == 0 or last < 0
  return count
end
"""


@pytest.mark.parametrize("name,args", [
    ("sum", (0,)), ("sum", (10,)), ("sum", (100000,)), ("sum", (-5,)),
    ("down", (10, 1, -3)), ("down", (1, 10, 4)), ("down", (MAXINT - 2, MAXINT, 1)),
    ("down", (MININT, MININT + 2, 1)), ("down", (MININT + 2, MININT, -1)), ("down", (1, 0, 1)),
    ("down", (1, 3, 0)), ("down", (MININT, MAXINT, MAXINT)), ("down", (MAXINT, MININT, MININT)),
    ("first_square_over", (1000000,)), ("digits", (123456789,)), ("digits", (0,)),
])
def test_loops(name, args):
    assert_same(LOOPS, name, *args)


def test_long_loop_verifies_cheaply_and_runs():
    assert luabpf.run_function(LOOPS, "sum", 900_000) == 900_000 * 900_001 // 2


def test_loop_bound_exceeded_is_a_runtime_error_at_the_loop():
    src = "function f(n)\n  local i = 0\n  --@bound 100\n  while i < n do i = i + 1 end\n  return i\nend"
    assert luabpf.run_function(src, "f", 100) == 100
    with pytest.raises(luabpf.LuaRuntimeError) as e:
        luabpf.run_function(src, "f", 101)
    assert e.value.line == 4 and "loop bound exceeded" in e.value.message


def test_default_bound_comes_from_max_loop():
    src = "function f(n)\n  local i = 0\n  while i < n do i = i + 1 end\n  return i\nend"
    assert luabpf.run_function(src, "f", 50, max_loop=50) == 50
    with pytest.raises(luabpf.LuaRuntimeError):
        luabpf.run_function(src, "f", 51, max_loop=50)


MIXED = """
local LIMIT <const> = 10

local function pick(a, b)
  if a > b then return a end
  return nil
end

function f(a, b)
  local x = pick(a, b)
  local y = x or -1
  local z = x and x > LIMIT
  return x, y, z
end

function g(a)
  if a > 0 then return 1, 2 end
  if a < 0 then return 3 end
end

function h(a, b)
  local p, q = g(a)
  return (g(b)), p, q
end

function swap(a, b)
  a, b = b, a
  return a, b
end
"""


@pytest.mark.parametrize("name,args", [
    ("f", (5, 3)), ("f", (3, 5)), ("f", (50, 3)), ("g", (1,)), ("g", (-1,)), ("g", (0,)),
    ("h", (1, -1)), ("h", (0, 1)), ("swap", (1, 2)),
])
def test_values_of_several_kinds_and_counts(name, args):
    assert_same(MIXED, name, *args)


@pytest.mark.parametrize("args", [(True,), (False,), (None,), (0,)])
def test_boolean_and_nil_arguments(args):
    src = "function f(x) if x then return 1, x end return 2, x end"
    assert_same(src, "f", *args)


ERRORS = """
function div(a, b)
  return a // b
end

function mod(a, b)
  return a % b
end

function check(a)
  assert(a > 0, "a must be positive")
  return a
end

function fail(a)
  if a == 1 then
    error("one is not allowed")
  end
  return a
end

function step(n)
  for i = 1, 10, n do end
  return 0
end
"""


@pytest.mark.parametrize("name,args", [
    ("div", (1, 0)), ("div", (7, 2)), ("mod", (1, 0)), ("check", (-1,)), ("check", (3,)),
    ("fail", (1,)), ("fail", (2,)), ("step", (0,)), ("step", (3,)),
])
def test_runtime_errors_have_luas_message_and_line(name, args):
    assert_same(ERRORS, name, *args)


def test_runtime_errors_are_counted_per_site():
    from luabpf.compiler.hooks.function import FunctionHook
    prog = luabpf.compile(ERRORS, "t.lua", FunctionHook("div", ("int", "int"), count_errors=True))
    with prog.load() as p:
        import struct
        from luabpf.compiler.hooks.function import ARGS_OFF, ctx_size
        ctx = bytearray(ctx_size(2, prog.compiled.nresults))
        struct.pack_into("<qqqq", ctx, ARGS_OFF, 3, 1, 3, 0)
        for _ in range(3):
            p.run_ctx(bytes(ctx))
        counts = p.error_counts()
    assert list(counts.values()) == [3]
    site = prog.compiled.sites[next(iter(counts))]
    assert (site.line, site.message) == (3, "attempt to divide by zero")


def test_globals_are_read_and_written_by_the_program():
    src = ("counter = 40\nenabled = true\n"
           "function f(n) if enabled then counter = counter + n end enabled = n > 3 return counter, enabled end")
    assert luabpf.run_function(src, "f", 5) == (45, True)
    assert luabpf.run_function(src, "f", 2) == (42, False)


def test_many_live_values_spill_to_the_stack_and_stay_correct():
    n = 24
    names = [f"v{i}" for i in range(n)]
    body = "\n".join(f"  local {v} = a * {i + 1} + b" for i, v in enumerate(names))
    total = " + ".join(f"{v} * {i % 5 + 1}" for i, v in enumerate(names))
    src = f"function f(a, b)\n{body}\n  return {total}\nend"
    assert_same(src, "f", 3, -11)
    assert_same(src, "f", MAXINT, 7)


NESTED_WALK = """function f(a)
  local s = 0
  --@bound 1000
  for i = 1, a do
    --@bound 1000
    for j = 1, a do
      s = s + i * j
    end
  end
  return s
end
"""


def test_too_many_paths_for_the_verifier_is_a_located_error_that_says_why():
    """The known limit of docs/language.md: past the verifier's budget of 1,000,000
    instructions the user gets a line and the reason, not the verifier's raw words. Without
    may_goto the verifier walks a loop iteration by iteration: 1000 × 1000 is past it."""
    with pytest.raises(luabpf.LoadError) as e:
        luabpf.run_function(NESTED_WALK, "f", 1000, loops="bounded")
    assert e.value.line in (6, 7)
    assert "too many paths" in str(e.value)
    assert "; s = s + i * j" in e.value.log                 # the log quotes Lua (BTF lines)


def test_conditions_in_a_loop_body_verify_once_spill_slots_are_shared():
    """24 independent conditions in a loop body, each variable alive across the loop: with
    a stack slot per spilled value the verifier gave up on this program (it was the
    previous test's example); with spill slots shared it verifies, and agrees with Lua."""
    n = 24
    decl = "\n".join(f"  local x{k} = 0" for k in range(n))
    conds = "\n".join(f"    if a > i + {k} then x{k} = x{k} + 1 else x{k} = x{k} + 2 end"
                      for k in range(n))
    total = " + ".join(f"x{k}" for k in range(n))
    # a bound keeps the 235-instruction body inside the function hook's cost budget
    src = f"function f(a)\n{decl}\n  --@bound 1000\n  for i = 1, a do\n{conds}\n  end\n  return {total}\nend\n"
    assert_same(src, "f", 3)
    assert_same(src, "f", 40)


def phases(count: int, width: int) -> str:
    """`count` blocks in a row, each with `width` values live at once, none across blocks."""
    blocks = []
    for p in range(count):
        names = [f"p{p}_{i}" for i in range(width)]
        body = "\n".join(f"    local {v} = a * {i + 2} + {p}" for i, v in enumerate(names))
        blocks.append(f"  do\n{body}\n    s = s + {' + '.join(names)}\n  end")
    return "function f(a)\n  local s = 0\n" + "\n".join(blocks) + "\n  return s\nend\n"


def test_spill_slots_are_shared_by_values_that_are_never_live_together():
    """Three blocks of 40 values live at once: shared, their spill slots take 288 bytes;
    one slot per spilled value would take 1,384 (the kernel allows 512)."""
    from luabpf.api import compile_function
    src = phases(3, 40)
    prog = compile_function(src, "f", ("int",))
    assert prog.compiled.stack_size <= 320, prog.compiled.stack_size
    assert_same(src, "f", 7)
    assert_same(src, "f", MAXINT)
