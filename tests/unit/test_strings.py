"""The compile-time rules of `s:byte(i, j)` and string order, without a kernel.

How many values `s:byte(i, j)` can give on a view (`views.most_bytes`, checked
against the count itself over every length), the located refusals past the cap
or where nothing bounds the count, and the library calls that refuse a final
argument whose number of values is known only at run time. What the values are
is judged against Lua 5.4 in tests/diff/test_strings.py and
tests/kernel/test_strings_kernel.py.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lupa import lua54

import luabpf
from luabpf.compiler.lib import views

FILE = "s.lua"


def diagnostics(src: str, hook: str = "xdp"):
    with pytest.raises(luabpf.CompileError) as e:
        luabpf.compile(src, FILE, hook=hook)
    return e.value.diagnostics


def filter_src(body: str) -> str:
    return f"function filter(hdr, pld)\n  {body}\n  return true\nend\n"


_lua = lua54.LuaRuntime()
_count = _lua.eval('function(s, i, j) return select("#", s:byte(i, j)) end')


@given(st.integers(-40, 40), st.integers(-40, 40), st.integers(0, 30))
def test_clamped_is_luas_byte_range(i, j, n):
    """views.clamped (shared by sub and byte) gives as many bytes as Lua's s:byte(i, j)."""
    assert views.clamped(i, j, n)[1] == _count("x" * n, i, j)


@given(st.integers(-70, 70), st.integers(-70, 70))
def test_most_bytes_is_the_largest_count_over_every_length(i, j):
    most = views.most_bytes(i, j, object())          # a length known only at run time
    # past 2 * 70 every count is linear in n: the longest view is the only other candidate
    lengths = [*range(0, 200), views.MAX_VIEW - 1, views.MAX_VIEW]
    assert most == max(views.clamped(i, j, n)[1] for n in lengths)


@pytest.mark.parametrize("call,figure", [
    ("pld:byte(1, 17)", "it can give 17"),
    ("pld:byte(-20, -1)", "it can give 20"),
    ("pld:byte(1, -1)", f"it can give {views.MAX_VIEW}"),
    ("pld:byte(#pld - 1, #pld)", "not bounded at compile time"),
])
def test_byte_past_the_cap_is_a_located_error(call, figure):
    src = filter_src(f"local a = {call}")
    (d,) = diagnostics(src)
    assert (d.span.line, d.span.col) == (2, src.splitlines()[1].index(call) + 1), str(d)
    assert f"at most {views.MAX_BYTE_VALUES} values" in d.message and figure in d.message, str(d)


@pytest.mark.parametrize("call", ["pld:byte(1, 16)", "pld:byte(-16, -1)", "pld:byte(#pld)",
                                  "pld:byte(0, 3)", "pld:byte(5, 2)"])
def test_byte_within_the_cap_compiles(call):
    luabpf.compile(filter_src(f"local a = {call}"), FILE, hook="xdp")


@pytest.mark.parametrize("fn", ["math.max(1, pld:byte(1, 2))", "math.min(pld:byte(1))",
                                "tostring(pld:byte(2))", "math.abs(pld:byte(3))"])
def test_a_run_time_number_of_arguments_is_refused_where_it_counts(fn):
    src = filter_src(f"local a = {fn}")
    (d,) = diagnostics(src)
    call = fn[fn.index("pld"):-1]
    assert (d.span.line, d.span.col) == (2, src.splitlines()[1].index(call) + 1), str(d)
    assert "number of arguments known only at run time" in d.message, str(d)


@pytest.mark.parametrize("body", ["local a = pld:sub(2, pld:byte(1))",
                                  "local a = string.sub(pld, 1, pld:byte(1))",
                                  "print(pld:byte(1, 2))"])
def test_string_functions_and_print_take_a_run_time_count(body):
    luabpf.compile(filter_src(body), FILE, hook="xdp")
