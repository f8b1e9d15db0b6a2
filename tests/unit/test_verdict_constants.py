"""Verdict constants belong to their hook: `tc.SHOT` in a program compiled for XDP (where
its number, 2, is XDP_PASS) and every other constant of the other hook is a compile
error at its line and column, wherever the constant appears; a script with no --hook is
compiled for the hook whose constants it uses, and one that uses both is refused with
both lines named. No kernel: compiling only."""
from __future__ import annotations

import pytest

import luabpf
from luabpf.api import compile_file
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.hooks.packet import ACTIONS, COUNTERPART

OTHER = {"xdp": "tc", "tc": "xdp"}


def compile_for(src: str, hook):
    return luabpf.compile(src, "v.lua", hook=hook, loops="bounded")


def errors(src: str, hook) -> list:
    with pytest.raises(CompileError) as info:
        compile_for(src, hook)
    return info.value.diagnostics


@pytest.mark.parametrize("module, name", sorted(ACTIONS))
def test_every_constant_is_refused_under_the_other_hook(module, name):
    src = f"function filter(hdr, pld)\n  return {module}.{name}\nend\n"
    compile_for(src, module)                                   # its own hook takes it
    compiled_for = OTHER[module]
    [d] = errors(src, compiled_for)
    assert (d.line, d.col) == (2, 10)
    assert d.message.startswith(f"{module}.{name} is {'an' if module == 'xdp' else 'a'} "
                                f"{module} verdict; this program is compiled for {compiled_for}: ")
    if (module, name) in COUNTERPART:
        assert f"use {COUNTERPART[(module, name)]}" in d.message
        counterpart = COUNTERPART[(module, name)].split()[0]
        assert counterpart.startswith(compiled_for + ".") and \
            tuple(counterpart.split(".")) in ACTIONS
    else:
        assert f"{compiled_for} has no such verdict" in d.message
    assert "true" in d.hint and "false" in d.hint


def test_the_issue_examples_name_the_right_constant():
    [d] = errors("function filter(hdr, pld)\n  return tc.SHOT\nend", "xdp")
    assert d.message == ("tc.SHOT is a tc verdict; this program is compiled for xdp: "
                         "use xdp.DROP (or false)")
    [d] = errors("function filter(hdr, pld)\n  return tc.OK\nend", "xdp")
    assert "use xdp.PASS (or true)" in d.message
    [d] = errors("function filter(hdr, pld)\n  return xdp.PASS\nend", "tc")
    assert "use tc.OK (or true)" in d.message


@pytest.mark.parametrize("src, line, col", [
    # stored in a local, returned later
    ("function filter(hdr, pld)\n  local v = tc.SHOT\n  return v\nend", 2, 13),
    # passed through a function
    ("function verdict(x)\n  return x\nend\nfunction filter(hdr, pld)\n  return verdict(tc.OK)\nend",
     5, 18),
    # compared
    ("function filter(hdr, pld)\n  if #pld == tc.SHOT then return false end\nend", 2, 14),
    # a top-level constant
    ("local DROP = tc.SHOT\nfunction filter(hdr, pld)\n  return DROP\nend", 1, 14),
    # in an `and`/`or` expression, in a helper
    ("function pick(c)\n  return c and tc.SHOT or true\nend\nfunction filter(hdr, pld)\n"
     "  return pick(#pld > 3)\nend", 2, 16),
])
def test_a_foreign_constant_is_refused_wherever_it_stands(src, line, col):
    ds = errors(src, "xdp")
    assert [(d.line, d.col) for d in ds] == [(line, col)]
    assert "is a tc verdict; this program is compiled for xdp" in ds[0].message


def test_every_foreign_use_is_reported_at_once():
    src = "function filter(hdr, pld)\n  if #pld > 1 then return xdp.DROP end\n  return xdp.PASS\nend"
    ds = errors(src, "tc")
    assert [(d.line, d.col) for d in ds] == [(2, 27), (3, 10)]


def test_the_portable_verdicts_compile_for_both_hooks():
    src = "function filter(hdr, pld)\n  if #pld > 1 then return false end\n  return true\nend"
    for hook in ("xdp", "tc"):
        compile_for(src, hook)


def test_other_hooks_take_the_constants_as_integers():
    from luabpf.compiler.hooks.function import FunctionHook
    compile_for("function f()\n  return tc.SHOT + xdp.DROP\nend", FunctionHook("f", ()))


def test_without_a_hook_a_tc_script_is_compiled_for_tc():
    src = "function filter(hdr, pld)\n  if #pld > 1 then return tc.SHOT end\n  return tc.OK\nend"
    [(name, prog)] = compile_file(src, "v.lua", loops="bounded")
    assert name == "tc/filter" and prog.compiled.hook.name == "tc"
    assert compile_for(src, None).compiled.hook.name == "tc"
    src_xdp = src.replace("tc.SHOT", "xdp.DROP").replace("tc.OK", "xdp.PASS")
    [(name, _)] = compile_file(src_xdp, "v.lua", loops="bounded")
    assert name == "xdp/filter"
    [(name, _)] = compile_file(src.replace("tc.SHOT", "false").replace("tc.OK", "true"), "v.lua",
                               loops="bounded")
    assert name == "xdp/filter"


def test_without_a_hook_a_script_of_both_hooks_is_refused_naming_both_lines():
    src = ("function filter(hdr, pld)\n  if #pld > 1 then\n    return xdp.DROP\n  end\n"
           "  return tc.OK\nend")
    for compile_it in (lambda: compile_file(src, "v.lua", loops="bounded"),
                       lambda: compile_for(src, None)):
        with pytest.raises(CompileError) as info:
            compile_it()
        [d] = info.value.diagnostics
        assert (d.line, d.col) == (5, 10)
        assert "xdp.DROP (xdp) at line 3" in d.message and "tc.OK (tc) at line 5" in d.message
    # with a hook given, each foreign constant is its own error
    [d] = errors(src, "xdp")
    assert (d.line, d.col) == (5, 10)


def test_a_local_named_tc_is_not_the_library():
    src = ("function filter(hdr, pld)\n  local tc = 3\n  if #pld > tc then return xdp.DROP end\n"
           "end")
    assert compile_for(src, None).compiled.hook.name == "xdp"
