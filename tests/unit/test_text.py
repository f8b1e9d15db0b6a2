"""Text for output (`..`, string.format, tostring): Lua 5.4's formatting in Python against
Lua 5.4 itself (lupa), constants folded anywhere, and each refusal a located error.

The formatter (`compiler/lib/text.py`) renders print's and error's texts in user space
and folds constant ones at compile time, so it is judged here on its own over a grid of
every conversion with every flag, width and precision (two digits and three), the
integers at the edges, strings with zeros, control bytes and numerals; the kernel's side
is tests/diff/test_text.py.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

import luabpf
from luabpf import api
from luabpf.compiler.front.luaint import MAXINT, MININT
from luabpf.compiler.lib import text

FILE = "t.lua"
_lua = lua54.LuaRuntime(encoding=None)
_format = _lua.eval(b"function(f, ...) local function g(...) return string.format(f, ...) end "
                    b"return pcall(g, ...) end")

INTS = [0, 1, -1, 7, 255, -255, MAXINT, MININT, 65, 300, 1234567]
STRINGS = [b"abc", b"a\0b", b"12", b" -0x10 ", b"+7", b"1.5", b"1e2", b"1e400", b"x", b"",
           b"a\n\r\x01" + b"2\"\\\x7f\xe9", b"\0" + b"1", b"9223372036854775808"]
FORMS = ["%" + flags + width + precision + conv
         for conv in "diuoxXcs"
         for flags in ["", "-", "+", " ", "#", "0", "-0", "+ ", "#0", "-#", "--"]
         for width in ["", "5", "12", "123"]
         for precision in ["", ".", ".0", ".3", ".25", ".123"]]
FORMS += ["%q", "%5q", "%-q", "%%", "%y", "%", "%5", "%-+ #0-+ #0-+ #0-+ #0d", "a%%b%dc", "%i%"]


def lua_format(fmt: bytes, *args):
    ok, r = _format(fmt, *args)
    return (True, r) if ok else (False, r.decode().split(": ", 1)[1])


def ours(fmt: bytes, *args):
    try:
        return (True, text.format_values(fmt, list(args)))
    except text.LuaError as e:
        return (False, str(e))


@pytest.mark.parametrize("form", FORMS)
def test_every_conversion_flag_width_and_precision_formats_as_lua(form):
    for v in INTS + STRINGS + [None, True, False]:
        assert ours(form.encode(), v) == lua_format(form.encode(), v), (form, v)


def test_q_of_integers_and_strings_reads_back_as_lua_writes_it():
    for v in INTS + STRINGS + [bytes(range(256))]:
        assert ours(b"%q", v) == lua_format(b"%q", v), v


def test_no_value_and_order_of_errors_are_luas():
    for fmt, args in [(b"%d %d", [1]), (b"%d", []), (b"%#d %s", [b"x"]), (b"%5.3c", [None]),
                      (b"%5q", [None]), (b"%d %y", [1]), (b"%s %d", [None, None])]:
        assert ours(fmt, *args) == lua_format(fmt, *args), (fmt, args)


PIECES = st.sampled_from(["%d", "%i", "%u", "%x", "%X", "%o", "%c", "%s", "%q", "%%", "-", "ab",
                          "%5d", "%-8x", "%+d", "% i", "%#o", "%#X", "%010d", "%.3d", "%.0d",
                          "%5.3u", "%-5c", "%.2s", "%20s", "%#5x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=6), st.lists(st.one_of(
    st.integers(MININT, MAXINT), st.sampled_from(INTS), st.none(), st.booleans(),
    st.binary(max_size=6)), max_size=7))
def test_random_formats_format_as_lua(pieces, args):
    fmt = "".join(pieces).encode()
    assert ours(fmt, *args) == lua_format(fmt, *args), (fmt, args)


# ---- compile time: folding and refusals --------------------------------------------

def compile_f(src: str):
    return api.compile_function(src, "f", ("int",), FILE)


def diagnostics(src: str):
    with pytest.raises(luabpf.CompileError) as e:
        compile_f(src)
    return e.value.diagnostics


def test_constant_text_folds_into_a_constant_string_usable_anywhere():
    src = ("function f(x)\n  local t = 'a' .. 1 .. string.format('%03d', 7) .. tostring(nil)\n"
           "  if t == 'a1007nil' and #t == 8 then return #string.format('%5s', 'ab') end\n"
           "  return 0\nend")
    assert compile_f(src)


NOT_HERE = "makes text that kernel Lua keeps only to print it or raise it as an error"

REFUSALS = [
    ("if 'a' .. x == 'a1' then return 1 end", 6, NOT_HERE),               # compared
    ("local s = string.format('%d', x)", 13, NOT_HERE),                    # stored
    ("return tostring(x)", 10, NOT_HERE),                                  # returned
    ("return #('a' .. x)", 12, NOT_HERE),                                  # measured
    ("local n = m['k' .. x]", 15, NOT_HERE),                               # a key
    ("g = 'v' .. x", 7, NOT_HERE),                                         # a global
    ("print(string.format('%5.2f', x))", 9, "'%5.2f' is not available in kernel Lua"),
    ("print(string.format('%a', x))", 9, "'%a' is not available in kernel Lua"),
    ("print(string.format('%p', x))", 9, "'%p' is not available in kernel Lua"),
    ("local fmt = x > 0 and '%d' or '%x'\n  print(string.format(fmt, x))", 23,
     "the format of string.format must be a constant string"),
    ("print(string.format('%5s', 'a' .. x))", 9, "'%5s' of a string known only at run time"),
    ("print(string.format('%q', 'a' .. x))", 9, "'%q' of text built by '..' or string.format"),
    ("print(m .. 'x')", 9, "cannot be turned into text"),
]


@pytest.mark.parametrize("body, col, fragment", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_text_where_it_would_exist_in_the_kernel_is_a_located_error(body, col, fragment):
    src = f"m = map.hash(4)\ng = 0\nfunction f(x)\n  {body}\nend"
    found = diagnostics(src)
    line = 4 + body.count("\n")
    assert any((d.span.line, d.span.col) == (line, col) and fragment in d.message
               for d in found), "\n".join(map(str, found))


def test_a_text_a_function_returns_is_refused_where_it_is_made():
    d = diagnostics("function g(x)\n  return 'v' .. x\nend\nfunction f(x)\n  print(g(x))\nend")[0]
    assert (d.span.line, d.span.col) == (2, 10) and NOT_HERE in d.message, str(d)


def test_print_of_a_packet_string_in_text_compiles_in_a_filter():
    src = "function filter(hdr, pld)\n  print('got ' .. pld:sub(1, 4) .. '/' .. #pld)\n  return true\nend"
    assert luabpf.compile(src, FILE, hook="xdp")


def test_a_view_under_a_numeric_conversion_is_refused():
    src = "function filter(hdr, pld)\n  print(string.format('%d', pld:sub(1, 2)))\n  return true\nend"
    with pytest.raises(luabpf.CompileError) as e:
        luabpf.compile(src, FILE, hook="xdp")
    (d,) = e.value.diagnostics
    assert (d.span.line, d.span.col) == (2, 9) and "of a string known only at run time" in d.message
