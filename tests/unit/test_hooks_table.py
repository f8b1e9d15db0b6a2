"""Issue 10: one record per hook, one table of hooks by name, `luabpf.compile` for every
hook, one parse per compile, and compiling never asks the kernel anything.

No kernel: tracepoint fields are handed in (api.trace_fields patched), and every way
into the kernel (the bpf(2) syscall, the feature probes) is patched to fail."""
from __future__ import annotations

import os

import pytest

import luabpf
from luabpf import api
from luabpf.compiler.front import check, parser
from luabpf.compiler.hooks import table
from luabpf.compiler.hooks.base import Hook
from luabpf.compiler.hooks.function import FunctionHook
from luabpf.compiler.hooks.tracepoint import TraceField
from luabpf.runtime import features, kernel
from luabpf.runtime.hooks import RUNTIME_HOOKS

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
SCHED_SWITCH = {n: TraceField(n, off, 4, True, "pid_t")
                for n, off in (("prev_pid", 24), ("next_pid", 56))}

SCRIPTS = {
    "xdp": ("function filter(hdr, pld)\n  return hdr.ip ~= nil\nend\n", ["xdp/filter"]),
    "tc": ("function filter(hdr, pld)\n  if hdr.tcp then return tc.SHOT end\nend\n",
           ["tc/filter"]),
    "cpufreq": ("function throttle(cpu, cur, max, min)\n"
                "  if cpufreq.load(cpu) > 80 then cpufreq.target(cpu, max, '<=') end\nend\n",
                ["cpufreq/throttle", "tracepoint/sched/sched_switch"]),
    "tracepoint": ("n = 0\nfunction tracepoint.sched.sched_switch(args)\n"
                   "  n = n + args.next_pid\nend\n", ["tracepoint/sched/sched_switch"]),
    "function": ("function gcd(a, b)\n  while b ~= 0 do a, b = b, a % b end\n  return a\nend\n"
                 "local function sq(x) return x * x end\n", ["function/gcd", "function/sq"]),
}


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch):
    """Every way into the kernel fails the test; tracepoint fields come from here."""
    def refuse(*args, **kwargs):
        raise AssertionError("compiling asked the kernel")
    monkeypatch.setattr(kernel, "_bpf", refuse)
    monkeypatch.setattr(features, "has_may_goto", refuse)
    monkeypatch.setattr(api, "trace_fields", lambda category, event: dict(SCHED_SWITCH))


def test_the_tables_name_the_same_hooks():
    assert set(table.HOOKS) == set(RUNTIME_HOOKS) == {"xdp", "tc", "cpufreq", "tracepoint",
                                                       "function"}
    assert api.HOOK_NAMES == table.HOOK_NAMES


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_hook_compiles_by_name(name):
    source, programs = SCRIPTS[name]
    prog = luabpf.compile(source, "s.lua", hook=name)
    assert prog.hook == name
    assert [label for label, _ in prog.programs] == programs
    assert prog.insn_count == sum(p.insn_count for _, p in prog.programs) > 0
    assert prog.worst_case > 0 and "exit" in prog.asm()
    for compiled in prog.compiled_programs:
        assert isinstance(compiled.hook, Hook) and compiled.hook.prog_type > 0


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_compile_file_gives_what_compile_gives(name):
    source, programs = SCRIPTS[name]
    found = api.compile_file(source, "s.lua")
    assert [label for label, _ in found] == programs
    named = api.compile_file(source, "s.lua", hook=name)
    assert [p.asm() for _, p in named] == [p.asm() for _, p in found]


def test_an_unknown_hook_is_a_value_error_naming_the_choices():
    for call in (lambda: luabpf.compile(SCRIPTS["xdp"][0], hook="kprobe"),
                 lambda: api.compile_file(SCRIPTS["xdp"][0], "s.lua", hook="kprobe")):
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == ("unknown hook 'kprobe': choose one of xdp, tc, cpufreq, "
                                "tracepoint, function")


def test_a_hook_the_script_has_no_entry_for_is_a_compile_error():
    with pytest.raises(luabpf.CompileError) as e:
        luabpf.compile(SCRIPTS["function"][0], "s.lua", hook="cpufreq")
    assert e.value.diagnostics[0].message == ("a cpufreq program needs a function "
                                              "throttle(cpu, cur, max, min)")
    for hook, article in (("xdp", "an"), ("tc", "a")):
        with pytest.raises(luabpf.CompileError) as e:
            luabpf.compile(SCRIPTS["function"][0], "s.lua", hook=hook)
        assert e.value.diagnostics[0].message == (f"{article} {hook} program needs a function "
                                                  "filter(hdr, pld)")


def test_compile_finds_the_hook_by_the_entry_functions():
    for name in ("xdp", "tc", "cpufreq", "tracepoint"):
        assert luabpf.compile(SCRIPTS[name][0], "s.lua").hook == name


def test_a_function_script_is_separate_programs(monkeypatch):
    prog = luabpf.compile(SCRIPTS["function"][0], "s.lua", hook="function")
    with pytest.raises(ValueError, match="load each of .programs"):
        prog.load()


def test_the_result_count_is_the_compiled_programs_not_the_hooks():
    hook = FunctionHook("two", ("int",))
    prog = luabpf.compile("function two(x)\n  return x, x + 1\nend\n", "s.lua", hook)
    assert prog.compiled.nresults == 2
    assert not hasattr(hook, "nresults")


@pytest.fixture
def counted(monkeypatch):
    counts = {"parse": 0, "check": 0}

    def counting(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counting(parser, "parse")
    counting(check, "check")
    return counts


@pytest.mark.parametrize("example", ["intmath.lua", "ssh_filter.lua", "ondemand.lua",
                                     "idle_count.lua"])
def test_a_script_is_parsed_and_checked_once(counted, example):
    with open(os.path.join(EXAMPLES, example), encoding="utf-8") as f:
        source = f.read()
    api.compile_file(source, example)
    assert counted == {"parse": 1, "check": 1}


def test_compile_parses_once(counted):
    luabpf.compile(SCRIPTS["tc"][0], "s.lua")
    assert counted == {"parse": 1, "check": 1}


def test_loops_default_to_may_goto_without_asking_the_kernel():
    prog = luabpf.compile(SCRIPTS["function"][0], "s.lua", hook="function")
    assert all(c.options.loops == "may_goto" and not c.options.loops_asked
               for c in prog.compiled_programs)
    bounded = luabpf.compile(SCRIPTS["function"][0].replace("  while", "  --@bound 100\n  while"),
                             "s.lua", hook="function", loops="bounded")
    assert bounded.compiled.options.loops == "bounded" and bounded.compiled.options.loops_asked


def test_loops_kernel_is_the_one_question_compiling_asks():
    with pytest.raises(AssertionError, match="compiling asked the kernel"):
        luabpf.compile(SCRIPTS["function"][0], "s.lua", hook="function", loops="kernel")
    with pytest.raises(ValueError, match="choose may_goto, bounded or kernel"):
        luabpf.compile(SCRIPTS["function"][0], "s.lua", hook="function", loops="fast")


def test_hook_records_answer_the_pipeline_without_probes():
    """Every record the table makes has each field and method the pipeline reads."""
    for name, (source, _) in SCRIPTS.items():
        for compiled in luabpf.compile(source, "s.lua", hook=name).compiled_programs:
            hook = compiled.hook
            assert hook.name == name or (name == "cpufreq" and hook.name == "tracepoint")
            assert hook.entry and hook.section and hook.label
            assert isinstance(hook.count_errors, bool) and isinstance(hook.count_verdicts, bool)
            assert isinstance(hook.returns, str) and isinstance(hook.default_return, int)
            assert isinstance(hook.prog_flags, int) and isinstance(hook.expected_attach_type, int)


def test_xdp_and_tc_are_two_records():
    xdp = luabpf.compile(SCRIPTS["xdp"][0], "s.lua", hook="xdp", count_verdicts=True).compiled.hook
    tc = luabpf.compile(SCRIPTS["xdp"][0], "s.lua", hook="tc", count_verdicts=True).compiled.hook
    assert type(xdp) is not type(tc)
    assert xdp.verdict_names[:3] == ("XDP_ABORTED", "XDP_DROP", "XDP_PASS")
    assert tc.verdict_names[:3] == ("TC_ACT_OK", "TC_ACT_RECLASSIFY", "TC_ACT_SHOT")
    assert (xdp.prog_type, tc.prog_type) == (6, 3)


class SocketHook(Hook):
    """A hook the table does not have: `sock()` as a socket filter, to show that a new
    hook is one class and one entry in the table."""
    name = "socket"
    missing = "a socket program needs a function sock()"
    prog_type = 1                         # BPF_PROG_TYPE_SOCKET_FILTER
    section = "socket"
    entry = "sock"

    @classmethod
    def entries(cls, chunk):
        return [st for st in chunk.body.stmts if getattr(st, "path", None) == ["sock"]]

    @classmethod
    def plan(cls, chunk, source, env):
        return chunk, [cls()]


def test_a_new_hook_is_one_class_in_the_table(monkeypatch):
    monkeypatch.setitem(table.HOOKS, "socket", SocketHook)
    prog = luabpf.compile("n = 0\nfunction sock()\n  n = n + 1\n  return 0\nend\n", "s.lua",
                          hook="socket")
    assert [label for label, _ in prog.programs] == ["socket/sock"]
    assert prog.compiled.hook.prog_type == 1 and prog.insn_count > 0
    with pytest.raises(luabpf.CompileError, match="a socket program needs a function sock"):
        luabpf.compile("function f() end\n", "s.lua", hook="socket")
