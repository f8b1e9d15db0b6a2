"""The library table (compiler/lib/table.py) is the one list of built-ins: the checker's
known globals are its names, every entry compiles on a hook it allows, a name on a hook
it does not allow is the located error it has always been, and docs/builtins.md is the
table's own text. No kernel: compiling only."""
from __future__ import annotations

import os

import pytest

from luabpf.cli.app import main
from luabpf.compiler.front.check import DEFAULT_GLOBALS
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.hooks.base import Environment
from luabpf.compiler.hooks.tracepoint import TraceField
from luabpf.compiler.lib import table
from luabpf.compiler.lower.bindings import Options
from luabpf.compiler.program import compile_source

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTIONS = Options(loops="bounded")
SCHED_SWITCH = {"prev_pid": TraceField("prev_pid", 24, 4, True, "pid_t"),
                "next_pid": TraceField("next_pid", 56, 4, True, "pid_t")}

# Per entry: (top-level definitions, a statement using it). The statements run where `s`
# is a string of the hook (the packet's payload on xdp and tc, a constant elsewhere)
# and `n` an integer.
USES = {
    "error": ("", "if n > 9999 then error('too big') end"),
    "assert": ("", "assert(n >= 0, 'negative')"),
    "print": ("", "print(n, 'n')"),
    "tostring": ("", "if tostring(s) == 'ab' then return end"),
    "a .. b": ("", "print('n=' .. n)"),
    "string.format": ("", "print(string.format('%5d|%-4x|%q', n, n, n))"),
    "math.abs": ("", "local x = math.abs(n - 5)"),
    "math.min": ("", "local x = math.min(n, 5)"),
    "math.max": ("", "local x = math.max(n, 5)"),
    "math.maxinteger": ("", "local x = math.maxinteger - n"),
    "math.mininteger": ("", "local x = math.mininteger + n"),
    "#s": ("", "local x = #s"),
    "s:len": ("", "local x = s:len()"),
    "s:byte": ("", "local x = s:byte(1)"),
    "s:sub": ("", "if s:sub(2, 3) == 'ab' then return end"),
    "s:segment": ("", "if s:segment(0, 2) == 'ab' then return end"),
    "s:layout": ("L = data.layout{ a = {0, 8} }", "local x = s:layout(L).a"),
    "s:match": ("", "if s:match('a(b)') then return end"),
    "s:find": ("", "local i = s:find('b', 1, true)"),
    "string.byte": ("", "local x = string.byte(s, 1)"),
    "string.sub": ("", "if string.sub(s, 1, 2) == 'ab' then return end"),
    "string.len": ("", "local x = string.len(s)"),
    "string.match": ("", "if string.match(s, 'a+') then return end"),
    "string.find": ("", "local i = string.find(s, 'a')"),
    "data.layout": ("L = data.layout{ a = {0, 4}, b = {4, 4} }", "local x = s:layout(L).b"),
    **{f"map.{kind}": (f"m = map.{kind}(4)", "m[1] = n") for kind in ("hash", "array",
                                                                   "percpu_hash",
                                                                   "percpu_array", "lru")},
    "m[k]": ("m = map.hash(4)", "local x = m[n]"),
    "m[k] = v": ("m = map.hash(4)", "m[n] = 1"),
    "map.add": ("m = map.hash(4)", "map.add(m, n, 1)"),
    "time.ns": ("", "local t = time.ns()"),
    "bpf.cpu": ("", "local c = bpf.cpu()"),
    **{f"{m}.{v}": ("", f"if n == 1 then return {m}.{v} end")
       for m, v in (b.path for b in table.BUILTINS if b.group == "Packet verdicts")},
    "cpufreq.target": ("", "cpufreq.target(n, 1000, '<=')"),
    "cpufreq.load": ("", "local x = cpufreq.load(n)"),
    "acpi.get_temp": ("", "local x = acpi.get_temp(n)"),
}


def compile_on(hook: str, top: str, body: str):
    """Compile `body` in the entry function of `hook` (s a string, n an integer there)."""
    env = Environment(trace_fields=lambda category, event: dict(SCHED_SWITCH))
    if hook in ("xdp", "tc"):
        text = f"{top}\nfunction filter(hdr, pld)\n  local s, n = pld, #pld\n  {body}\nend\n"
    elif hook == "cpufreq":
        text = f"{top}\nfunction throttle(cpu, cur, max, min)\n  local s, n = 'abc', cpu\n  {body}\nend\n"
    elif hook == "tracepoint":
        text = (f"{top}\nfunction tracepoint.sched.sched_switch(args)\n"
                f"  local s, n = 'abc', args.prev_pid\n  {body}\nend\n")
    else:
        text = f"{top}\nfunction f(n)\n  local s = 'abc'\n  {body}\nend\n"
    return compile_source(text, "t.lua", hook, OPTIONS, env)


def test_the_checkers_known_globals_are_the_tables_names():
    roots = {b.root for b in table.BUILTINS
             if b.public and b.kind in ("function", "constant", "definition")}
    assert DEFAULT_GLOBALS == table.global_names() == roots
    assert "luabpf" not in DEFAULT_GLOBALS             # luabpf's own stdlib only


def test_every_public_entry_has_a_use_here():
    assert set(USES) | {"tracepoint.CATEGORY.EVENT"} == {b.name for b in table.BUILTINS if b.public}


@pytest.mark.parametrize("entry", [b for b in table.BUILTINS if b.name in USES],
                         ids=lambda b: b.name)
def test_every_entry_compiles_on_a_hook_that_allows_it(entry):
    top, body = USES[entry.name]
    assert compile_on(entry.hooks[0], top, body)


def test_a_tracepoint_definition_and_the_policys_own_function_compile():
    assert compile_on("tracepoint", "", "local x = n + 1")
    programs = compile_on("cpufreq", "", "local x = n")        # luabpf.idle_switch: its stdlib
    assert [p.hook.name for p in programs] == ["cpufreq", "tracepoint"]


REFUSALS = [(b, hook) for b in table.BUILTINS if b.name in USES
            for hook in table.HOOKS if hook not in b.hooks]


def test_some_entries_are_refused_somewhere():
    assert {b.group for b, _ in REFUSALS} == {"Packet verdicts", "CPU-frequency policies"}


@pytest.mark.parametrize("entry, hook", REFUSALS, ids=lambda x: getattr(x, "name", x))
def test_a_name_on_a_hook_the_table_does_not_allow_is_a_located_error(entry, hook):
    top, body = USES[entry.name]
    with pytest.raises(CompileError) as info:
        compile_on(hook, top, body)
    [d] = info.value.diagnostics
    assert d.line == 4, info.value.render()        # the line of the use
    if entry.group == "Packet verdicts":
        module = entry.path[0]
        assert d.message.startswith(f"{entry.name} is {'an' if module == 'xdp' else 'a'} "
                                    f"{module} verdict; this program is compiled for {hook}: ")
    else:
        assert d.message == (f"{entry.name} is available to a CPU-frequency policy: a script "
                             "that defines throttle(cpu, cur, max, min), run with --cpufreq")


def test_methods_are_the_tables():
    with pytest.raises(CompileError) as info:
        compile_on("xdp", "", "local x = s:upper()")
    [d] = info.value.diagnostics
    assert d.message == ("method 'upper' is not available on a string value in kernel Lua "
                         "(strings have: byte, find, layout, len, match, segment, sub)")


def test_names_outside_the_table_are_unknown_to_the_checker():
    with pytest.raises(CompileError) as info:
        compile_on("xdp", "", "local x = type(n)")
    [d] = info.value.diagnostics
    assert (d.line, d.message) == (4, "unknown name 'type'")


def test_docs_builtins_md_is_the_tables_text():
    with open(os.path.join(ROOT, "docs", "builtins.md"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == table.as_markdown(), \
        "docs/builtins.md is stale: luabpf help builtins --markdown > docs/builtins.md"


def test_luabpf_help_builtins_prints_the_table(capsys):
    assert main(["help", "builtins"]) == 0
    out = capsys.readouterr().out
    assert out == table.as_text()
    assert "  math.max(x, ...) -> integer" in out and "[cpufreq]" in out
    assert main(["help", "builtins", "--markdown"]) == 0
    assert capsys.readouterr().out == table.as_markdown()
