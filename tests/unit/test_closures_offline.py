"""Nested functions and closures that kernel Lua refuses, each a located compile error
saying where the function value escaped (docs/language.md, "Nested functions and
closures"), and the ones it compiles without loading them (the kernel runs are in
tests/diff/test_closures.py)."""
from __future__ import annotations

import pytest

from luabpf.api import compile_function
from luabpf.compiler.front.diagnostics import CompileError

ESCAPES = "a function value escapes here: "
KNOWN = "the function a call reaches must be known at compile time"


def diagnostics(src: str):
    with pytest.raises(CompileError) as info:
        compile_function(src, "f", ("int",), "t.lua")
    return info.value.diagnostics


REFUSED = [
    ("stored in a map",
     "m = map.hash(16)\nfunction f(a)\n  local g = function() return 1 end\n  m[a] = g\n  return 0\nend",
     4, 3, ESCAPES + "it is stored in a map or a table"),
    ("stored in a global",
     "x = 0\nfunction f(a)\n  local g = function() return 1 end\n  x = g\n  return 0\nend",
     4, 3, ESCAPES + "it is stored in global 'x'"),
    ("function statement assigns a global",
     "x = 0\nfunction f(a)\n  function x() return 1 end\n  return 0\nend",
     3, 3, ESCAPES + "it is stored in global 'x'"),
    ("function statement assigns a table field",
     "function f(a)\n  function a.x() return 1 end\n  return 0\nend",
     2, 3, ESCAPES + "it is stored in a table field"),
    ("compared",
     "function f(a)\n  local g = function() return 1 end\n  return g == g\nend",
     3, 10, ESCAPES + "it is compared"),
    ("printed",
     "function f(a)\n  local g = function() return 1 end\n  print(g)\n  return 0\nend",
     3, 9, ESCAPES + "it is passed to 'print', a library function"),
    ("passed to a library function",
     "local function one() return 1 end\nfunction f(a)\n  return math.max(one, a)\nend",
     3, 19, ESCAPES + "it is passed to 'math.max', a library function"),
    ("a function literal passed to a library function",
     "function f(a)\n  print(function() end)\n  return 0\nend",
     2, 9, ESCAPES + "it is passed to 'print', a library function"),
    ("chosen by and/or",
     "function f(a)\n  local g = function() return 1 end\n  local h = function() return 2 end\n"
     "  local k = a > 0 and g or h\n  return k()\nend",
     4, 13, ESCAPES + "'or' chooses it at run time"),
    ("stored in a variable assigned again",
     "function f(a)\n  local g = function() return 1 end\n  if a > 0 then g = function() return 2 end end\n"
     "  return g()\nend",
     2, 3, ESCAPES + "it is stored in 'g', a variable that is assigned more than once"),
    ("a name assigned in a nested function (the check is by name)",
     "function f(a)\n  local g = function() return 1 end\n"
     "  local function h() local g = 1; g = 2; return g end\n  return g() + h()\nend",
     2, 3, ESCAPES + "it is stored in 'g', a variable that is assigned more than once"),
    ("assigned to an existing local",
     "function f(a)\n  local n = 0\n  n = function() return 1 end\n  return 0\nend",
     3, 3, ESCAPES + "it is assigned to 'n', which is not a fresh local"),
    ("two different functions returned",
     "local function pick(a)\n  if a > 0 then return function() return 1 end end\n"
     "  return function() return 2 end\nend\nfunction f(a)\n  return pick(a)()\nend",
     3, 3, ESCAPES + "'pick' returns two different functions as value #1 (here and at line 2)"),
    ("a function or something else returned",
     "local function pick(a)\n  local g = function() return 1 end\n  if a > 0 then return g end\n"
     "  return nil\nend\nfunction f(a)\n  local h = pick(a)\n  return 0\nend",
     2, 13, ESCAPES + "'pick' returns a function as value #1 here and something else at line 4"),
    ("returned by the entry function",
     "function f(a)\n  return function() return 1 end\nend",
     2, 3, ESCAPES + "the entry function returns it to the kernel"),
    ("recursion of a local function",
     "function f(a)\n  local function fact(n)\n    if n <= 1 then return 1 end\n"
     "    return n * fact(n - 1)\n  end\n  return fact(a)\nend",
     4, 16, "recursion is not available in kernel Lua: fact → fact"),
    ("recursion through a function value",
     "function f(a)\n  local function self_apply(g) return g(g) end\n  return self_apply(self_apply)\nend",
     2, 39, "recursion is not available in kernel Lua: self_apply → self_apply"),
    ("a local function assigned",
     "function f(a)\n  local function g() return 1 end\n  g = nil\n  return 0\nend",
     3, 3, "'g' is a function: kernel Lua cannot assign to it"),
    ("a variable called",
     "function f(a)\n  local g = 5\n  return g()\nend",
     3, 10, "'g' is a variable, not a function known at compile time"),
    ("a top-level local assigned by a function",
     "local n = 0\nfunction f(a)\n  n = n + 1\n  return n\nend",
     3, 3, "function 'f' cannot assign to 'n', a top-level local"),
]


@pytest.mark.parametrize("src, line, col, fragment", [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_a_function_value_that_escapes_is_a_located_error(src, line, col, fragment):
    diags = diagnostics(src)
    d = diags[0]
    assert fragment in d.message
    assert (d.file, d.line, d.col) == ("t.lua", line, col)


def test_an_escape_says_why_and_what_to_do():
    [d] = diagnostics("x = 0\nfunction f(a)\n  local g = function() return 1 end\n  x = g\n"
                      "  return 0\nend")
    assert KNOWN in d.message and "pass it as an argument" in d.hint


@pytest.mark.parametrize("src", [
    # nested local functions, anonymous functions, closures assigning enclosing locals
    "function f(a)\n  local n = a\n  local function inc(k) n = n + k end\n  inc(1)\n"
    "  local g = function() return n end\n  return g()\nend",
    # a function returning a closure, and a function taking one
    "local function mk(x) return function(y) return x + y end end\n"
    "local function apply(fn, v) return fn(v) end\nfunction f(a)\n  return apply(mk(a), 2)\nend",
    # the same function from every return; a top-level function as a value
    "local function id(x) return x end\nlocal function pick(a, g)\n  if a > 0 then return g end\n"
    "  return g\nend\nfunction f(a)\n  return pick(a, id)(a)\nend",
    # a function value whose calls nest it in itself with another scope is not recursion
    "local function twice(g) return function(x) return g(g(x)) end end\n"
    "function f(a)\n  return twice(twice(function(x) return x + 1 end))(a)\nend",
    # a nested function of the same name as a top-level one does not replace it
    "local function h(x) return x + 1 end\nfunction f(a)\n  local function h(x) return x * 2 end\n"
    "  return h(a)\nend",
], ids=["nested", "returned-and-passed", "same-function", "not-recursion", "same-name"])
def test_closures_compile(src):
    compile_function(src, "f", ("int",))
