"""Differential tests of nested functions and closures, in the kernel against Lua 5.4 (lupa).

Kernel Lua inlines every call of a nested function, with the scope it was defined in
(docs/language.md, "Nested functions and closures"): these cases check Lua 5.4's
meaning where a program can see it — a captured local shared by reference (a counter
kept by a closure, an upvalue assigned after capture, by the closure or by its
definer), accessor functions returned by a function, helpers defined inside the
entry function, shadowing (a closure sees the binding of its definition, not a later
local of the same name, nor a caller's local of the same name), each loop iteration's
fresh local, functions passed to and returned from functions, runtime errors inside
closures at their own line. A generated family varies the captured values and the
operations a closure does on them.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .test_differential import agree, examples

pytestmark = pytest.mark.kernel

CASES = {
    "counter": """
function f(a, b)
  local function counter(start)
    local n = start
    return function(step) n = n + step; return n end
  end
  local c1 = counter(a)
  local c2 = counter(b)
  c1(1); c1(2); c2(10)
  return c1(0), c2(0)
end
""",
    "accessors": """
local function account(initial)
  local balance = initial
  local function get() return balance end
  local function deposit(v) balance = balance + v end
  return get, deposit
end
function f(a, b)
  local get, deposit = account(a)
  deposit(b)
  deposit(3)
  return get()
end
""",
    "helper_in_filter": """
function f(port, proto)
  local blocked = 0
  local function block_if(cond, why)
    if cond then blocked = blocked + why end
  end
  block_if(port == 23, 1)
  block_if(port == 445, 2)
  block_if(proto ~= 6 and proto ~= 17, 4)
  if blocked > 0 then return 1 end
  return 2
end
""",
    "shadowing_later_local": """
function f(a, b)
  local x = a
  local function getx() return x end
  local x = b
  return getx(), x
end
""",
    "shadowing_caller_local": """
local function apply(fn, v)
  local x = 1000
  return fn(v) + x
end
function f(a, b)
  local x = a
  local function addx(v) return v + x end
  return apply(addx, b), x
end
""",
    "shadowed_parameter": """
function f(a, b)
  local function g(a) return a * 2 end
  local function h() return a end
  return g(b), h()
end
""",
    "upvalue_modified_after_capture": """
function f(a, b)
  local x = a
  local function getx() return x end
  local r1 = getx()
  x = b
  return r1, getx()
end
""",
    "closure_assigns_enclosing": """
function f(a, b)
  local total = a
  local function add(v) total = total + v end
  add(b); add(b)
  return total
end
""",
    "loop_fresh_local": """
function f(a, b)
  local sum = 0
  for i = 1, 4 do
    local j = i * a
    local function get() return i + j end
    j = j + b
    sum = sum + get()
  end
  return sum
end
""",
    "loop_closure_modifies_loop_var": """
function f(a, b)
  local out = 0
  for i = 1, 3 do
    local function bump() i = i + a end
    bump()
    out = out * 10 + i
  end
  return out
end
""",
    "while_loop_closure": """
function f(a, b)
  local n, acc = 0, 0
  local function step() n = n + 1; acc = acc + n * b end
  while n < a do step() end
  return acc
end
""",
    "function_passed_and_returned": """
local function compose(g, h)
  return function(x) return g(h(x)) end
end
local function twice(g)
  return function(x) return g(g(x)) end
end
function f(a, b)
  local inc = function(x) return x + b end
  local dbl = function(x) return x * 2 end
  return compose(inc, dbl)(a), twice(inc)(a), twice(twice(dbl))(a)
end
""",
    "top_level_function_as_argument": """
local function square(x) return x * x end
local function map2(fn, p, q) return fn(p), fn(q) end
function f(a, b)
  return map2(square, a, b)
end
""",
    "immediately_called": """
function f(a, b)
  return (function(x, y) return x - y end)(a, b)
end
""",
    "nested_three_levels": """
function f(a, b)
  local n = a
  local function outer()
    local m = b
    local function inner() n = n + m; m = m + 1; return n end
    inner()
    return inner()
  end
  local r = outer()
  return r, n
end
""",
    "several_results_and_nil": """
function f(a, b)
  local function pair(x) if x > 0 then return x, -x end return nil end
  local p, q = pair(a)
  local r, s = pair(b)
  return p, q, r, s
end
""",
    "runtime_error_in_closure": """
function f(a, b)
  local d = b
  local function div(x) return x // d end
  return div(a)
end
""",
    "closure_error_message": """
function f(a, b)
  local function check(v)
    if v > 100 then error("too big") end
    return v
  end
  return check(a) + check(b)
end
""",
    "arithmetic_on_a_function": """
function f(a, b)
  local g = function() return 1 end
  if a > 50 then return g + 1 end
  return a
end
""",
    "closure_kinds_widen": """
function f(a, b)
  local v = nil
  local function set(x) v = x end
  if a > 0 then set(a) end
  if b > 0 then set(b > 5) end
  return v
end
""",
    "same_function_from_two_returns": """
local function pick(a, g)
  if a > 0 then return g end
  return g
end
function f(a, b)
  local function neg(x) return -x end
  return pick(a, neg)(b)
end
""",
    "recursion_free_chain": """
function f(a, b)
  local function one(x) return x + 1 end
  local function two(x) return one(one(x)) end
  local function four(x) return two(two(x)) end
  return four(a) + four(b)
end
""",
    "closure_passed_to_a_large_function": """
function big(g, x)
  local s = 0
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  s = s + x * 3 + 1
  return g(s)
end
function big2(x)
  local s = 0
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  s = s * 3 + x
  return s
end
function f(a, b)
  return big(function(v) return v + b end, a) + big(function(v) return v end, b) + big2(a) + big2(b)
end
""",
    "parameter_shadows_captured": """
function f(a, b)
  local x = a
  local function g(x) x = x + 1; return x end
  return g(b), x
end
""",
    "closure_in_a_branch": """
function f(a, b)
  local r = 0
  if a > 0 then
    local function add(v) r = r + v end
    add(a); add(b)
  else
    local function sub(v) r = r - v end
    sub(b)
  end
  return r
end
""",
    "captured_constant_string": """
function f(a, b)
  local s = "abc"
  local function set() s = "hello" end
  if a > 0 then set() end
  return #s, s:byte(1)
end
""",
    "return_inside_closure_in_loop": """
function f(a, b)
  for i = 1, 6 do
    local function hit() if i == a then return i * 10 end return nil end
    local r = hit()
    if r then return r + b end
  end
  return 0
end
""",
    "top_level_alias": """
local function sq(x) return x * x end
local square = sq
function f(a, b)
  return square(a) + sq(b)
end
""",
}

ARGS = [(3, 4), (0, 0), (-7, 2), (100, 101), (5, 0), (2, -9)]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("args", ARGS, ids=[f"{a},{b}" for a, b in ARGS])
def test_closure_cases_agree_with_lua(name, args):
    agree(CASES[name], *args)


# ---- generated: closures over locals, called in generated orders ---------------------

OPS = ["+", "-", "*", "&", "|", "~"]


@st.composite
def closure_programs(draw):
    """A function with locals x, y; closures that read/assign them (some through a
    helper taking the closure as an argument), called in a drawn order; returns x, y."""
    n = draw(st.integers(1, 4))
    lines = ["local function call(fn, v) return fn(v) end",
             "function f(a, b)", "  local x, y = a, b"]
    names = []
    for k in range(n):
        target = draw(st.sampled_from(["x", "y"]))
        source = draw(st.sampled_from(["x", "y", "v", "a"]))
        op = draw(st.sampled_from(OPS))
        const = draw(st.integers(-9, 9))
        style = draw(st.sampled_from(["local function", "anonymous", "shadow"]))
        body = f"{target} = ({source} {op} {const}) {op} v; return {target}"
        if style == "local function":
            lines.append(f"  local function c{k}(v) {body} end")
        elif style == "anonymous":
            lines.append(f"  local c{k} = function(v) {body} end")
        else:                      # then a local of the captured one's name, in a block
            lines.append(f"  local c{k} = function(v) {body} end")
            lines.append(f"  do local {target} = 1000; c{k}({target}) end")
        names.append(f"c{k}")
    calls = draw(st.lists(st.tuples(st.sampled_from(names), st.integers(-5, 5),
                                    st.booleans()), min_size=1, max_size=6))
    for name, arg, through in calls:
        lines.append(f"  call({name}, {arg})" if through else f"  {name}({arg})")
    if draw(st.booleans()):
        lines.append(f"  x = x + {draw(st.integers(-3, 3))}")
        lines.append(f"  {draw(st.sampled_from(names))}(1)")
    lines += ["  return x, y", "end", ""]
    return "\n".join(lines)


@examples(60)
@given(closure_programs(), st.integers(-20, 20), st.integers(-20, 20))
def test_generated_closures_agree_with_lua(src, a, b):
    agree(src, a, b)
