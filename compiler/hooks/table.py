"""The hooks by name: what makes each hook's records from a script.

Owns `HOOKS` ('xdp', 'tc', 'cpufreq', 'tracepoint', 'function' → `HookKind`) and
`hook_for`, the hook a script is for when none is named. A `HookKind` says which
functions of a parsed chunk are the hook's entry points, and makes one record per
program (`base.Hook`): a filter one, a policy two (throttle and its sched_switch
companion), a tracepoint script one per `tracepoint.C.E` function, a function script one
per top-level function. Adding a hook is adding its record (a module here) and one
entry in `HOOKS`; the runtime's half (how its programs attach and report) is
runtime/hooks.py's table, keyed by the same names.

Nothing here reads the kernel: a tracepoint's fields come from `Environment.trace_fields`,
which the runtime supplies (it reads tracefs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Source, Span
from luabpf.compiler.hooks.base import Hook
from luabpf.compiler.hooks.cpufreq import policy_chunk, policy_hooks
from luabpf.compiler.hooks.function import FunctionHook
from luabpf.compiler.hooks.packet import PACKET_HOOKS, packet_hook_for
from luabpf.compiler.hooks.tracepoint import TracepointHook


@dataclass(frozen=True)
class Environment:
    """What making a hook's records may ask of the world outside the compiler.
    trace_fields(category, event): the event's fields (tracepoint.TraceField by name),
    raising `no_such_event` when there is no such event; None: every event has none."""
    trace_fields: Callable[[str, str], dict] | None = None
    no_such_event: type = LookupError
    count_verdicts: bool = False          # packet filters count their verdicts


@dataclass(frozen=True)
class HookKind:
    """One hook, by name: its entry points in a script and how its records are made."""
    name: str
    missing: str                          # the error when a script has no entry for it
    entries: Callable[[ast.Chunk], list]  # the script's entry functions (statements)
    plan: Callable                        # (chunk, source, env) → (chunk to compile, records)
    shares_state: bool = True             # one script's programs share maps and globals
    choose: Callable | None = None        # (chunk, source) → the name a script is for

    def records(self, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list[Hook]]:
        """The chunk to compile and a record per program; a CompileError when the script
        defines no entry point of this hook."""
        if not self.entries(chunk):
            raise CompileError([Diagnostic(self.missing, Span(source.filename, 1, 1, 1, 2))], source)
        return self.plan(chunk, source, env)

    def chosen(self, chunk: ast.Chunk, source: Source) -> str:
        return self.choose(chunk, source) if self.choose is not None else self.name


def _top_functions(chunk: ast.Chunk, path: list[str]) -> list:
    return [st for st in chunk.body.stmts if isinstance(st, ast.FunctionDecl) and st.path == path]


def _is_tracepoint(st) -> bool:
    return isinstance(st, ast.FunctionDecl) and len(st.path) == 3 and st.path[0] == "tracepoint"


def _is_plain(st) -> bool:
    """`function f` or `local function f`: a top-level function a caller can name."""
    return (isinstance(st, ast.FunctionDecl) and len(st.path) == 1 and not st.method) \
        or isinstance(st, ast.LocalFunction)


def _name_of(st) -> str:
    return st.name if isinstance(st, ast.LocalFunction) else ".".join(st.path)


def _tracepoint_functions(chunk: ast.Chunk) -> list:
    return [st for st in chunk.body.stmts if _is_tracepoint(st)]


def _plain_functions(chunk: ast.Chunk) -> list:
    return [st for st in chunk.body.stmts if _is_plain(st)]


def entry_points(chunk: ast.Chunk) -> list[tuple[str, int]]:
    """(name, parameter count) of each top-level function of a script that can be a
    program: plain functions and `tracepoint.C.E` ones, in source order."""
    return [(_name_of(st), len(st.func.params)) for st in chunk.body.stmts
            if _is_plain(st) or _is_tracepoint(st)]


def _packet_plan(hook_class):
    def plan(chunk, source, env):
        return chunk, [hook_class(count_verdicts=env.count_verdicts)]
    return plan


def _policy_plan(chunk, source, env):
    fields = env.trace_fields("sched", "sched_switch") if env.trace_fields else {}
    return policy_chunk(chunk, source), policy_hooks(fields)


def _tracepoint_plan(chunk, source, env):
    hooks, problems = [], []
    for st in _tracepoint_functions(chunk):
        _, category, event = st.path
        try:
            fields = env.trace_fields(category, event) if env.trace_fields else {}
        except env.no_such_event as e:
            problems.append(Diagnostic(str(e), st.span))
            continue
        hooks.append(TracepointHook(category, event, fields))
    if problems:
        raise CompileError(problems, source)
    return chunk, hooks


def _function_plan(chunk, source, env):
    return chunk, [FunctionHook(_name_of(st), ("int",) * len(st.func.params))
                   for st in _plain_functions(chunk)]


def _packet_kind(name: str) -> HookKind:
    return HookKind(name, f"a {name} program needs a function filter(hdr, pld)",
                    lambda chunk: _top_functions(chunk, ["filter"]), _packet_plan(PACKET_HOOKS[name]),
                    choose=packet_hook_for)


HOOKS: dict[str, HookKind] = {
    "xdp": _packet_kind("xdp"),
    "tc": _packet_kind("tc"),
    "cpufreq": HookKind("cpufreq", "a cpufreq program needs a function throttle(cpu, cur, max, min)",
                        lambda chunk: _top_functions(chunk, ["throttle"]), _policy_plan),
    "tracepoint": HookKind("tracepoint",
                           "a tracepoint program needs a function tracepoint.CATEGORY.EVENT(args)",
                           _tracepoint_functions, _tracepoint_plan),
    "function": HookKind("function", "the script defines no function to compile",
                         _plain_functions, _function_plan, shares_state=False),
}
HOOK_NAMES = tuple(HOOKS)


def kind_of(name: str) -> HookKind:
    """The hook named `name`; a ValueError naming the choices for any other name."""
    kind = HOOKS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"unknown hook {name!r}: choose one of {', '.join(HOOK_NAMES)}")
    return kind


def hook_for(chunk: ast.Chunk, source: Source, names: tuple[str, ...] = HOOK_NAMES) -> str:
    """The hook a script is for when none is named: the first of `names` whose entry
    point it defines (for a filter, the packet hook whose verdict constants it uses);
    `names[0]` when it defines none."""
    for name in names:
        kind = HOOKS[name]
        if kind.entries(chunk):
            return kind.chosen(chunk, source)
    return names[0]
