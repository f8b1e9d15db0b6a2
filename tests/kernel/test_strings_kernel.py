"""Packet views in the kernel against Lua 5.4: `s:byte(i, j)` and string order.

Each probe filter prints what it computes; the events (values and how many of
them: Lua's print shows only the values a call gives) are compared with Lua 5.4's
own `print` running the same filter on the same payload as a Lua string (lupa),
and so are the verdict and a runtime error (its line and Lua's message). Payloads come from hypothesis and reach the program
through BPF_PROG_TEST_RUN inside an Ethernet/IPv4/UDP frame.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lupa import lua54
from scapy.all import IP, UDP, Ether

import luabpf
from luabpf.runtime.verdicts import TcAction, XdpAction

pytestmark = pytest.mark.kernel

FILE = "s.lua"
ALPHABET = [0x00, 0x01, 0x61, 0x62, 0x68, 0x7F, 0x80, 0xFE, 0xFF]

# Luadata's segment, for the Lua side (0-based offset, cut at the end of the view)
LUA_PRELUDE = r"""
function string.segment(s, off, len) return s:sub(off + 1, off + len) end
PRINTED = {}
print = function(...)
  local n, values = select("#", ...), {}
  for i = 1, n do values[i] = (select(i, ...)) end
  PRINTED[#PRINTED + 1] = {n = n, values = values}
end
"""

BYTES_PROBE = r"""
function tail(s) return s:byte(-3, -1) end
function filter(hdr, pld)
  print(pld:byte(1, 3))
  print(pld:byte(-2, -1))
  print(pld:byte(0), pld:byte(-100, 2))
  print(pld:byte(4))
  print("x", pld:byte(2), pld:byte(3, 5))
  local a, b, c, d = pld:byte(2, 4)
  print(a, b, c, d, (pld:byte(1, 3)))
  print(tail(pld))
  print(string.byte(pld, 2, 3))
  local seg = pld:segment(1, 4)
  print(seg:byte(1, 4), #seg)
  local cap = pld:match("^(.?.?.?)")
  print(cap:byte(2, 3))
  print(pld:byte(#pld))
  print(pld:byte(-12, -1))
  print(pld:find("\0\1"))
  print(pld:match("(h)(.)"), 5)
  print(7, pld:match("^(.)(.?)()"))
  print(#pld:sub(2, pld:byte(9)), pld:sub(2, pld:byte(9)), string.byte(pld, pld:byte(-1)))
  if pld:byte(1, 2) == 104 then return false end
  print(#pld:sub(pld:byte(7, 7)))
  return true
end
"""

ORDER_PROBE = r"""
function filter(hdr, pld)
  local la = pld:byte(1)
  if la == nil then return true end
  local a = pld:sub(2, la + 1)
  local c = pld:sub(la + 2)
  print(a < c, a <= c, a > c, a >= c, a == c, a ~= c, c < a, c == a)
  print(a < "", a <= "", a == "", a < "a", "ab" < a, a <= "abcdefgh", a > "abcdefghi",
        a >= "\0", a < "\255\255", a == "abcdefghi", a > "aaaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaa" >= a, a < "\128a", a > "b\0\0")
  if a < c then return false end
  return true
end
"""


def lua_run(source: str, payload: bytes):
    """Lua 5.4's prints [(values...)] and the outcome of filter(nil, payload): ("ok",
    value returned) or ("error", line, message)."""
    lua = lua54.LuaRuntime(encoding=None)
    lua.execute(LUA_PRELUDE)
    lua.execute(source)
    g = lua.globals()
    try:
        verdict = ("ok", g[b"filter"](None, payload))
    except lua54.LuaError as e:
        line, message = re.match(r'\[string "<python>"\]:(\d+): ([^\n]*)', str(e)).groups()
        verdict = ("error", int(line), message)
    printed = []
    for k in range(1, len(g[b"PRINTED"]) + 1):
        p = g[b"PRINTED"][k]
        printed.append(tuple(p[b"values"][i] for i in range(1, p[b"n"] + 1)))
    return printed, verdict


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


_programs: dict = {}


def kernel_run(source: str, payload: bytes, hook: str):
    key = (source, hook)
    if key not in _programs:
        _programs[key] = luabpf.compile(source, FILE, hook=hook)
    with _programs[key].load() as p:
        verdict = p.run(bytes(Ether() / IP() / UDP() / payload))
        events, stream = [], p.events()
        while True:
            got = stream.poll(0)
            if not got:
                break
            events.extend(got)
        errors = p.describe_errors()
    return [e.values for e in events], verdict, errors


def agree(source: str, payload: bytes, hook: str = "xdp") -> None:
    want, outcome = lua_run(source, payload)
    got, verdict, errors = kernel_run(source, payload, hook)
    want = [tuple(_text(v) for v in values) for values in want]
    assert got == want, f"payload {payload!r}"
    drop = XdpAction.DROP if hook == "xdp" else TcAction.SHOT
    if outcome[0] == "error":                 # the hook's default verdict, the error counted
        assert verdict != drop and errors == [f"{FILE}:{outcome[1]}: {outcome[2]} (1 time)"], \
            f"payload {payload!r}: {errors}"
    else:
        assert errors == [], f"payload {payload!r}"
        assert (verdict == drop) == (outcome[1] is False), f"payload {payload!r}"


def payloads(max_size: int = 24):
    return st.one_of(st.lists(st.sampled_from(ALPHABET), max_size=max_size).map(bytes),
                     st.binary(max_size=max_size),
                     st.binary(max_size=4).map(lambda b: b"h" + b),
                     st.binary(max_size=6).map(lambda b: b + b"\0\1"))


@given(payloads())
def test_byte_on_views_gives_what_lua_gives(payload):
    agree(BYTES_PROBE, payload)


def strings(max_size: int):
    return st.one_of(st.lists(st.sampled_from(ALPHABET), max_size=max_size).map(bytes),
                     st.binary(max_size=max_size),
                     st.sampled_from([b"", b"a", b"ab", b"abcdefgh", b"abcdefghi", b"\0",
                                      b"\xff\xff", b"a" * 17, b"\x80a", b"b\0\0"]))


def pairs(max_size: int):
    s = strings(max_size)
    return st.one_of(st.tuples(s, s),
                     st.builds(lambda a, x: (a, a + x), s, strings(9)),
                     st.builds(lambda a, x: (a + x, a), s, strings(9)),
                     s.map(lambda a: (a, a)),
                     st.builds(lambda a, x, y: (a + x, a + y), s, strings(3), strings(3)))


@pytest.mark.parametrize("hook", ["xdp", "tc"])
@given(pairs(40))
def test_views_order_as_lua_orders_strings(hook, pair):
    a, c = pair
    agree(ORDER_PROBE, bytes([len(a)]) + a + c, hook)


def test_order_of_a_nil_and_a_view_is_luas_error():
    src = ("function filter(hdr, pld)\n  local x = nil\n  if #pld > 1 then x = pld end\n"
           "  if x < \"m\" then return false end\n  return true\nend\n")
    with luabpf.compile(src, FILE, hook="xdp").load() as p:
        assert p.run(bytes(Ether() / IP() / UDP() / b"ab")) == XdpAction.DROP
        assert p.run(bytes(Ether() / IP() / UDP() / b"zz")) == XdpAction.PASS
        assert p.describe_errors() == []
        p.run(bytes(Ether() / IP() / UDP() / b""))
        assert p.describe_errors() == [f"{FILE}:4: attempt to compare nil with string (1 time)"]


OPTIONAL_INIT = """
function filter(hdr, pld)
  local i = nil
  if #pld > 2 then i = 2 end
  print(pld:match("(.)", i))
  print(pld:find("a", i))
  print(pld:find("b", pld:byte(5, 5)))
  print(string.find(pld, "a", pld:byte(4, 4)))
  return true
end
"""


@given(payloads(8))
def test_an_absent_or_nil_init_of_match_and_find_is_1(payload):
    """luaL_optinteger: a nil init (known only at run time), or none at all (a call that
    gave no value), is 1; both raised "bad argument #2 … (number expected)" before."""
    agree(OPTIONAL_INIT, payload)


def test_byte_of_a_constant_string_has_no_cap():
    assert luabpf.run_function(
        'function f() local a, b = ("' + "x" * 40 + 'y"):byte(-2, 41) return a, b end', "f") \
        == (120, 121)
