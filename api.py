"""The Python interface of DESIGN §4: `compile`, `Program`, `run_function`.

Owns the glue between the pure compiler and the kernel runtime, and the
errors a caller catches: `CompileError` (with `.diagnostics`), `LoadError`
(the verifier's words at a Lua line) and `LuaRuntimeError` (a Lua error raised
while the program ran in the kernel, with `.line` and Lua's message).
"""
from __future__ import annotations

from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.hooks.function import FunctionHook
from luabpf.compiler.lower.lowerer import Options
from luabpf.compiler.hooks.packet import infer_packet_hook
from luabpf.compiler.program import CompiledProgram, compile_program
from luabpf.runtime.call import LuaRuntimeError, arg_kind
from luabpf.runtime.load import LoadedProgram, LoadError

__all__ = ["CompileError", "LoadError", "LuaRuntimeError", "Program", "compile", "run_function",
           "open_running"]


class Program:
    """A compiled kernel-Lua program, ready to load."""

    def __init__(self, compiled: CompiledProgram):
        self.compiled = compiled

    def asm(self) -> str:
        return self.compiled.asm()

    def load(self) -> LoadedProgram:
        return LoadedProgram(self.compiled)

    @property
    def insn_count(self) -> int:
        return self.compiled.insn_count

    @property
    def worst_case(self) -> int:
        """The most instructions one run can execute, loops at their bounds (docs/language.md,
        "Cost of a run")."""
        return self.compiled.worst_case


def _options(max_loop: int | None, loops: str | None, budget: int | None = None) -> Options:
    """Compile options; a bound or budget out of range is a ValueError (cost.check_figure)."""
    from luabpf.compiler.back.cost import check_figure
    opts = Options(loops_asked=loops is not None)
    for name, value in (("max_loop", max_loop), ("budget", budget)):
        problem = check_figure(value)
        if problem:
            raise ValueError(f"{name} {problem}")
    opts.max_loop, opts.budget = max_loop, budget
    if loops is None:                   # what the running kernel verifies cheapest
        from luabpf.runtime import features
        from luabpf.runtime.errors import PermissionProblem
        try:
            loops = "may_goto" if features.has_may_goto() else "bounded"
        except PermissionProblem:       # compiling without privileges: kernels since 6.9
            loops = "may_goto"
    opts.loops = loops
    return opts


HOOK_NAMES = ("xdp", "tc")


def make_hook(hook):
    """A hook record from a name ('xdp', 'tc') or the record itself."""
    if isinstance(hook, str):
        from luabpf.compiler.hooks.packet import filter_hook
        if hook not in HOOK_NAMES:
            raise ValueError(f"unknown hook {hook!r}: choose one of {', '.join(HOOK_NAMES)}")
        return filter_hook(hook)
    return hook


def compile(source: str, filename: str = "<string>", hook=None, *, max_loop: int | None = None,
            loops: str | None = None, count_verdicts: bool = False,
            budget: int | None = None) -> Program:
    """Compile kernel Lua for a hook: 'xdp' or 'tc' for `filter(hdr, pld)`, or a hook record;
    None: the packet hook whose verdict constants the script uses (xdp when it uses none).
    count_verdicts: a packet filter counts its verdicts (`Program.load().verdict_counts()`),
    at the cost of a map lookup per packet; `luabpf run` turns it on. max_loop: the bound
    of loops without `--@bound`; budget: the most instructions one run may take in the
    worst case (both default to the hook's, docs/language.md)."""
    if hook is None:
        hook = infer_packet_hook(source, filename)
    hook = make_hook(hook)
    if count_verdicts:
        hook.count_verdicts = True
    return Program(compile_program(source, filename, hook, _options(max_loop, loops, budget)))


def compile_function(source: str, name: str, arg_kinds: tuple[str, ...], filename: str = "<string>",
                     **kw) -> Program:
    hook = FunctionHook(entry=name, arg_kinds=arg_kinds)
    return compile(source, filename, hook, **kw)


def run_function(source: str, name: str, *args, filename: str = "<string>",
                 max_loop: int | None = None, loops: str | None = None,
                 budget: int | None = None):
    """Call Lua function `name` with `args` in the kernel; return what Lua 5.4 would."""
    prog = compile_function(source, name, tuple(arg_kind(a) for a in args), filename,
                            max_loop=max_loop, loops=loops, budget=budget)
    with prog.load() as loaded:
        return loaded.call(*args)


def entry_points(source: str, filename: str = "<string>") -> list[tuple[str, int]]:
    """The script's programs: (function name, parameter count) of each top-level function."""
    from luabpf.compiler.front import ast
    from luabpf.compiler.front.parser import parse
    chunk = parse(source, filename)
    found = []
    for st in chunk.body.stmts:
        if isinstance(st, ast.FunctionDecl) and len(st.path) == 1 and not st.method:
            found.append((st.path[0], len(st.func.params)))
        elif isinstance(st, ast.FunctionDecl) and len(st.path) == 3 and st.path[0] == "tracepoint":
            found.append((".".join(st.path), len(st.func.params)))
        elif isinstance(st, ast.LocalFunction):
            found.append((st.name, len(st.func.params)))
    return found


def compile_file(source: str, filename: str, hook: str | None = None,
                 max_loop: int | None = None, loops: str | None = None,
                 budget: int | None = None) -> list[tuple[str, Program]]:
    """Every program of a script file: `filter` makes a packet filter (for `hook`, or, when
    None, for the hook whose verdict constants it uses: tc for tc.*, else XDP); `throttle` a
    CPU-frequency policy (its timer program and its sched_switch
    companion); `tracepoint.C.E` functions tracepoint programs; with none of these, each
    top-level function is a program of the function hook, called with integer arguments
    (what `luabpf call` runs)."""
    from luabpf.compiler.program import compile_script, parse_and_check
    parse_and_check(source, filename)
    programs = []
    entries = dict(entry_points(source, filename))
    tracepoints = [n for n in entries if n.startswith("tracepoint.")]
    if "filter" in entries and hook in (None, "xdp", "tc"):
        kind = hook or infer_packet_hook(source, filename)
        return [(f"{kind}/filter", compile(source, filename, kind, max_loop=max_loop, loops=loops,
                                           budget=budget))]
    if "throttle" in entries and hook in (None, "cpufreq"):
        policy = compile_policy(source, filename, max_loop=max_loop, loops=loops, budget=budget)
        return [("cpufreq/throttle", Program(policy[0])),
                ("tracepoint/sched/sched_switch", Program(policy[1]))]
    if tracepoints and hook in (None, "tracepoint"):
        hooks = tracepoint_hooks(source, filename)
        compiled = compile_script(source, filename, hooks, _options(max_loop, loops, budget))
        return [(c.hook.entry.replace(".", "/"), Program(c)) for c in compiled]
    needs = {"xdp": "a function filter(hdr, pld)", "tc": "a function filter(hdr, pld)",
             "cpufreq": "a function throttle(cpu, cur, max, min)",
             "tracepoint": "a function tracepoint.CATEGORY.EVENT(args)"}
    if hook in needs:
        from luabpf.compiler.front.diagnostics import Diagnostic
        from luabpf.compiler.front.source import Source, Span
        raise CompileError([Diagnostic(f"a {hook} program needs {needs[hook]}",
                                       Span(filename, 1, 1, 1, 2))], Source(source, filename))
    errors = []
    for name, nparams in entry_points(source, filename):
        if name.startswith("tracepoint."):
            continue
        try:
            prog = compile_function(source, name, ("int",) * nparams, filename,
                                    max_loop=max_loop, loops=loops, budget=budget)
        except CompileError as e:         # every function's errors, in one report
            errors.append(e)
            continue
        programs.append((f"function/{name}", prog))
    if errors:
        from luabpf.compiler.program import merged_errors
        from luabpf.compiler.front.source import Source
        raise merged_errors(errors, Source(source, filename))
    if not programs:
        from luabpf.compiler.front.diagnostics import Diagnostic
        from luabpf.compiler.front.source import Span
        from luabpf.compiler.front.source import Source
        raise CompileError([Diagnostic("the script defines no function to compile",
                                       Span(filename, 1, 1, 1, 2))], Source(source, filename))
    return programs


def open_running(target: str):
    """A program `luabpf run` has running, by its NAME or pin directory: `.maps`,
    `.globals` (read and written live), `.describe_errors()`; close it (or use `with`)."""
    from luabpf.runtime.pins import open_running as _open
    return _open(target)


def tracepoint_hook(category: str, event: str):
    """The hook of `function tracepoint.CATEGORY.EVENT(args)`, its fields from tracefs
    (runtime.tracefs.TracefsError when there is no such event)."""
    from luabpf.compiler.hooks.tracepoint import TraceField, TracepointHook
    from luabpf.runtime.tracefs import event_format
    fmt = event_format(category, event)
    fields = {f.name: TraceField(f.name, f.offset, f.size, f.signed, f.decl or f.type,
                                 scalar=not (f.is_array or f.dynamic))
              for f in fmt.fields}
    return TracepointHook(category, event, fields)


def tracepoint_hooks(source: str, filename: str = "<string>") -> list:
    """The hooks of the script's `tracepoint.CATEGORY.EVENT` functions; an event tracefs
    does not have is a CompileError at the function's line."""
    from luabpf.compiler.front import ast
    from luabpf.compiler.front.diagnostics import Diagnostic
    from luabpf.compiler.front.parser import parse
    from luabpf.compiler.front.source import Source
    from luabpf.runtime.tracefs import TracefsError
    hooks, problems = [], []
    for st in parse(source, filename).body.stmts:
        if isinstance(st, ast.FunctionDecl) and len(st.path) == 3 and st.path[0] == "tracepoint":
            try:
                hooks.append(tracepoint_hook(st.path[1], st.path[2]))
            except TracefsError as e:
                problems.append(Diagnostic(str(e), st.span))
    if problems:
        raise CompileError(problems, Source(source, filename))
    return hooks


def compile_policy(source: str, filename: str = "<string>", *, max_loop: int | None = None,
                   loops: str | None = None, budget: int | None = None) -> list[CompiledProgram]:
    """A CPU-frequency policy (a script defining throttle(cpu, cur, max, min)): its two
    programs, [the timer's luabpf_throttle, the sched_switch tracepoint], sharing maps."""
    from luabpf.compiler.hooks.cpufreq import compile_policy as _compile
    hook = tracepoint_hook("sched", "sched_switch")
    return _compile(source, filename, hook.fields, _options(max_loop, loops, budget))
