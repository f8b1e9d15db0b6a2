"""Issue 9: the errors of every entry function of one script are reported in one run,
in source order, each once (no kernel: tracepoint hooks are built by hand)."""
from __future__ import annotations

import pytest

from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.program import compile_script
from luabpf.compiler.hooks.tracepoint import TraceField, TracepointHook


def hook(category: str, event: str, *names: str) -> TracepointHook:
    fields = {n: TraceField(n, 8 + 4 * i, 4, True, "int") for i, n in enumerate(names)}
    return TracepointHook(category, event, fields)


HOOKS = [hook("sched", "sched_switch", "prev_pid"), hook("sched", "sched_wakeup", "pid"),
         hook("irq", "irq_handler_entry", "irq")]

THREE_BAD = """\
function tracepoint.sched.sched_switch(a)
  return a.nosuch
end

function tracepoint.sched.sched_wakeup(a)
  return a.pid
end

function tracepoint.irq.irq_handler_entry(a)
  return a.missing
end
"""


def test_errors_in_several_tracepoint_functions_are_all_reported():
    with pytest.raises(CompileError) as e:
        compile_script(THREE_BAD, "t.lua", HOOKS)
    where = [(d.line, d.col) for d in e.value.diagnostics]
    assert where == [(2, 10), (10, 10)]
    assert "sched:sched_switch has no field 'nosuch'" in e.value.diagnostics[0].message
    assert "irq:irq_handler_entry has no field 'missing'" in e.value.diagnostics[1].message
    rendered = e.value.render()
    assert rendered.index("t.lua:2:10") < rendered.index("t.lua:10:10")


def test_a_shared_helper_failing_in_two_entry_functions_is_reported_once():
    text = ("local function helper(x)\n  return x.field\nend\n\n"
            "function tracepoint.sched.sched_switch(a)\n  return helper(a.prev_pid)\nend\n\n"
            "function tracepoint.sched.sched_wakeup(a)\n  return helper(a.pid)\nend\n")
    with pytest.raises(CompileError) as e:
        compile_script(text, "t.lua", HOOKS[:2])
    (d,) = e.value.diagnostics
    assert d.line == 2, e.value.render()
    assert d.hint.endswith("in the copies of 'helper' inlined at lines 6, 10"), d.hint


def test_a_script_without_errors_still_compiles_every_program():
    good = THREE_BAD.replace("a.nosuch", "a.prev_pid").replace("a.missing", "a.irq")
    programs = compile_script(good, "t.lua", HOOKS)
    assert [p.hook.entry for p in programs] == [h.entry for h in HOOKS]
