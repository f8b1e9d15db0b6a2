"""Text for output in the kernel against Lua 5.4: `..`, string.format and tostring of
values known only at run time, printed (the program sends the values, user space
formats them) or raised with error(), judged against what Lua's own print writes and
the error Lua raises (lupa).

Each program runs through `LoadedProgram.call` (what `luabpf call` and
`luabpf.run_function` use); its prints are read from the ring buffer as
tests/kernel/test_events.py reads them.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

import luabpf
from luabpf.api import compile_function
from luabpf.compiler.front.luaint import MAXINT, MININT
from luabpf.compiler.lib import events as cevents

from .oracle import TALLY, outcome

pytestmark = pytest.mark.kernel

FILE = "t.lua"
CAPTURE = r"""
PRINTED = {}
print = function(...)
  local n, text = select("#", ...), {}
  for i = 1, n do text[i] = tostring((select(i, ...))) end
  PRINTED[#PRINTED + 1] = {line = debug.getinfo(2, "l").currentline,
                           text = table.concat(text, "\t")}
end
"""


def lua_run(source: str, *args):
    """[(line, text)] Lua's print wrote, and ('ok', result) or ('error', message)."""
    lua = lua54.LuaRuntime(unpack_returned_tuples=True, encoding=None)
    lua.execute(CAPTURE.encode())
    lua.execute(source.encode())
    g = lua.globals()
    try:
        got = ("ok", g[b"f"](*args))
    except lua54.LuaError as e:
        got = ("error", str(e).split("\n")[0].split(": ", 1)[1])
    printed = [(g[b"PRINTED"][i][b"line"], g[b"PRINTED"][i][b"text"].decode("utf-8", "replace"))
               for i in range(1, len(g[b"PRINTED"]) + 1)]
    return printed, got


def kernel_run(source: str, *args):
    prog = compile_function(source, "f", ("int",) * len(args), FILE)
    with prog.load() as L:
        try:
            got = ("ok", L.call(*args))
        except luabpf.LuaRuntimeError as e:
            got = ("error", e.message)
        stream, events = L.events(), []
        while True:
            more = stream.poll(0)
            if not more:
                break
            events += more
    return [(e.line, e.text) for e in events if e.error_site is None], got


def agree(source: str, *args) -> None:
    TALLY["test_text"] += 1
    want = lua_run(source, *args)
    got = kernel_run(source, *args)
    assert got == want, f"\n{source}\nargs={args}"


VALUES = [0, 1, -1, 42, 255, -255, 65, MAXINT, MININT, 1 << 40, -(1 << 33) - 5]

FORMATS = ["%d", "%i", "%u", "%x", "%X", "%o", "%c", "%s", "%q", "%%%d%%",
           "%5d", "%-5d|", "%05d", "%+d", "% d", "%+05i", "%.3d", "%.0d", "%8.3d", "%-8.3i|",
           "%25d", "%99d", "%.99d",
           "%#x", "%#X", "%#o", "%-#10x|", "%#010x", "%#.3o", "%020u", "%.25u", "%-3u|",
           "%5c|", "%-5c|", "%10s", "%-10s|", "%.2s", "%5.1s", "%.0s|", "%s%s%s"]


@pytest.mark.parametrize("chunk", range(0, len(FORMATS), 10))
def test_the_format_table_prints_as_lua_prints_it(chunk):
    lines = ["function f(x)"]
    for fmt in FORMATS[chunk:chunk + 10]:
        n = fmt.count("%") - 2 * fmt.count("%%")
        lines.append(f"  print(string.format('{fmt}'{', x' * n}), 'end')")
    src = "\n".join(lines + ["  return x", "end"])
    for x in VALUES:
        agree(src, x)


def test_q_c_and_tostring_of_booleans_and_nil_print_as_lua():
    src = ("function none(x) if x > 0 then return nil end return x end\n"
           "function f(x)\n"
           "  print(string.format('%q|%q|%s|%5s|%-6s|%.2s', x > 0, none(x), x < 0, none(x),"
           " x == 0, x > 0))\n"
           "  print(tostring(x > 0) .. tostring(none(x)) .. tostring(x), string.format('%q', 'a\\n\\0\\1b\"'))\n"
           "  return x\nend")
    for x in (0, 5, -5):
        agree(src, x)


def test_concatenation_of_numbers_and_strings_prints_as_lua():
    src = ("function f(x, y)\n"
           "  print(x .. '', 'a' .. x .. y, x .. y, tostring(x) .. '-' .. tostring(x > y))\n"
           "  print('x=' .. x .. ', y=' .. y .. ', sum=' .. x + y, (x .. ':') .. (y .. ':'))\n"
           "  print('n' .. string.format('[%5d]', x) .. '|' .. string.format('%x', y))\n"
           "  return x\nend")
    for x, y in [(0, 0), (1, -1), (MAXINT, MININT), (42, 7)]:
        agree(src, x, y)


def test_constant_strings_chosen_at_run_time_print_as_lua():
    src = ("function f(x)\n"
           "  local name = x > 0 and 'pos' or 'neg\\n'\n"
           "  print('x is ' .. name, string.format('%s|%q', name, name), tostring(name))\n"
           "  local v = x > 5 and x or nil\n"
           "  print('v=' .. tostring(v))\n"
           "  return x\nend")
    for x in (3, 7, -1):
        agree(src, x)


INT_PIECES = st.sampled_from(["%d", "%i", "%u", "%x", "%X", "%o", "%c", "%s", "%q", "%%", " ",
                              "ab", "%5d", "%-8x", "%+d", "% i", "%#o", "%#X", "%010d", "%.3d",
                              "%.0d", "%5.3u", "%-5c", "%.2s", "%20s", "%#5x", "%-#12o"])


@settings(max_examples=60, deadline=None)
@given(st.lists(INT_PIECES, min_size=1, max_size=6), st.lists(
    st.one_of(st.integers(MININT, MAXINT), st.sampled_from(VALUES)), min_size=6, max_size=6))
def test_random_formats_of_run_time_integers_print_as_lua(pieces, args):
    fmt = "".join(pieces)
    n = fmt.count("%") - 2 * fmt.count("%%")
    params = ", ".join(f"a{i}" for i in range(6))
    src = (f"function f({params})\n  print(string.format('{fmt}'"
           + "".join(f", a{i}" for i in range(n)) + "))\n  return 0\nend")
    agree(src, *args)


ERRORS = [
    "error(string.format('bad %d of %s', x, 'y'))",
    "error('x is ' .. x .. '!')",
    "error(string.format('%5x|%q|%c', x, x, 65 + x % 26))",
    "assert(x < 0, 'not negative: ' .. x)",
    "error(string.format('%d', nil))",
    "print(string.format('%d', pick(x)))",
    "print('a' .. pick(x))",
    "print('a' .. (x > 0))",
    "print(string.format('%5q', x))",
    "print(string.format('%d %d', x))",
    "print(string.format('%123d', x))",
    "print(string.format('%#d', x))",
    "print(string.format('%y', x))",
    "print(string.format('%d', 'x'))",
    "print(string.format('%d', '12') .. string.format('%x', '0x10'))",
    "print(string.format('%d', '1.5'))",
]


@pytest.mark.parametrize("body", ERRORS)
def test_errors_and_their_messages_are_luas(body):
    src = ("function pick(x) if x > 3 then return x end return nil end\n"
           f"function f(x)\n  print('before', x)\n  {body}\n  return x\nend")
    for x in (2, 7):
        agree(src, x)
        want = outcome(src, "f", x)
        if want[0] == "error":              # the same line as Lua's
            try:
                luabpf.run_function(src, "f", x, filename=FILE)
            except luabpf.LuaRuntimeError as e:
                assert (e.line, e.message) == (want[1], want[2])


PACKET = """function filter(hdr, pld)
  print('got ' .. pld:sub(1, 4) .. '|' .. #pld, string.format('[%s] %d', pld:sub(-3), #pld))
  return true
end
"""


def lua_packet(payload: bytes) -> str:
    lua = lua54.LuaRuntime(encoding=None)
    show = lua.eval(b"function(pld) return 'got ' .. pld:sub(1, 4) .. '|' .. #pld, "
                    b"string.format('[%s] %d', pld:sub(-3), #pld) end")
    a, c = show(payload)
    return (a.decode("utf-8", "replace"), c.decode("utf-8", "replace"))


@pytest.mark.parametrize("hook", ["xdp", "tc"])
@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_text_of_packet_strings_prints_as_lua(hook, payload):
    from scapy.layers.inet import IP, TCP    # scapy is heavy: only where frames are built
    from scapy.layers.l2 import Ether
    TALLY["test_text"] += 1
    with luabpf.compile(PACKET, FILE, hook=hook).load() as L:
        L.run(bytes(Ether() / IP() / TCP() / payload))
        events = L.events().poll(0)
    assert [e.values for e in events] == [lua_packet(payload)]
    assert len(payload) <= cevents.MAX_BYTES


PACKET_CAPTURE = """function filter(hdr, pld)
  local word = pld:match("^(%a+)")
  print(string.format("%d:", #pld) .. word)
  return true
end
"""


@pytest.mark.parametrize("payload", [b"hello world", b"123", b"x"])
def test_a_capture_that_may_be_nil_in_text_is_checked_as_lua_checks_it(payload):
    from scapy.layers.inet import IP, TCP    # scapy is heavy: only where frames are built
    from scapy.layers.l2 import Ether
    TALLY["test_text"] += 1
    lua = lua54.LuaRuntime(encoding=None)
    show = lua.eval(b'function(pld) local ok, r = pcall(function() '
                    b'return string.format("%d:", #pld) .. pld:match("^(%a+)") end) '
                    b'return ok, r end')
    ok, want = show(payload)
    with luabpf.compile(PACKET_CAPTURE, FILE, hook="xdp").load() as L:
        L.run(bytes(Ether() / IP() / TCP() / payload))
        events = L.events().poll(0)
        errors = L.describe_errors()
    if ok:
        assert [e.values for e in events] == [(want.decode(),)] and errors == []
    else:
        assert events == [] and [e.split(": ", 1)[1] for e in errors] == \
            [want.decode().split(": ", 1)[1] + " (1 time)"]
