"""`print(...)` where no kernel is needed: what print cannot send is a located compile
error, and so is a record over its stack budget. (Events read from the ring buffer are
tests/kernel/test_events.py.)"""
from __future__ import annotations

import pytest

import luabpf
from luabpf import api

FILE = "t.lua"


def compile_f(source: str, nargs: int = 1, name: str = "f"):
    return api.compile_function(source, name, ("int",) * nargs, FILE)


PRINT_ERRORS = [
    ("h = map.hash(2)\nfunction f(z)\n  print(1, h)\nend", 3, "print(", "print cannot send a map", True),
    ("function f(z)\n  print(" + ", ".join(["z"] * 17) + ")\nend", 2, "print(",
     "at most 16 values known only at run time", True),
]


@pytest.mark.parametrize("src,line,needle,fragment,alone", PRINT_ERRORS)
def test_print_refuses_what_it_cannot_send(src, line, needle, fragment, alone):
    with pytest.raises(luabpf.CompileError) as e:
        compile_f(src)
    diags = e.value.diagnostics
    if alone:
        assert len(diags) == 1, [str(d) for d in diags]
    d = diags[0]
    col = src.splitlines()[line - 1].index(needle) + 1
    assert (d.line, d.col) == (line, col), str(d)
    assert fragment in d.message, str(d)


def test_a_print_record_over_its_stack_budget_is_refused():
    src = ("function filter(hdr, pld)\n  print(pld, pld, pld, pld, pld)\nend\n")
    with pytest.raises(luabpf.CompileError) as e:
        luabpf.compile(src, FILE, hook="xdp")
    assert "at most 336 bytes (a packet string takes 80)" in str(e.value)
