"""Maps where no kernel is needed: every mistake in declaring or using a map is one
compile error, at its line and column. (Maps in the kernel, against the Lua model, are
tests/kernel/test_maps.py.)"""
from __future__ import annotations

import pytest

import luabpf
from luabpf import api

FILE = "t.lua"


def compile_f(source: str, nargs: int = 1, name: str = "f"):
    return api.compile_function(source, name, ("int",) * nargs, FILE)


COMPILE_ERRORS = [
    ("function f(z)\n  local q = map.hash(3)\nend", 2, "map.hash(3)", "maps are declared at top level"),
    ("n = 5\nh = map.hash(n)\nfunction f(z) end", 2, "map.hash(n)", "a constant from 1 to"),
    ("h = map.hash(0)\nfunction f(z) end", 1, "map.hash(0)", "a constant from 1 to"),
    ("h = map.lru(-1)\nfunction f(z) end", 1, "map.lru(-1)", "a constant from 1 to"),
    ("h = map.array(16777217)\nfunction f(z) end", 1, "map.array", "a constant from 1 to 16777216"),
    ("h = map.hash()\nfunction f(z) end", 1, "map.hash()", "number of entries"),
    ("h = map.hash(3, 4)\nfunction f(z) end", 1, "map.hash(3, 4)", "number of entries"),
    ("h = map.hash(3)\nfunction f(z)\n  h[true] = 1\nend", 3, "h[true]", "map keys are integers in kernel Lua; this key is a boolean"),
    ("h = map.hash(3)\nfunction f(z)\n  h[1] = false\nend", 3, "h[1]", "map values are integers in kernel Lua; this value is a boolean"),
    ("h = map.hash(3)\nfunction f(z)\n  return h[true]\nend", 3, "h[true]", "this key is a boolean"),
    ("h = map.hash(3)\nfunction f(z)\n  h['x'] = 1\nend", 3, "h['x']", "this key is a string"),
    ("a = map.array(3)\nfunction f(z)\n  a[z] = nil\nend", 3, "a[z]", "'a' is an array map: its entries cannot be deleted"),
    ("a = map.percpu_array(3)\nfunction f(z)\n  a[1] = nil\nend", 3, "a[1]", "cannot be deleted"),
    ("h = map.hash(3)\nfunction f(z)\n  return h.x\nend", 3, "h.x", "write h[k], not h.x"),
    ("h = map.hash(3)\nfunction f(z)\n  h.count = 1\nend", 3, "h.count", "write h[k], not h.count"),
    ("h = map.hash(3)\nfunction f(z)\n  map.add(h, 1)\nend", 3, "map.add", "map.add(m, k, n)"),
    ("h = map.hash(3)\nfunction f(z)\n  map.add(z, 1, 1)\nend", 3, "map.add", "map.add(m, k, n)"),
    ("h = map.hash(3)\nfunction f(z)\n  map.add(h, false, 1)\nend", 3, "map.add", "this key is a boolean"),
    ("h = map.hash(3)\nfunction f(z)\n  h = 5\nend", 3, "h = 5", "'h' is a constant"),
    ("luabpf_events = map.hash(2)\nfunction f(z) print(z) end", 1, "map.hash", "luabpf's own maps"),
    ("local luabpf_errors = map.array(2)\nfunction f(z) end", 1, "map.array", "luabpf's own maps"),
    ("h = map.queue(3)\nfunction f(z) end", 1, "map.queue", "unknown function 'map.queue'"),
    ("h = map.hash(3)\nh = map.hash(4)\nfunction f(z) end", 2, "h = map.hash(4)",
     "'h' is already defined at top level"),
    ("h = map.hash(3)\nfunction f(z) return h end", 2, "return h",
     "'f' returns a library value as value #1"),
]


@pytest.mark.parametrize("src,line,needle,fragment", COMPILE_ERRORS,
                         ids=[c[3][:40] + f"@{i}" for i, c in enumerate(COMPILE_ERRORS)])
def test_compile_errors_are_located_and_clear(src, line, needle, fragment):
    with pytest.raises(luabpf.CompileError) as e:
        compile_f(src)
    diags = e.value.diagnostics
    assert len(diags) == 1, f"one mistake, one error: {[str(d) for d in diags]}"
    d = diags[0]
    col = src.splitlines()[line - 1].index(needle) + 1
    assert (d.file, d.line, d.col) == (FILE, line, col), str(d)
    assert fragment in d.message, str(d)
