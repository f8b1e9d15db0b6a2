"""`print(...)` through the ring buffer, and `time.ns()`, judged in the kernel.

A program's prints reach user space as `Event`s (`loaded.events().poll(timeout)`), in
order, each with the Lua line, the values and Lua's text (tostring of each value,
joined by tabs). The text is judged against Lua 5.4's own `print` (lupa, with `print`
replaced by a function that records what it would write); a flood of prints into a
ring buffer nobody reads is judged by counting: events received + drops reported
equals prints made, the received ones are the first, and the program never blocks.
"""
from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

import luabpf
from luabpf import api
from luabpf.compiler.lib import events as cevents
from luabpf.compiler.front.luaint import MAXINT, MININT
from luabpf.runtime import ringbuf

pytestmark = pytest.mark.kernel

FILE = "t.lua"


def call(prog, loaded, *args):
    """Run the loaded function program once (LoadedProgram.call): what Lua would return,
    or LuaRuntimeError."""
    return loaded.call(*args)


def compile_f(source: str, nargs: int = 1, name: str = "f"):
    return api.compile_function(source, name, ("int",) * nargs, FILE)


def drain(stream) -> list:
    """Every event available now."""
    out = []
    while True:
        got = stream.poll(0)
        if not got:
            return out
        out.extend(got)


CAPTURE = r"""
PRINTED = {}
print = function(...)
  local n, text, values = select("#", ...), {}, {}
  for i = 1, n do
    local v = (select(i, ...))
    text[i] = tostring(v)
    values[i] = v
  end
  PRINTED[#PRINTED + 1] = {line = debug.getinfo(2, "l").currentline, n = n,
                           text = table.concat(text, "\t"), values = values}
end
"""


def lua_prints(source: str, name: str, *args):
    """What Lua 5.4's print would write: [(line, text, values)], and the outcome."""
    lua = lua54.LuaRuntime(unpack_returned_tuples=True)
    lua.execute(CAPTURE)
    lua.execute(source)
    g = lua.globals()
    try:
        outcome = ("ok", g[name](*args))
    except lua54.LuaError as e:
        outcome = ("error", str(e).split("\n")[0])
    printed = []
    for i in range(1, len(g.PRINTED) + 1):
        p = g.PRINTED[i]
        printed.append((p.line, p.text, tuple(p["values"][j] for j in range(1, p.n + 1))))
    return printed, outcome


KINDS = r"""function pick(x) if x > 0 then return x end return nil end
function f(x, y)
  print("start", x, y)
  print()
  print(x + y, x - y, x * y, x // 3, x % 7, -x, ~y, x << 3, y >> 60)
  print(true, false, nil, x > y, x == y, x ~= y)
  local m = pick(x)
  print(m, "mid", 42, -7, math.maxinteger, math.mininteger, 0xffffffffffffffff)
  print(nil)
  print("a\tb", "", 'quote"s', "caf\u{e9}")
  for i = 1, 3 do print("loop", i, i * x) end
  if y < 0 then print("neg") else print("nonneg", y, m and m > y) end
  print(x and y, x or y, m or -1, m and true)
  return x
end
"""


@pytest.mark.parametrize("x,y", [(5, 3), (-4, 9), (MAXINT, MININT), (0, 0), (MININT, -1)])
def test_print_writes_what_luas_print_writes(x, y):
    want, outcome = lua_prints(KINDS, "f", x, y)
    assert outcome == ("ok", x)
    prog = compile_f(KINDS, 2)
    with prog.load() as L:
        assert call(prog, L, x, y) == x
        got = drain(L.events())
        assert L.describe_errors() == []
    assert [(e.line, e.text) for e in got] == [(line, text) for line, text, _ in want]
    assert [e.values for e in got] == [values for _, _, values in want]
    assert all(e.render() == f"{FILE}:{e.line}: {e.text}" for e in got)
    assert all(e.file == FILE for e in got)


def _arg(value, dynamic: bool) -> str:
    """A Lua expression for value: a literal, or one computed from z (which is 0)."""
    if value is None:
        return "none(z)" if dynamic else "nil"
    if isinstance(value, bool):
        return f"(z {'==' if value else '~='} 0)" if dynamic else str(value).lower()
    if isinstance(value, str):
        return '"' + value + '"'
    text = {MAXINT: "math.maxinteger", MININT: "math.mininteger"}.get(value, f"({value})")
    return f"(z + {text})" if dynamic else text


PRINT_VALUES = st.one_of(st.none(), st.booleans(), st.integers(MININT, MAXINT),
                         st.sampled_from([0, -1, MAXINT, MININT]),
                         st.text(alphabet="ab %-_.:", max_size=6))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(PRINT_VALUES, st.booleans()), max_size=8), min_size=1, max_size=5))
def test_generated_prints_match_luas_print(prints):
    lines = ["function none(z) if z == 0 then return nil end return 1 end", "function f(z)"]
    lines += ["  print(" + ", ".join(_arg(v, d) for v, d in args) + ")" for args in prints]
    src = "\n".join(lines + ["end"])
    want, outcome = lua_prints(src, "f", 0)
    assert outcome == ("ok", None)
    prog = compile_f(src)
    with prog.load() as L:
        call(prog, L, 0)
        got = drain(L.events())
    assert [(e.line, e.text, e.values) for e in got] == want, src


def test_events_of_several_runs_arrive_in_order():
    src = "function f(n)\n  print('run', n)\n  if n % 2 == 0 then print('even', n // 2) end\nend"
    prog = compile_f(src)
    with prog.load() as L:
        stream = L.events()
        assert stream.poll(0) == []
        for n in range(1, 7):
            call(prog, L, n)
        got = drain(stream)
        assert L.events() is stream                    # one stream per program
    want = []
    for n in range(1, 7):
        want.append((2, ("run", n)))
        if n % 2 == 0:
            want.append((3, ("even", n // 2)))
    assert [(e.line, e.values) for e in got] == want


def test_prints_before_a_runtime_error_are_sent_and_none_after():
    src = "function f(x)\n  print('before', x)\n  local q = 10 // x\n  print('after', q)\n  return q\nend"
    for x in (0, 5):
        want, outcome = lua_prints(src, "f", x)
        prog = compile_f(src)
        with prog.load() as L:
            try:
                got_outcome = ("ok", call(prog, L, x))
            except luabpf.LuaRuntimeError as e:
                got_outcome = ("error", f"{e.line}: {e.message}")
            got = drain(L.events())
        assert got_outcome[0] == outcome[0]
        if outcome[0] == "error":
            assert got_outcome[1] in outcome[1]
        else:
            assert got_outcome == outcome
        assert [(e.line, e.text) for e in got] == [(line, text) for line, text, _ in want]


def test_sixteen_runtime_values_per_print():
    vals = ", ".join(f"x + {i}" for i in range(16))
    src = f"function f(x)\n  print('a', {vals}, 'b', nil, true)\nend"
    prog = compile_f(src)
    with prog.load() as L:
        call(prog, L, MAXINT - 7)
        (event,) = drain(L.events())
    want, _ = lua_prints(src, "f", MAXINT - 7)
    assert (event.line, event.text, event.values) == want[0]


def test_poll_waits_and_returns_nothing_without_events():
    prog = compile_f("function f(x)\n  if x > 0 then print(x) end\nend")
    with prog.load() as L:
        stream = L.events()
        call(prog, L, 0)
        start = time.monotonic()
        assert stream.poll(0.05) == []
        assert time.monotonic() - start >= 0.04
        call(prog, L, 3)
        assert [e.values for e in stream.poll(1.0)] == [(3,)]


def test_a_program_that_never_prints_has_no_stream():
    prog = compile_f("h = map.hash(2)\nfunction f(x) h[x] = 1 end")
    with prog.load() as L:
        assert L.events() is None


# ---- a flood: the ring buffer fills, prints are dropped and counted ------------------------

FLOOD = "function f(n)\n  for i = 1, n do\n    print(i, -i)\n  end\n  return n\nend"


def _ring_bytes_per_print(nvalues: int) -> int:
    record = cevents.HEADER + cevents.SLOT * nvalues          # the program's record
    return (ringbuf.HDR_SIZE + record + 7) // 8 * 8           # the kernel's header, padding


def test_a_flood_of_prints_is_dropped_and_counted_never_blocking():
    n = 20000
    fits = cevents.EVENTS_SIZE // _ring_bytes_per_print(2)
    assert fits < n // 2                                      # the flood really overflows
    prog = compile_f(FLOOD)
    with prog.load() as L:
        start = time.monotonic()
        assert call(prog, L, n) == n                          # the loop ran to its end
        elapsed = time.monotonic() - start
        got = drain(L.events())
        errors = L.describe_errors()
        # the ring takes exactly as many records as fit; the rest are counted
        assert len(got) == fits
        assert [e.values for e in got] == [(i, -i) for i in range(1, len(got) + 1)]
        assert all(e.line == 3 for e in got)
        assert len(errors) == 1
        m = re.fullmatch(r"t\.lua:3: print dropped: the ring buffer was full \((\d+) times\)",
                         errors[0])
        assert m, errors
        assert len(got) + int(m.group(1)) == n
        assert elapsed < 5, f"a full ring buffer must not slow the program ({elapsed:.2f} s)"
        # drained, the ring takes records again: nothing is stuck
        assert call(prog, L, 10) == 10
        assert [e.values for e in drain(L.events())] == [(i, -i) for i in range(1, 11)]
        assert L.describe_errors() == errors                  # no new drops


def test_a_reader_keeping_up_loses_nothing():
    prog = compile_f(FLOOD)
    fits = cevents.EVENTS_SIZE // _ring_bytes_per_print(2)
    total, received = 0, []
    with prog.load() as L:
        stream = L.events()
        for _ in range(4):                                    # 4 * fits/2 > fits: needs reading
            call(prog, L, fits // 2)
            total += fits // 2
            received.extend(e.values[0] for e in drain(stream))
        assert L.describe_errors() == []
    assert received == [i for _ in range(4) for i in range(1, fits // 2 + 1)]
    assert len(received) == total


# ---- time.ns ------------------------------------------------------------------------------

def test_time_ns_is_the_monotonic_clock():
    prog = compile_f("function f(x)\n  local a = time.ns()\n  local b = time.ns()\n"
                     "  print(a <= b, b - a < 1000000000)\n  return a, b\nend")
    with prog.load() as L:
        before = time.monotonic_ns()
        a, b = call(prog, L, 0)
        after = time.monotonic_ns()
        (event,) = drain(L.events())
    assert before <= a <= b <= after
    assert event.values == (True, True)


# ---- packet strings -----------------------------------------------------------------------

PACKET_PRINTS = """function filter(hdr, pld)
  local version = pld:match("^SSH%-[^-]+%-([^-%s]+)")
  print("ssh", version, #pld, pld:sub(1, 4), pld:sub(-3))
  return true
end
"""


def lua_packet_print(payload: bytes) -> tuple:
    """What Lua 5.4 would print for PACKET_PRINTS on this payload, each string cut to the
    first MAX_BYTES bytes as an event carries it."""
    lua = lua54.LuaRuntime(encoding=None)
    show = lua.eval('function(pld) return pld:match("^SSH%-[^-]+%-([^-%s]+)"), #pld, '
                    'pld:sub(1, 4), pld:sub(-3) end')
    version, n, head, tail = show(payload)
    cut = [None if v is None else v[:cevents.MAX_BYTES].decode("utf-8", "replace")
           for v in (version, head, tail)]
    return ("ssh", cut[0], n, cut[1], cut[2])


@pytest.mark.parametrize("hook", ["xdp", "tc"])
@settings(max_examples=25, deadline=None)
@given(st.one_of(
    st.builds(lambda v, rest: b"SSH-2.0-" + v + rest,
              st.binary(min_size=0, max_size=90).map(lambda b: bytes(c % 94 + 33 for c in b)),
              st.sampled_from([b"\r\n", b" x\r\n", b"-y", b""])),
    st.binary(min_size=1, max_size=120)))
def test_packet_strings_print_as_lua_prints_them(hook, payload):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    with luabpf.compile(PACKET_PRINTS, FILE, hook=hook).load() as L:
        L.run(bytes(Ether() / IP() / TCP() / payload))
        (event,) = drain(L.events())
    assert event.values == lua_packet_print(payload)
    assert event.line == 3
