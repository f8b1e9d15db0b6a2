"""Lua patterns: the parser and the reference matcher against Lua 5.4 (lupa).

Also the home of the pattern and subject generators that the kernel tier
(tests/kernel/test_patterns_kernel.py) reuses: patterns are drawn from a
grammar of every construct (literals and raw special bytes, `.`, `%a`-style
classes and their complements, escapes, sets with ranges, classes, `^` and a
leading `]`, the four quantifiers, nested and position captures, `%bxy`,
`%f[set]`, back-references to closed captures, `^` and `$` anchors) plus the
paper's SSH pattern; subjects are built from pieces of the pattern itself,
banner fragments, spaces, digits, punctuation, zero and high bytes.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from lupa import lua54

from luabpf.compiler.lib.patterns import (ALL, PatternError, Single, class_set, loop_nesting,
                                      parse_pattern, ranges, reference_find, reference_match)

SSH = b"SSH%-[^ -%G]+%-([^ -%G]+)"
LUA = lua54.LuaRuntime(encoding=None)
_CALL = LUA.eval("""function(f, s, p, i, plain)
  local t = table.pack(pcall(string[f], s, p, i, plain))
  return t
end""")
TALLY = {"lua cases": 0}


def _lua(fn: str, s: bytes, p: bytes, init=None, plain=None):
    """Lua's values as a tuple, None for nil; a Lua error raises LuaError."""
    t = _CALL(fn.encode(), s, p, init, plain)
    TALLY["lua cases"] += 1
    values = [t[i] for i in range(1, t[b"n"] + 1)]
    if not values[0]:
        raise lua54.LuaError(values[1])
    values = values[1:]
    if values == [None]:
        return None
    return tuple(values)


def lua_find(s: bytes, p: bytes, init=None, plain=None):
    return _lua("find", s, p, init, plain)


def lua_match(s: bytes, p: bytes, init=None):
    return _lua("match", s, p, init)


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    yield
    print(f"\npattern differential cases against Lua: {TALLY['lua cases']}")


# ---- generators ------------------------------------------------------------------

RAW = b"SHab xz019_/,:-.*+?^$]\x00\xff\x80\t"        # raw bytes: each means what Lua says
ESCAPES = [b"%" + bytes([c]) for c in b"-.%()[]*+?^$ "]
CLASSES = [b"%" + bytes([c]) for c in b"acdglpsuwxzACDGLPSUWXZ"]
SET_ITEMS = [b"a", b"b", b"S", b"-", b"0", b" ", b".", b"^", b"[", b"\xff", b"\x00", b"a-z", b"0-9",
             b" -%G", b"!-%%", b"z-a", b"A-Z", b"%]", b"%-", b"%%", b"%G", b"%w", b"%s", b"%d", b"%P"]


@st.composite
def sets(draw) -> bytes:
    out = b"[" + draw(st.sampled_from([b"", b"^"]))
    if draw(st.integers(0, 5)) == 0:
        out += b"]"
    items = draw(st.lists(st.sampled_from(SET_ITEMS), min_size=1, max_size=4))
    if out == b"[" and items[0] == b"^":      # a leading '^' would complement the set
        items.insert(0, b"a")
    return out + b"".join(items) + b"]"


@st.composite
def atoms(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return bytes([draw(st.sampled_from(RAW))])
    if kind == 3:
        return draw(st.sampled_from(ESCAPES))
    if kind == 4:
        return b"."
    if kind <= 6:
        return draw(st.sampled_from(CLASSES))
    return draw(sets())


@st.composite
def _sequence(draw, state: dict, depth: int) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 5 if depth == 0 else 3))):
        kind = draw(st.integers(0, 15))
        if kind <= 8:
            out += draw(atoms()) + draw(st.sampled_from([b"", b"", b"*", b"+", b"-", b"?"]))
        elif kind <= 10 and depth < 2 and state["n"] < 6:
            index = state["n"]
            state["n"] += 1
            out += b"(" + draw(_sequence(state, depth + 1)) + b")"
            state["closed"].append(index)
        elif kind == 11 and state["n"] < 6:
            state["closed"].append(state["n"])     # a position capture: %k never matches
            state["n"] += 1
            out += b"()"
        elif kind == 12:
            out += b"%b" + draw(st.sampled_from([b"()", b"[]", b"ab", b"--", b"SH"]))
        elif kind == 13:
            out += b"%f" + draw(sets())
        elif kind == 14 and state["closed"]:
            out += b"%" + str(draw(st.sampled_from(state["closed"])) + 1).encode()
        else:
            out += draw(atoms())
    return out


@st.composite
def patterns(draw) -> bytes:
    """Well-formed pattern text (Lua raises no error on it, whatever the subject)."""
    if draw(st.integers(0, 12)) == 0:
        return draw(st.sampled_from([SSH, b"^" + SSH, b"SSH%-(%d+)%.(%d+)%-(.-)%s*$", b"^(%w+)=(%w*)$"]))
    state = {"n": 0, "closed": []}          # captures numbered so far; those closed
    body = draw(_sequence(state, 0))
    return draw(st.sampled_from([b"", b"", b"^"])) + body + draw(st.sampled_from([b"", b"", b"$"]))


PIECES = [b"SSH-", b"2.0", b"-", b" ", b"OpenSSH_8.9", b"()", b"(()", b"[]", b"ab", b"xyz", b"\x00",
          b"\xff", b"\x80", b"\t\n", b"9", b"_", b"G", b"%", b"--", b"=", b"Aa1"]


@st.composite
def subjects(draw, pat: bytes) -> bytes:
    pieces = PIECES + [pat[i:i + 3] for i in range(len(pat))] + [bytes([c]) for c in pat]
    parts = draw(st.lists(st.one_of(st.sampled_from(pieces), st.binary(max_size=2)), max_size=10))
    return b"".join(parts)[:40]


def inits(n: int):
    return st.one_of(st.just(1), st.integers(-n - 3, n + 3), st.sampled_from([0, -(1 << 63), (1 << 63) - 1]))


# ---- the parser ---------------------------------------------------------------------

def test_ssh_set_reads_as_lua_reads_it():
    """`[^ -%G]`: ' '-'%' is a range (0x20-0x25), then a literal 'G', complemented."""
    p = parse_pattern(SSH)
    cls = p.elements[4]
    assert isinstance(cls, Single) and cls.quant == "+"
    assert ranges(ALL ^ cls.cls) == [(0x20, 0x25), (0x47, 0x47)]
    assert p.captures == ("string",)
    s = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu"
    assert reference_match(p, s) == lua_match(s, SSH) == (b"OpenSSH_8.9p1",)


@pytest.mark.parametrize("cl", b"acdglpsuwxzACDGLPSUWXZ")
def test_classes_are_the_c_locale_ones(cl):
    pat = b"%" + bytes([cl])
    for c in range(256):
        assert bool(class_set(cl) >> c & 1) == (lua_find(bytes([c]), pat) is not None), (pat, c)


@pytest.mark.parametrize("pat,subject,message", [
    (b"%", b"", "malformed pattern (ends with '%')"),
    (b"a%", b"a", "malformed pattern (ends with '%')"),
    (b"[a", b"", "malformed pattern (missing ']')"),
    (b"[]", b"", "malformed pattern (missing ']')"),
    (b"[^]", b"", "malformed pattern (missing ']')"),
    (b"[a%]", b"", "malformed pattern (missing ']')"),
    (b"(a", b"a", "unfinished capture"),
    (b"a)", b"a", "invalid pattern capture"),
    (b"%f", b"", "missing '[' after '%f' in pattern"),
    (b"%fa", b"", "missing '[' after '%f' in pattern"),
    (b"%b", b"", "malformed pattern (missing arguments to '%b')"),
    (b"%bx", b"", "malformed pattern (missing arguments to '%b')"),
    (b"%0", b"", "invalid capture index %0"),
    (b"(a)%2", b"a", "invalid capture index %2"),
    (b"(a%1)", b"aa", "invalid capture index %1"),
    (b"()" * 33, b"", "too many captures"),
    (b"a?" * 200, b"a" * 250, "pattern too complex"),
])
def test_malformed_patterns_use_luas_words(pat, subject, message):
    with pytest.raises(PatternError) as e:
        parse_pattern(pat)
    assert e.value.message == message
    with pytest.raises(lua54.LuaError) as lua_error:
        lua_match(subject, pat)
    assert message in str(lua_error.value)


@pytest.mark.parametrize("pat", [b"]", b"[]]", b"[^]]", b"[]-a]", b"[a-]", b"[-a]", b"[%a-z]", b"a$b",
                                 b"^^", b"$$", b"*", b"+a", b"()*", b"%bxy*", b"a**", b"[a-%]]",
                                 b"[" + bytes([0]) + b"]", b"%\x00"])
def test_odd_but_valid_patterns(pat):
    p = parse_pattern(pat)
    for s in [b"", b"]", b"a]", b"^^", b"$$", b"**", b"+a", b"a$b", b"xy*", b"-", b"z", b"\x00", b"%"]:
        assert reference_find(p, s) == lua_find(s, pat), (pat, s)
        assert reference_match(p, s) == lua_match(s, pat), (pat, s)


def test_plain_patterns_are_literals():
    p = parse_pattern(b"a.(%", plain=True)
    for s, init in [(b"xa.(%", 1), (b"a.(%a.(%", 2), (b"", 1), (b"a.(%", 5), (b"a.(%", 6)]:
        assert reference_find(p, s, init) == lua_find(s, b"a.(%", init, True)


# ---- the reference matcher against Lua ----------------------------------------------------

@settings(max_examples=max(400, settings().max_examples))
@given(st.data())
def test_reference_matcher_equals_lua(data):
    pat = data.draw(patterns())
    p = parse_pattern(pat, kernel=False)   # generated patterns are well formed
    for s in data.draw(st.lists(subjects(pat), min_size=1, max_size=6)):
        init = data.draw(inits(len(s)))
        assert reference_match(p, s, init) == lua_match(s, pat, init), (pat, s, init)
        assert reference_find(p, s, init) == lua_find(s, pat, init), (pat, s, init)


@pytest.mark.parametrize("pat,s,want", [
    (b"(a*(.)%w(%s*))", b"aaab  ", (b"aaab  ", b"a", b"  ")),
    (b"%bxy", b"axxbyyc", (b"xxbyy",)),
    (b"%f[%a]%a+", b"  hello", (b"hello",)),
    (b"(.)%1", b"abccd", (b"c",)),
    (b"()ll()", b"hello", (3, 5)),
    (b"^(%d+)$", b"123", (b"123",)),
    (b".-b", b"aaab", (b"aaab",)),
])
def test_lua_manual_examples(pat, s, want):
    assert reference_match(parse_pattern(pat), s) == want == lua_match(s, pat)


# ---- what the kernel can take ----------------------------------------------------------

@pytest.mark.parametrize("pat,depth", [
    (SSH, 3), (b"^" + SSH, 2), (b"^(%w+)%s*=%s*(.-)%s*$", 3), (b"a*b*c*d*e", 2), (b"x", 1),
    (b"^%s*(.-)%s*$", 3), (b"%s*(.-)%s*$", 4), (b"^x*y*z*w*v*u", 1), (b"^.*.*.*x", 3), (b"^.*.*.*.*x", 4),
])
def test_loop_nesting(pat, depth):
    assert loop_nesting(parse_pattern(pat, kernel=False))[0] == depth


def test_patterns_too_deep_for_the_verifier_are_refused_where_the_depth_is_reached():
    with pytest.raises(PatternError) as e:
        parse_pattern(b"^.*.*.*.*x")
    assert e.value.message.startswith("pattern too complex for the kernel verifier: 4 nested")
    assert e.value.offset == 7                 # the fourth '.*'
    assert reference_match(parse_pattern(b"^.*.*.*.*x", kernel=False), b"abxcx") == (b"abxcx",)
