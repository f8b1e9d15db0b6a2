"""The Python interface: `compile`, `Program`, `run_function`, `open_running`.

Owns the glue between the pure compiler and the kernel runtime, and the
errors a caller catches: `CompileError` (with `.diagnostics`), `LoadError`
(the verifier's words at a Lua line) and `LuaRuntimeError` (a Lua error raised
while the program ran in the kernel, with `.line` and Lua's message).

Every hook compiles the same way (`compile`, `compile_file` and the CLI alike): the
script is parsed and checked once, the hook's records come from
compiler/hooks/table.py, and the result is one `Program`. Compiling never touches the
kernel; only a tracepoint's fields are read from tracefs. Loops compile in the `loops`
form asked for, `may_goto` (kernels 6.9 and later) by default; `loops='kernel'` asks the
running kernel what it verifies cheapest, for callers about to load what they compile
(`run_function`, `luabpf check`, `run` and `call`).
"""
from __future__ import annotations

from luabpf.compiler.back.cost import check_figure
from luabpf.compiler.front import parser
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.front.source import Source
from luabpf.compiler.hooks import table
from luabpf.compiler.hooks.base import Hook
from luabpf.compiler.hooks.cpufreq import policy_chunk, policy_hooks
from luabpf.compiler.hooks.function import FunctionHook
from luabpf.compiler.hooks.tracepoint import TraceField, TracepointHook
from luabpf.compiler.lower.lowerer import Options
from luabpf.compiler.program import (CompiledProgram, compile_script, compile_source,
                                     parse_and_check)
from luabpf.runtime import features
from luabpf.runtime.call import LuaRuntimeError, arg_kind
from luabpf.runtime.errors import PermissionProblem
from luabpf.runtime.load import LoadedProgram, LoadedScript, LoadError
from luabpf.runtime.pins import open_running as _open_running
from luabpf.runtime.tracefs import TracefsError, event_format

__all__ = ["CompileError", "LoadError", "LuaRuntimeError", "Program", "compile", "run_function",
           "open_running", "HOOK_NAMES"]

HOOK_NAMES = table.HOOK_NAMES
DEFAULT_LOOPS = "may_goto"     # what compiling writes when not told: kernels 6.9 and later verify it
FOUND_BY_ENTRY = ("xdp", "tc", "cpufreq", "tracepoint")   # the hooks `compile` finds by name


class Program:
    """A compiled kernel-Lua script for one hook, ready to load: one program (a filter, a
    function) or several (a policy's timer and sched_switch programs, a tracepoint
    script's one per event, a function script's one per function).

    `.programs` lists them as (name, Program of that one), named as `luabpf compile`
    prints them (`xdp/filter`, `cpufreq/throttle`, `tracepoint/sched/sched_switch`,
    `function/gcd`). `.compiled` is the first one's `CompiledProgram`; `asm()`,
    `insn_count` and `worst_case` are its own for one program, and cover them all for
    several. `load()` loads them all, sharing their maps: a `LoadedProgram` for one, a
    `LoadedScript` for several (a function script's functions are separate programs:
    load each of `.programs`)."""

    def __init__(self, compiled: CompiledProgram | list[CompiledProgram], shared: bool = True):
        self.compiled_programs = list(compiled) if isinstance(compiled, list) else [compiled]
        self.shared = shared

    @property
    def compiled(self) -> CompiledProgram:
        return self.compiled_programs[0]

    @property
    def hook(self) -> str:
        """The hook's name: 'xdp', 'tc', 'cpufreq', 'tracepoint' or 'function'."""
        return self.compiled.hook.name

    @property
    def programs(self) -> list[tuple[str, "Program"]]:
        return [(c.hook.label, Program(c)) for c in self.compiled_programs]

    def asm(self) -> str:
        if len(self.compiled_programs) == 1:
            return self.compiled.asm()
        return "\n".join(f"; program {c.hook.label}\n{c.asm()}" for c in self.compiled_programs)

    def load(self) -> LoadedProgram | LoadedScript:
        if len(self.compiled_programs) == 1:
            return LoadedProgram(self.compiled)
        if not self.shared:
            raise ValueError(f"{len(self.compiled_programs)} separate programs "
                             f"({', '.join(name for name, _ in self.programs)}): load each of "
                             ".programs")
        return LoadedScript(self.compiled_programs)

    @property
    def insn_count(self) -> int:
        return sum(c.insn_count for c in self.compiled_programs)

    @property
    def worst_case(self) -> int:
        """The most instructions one run can execute, loops at their bounds (docs/language.md,
        "Cost of a run"); of several programs, the most any one run can."""
        return max(c.worst_case for c in self.compiled_programs)


def _options(max_loop: int | None, loops: str | None, budget: int | None = None) -> Options:
    """Compile options; a bound or budget out of range is a ValueError (cost.check_figure).
    `loops`: None is DEFAULT_LOOPS (no question to the kernel); 'kernel' is `kernel_loops()`."""
    for name, value in (("max_loop", max_loop), ("budget", budget)):
        problem = check_figure(value)
        if problem:
            raise ValueError(f"{name} {problem}")
    if loops not in (None, "kernel", "may_goto", "bounded"):
        raise ValueError(f"loops {loops!r}: choose may_goto, bounded or kernel")
    asked = loops in ("may_goto", "bounded")
    form = kernel_loops() if loops == "kernel" else loops or DEFAULT_LOOPS
    return Options(max_loop=max_loop, budget=budget, loops=form, loops_asked=asked)


def kernel_loops() -> str:
    """The loop form the running kernel verifies cheapest: `may_goto` when it has it, else
    `bounded` (a question to the kernel: for callers about to load what they compile).
    Without the privileges to ask, `may_goto`."""
    try:
        return "may_goto" if features.has_may_goto() else "bounded"
    except PermissionProblem:
        return DEFAULT_LOOPS


def tracefs_environment(count_verdicts: bool = False) -> table.Environment:
    """The hooks' environment on this machine: tracepoint fields from tracefs."""
    return table.Environment(trace_fields=trace_fields, no_such_event=TracefsError,
                             count_verdicts=count_verdicts)


def trace_fields(category: str, event: str) -> dict[str, TraceField]:
    """The fields of tracepoint CATEGORY:EVENT, from tracefs (TracefsError when none)."""
    fmt = event_format(category, event)
    return {f.name: TraceField(f.name, f.offset, f.size, f.signed, f.decl or f.type,
                               scalar=not (f.is_array or f.dynamic))
            for f in fmt.fields}


def compile(source: str, filename: str = "<string>", hook: str | Hook | None = None, *,
            max_loop: int | None = None, loops: str | None = None, count_verdicts: bool = False,
            budget: int | None = None) -> Program:
    """Compile kernel Lua for a hook, by name — 'xdp' or 'tc' (`filter(hdr, pld)`), 'cpufreq'
    (`throttle(cpu, cur, max, min)` and its sched_switch companion), 'tracepoint'
    (`tracepoint.CATEGORY.EVENT(args)` functions), 'function' (each top-level function,
    called with integer arguments) — or a hook record. None: the hook the script's entry
    functions name (a filter: the packet hook whose verdict constants it uses, xdp when it
    uses none). Another name is a ValueError naming the choices.
    count_verdicts: a packet filter counts its verdicts (`Program.load().verdict_counts()`),
    at the cost of a map lookup per packet; `luabpf run` turns it on. max_loop: the bound
    of loops without `--@bound`; budget: the most instructions one run may take in the
    worst case (both default to the hook's, docs/language.md); loops: 'may_goto' (the
    default, what kernels since 6.9 verify), 'bounded' (plain back-edges), or 'kernel'
    (whichever the running kernel verifies cheapest: the one time compiling asks the
    kernel anything)."""
    if isinstance(hook, Hook) and count_verdicts and hook.verdict_names:
        hook.count_verdicts = True
    return _program(source, filename, hook, _options(max_loop, loops, budget), FOUND_BY_ENTRY,
                    count_verdicts)


def _program(source: str, filename: str, hook: str | Hook | None, options: Options,
             found_among: tuple[str, ...], count_verdicts: bool = False) -> Program:
    compiled = compile_source(source, filename, hook, options, tracefs_environment(count_verdicts),
                              found_among)
    shared = isinstance(hook, Hook) or table.kind_of(compiled[0].hook.name).shares_state
    return Program(compiled, shared)


def compile_function(source: str, name: str, arg_kinds: tuple[str, ...], filename: str = "<string>",
                     **kw) -> Program:
    return compile(source, filename, FunctionHook(name, arg_kinds), **kw)


def run_function(source: str, name: str, *args, filename: str = "<string>",
                 max_loop: int | None = None, loops: str | None = None,
                 budget: int | None = None):
    """Call Lua function `name` with `args` in the kernel; return what Lua 5.4 would.
    Loops: `loops`, else what this kernel verifies cheapest (it is about to load)."""
    prog = compile_function(source, name, tuple(arg_kind(a) for a in args), filename,
                            max_loop=max_loop, loops=loops or "kernel", budget=budget)
    with prog.load() as loaded:
        return loaded.call(*args)


def entry_points(source: str, filename: str = "<string>") -> list[tuple[str, int]]:
    """The script's programs: (function name, parameter count) of each top-level function
    (the script parsed, not checked)."""
    return table.entry_points(parser.parse(source, filename))


def compile_file(source: str, filename: str, hook: str | None = None,
                 max_loop: int | None = None, loops: str | None = None,
                 budget: int | None = None) -> list[tuple[str, Program]]:
    """Every program of a script file, as (name, Program of that one), for `hook` or, when
    None, for the hook its entry functions name: `filter` a packet filter (tc when it uses
    tc.* verdicts, else XDP); `throttle` a CPU-frequency policy (its timer program and its
    sched_switch companion); `tracepoint.C.E` functions tracepoint programs; with none of
    these, each top-level function is a program of the function hook, called with integer
    arguments (what `luabpf call` runs)."""
    return _program(source, filename, hook, _options(max_loop, loops, budget),
                    table.HOOK_NAMES).programs


def open_running(target: str):
    """A program `luabpf run` has running, by its NAME or pin directory: `.maps`,
    `.globals` (read and written live), `.describe_errors()`; close it (or use `with`)."""
    return _open_running(target)


def tracepoint_hook(category: str, event: str) -> TracepointHook:
    """The hook of `function tracepoint.CATEGORY.EVENT(args)`, its fields from tracefs
    (runtime.tracefs.TracefsError when there is no such event)."""
    return TracepointHook(category, event, trace_fields(category, event))


def compile_policy(source: str, filename: str = "<string>", *, max_loop: int | None = None,
                   loops: str | None = None, budget: int | None = None) -> list[CompiledProgram]:
    """A CPU-frequency policy (a script defining throttle(cpu, cur, max, min)): its two
    programs, [the timer's throttle, the sched_switch tracepoint], sharing maps
    (`compile(source, hook='cpufreq')` gives them as one Program)."""
    options = _options(max_loop, loops, budget)
    chunk = parse_and_check(source, filename)
    merged = policy_chunk(chunk, Source(source, filename))
    return compile_script(source, filename, policy_hooks(trace_fields("sched", "sched_switch")),
                          options, merged)
