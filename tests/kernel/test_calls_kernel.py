"""Issue 9: compile time stays proportional to the source; BPF-to-BPF calls.

A call tree that doubles at each level (2^20 leaf calls from a few dozen lines) and a
file of 1000 one-rule helpers compile, pass the verifier and give Lua 5.4's answers
(never timed here: bench/compile_rules.py measures); errors raised inside BPF functions
are counted at their Lua line; an object with BPF functions loads with bpftool.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import luabpf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench"))
from gen_calls import doubling_tree, rule_file  # noqa: E402

from cli_runner import run_luabpf  # noqa: E402
from tests.diff.oracle import run_lua  # noqa: E402

pytestmark = pytest.mark.kernel


def udp_frame(dport: int, payload: bytes = b"x" * 20) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=dport) / payload)


def tcp_frame(dport: int) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=dport))


@pytest.mark.parametrize("x", [0, 7, -3, 2**62])
def test_a_doubling_call_tree_of_twenty_levels_returns_luas_value(x):
    source = doubling_tree(20, entry="f")
    assert luabpf.run_function(source, "f", x) == run_lua(source, "f", x)


def test_a_doubling_call_tree_of_twenty_levels_filters_as_lua_says():
    source = doubling_tree(20)
    prog = luabpf.compile(source, filename="tree.lua", hook="xdp", budget=10**9)   # 2^20 calls a run
    assert 1 < len(prog.compiled.funcs) <= 8
    lua = source.replace("function filter(hdr, pld)\n  return f20(#pld)",
                         "function filter(n)\n  return f20(n)")
    with prog.load() as p:
        for n in (0, 1, 2, 3, 4, 5, 17, 100):
            frame = udp_frame(53, b"y" * n)
            want = run_lua(lua, "filter", n)
            assert p.run(frame).name == ("PASS" if want else "DROP"), n


def test_a_thousand_rules_compile_verify_and_judge():
    prog = luabpf.compile(rule_file(1000), filename="rules.lua", hook="xdp")
    with prog.load() as p:
        assert p.run(udp_frame(1000)).name == "DROP"        # rule 0: UDP port 1000
        assert p.run(tcp_frame(1000)).name == "PASS"
        assert p.run(tcp_frame(1999)).name == "DROP"        # rule 999: TCP port 1999
        assert p.run(udp_frame(1999)).name == "PASS"
        assert p.run(udp_frame(2000)).name == "PASS"


ERRORS_IN_CALLEES = """\
local function checked(x, y)
  local q = x // y
  if q > 1000 then error("too big") end
  return q, x % y
end
local function twice(x, y)
  local a, b = checked(x, y)
  local c, d = checked(y, x)
  return a + b + c + d
end
function filter(hdr, pld)
  local n = #pld
  return twice(n, n - 20) + twice(n + 1, 3) + twice(2, n) > 0
end
"""


def test_errors_raised_in_bpf_functions_are_counted_at_their_line():
    prog = luabpf.compile(ERRORS_IN_CALLEES, filename="calls.lua", hook="xdp")
    assert len(prog.compiled.funcs) > 1, "the test wants BPF functions"
    with prog.load() as p:
        assert p.run(udp_frame(53, b"z" * 20)).name == "PASS"    # n - 20 == 0
        assert p.run(udp_frame(53, b"z" * 21)).name == "PASS"    # x // 1 > 1000? no
        assert p.describe_errors() == ["calls.lua:2: attempt to divide by zero (1 time)"]


def test_an_object_with_bpf_functions_loads_with_bpftool(tmp_path, pin_dir):
    src = tmp_path / "tree.lua"
    src.write_text(doubling_tree(14))
    obj = str(tmp_path / "tree.o")
    made = run_luabpf("compile", str(src), "-o", obj, "--budget", "1000000")
    assert made.returncode == 0, made.stderr
    loaded = subprocess.run(["bpftool", "prog", "loadall", obj, pin_dir],
                            capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert os.listdir(pin_dir) == ["filter"]                  # functions are not programs
    dump = subprocess.run(["bpftool", "prog", "dump", "xlated", "pinned",
                           os.path.join(pin_dir, "filter")], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert "int filter_f" in dump.stdout and "call pc+" in dump.stdout
    assert "; return f12(x) + f12(x + 13)" in dump.stdout    # Lua lines in the functions too


def test_rules_far_enough_apart_for_long_jumps_verify():
    """3000 rules: the error path is more than 32767 instructions from the first rules,
    so their conditional jumps go through gotol (a traceback before)."""
    prog = luabpf.compile(rule_file(3000), filename="rules.lua", hook="xdp")
    with prog.load() as p:
        assert p.run(tcp_frame(3999)).name == "DROP"
        assert p.run(udp_frame(3999)).name == "PASS"


def test_a_chain_of_four_hundred_calls_returns_luas_value():
    source = "".join(f"function f{k}(x)\n  return f{k - 1}(x) * 3 + {k}\nend\n"
                     for k in range(1, 401))           # global: Lua allows 200 locals
    source = "function f0(x)\n  return x\nend\n" + source + \
        "function f(x)\n  return f400(x)\nend\n"
    for x in (0, 5, -7):
        assert luabpf.run_function(source, "f", x) == run_lua(source, "f", x)


MAPS_IN_CALLEES = """\
seen = map.hash(64)
total = 0
local function note(k, v)
  local old = seen[k] or 0
  seen[k] = old + v
  total = total + v
  if old > 1000 then error("noted too often") end
  return old, seen[k]
end
function f(x)
  local a, b = note(x % 5, x)
  local c, d = note(x % 3, 2)
  local e, g = note(x % 5, 1)
  return a + b + c + d + e + g + total
end
"""


def test_maps_and_globals_inside_bpf_functions_persist_between_calls():
    from luabpf.api import compile_function
    from tests.diff.test_differential import bpf_calls_everywhere
    with bpf_calls_everywhere():
        prog = compile_function(MAPS_IN_CALLEES, "f", ("int",))
    assert [n for n, _ in prog.compiled.funcs] == ["", "note"]
    lua = __import__("lupa").lua54.LuaRuntime()
    lua.execute(MAPS_IN_CALLEES.replace("map.hash(64)", "{}"))
    with prog.load() as p:
        for x in (7, 12, 7, 3, 400, 401, 402):
            assert p.call(x) == lua.globals().f(x), x
        assert p.globals["total"] == lua.globals().total


def far_jump_with_bpf_functions(rules: int) -> str:
    """A BPF function (called twice) after a conditional jump over more than 32,767
    instructions, which becomes a gotol and moves the functions that follow it."""
    body = "\n".join(f"    if z == {i} then return false end" for i in range(rules))
    return f"""function big(x, y)
  if x > 200 then error('too big') end
  local a = x * y - (x // 3) + (y % 7) * 11 + (x - y) * (x + y)
  return a * 3 + x - y * 7 + (a // 5) - (x % 9) * 13 + (y - x) * (a + 1)
end
function filter(hdr, pld)
  local x, y, z = pld:byte(1) or 0, pld:byte(2) or 0, pld:byte(3) or 0
  local acc = big(x, y)
  if x == 3 then
{body}
  end
  acc = acc + big(y, x)
  return acc ~= 12345
end
"""


def test_bpf_functions_after_a_relaxed_far_jump_load():
    """Their func_info named where the functions were before the far jump grew into a
    gotol: the kernel refused the program ("func_info BTF section doesn't match subprog
    layout")."""
    prog = luabpf.compile(far_jump_with_bpf_functions(13000), filename="far.lua", hook="xdp")
    assert [n for n, _ in prog.compiled.funcs] == ["", "big"]
    with prog.load() as p:
        assert p.run(udp_frame(53, bytes([3, 1, 77]))).name == "DROP"      # rule 77
        assert p.run(udp_frame(53, bytes([4, 1, 77]))).name == "PASS"
        assert p.run(udp_frame(53, bytes([201, 1, 0]))).name == "PASS"     # big's error
        assert p.describe_errors() == ["far.lua:2: too big (1 time)"]
