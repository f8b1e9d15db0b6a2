"""Compiled Lua patterns in the kernel, judged by the reference matcher and Lua 5.4.

A test-only hook runs `emit_match` in an XDP program over a frame built by the
test: a header (an opaque zero for loop blinding, Lua's `init`, the subject
length, then the result words the program writes back) followed by the subject
bytes, which end the frame. The subject is packet memory, as in a filter:
every read is bounds-checked against the frame's end, and a read outside the
subject — which the matcher must never do — is a runtime error the test sees.
Windows (one bounds check, loads at constant offsets, wide literal compares)
are tested alongside plain byte loads. The differential test compiles each
generated pattern once and runs it on many subjects; every result must equal
`reference_find` and lupa's `string.find`. Every matcher must pass the verifier.
"""
from __future__ import annotations

import importlib.util
import pathlib
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

import luabpf
from luabpf.compiler import ir
from luabpf.compiler.bpf.uapi import XDP_PASS, ProgType
from luabpf.compiler.hooks.base import Hook
from luabpf.compiler.hooks.packet import XdpHook
from luabpf.compiler.lower.lowerer import Options
from luabpf.compiler.lib.patterns import PatternError, parse_pattern, reference_find
from luabpf.compiler.lib.patterns_codegen import emit_lua_init, emit_match
from luabpf.compiler.program import compile_program
from luabpf.runtime import kernel
from luabpf.runtime.load import LoadedProgram

pytestmark = pytest.mark.kernel

_spec = importlib.util.spec_from_file_location(
    "pattern_cases", pathlib.Path(__file__).parent.parent / "unit" / "test_patterns.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

SSH = b"SSH%-[^ -%G]+%-([^ -%G]+)"
# the frame: zero, init, length, status, ok, start, end, 2 words per capture, the subject
ZERO, INIT, LENGTH, STATUS, OK, START, END, CAPS = 0, 8, 16, 24, 32, 40, 48, 56
SUBJECT = CAPS + 16 * 32
TALLY = {"kernel cases": 0, "refused as too complex": 0}


class PacketSubject:
    """The subject in packet memory from `base` on; every access is checked against
    the frame's end, and a failed check is a runtime error (a matcher bug)."""

    def __init__(self, hook, base: ir.VReg, length: ir.VReg, windows: bool):
        self.hook, self.base, self.length = hook, base, length
        if windows:
            self.window = self._window

    def checked(self, lw, index, stop: int) -> ir.VReg:
        b = lw.b
        idx = index & 0x7FFF if isinstance(index, int) else b.bin("and", index, 0x7FFF)
        ptr = b.bin("add", self.base, idx, "at")
        end = b.bin("add", ptr, stop)
        bad, ok = b.block("outside"), b.block("inside")
        b.branch("gt", end, self.hook.data_end, bad, ok)
        b.start(bad)
        lw.runtime_error(None, "the matcher read outside its subject")
        b.start(ok)
        return ptr

    def load_byte(self, lw, index) -> ir.VReg:
        d = lw.b.vreg("byte")
        lw.b.emit(ir.Load(1, d, self.checked(lw, index, 1), 0))
        return d

    def _window(self, lw, base, stop: int):
        return PacketWindow(self.checked(lw, base, stop))


class PacketWindow:
    wide = True

    def __init__(self, address: ir.VReg):
        self.address = address

    def load(self, lw, offset: int, size: int) -> ir.VReg:
        d = lw.b.vreg("bytes")
        lw.b.emit(ir.Load(size, d, self.address, offset))
        return d


@dataclass
class MatchHook(Hook):
    """Runs one compiled pattern over the subject in the frame (see the module doc)."""
    pattern: object
    windows: bool = True
    entry: str = "f"
    name: str = "pattern"
    prog_type: int = ProgType.XDP
    prog_flags: int = 0
    default_return: int = XDP_PASS
    count_errors: bool = False
    data: ir.VReg | None = field(default=None, repr=False)
    data_end: ir.VReg | None = field(default=None, repr=False)

    def prologue(self, lw):
        b = lw.b
        ctx = b.copy(ir.Phys(1), "ctx")
        self.data, self.data_end = b.vreg("data"), b.vreg("data_end")
        b.emit(ir.Load(4, self.data, ctx, 0))
        b.emit(ir.Load(4, self.data_end, ctx, 4))
        return []

    def epilogue(self, lw, results, nret) -> None:
        b = lw.b
        need = b.bin("add", self.data, SUBJECT)
        short, ok = b.block("short"), b.block("header_ok")
        b.branch("gt", need, self.data_end, short, ok)
        b.start(short)
        b.terminate(ir.Exit(1))
        b.start(ok)
        length, init = b.vreg("len"), b.vreg("lua_init")
        b.emit(ir.Load(8, length, self.data, LENGTH))
        b.emit(ir.Load(8, init, self.data, INIT))
        base = b.bin("add", self.data, SUBJECT, "subject")
        start = emit_lua_init(lw, init, length)
        res = emit_match(lw, self.pattern, PacketSubject(self, base, length, self.windows), start)
        b.emit(ir.Store(8, self.data, OK, res.ok))
        b.emit(ir.Store(8, self.data, START, res.start))
        b.emit(ir.Store(8, self.data, END, res.end))
        for i, c in enumerate(res.captures):
            if c.kind == "position":
                b.emit(ir.Store(8, self.data, CAPS + 16 * i, c.position))
            else:
                b.emit(ir.Store(8, self.data, CAPS + 16 * i, c.start))
                b.emit(ir.Store(8, self.data, CAPS + 16 * i + 8, c.end))
        b.emit(ir.Store(8, self.data, STATUS, 0))
        b.terminate(ir.Exit(XDP_PASS))

    def opaque_zero(self, lw) -> ir.VReg:
        z = lw.b.vreg("zero")
        lw.b.emit(ir.Load(8, z, self.data, ZERO))
        return z

    def on_error(self, lw, site) -> None:
        lw.b.emit(ir.Store(8, self.data, STATUS, lw.b.bin("add", site, 1)))


def compile_matcher(pat: bytes, plain: bool = False, windows: bool = True):
    pattern = parse_pattern(pat, plain)
    return pattern, compile_program("function f() end", "match.lua", MatchHook(pattern, windows),
                                    Options(loops="may_goto"))


class Matcher:
    """A loaded matcher: `find(subject, init)` gives string.find's values (or None)."""

    def __init__(self, pat: bytes, plain: bool = False, windows: bool = True):
        self.pattern, self.compiled = compile_matcher(pat, plain, windows)
        self.loaded = LoadedProgram(self.compiled)

    def close(self) -> None:
        self.loaded.close()

    def find(self, s: bytes, init: int = 1):
        frame = bytearray(SUBJECT) + s
        struct.pack_into("<qqqq", frame, 0, 0, init, len(s), -1)
        res = kernel.prog_test_run(self.loaded.fd, data_in=bytes(frame))
        out = res.data_out
        status, ok, start, end = struct.unpack_from("<4q", out, STATUS)
        if status != 0:
            where = self.compiled.sites[status - 1].message if status > 0 else "no status written"
            raise RuntimeError(f"the matcher stopped: {where}")
        TALLY["kernel cases"] += 1
        if not ok:
            return None
        caps = []
        for i, kind in enumerate(self.pattern.captures):
            a, e = struct.unpack_from("<qq", out, CAPS + 16 * i)
            caps.append(a if kind == "position" else s[a:e])
        return (start + 1, end) + tuple(caps)


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    yield
    print(f"\npattern kernel cases run: {TALLY['kernel cases']}; patterns refused as too complex "
          f"for the verifier: {TALLY['refused as too complex']}")


# ---- the verifier accepts every matcher --------------------------------------------

VERIFIER_CASES = [SSH, b"^SSH%-[^ -%G]+%-([^ -%G]+)", b"", b"^", b"$", b"a", b"^abc$", b"a*", b"a+b",
                  b"a-b", b"a?b", b".-b", b"(%d+)%.(%d+)", b"()a()", b"%bxy", b"%b()", b"%f[%w]%w+",
                  b"(a+)%1", b"[%a_][%w_]*", b"^%s*(.-)%s*$", b"[^%c]+", b"x*y*z*w*$",
                  b"(h)(e)(l)(l)(o)", b"[]%]-]+", b"%f[%z]", b"%f[%Z]", b"S[z-a]", b"ab[z-a]c"]


@pytest.mark.parametrize("windows", [True, False], ids=["windows", "bytes"])
@pytest.mark.parametrize("pat", VERIFIER_CASES, ids=repr)
def test_every_matcher_passes_the_verifier(pat, windows):
    m = Matcher(pat, windows=windows)
    try:
        s = (b"SSH-2.0-" + b"x" * 300)[:255]
        assert m.find(s) == reference_find(m.pattern, s)
    finally:
        m.close()


def test_ssh_pattern_on_banners():
    m = Matcher(SSH)
    try:
        for s in [b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3", b"SSH-2.0-Open-SSH", b"SSH-1.99-x", b"SSH-2.0-",
                  b"xxSSH-SSH-2.0-dropbear", b"SSH-2.0-A-B-C-D", b"SSH-G-x", b"S" * 255,
                  (b"SSH-" + b"-" * 251), b"SSH-2.0-" + b"a" * 247]:
            assert m.find(s) == reference_find(m.pattern, s) == cases.lua_find(s, SSH), s
    finally:
        m.close()


def test_ssh_matcher_size():
    """The matcher's own instructions: the program minus the same harness with an empty pattern."""
    _, full = compile_matcher(SSH)
    _, empty = compile_matcher(b"")
    size = full.insn_count - empty.insn_count
    print(f"\nSSH matcher: {size} instructions (harness program {full.insn_count})")
    assert size < 120


@settings(max_examples=max(400, settings().max_examples))
@given(st.data())
def test_kernel_matches_reference_and_lua(data):
    pat = data.draw(cases.patterns())
    subjects = data.draw(st.lists(cases.subjects(pat), min_size=4, max_size=12))
    try:
        m = Matcher(pat, windows=data.draw(st.booleans()))
    except PatternError as e:             # refused at compile time, never by the verifier
        assert e.message.startswith("pattern too complex for the kernel verifier"), e.message
        TALLY["refused as too complex"] += 1
        return
    try:
        for s in subjects:
            init = data.draw(cases.inits(len(s)))
            got = m.find(s, init)
            want = reference_find(m.pattern, s, init)
            assert got == want, (pat, s, init)
            assert want == cases.lua_find(s, pat, init), (pat, s, init)
    finally:
        m.close()


def test_plain_find():
    m = Matcher(b"a.(", plain=True)
    try:
        for s, init in [(b"xa.(y", 1), (b"a.a.(", 2), (b"a.", 1), (b"a.(", 4), (b"", 1)]:
            assert m.find(s, init) == cases.lua_find(s, b"a.(", init, True)
    finally:
        m.close()


# ---- through the language: pld:match / pld:find on the filter hook's payload view -------

def _lua_string(pat: bytes) -> str:
    return "'" + "".join(f"\\{c}" for c in pat) + "'"


@pytest.mark.parametrize("pat", VERIFIER_CASES, ids=repr)
def test_matchers_on_packet_views_pass_the_verifier(pat):
    src = (f"function filter(hdr, pld)\n"
           f"  local a = pld:match({_lua_string(pat)})\n"
           f"  local b = pld:find({_lua_string(pat)}, 3)\n"
           f"  return a == nil and b == nil\n"
           f"end\n")
    with luabpf.compile(src, "match.lua", hook="xdp").load():
        pass


# ---- the step cap: a match past it is a runtime error, below it Lua's result --------------

def _frame(payload: bytes) -> bytes:
    from scapy.all import IP, TCP, Ether, Raw   # scapy: heavy to import; only these frames need it
    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=22, dport=40000)
                 / Raw(payload))


def _capped(pattern: str, bound: int | None) -> str:
    annotation = f"  --@bound {bound}\n" if bound is not None else ""
    return ("out = map.array(2)\n"
            "function filter(hdr, pld)\n"
            "  local s = tostring(pld)\n"
            f"{annotation}"
            f"  local a, b = s:find({_lua_string(pattern.encode())})\n"
            "  out[0] = a or -1\n"
            "  out[1] = b or -1\n"
            "  if a then return true end\n"
            "  return false\n"
            "end\n")


def test_a_hostile_payload_stops_at_the_step_cap_with_a_counted_error():
    """("a*b") over 1,000 bytes of 'a' backtracks quadratically (about 500,000 steps in
    Lua's matcher): it stops at the hook's cap, with the runtime error at the match's
    line and the hook's default verdict, never a result of its own."""
    prog = luabpf.compile(_capped("a*b", None), "m.lua", hook="xdp")
    steps = XdpHook.pattern_steps
    with prog.load() as p:
        out = p.maps["out"]
        out[0] = 7
        assert p.run(_frame(b"a" * 1000)) == 2           # XDP_PASS: the default verdict
        assert out[0] == 7                                # the script stopped at the match
        p.run(_frame(b"a" * 1000))
        assert p.describe_errors() == [
            f"m.lua:4: pattern too complex: more than {steps} steps (raise the cap with "
            f"--@bound N on the line before the match) (2 times)"]
        assert p.run(_frame(b"a" * 60 + b"b")) == 2       # short enough: Lua's result
        assert (out[0], out[1]) == (1, 61)
        assert p.run(_frame(b"x" * 80)) == 1              # no match: the script's drop
        assert len(p.describe_errors()) == 1 and "(2 times)" in p.describe_errors()[0]


@pytest.mark.parametrize("pattern", ["a*b", "SSH%-[^-%G]+%-([^-%G]+)", "^(a-)%1b", "x*y*z*w$"])
def test_below_the_cap_the_result_is_luas_and_at_it_a_refusal(pattern):
    """Whatever the cap, a run gives Lua's own result or the runtime error: never another
    result. Large enough caps give Lua's result on every payload."""
    payloads = [b"", b"b", b"aaab", b"a" * 40, b"aaaa" + b"b" * 3, b"SSH-2.0-x", b"SSH-" + b"q" * 50,
                b"xxyyzzw", b"xyzq" * 10, b"aaaaab", b"aab"]
    for bound in [1, 2, 3, 7, 30, 200, 3000]:
        with luabpf.compile(_capped(pattern, bound), "m.lua", hook="xdp").load() as p:
            out = p.maps["out"]
            failures = 0
            for payload in payloads:
                out[0], out[1] = 7, 7
                p.run(_frame(payload))
                stopped = (out[0], out[1]) == (7, 7)
                want = cases.lua_find(payload, pattern.encode())
                if stopped:
                    failures += 1
                    assert bound < 3000, (pattern, payload)
                else:
                    got = None if out[0] == -1 else (out[0], out[1])
                    assert got == (want[:2] if want else None), (pattern, bound, payload)
            described = p.describe_errors()
            if failures:
                assert described == [f"m.lua:5: pattern too complex: more than {bound} steps "
                                     f"(raise the cap with --@bound N on the line before the "
                                     f"match) ({failures} time{'s' if failures > 1 else ''})"]
            else:
                assert described == []


LITERAL_RUNS = ["abcdefghij", "^abcdefghij", "SSH%-2%.0%-", "xy%d%dzw", "(abcd)(efgh)ijk$", "a.cdefgh."]


@pytest.mark.parametrize("pattern", LITERAL_RUNS + [p.decode() for p in VERIFIER_CASES[:8]])
def test_literal_runs_on_packet_views_compare_as_lua(pattern):
    """A view gives the matcher windows (one bounds check, literals compared 8, 4, 2 bytes
    at a time): matches at every offset, cut short at the payload's end, agree with Lua."""
    with luabpf.compile(_capped(pattern, None), "m.lua", hook="xdp").load() as p:
        out = p.maps["out"]
        text = b"--abcdefghijk SSH-2.0-x xy12zw a.cdefgh.abcdefgh"
        for cut in range(0, len(text) + 1, 3):
            for payload in (text[:cut], text[cut:]):
                p.run(_frame(payload))
                want = cases.lua_find(payload, pattern.encode())
                got = None if out[0] == -1 else (out[0], out[1])
                assert got == (want[:2] if want else None), (pattern, payload)
        assert p.describe_errors() == []
