"""Checker tests: every kernel-Lua restriction at its line:col, all errors at once,
and the programs kernel Lua accepts (the paper's two scripts among them)."""
from __future__ import annotations

import os
import sys

import pytest

from luabpf.compiler.front.check import DEFAULT_GLOBALS, check
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.front.parser import parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from paper_figures import FIGURE1, FIGURE2, GET_LOAD  # noqa: E402



def diagnostics(src: str, known=DEFAULT_GLOBALS):
    with pytest.raises(CompileError) as info:
        check(parse(src, "t.lua"), known)
    return info.value.diagnostics


@pytest.mark.parametrize("src, line, col, fragment", [
    # floats, ^ and ..
    ("function f()\n  return 1.5\nend", 2, 10, "floating-point numbers are not available in kernel Lua"),
    ("x = 1e3", 1, 5, "floating-point numbers are not available"),
    ("function f(a)\n  return a ^ 2\nend", 2, 10, "exponentiation '^' is not available"),
    # varargs
    ("function f(...)\nend", 1, 1, "vararg functions ('...') are not available"),
    ("function f(a, ...)\n  return a\nend", 1, 1, "vararg functions"),
    ("x = ...", 1, 5, "varargs '...' are not available"),
    # goto and labels
    ("function f()\n  goto done\nend", 2, 3, "goto is not available in kernel Lua"),
    ("function f()\n  do end ::done::\nend", 2, 10, "labels are not available"),
    # metatables, coroutines
    ("function f(t)\n  setmetatable(t, nil)\nend", 2, 3, "metatables are not available"),
    ("function f(t)\n  return rawget(t, 1)\nend", 2, 10, "metatables are not available"),
    ("function f()\n  return coroutine.create(g)\nend", 2, 10, "coroutines are not available"),
    # top-level locals are constants: a function neither assigns one nor sees it change
    ("local n = 0\nfunction f()\n  n = n + 1\nend", 3, 3,
     "function 'f' cannot assign to 'n', a top-level local"),
    ("local n = 0\nn = 5\nfunction f()\n  return n\nend", 4, 10,
     "function 'f' uses 'n', a top-level local that is reassigned"),
    # generic for, <close>
    ("function f(t)\n  for k, v in t do end\nend", 2, 3, "generic 'for ... in' is not available"),
    ("function f()\n  local x <close> = nil\nend", 2, 9, "to-be-closed variables (<close>) are not available"),
    # table constructors
    ("function f()\n  local t = {1, 2}\nend", 2, 13, "table constructors are not available"),
    ("function f()\n  g({})\nend\nfunction g(t) end", 2, 5, "table constructors are not available"),
    ("x = {1}", 1, 5, "table constructors are not available"),
    # recursion
    ("function f(n)\n  return f(n - 1)\nend", 2, 10, "recursion is not available in kernel Lua: f → f"),
    ("function f()\n  g()\nend\nfunction g()\n  f()\nend", 5, 3,
     "recursion is not available in kernel Lua: f → g → f"),
    ("local function h(n)\n  return h(n)\nend", 2, 10, "recursion is not available in kernel Lua: h → h"),
    ("function a.b() a.c() end\nfunction a.c() a.b() end\na = nil", 2, 16, "a.b → a.c → a.b"),
    # top level
    ("print(1)", 1, 1, "top-level code runs once at load: only definitions of functions, constants, "
                       "maps and globals may stand here"),
    ("for i = 1, 3 do end", 1, 1, "top-level code runs once at load"),
    ("while true do end", 1, 1, "top-level code runs once at load"),
    ("if up then end\nup = 1", 1, 1, "top-level code runs once at load"),
    ("return 1", 1, 1, "top-level code runs once at load"),
    ("t = map.hash(8)\nt[1] = 2", 2, 1, "top-level code runs once at load"),
    ("x = f()\nfunction f() end", 1, 5, "a top-level value must be a constant, a name, or a stdlib constructor"),
    ("local f = function() end", 1, 11, "a top-level value must be"),
    # names
    ("function f()\n  return y\nend", 2, 10, "unknown name 'y'"),
    ("function f()\n  return pairs\nend", 2, 10, "unknown name 'pairs'"),
    ("function f()\n  return g()\nend\nlocal function g() end", 2, 10, "unknown name 'g'"),
    ("function f()\n  z = 1\nend", 2, 3, "assignment to undeclared global 'z' (declare it at top level: z = 0)"),
    ("function f()\n  print = 1\nend", 2, 3, "cannot assign to 'print'"),
    # const
    ("function f()\n  local c <const> = 1\n  c = 2\nend", 3, 3, "attempt to assign to const variable 'c'"),
    ("local k <const> = 1\nk = 2", 2, 1, "attempt to assign to const variable 'k'"),
    # break
    ("function f()\n  break\nend", 2, 3, "'break' outside a loop"),
])
def test_restrictions(src, line, col, fragment):
    diags = diagnostics(src)
    hits = [d for d in diags if fragment in d.message]
    assert hits, [str(d) for d in diags]
    assert (hits[0].line, hits[0].col) == (line, col), str(hits[0])


def test_hints():
    [d] = diagnostics("function f()\n  return 2.5\nend")
    assert "integers" in d.hint and "'/' is floor division" in d.hint
    [d] = diagnostics("function f(x)\n  return x ^ 2\nend")
    assert "'<<'" in d.hint
    [d] = diagnostics("function f()\n  return g()\nend\nlocal function g() end")
    assert "line 4" in d.hint


def test_all_errors_are_collected():
    src = ("function f(a)\n"
           "  local x = a ^ 2\n"          # 2:13
           "  for k in a do end\n"        # 3:3
           "  return 1.0\n"               # 4:10
           "end\n")
    diags = diagnostics(src)
    assert [(d.line, d.col) for d in diags] == [(2, 13), (3, 3), (4, 10)]
    assert ["exponentiation" in diags[0].message, "generic 'for" in diags[1].message,
            "floating-point" in diags[2].message] == [True, True, True]
    assert all(d.file == "t.lua" for d in diags)


def test_known_globals_can_be_extended():
    src = "function f()\n  return newlib.x\nend"
    assert "unknown name 'newlib'" in diagnostics(src)[0].message
    check(parse(src), DEFAULT_GLOBALS | {"newlib"})


@pytest.mark.parametrize("src", [
    GET_LOAD + FIGURE1,
    FIGURE2,
    # constants, maps and layouts at top level; functions use them
    "local LIMIT <const> = 10\nlocal SHIFT = 2 * 4\ncounts = map.hash(1024)\n"
    "ip = data.layout{ src = {96, 32}, dst = {128, 32} }\n"
    "function f(k)\n  local n = counts[k] or 0\n  if n < LIMIT then counts[k] = n + 1 end\n"
    "  return n << SHIFT\nend",
    # globals are map-backed: a function may read and write them, before or after their definition
    "function bump()\n  hits = hits + 1\n  return hits\nend\nhits = 0",
    # loops, locals, multiple assignment, method calls, # and strings are left to the lowering
    "function g(a, b)\n  local s = 0\n  for i = 1, 10, 2 do s = s + i end\n  --@bound 8\n"
    "  while s > 0 do s = s // 2 if s == 3 then break end end\n  repeat local t = s until t < 1\n"
    "  a, b = b, a\n  return #a, a:byte(1), 'x' == b, -s, ~s, not s\nend",
    # non-recursive call chains, a tracepoint hook, max and min as parameter names
    "local function h(x) return x end\nfunction g(x) return h(x) end\n"
    "function tracepoint.sched.sched_switch(args) return g(args.prev_pid) end",
    # nested functions and closures over a function's locals (lowering inlines them)
    "function f(a)\n  local n = a\n  local function inc(k) n = n + k end\n  inc(1)\n"
    "  local g = function() return n end\n  return g(), (function() n = 0 end)()\nend",
    "function f()\n  local function outer()\n    local m = 1\n    return function() m = m + 1 "
    "return m end\n  end\n  return outer()()\nend",
    # top-level local function used as a constant from another function, const from const
    "local A <const> = 3\nlocal B <const> = A * 2\nfunction f() return A + B + math.maxinteger end",
])
def test_accepted_programs(src):
    check(parse(src, "ok.lua"))
