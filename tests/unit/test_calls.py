"""Issue 9: calls and inlining (compiler/lower/calls.py) without the kernel.

Which functions become BPF functions, the kernel's limits as located errors with their
figures (a chain's stack, code that inlining would copy without bound), and an error in
an inlined function reported once with its calls listed.
"""
from __future__ import annotations

import os
import sys

import pytest

import luabpf
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.api import compile_function
from luabpf.compiler.hooks.packet import XdpHook
from luabpf.compiler.lower import calls

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from gen_calls import doubling_tree  # noqa: E402


def functions_of(prog) -> list[str]:
    return [name for name, _ in prog.compiled.funcs]


def test_a_doubling_tree_of_twenty_levels_compiles_within_the_kernels_call_depth():
    # a run makes 2^20 leaf calls: over the packet budget, which the next test checks
    prog = luabpf.compile(doubling_tree(20), filename="tree.lua", hook="xdp", budget=10**9)
    names = functions_of(prog)
    assert 1 < len(names) <= calls.MAX_FRAMES
    assert prog.insn_count < 5000          # proportional to the source, not to 2^20 calls


def test_a_run_that_makes_too_many_calls_is_over_budget_naming_the_calls():
    with pytest.raises(CompileError) as e:
        luabpf.compile(doubling_tree(20), filename="tree.lua", hook="xdp")
    (d,) = e.value.diagnostics
    assert f"over the budget of xdp programs ({XdpHook.budget:,}): most of it in calls, f" \
        in d.message
    first = d.message.split("most of it in calls, ")[1].split(" ")[0]      # the costliest
    assert f"{first} (up to " in d.message and "instructions a call)" in d.message
    assert d.line == doubling_tree(20).splitlines().index(f"local function {first}(x)") + 1


@pytest.mark.parametrize("example", ["port_blocklist.lua", "dns_blocklist.lua", "ssh_filter.lua",
                                     "icmp_guard.lua"])
def test_small_functions_of_the_examples_stay_inlined(example):
    with open(os.path.join(ROOT, "examples", example), encoding="utf-8") as f:
        prog = luabpf.compile(f.read(), filename=example, hook="xdp")
    assert functions_of(prog) == [""]


def test_functions_of_headers_views_or_prints_are_never_bpf_functions():
    body = "\n".join(f"  local v{i} = x + {i}" for i in range(60))
    src = (f"local function port(t, x)\n{body}\n  return t.dport + v59\nend\n"
           f"local function shout(x)\n{body}\n  print(x)\n  return v59\nend\n"
           f"local function pure(x)\n{body}\n  return v59\nend\n"
           "function filter(hdr, pld)\n"
           "  if hdr.tcp and port(hdr.tcp, 1) + port(hdr.tcp, 2) == 7 then return false end\n"
           "  return shout(1) + shout(2) + pure(3) + pure(4) > 0\nend\n")
    prog = luabpf.compile(src, filename="mixed.lua", hook="xdp")
    assert functions_of(prog) == ["", "pure"]


DUPLICATE = """\
local function bad(x)
  local n = #x
  return n
end
function filter(hdr, pld)
  if bad(1) then return false end
  if bad(2) then return false end
  return bad(3) == 1
end
"""


def test_an_error_in_an_inlined_function_is_reported_once_with_its_calls():
    with pytest.raises(luabpf.CompileError) as exc:
        luabpf.compile(DUPLICATE, filename="dup.lua", hook="xdp")
    diags = exc.value.diagnostics
    assert len(diags) == 1
    assert (diags[0].line, diags[0].col) == (2, 13)
    assert "'#' gives the length" in diags[0].message
    assert diags[0].hint == "in the copies of 'bad' inlined at lines 6, 7, 8"


def stack_chain(depth: int = 4, width: int = 30) -> str:
    """BPF functions s1..s(depth), each keeping `width` values alive across its calls."""
    out = ["local function leaf(x)\n  return x + 1\nend\n"]
    prev = "leaf"
    for d in range(1, depth + 1):
        lines = [f"local function s{d}(x)"]
        lines += [f"  local a{i} = x * {i + 2}" for i in range(width)]
        lines.append(f"  local r = {prev}(x) + {prev}(x + 1)")
        lines.append("  return r + " + " + ".join(f"a{i}" for i in range(width)))
        lines.append("end")
        out.append("\n".join(lines) + "\n")
        prev = f"s{d}"
    out.append(f"function f(x)\n  return {prev}(x) + {prev}(x + 2)\nend\n")
    return "".join(out)


def test_the_stack_of_a_chain_of_calls_is_a_located_error_with_its_figure():
    with pytest.raises(luabpf.CompileError) as exc:
        compile_function(stack_chain(), "f", ("int",), filename="deep.lua")
    (d,) = exc.value.diagnostics
    assert d.message.startswith("the call chain f → s4 → s3 → s2 → s1 needs ")
    assert "bytes of stack" in d.message and "the kernel allows 512" in d.message
    assert d.line == 4                                   # s1, the deepest function


def view_tree(levels: int) -> str:
    """A doubling tree whose functions take the payload: they cannot be BPF functions."""
    out = ["local function f0(s, x)\n  return #s + x\nend\n"]
    for k in range(1, levels + 1):
        out.append(f"local function f{k}(s, x)\n  return f{k - 1}(s, x) + f{k - 1}(s, x + {k})\nend\n")
    out.append(f"function filter(hdr, pld)\n  return f{levels}(pld, 1) > 0\nend\n")
    return "".join(out)


def test_code_inlining_would_copy_without_bound_is_a_located_error(monkeypatch):
    monkeypatch.setattr(calls, "MAX_COPIED", 2000)
    with pytest.raises(luabpf.CompileError) as exc:
        luabpf.compile(view_tree(12), filename="views.lua", hook="xdp")
    (d,) = exc.value.diagnostics
    assert "would be copied" in d.message and "times into the program by inlining" in d.message
    assert "a call passes it a string, view, header or library value" in d.message
    assert d.line > 1 and d.col == 1                     # at the function's definition


def chain(n: int, views: bool) -> str:
    """f(n) calls f(n-1) ... f0: with `views`, each takes the payload (always inlined)."""
    s = "s, " if views else ""
    out = [f"local function f0({s}x)\n  return {'#s + ' if views else ''}x\nend\n"]
    out += [f"local function f{k}({s}x)\n  return f{k - 1}({s}x) + 1\nend\n" for k in range(1, n + 1)]
    out.append(f"function filter(hdr, pld)\n  return f{n}({'pld, ' if views else ''}1) > 3\nend\n")
    return "".join(out)


def test_calls_nested_past_the_inlining_depth_are_a_located_error():
    with pytest.raises(luabpf.CompileError) as exc:
        luabpf.compile(chain(250, views=True), filename="deep.lua", hook="xdp")
    (d,) = exc.value.diagnostics
    assert d.message.startswith("calls nested more than 200 deep (filter → f250 → f249 → … →")


def test_a_long_chain_of_calls_compiles():
    luabpf.compile(chain(198, views=True), filename="deep.lua", hook="xdp")
    prog = luabpf.compile(chain(400, views=False), filename="deep.lua", hook="xdp")
    assert len(prog.compiled.funcs) > 1


COUNTING_HELPER = """\
function count(n, m)
  local i, acc = 0, 0
  while i < n do
    acc = acc + (i * m) % 7 + (acc // 3) - (i % 5) * 2 + (m - i) * (m + i)
    i = i + 1
  end
  local b = acc * 3 + n - m * 7 + (acc // 5) - (n % 9) * 13 + (m - n) * (acc + 1)
  return acc + b
end
"""


@pytest.mark.parametrize("calls_, bpf_function", [
    ("count(x, 3) + count(3, x) ~= 5", True), ("count(x, 3) ~= 5", False)])
def test_a_loop_has_its_programs_bound_whether_called_or_inlined(calls_, bpf_function):
    """A loop in a BPF function had the function hook's default bound (1,000,000) in a
    packet filter, so calling a helper twice instead of once changed when it stopped."""
    src = COUNTING_HELPER + f"function filter(hdr, pld)\n  local x = pld:byte(1) or 0\n  return {calls_}\nend\n"
    prog = luabpf.compile(src, filename="c.lua", hook="xdp")       # was over budget: 82 M
    assert ("count" in functions_of(prog)) == bpf_function
    trip = 50                                 # instructions one trip of the loop takes, at most
    calls_made = 2 if bpf_function else 1
    assert prog.compiled.worst_case < calls_made * (XdpHook.loop_bound + 1) * trip + 2000
