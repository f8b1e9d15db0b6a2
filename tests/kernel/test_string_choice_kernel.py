"""A view of the packet or a constant string, chosen at run time, in packet filters:
`x or "default"`, `m and pld:segment(0, 4) or "none"`, `#(x or "")`, `print(x or …)`,
run with BPF_PROG_TEST_RUN on both hooks and compared with Lua 5.4 (lupa) running the
same text on the payload. Also `x or pld` and `hdr.tcp or false`, which kept the wrong
bytes before (the kept operand lost its offset), and the located errors of what cannot
be chosen at run time (two layouts, a library value, a string returned to the hook)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

import luabpf
from luabpf.compiler.lib import events as cevents
from luabpf.runtime.packets import tcp_frame, udp_frame

pytestmark = pytest.mark.kernel

FILE = "choice.lua"
BODY = """  local x = pld:match("^(%a+)")
  local m = #pld > 3
  local s = m and pld:sub(1, 4) or "none"
  local t = x or "default"
  local r = x or pld
  VALUES(s, t, #(x or ""), (x or "default") == "abc", t == "default", s:byte(2), r == "abc", #r,
         (m and "long" or x or "short"):len())"""
FILTER = ("function filter(hdr, pld)\n" + BODY.replace("VALUES", "print") + "\n"
          "  if (x or \"default\") == \"abc\" then return false end\n  return true\nend\n")
LUA_SHOW = ("function(pld)\n  local function values(...) return ... end\n"
            + BODY.replace("VALUES", "return values") + "\nend")


def lua_values(payload: bytes) -> tuple:
    """What Lua 5.4 prints for the filter's print on this payload (strings as an event
    carries them: the first MAX_BYTES bytes, decoded)."""
    lua = lua54.LuaRuntime(encoding=None)
    values = lua.eval(LUA_SHOW)(payload)
    return tuple(v[:cevents.MAX_BYTES].decode("utf-8", "replace") if isinstance(v, bytes) else v
                 for v in values)


PAYLOADS = st.one_of(
    st.sampled_from([b"", b"a", b"abc", b"abc1", b"abcd", b"1abc", b"GET /", b"none", b"ab",
                     b"default"]),
    st.builds(lambda w, rest: w + rest, st.text("abcxyz", max_size=6).map(str.encode),
              st.binary(max_size=8)))


@pytest.mark.parametrize("hook", ["xdp", "tc"])
@settings(max_examples=30, deadline=None)
@given(PAYLOADS)
def test_views_and_constants_chosen_at_run_time_are_luas(hook, payload):
    frame = udp_frame("10.0.0.1", "10.0.0.2", 1000, 2000, payload)
    want = lua_values(payload)
    with luabpf.compile(FILTER, FILE, hook=hook).load() as loaded:
        verdict = loaded.run(frame)
        (event,) = loaded.events().poll(0)      # every committed record
    assert event.values == want
    dropped = want[3]                                   # (x or "default") == "abc"
    assert verdict.name == ({"xdp": "DROP", "tc": "SHOT"}[hook] if dropped else
                            {"xdp": "PASS", "tc": "OK"}[hook])


SEGMENT = """function filter(hdr, pld)
  local m = #pld > 3
  local s = m and pld:segment(0, 4) or "none"
  print(s)
  if s == "none" then return false end
  return true
end
"""


@pytest.mark.parametrize("payload", [b"", b"abc", b"abcd", b"GET /index", b"none"])
def test_the_issue_segment_or_default(payload):
    with luabpf.compile(SEGMENT, FILE, hook="xdp").load() as loaded:
        verdict = loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 1, 2, payload))
        (event,) = loaded.events().poll(0)      # every committed record
    s = payload[:4] if len(payload) > 3 else b"none"
    assert event.values == (s.decode(),)
    assert verdict.name == ("DROP" if s == b"none" else "PASS")


def test_the_kept_operand_of_or_keeps_its_bytes():
    """`x or pld` where x is a match: x's view, not the packet's first bytes (before, the
    kept view lost its offset: a payload starting "abc" passed)."""
    src = ("function filter(hdr, pld)\n  local x = pld:match(\"^(%a+)\")\n  local s = x or pld\n"
           "  if s == \"abc\" then return false end\n  return true\nend\n")
    with luabpf.compile(src, FILE, hook="xdp").load() as loaded:
        for payload, drop in ((b"abc", True), (b"abc1", True), (b"1abc", False), (b"abcd", False)):
            verdict = loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 1, 2, payload))
            assert verdict.name == ("DROP" if drop else "PASS"), payload


def test_a_header_kept_by_or_is_that_header():
    src = ("function filter(hdr, pld)\n  local t = hdr.tcp or false\n"
           "  if t and t.dport == 22 then return false end\n  return true\nend\n")
    with luabpf.compile(src, FILE, hook="xdp").load() as loaded:
        assert loaded.run(tcp_frame("10.0.0.1", "10.0.0.2", 1000, 22)).name == "DROP"
        assert loaded.run(tcp_frame("10.0.0.1", "10.0.0.2", 1000, 23)).name == "PASS"
        assert loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 1000, 22)).name == "PASS"


def test_a_field_of_either_header_read_where_the_layout_is_known():
    src = ("function filter(hdr, pld)\n"
           "  local dport = hdr.tcp and hdr.tcp.dport or hdr.udp and hdr.udp.dport\n"
           "  if dport == 53 then return false end\n  return true\nend\n")
    with luabpf.compile(src, FILE, hook="xdp").load() as loaded:
        assert loaded.run(tcp_frame("10.0.0.1", "10.0.0.2", 1000, 53)).name == "DROP"
        assert loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 1000, 53)).name == "DROP"
        assert loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 53, 54)).name == "PASS"


def test_swapping_two_views_keeps_their_lengths():
    """`a, b = b, a` copies a value the first store overwrites: all of it (before, the copy
    lost a view's length and the filter let the packet through)."""
    src = ("function filter(hdr, pld)\n  local a = pld:sub(1, 2)\n  local b = pld:sub(3, 5)\n"
           "  a, b = b, a\n"
           "  if #a == 3 and #b == 2 and a == \"cde\" and b == \"ab\" then return false end\n"
           "  return true\nend\n")
    with luabpf.compile(src, FILE, hook="xdp").load() as loaded:
        assert loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"abcdef")).name == "DROP"
        assert loaded.run(udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"abcxef")).name == "PASS"
