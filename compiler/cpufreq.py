"""The CPU-frequency hook: a policy `throttle(cpu, cur, max, min)` (DESIGN §3).

Owns `compile_policy` and the policy's library: `cpufreq.target(cpu, freq, rel)`,
`cpufreq.load(cpu)` and `acpi.get_temp(cpu)`. The kernel half is kernel Lua,
stdlib/cpufreq.lua, compiled with the user's script into two programs that share
its maps: `luabpf_throttle` (a perf-event program a per-CPU timer runs) and the
`sched:sched_switch` tracepoint that measures idle time. The compiler reads no
tracefs: the runtime hands the tracepoint's fields in.

Decisions (docs/language.md, "CPU-frequency policies"):
- `rel` is a constant, '<=' or '>=' (anything else is a compile error); the request
  lands in per-CPU maps and user space resolves it against the available
  frequencies. Only the latest request per CPU and interval counts.
- `cpufreq.load(cpu)` is the percent of the last interval that CPU ran a task
  (from the scheduler's switches to and from its idle task); 0 before the second
  interval. `acpi.get_temp(cpu)` is what user space last read from the CPU's
  thermal zone, in whole degrees Celsius (0 when there is none).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from luabpf.compiler import ast, intrinsics, maps
from luabpf.compiler.diagnostics import CompileError, Diagnostic
from luabpf.compiler.source import Source, Span
from luabpf.compiler.values import Val

PROG_TYPE_PERF_EVENT = 7
STDLIB_FILE = "<luabpf>/stdlib/cpufreq.lua"
RELATIONS = {"<=": 1, ">=": 2}
ENTRY = "luabpf_throttle"


@dataclass
class ThrottleHook:
    """The timer's program: `luabpf_throttle` of stdlib/cpufreq.lua, which calls `throttle`."""
    name: str = "cpufreq"
    entry: str = ENTRY
    prog_type: int = PROG_TYPE_PERF_EVENT
    default_return: int = 0
    count_errors: bool = True

    def prologue(self, lw) -> list[Val]:
        return []

    def epilogue(self, lw, results: list[Val], nret) -> None:
        lw.exit(0)

    def on_error(self, lw, site) -> None:
        pass


def stdlib_source() -> str:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stdlib",
                        "cpufreq.lua")
    with open(path, encoding="utf-8") as f:
        return f.read()


def compile_policy(text: str, filename: str, sched_switch_fields: dict, options=None) -> list:
    """The programs of a policy script: [luabpf_throttle, tracepoint.sched.sched_switch]."""
    from luabpf.compiler.parser import parse
    from luabpf.compiler.program import compile_script, parse_and_check
    from luabpf.compiler.tracepoint import TracepointHook
    chunk = parse_and_check(text, filename)
    entry = next((st for st in chunk.body.stmts if isinstance(st, ast.FunctionDecl)
                  and st.path == ["throttle"]), None)
    if entry is None or len(entry.func.params) > 4:
        raise CompileError([Diagnostic(
            "a CPU-frequency policy defines function throttle(cpu, cur, max, min)",
            entry.span if entry else Span(filename, 1, 1, 1, 2))], Source(text, filename))
    prelude = parse(stdlib_source(), STDLIB_FILE)
    merged = ast.Chunk(chunk.span, ast.Block(prelude.body.span, prelude.body.stmts + chunk.body.stmts),
                       filename)
    hooks = [ThrottleHook(), TracepointHook("sched", "sched_switch", dict(sched_switch_fields))]
    return compile_script(text, filename, hooks, options, chunk=merged)


def _policy_map(lw, name: str, node, what: str):
    decl = lw.maps.get(name)
    if decl is None:
        lw.error(node, f"{what} is available to a CPU-frequency policy: a script that defines "
                       "throttle(cpu, cur, max, min), run with --cpufreq")
    return decl


@intrinsics.register("cpufreq.target")
def _target(lw, args, node, scope):
    if len(args) != 3 or args[2].data is None or args[2].data.decode("latin-1") not in RELATIONS:
        lw.error(node, "cpufreq.target takes a CPU, a frequency in kHz and '<=' or '>=': "
                       "cpufreq.target(cpu, freq, '<=')")
        return []
    cpu, freq, rel = args
    target = _policy_map(lw, "luabpf_target", node, "cpufreq.target")
    if target is None:
        return []
    maps.write(lw, target, cpu, freq, node)
    maps.write(lw, lw.maps["luabpf_relation"], cpu, Val.int_(RELATIONS[rel.data.decode()]), node)
    maps.add(lw, lw.maps["luabpf_requests"], cpu, Val.int_(1), node)
    return []


def _per_cpu_reader(name: str, what: str):
    def lower(lw, args, node, scope):
        if len(args) != 1:
            lw.error(node, f"{what} takes a CPU number: {what}(cpu)")
            return [Val.int_(0)]
        decl = _policy_map(lw, name, node, what)
        if decl is None:
            return [Val.int_(0)]
        return [maps.read_or_zero(lw, decl, args[0], node)]
    return lower


intrinsics.register("cpufreq.load")(_per_cpu_reader("luabpf_load", "cpufreq.load"))
intrinsics.register("acpi.get_temp")(_per_cpu_reader("luabpf_temp", "acpi.get_temp"))
