"""The hooks by name.

Owns `HOOKS` ('xdp', 'tc', 'cpufreq', 'tracepoint', 'function' → the hook's class, a
`base.Hook`), `kind_of` (a name to its hook, or a ValueError naming the choices) and
`hook_for`, the hook a script is for when none is named. Each hook's class says which
functions of a script are its entry points and makes its records (see `base`). Adding a
hook is adding its class (a module here) and one line to `HOOKS`; the runtime's half
(how its programs attach and report) is runtime/hooks.py's table, keyed by the same
names.
"""
from __future__ import annotations

from luabpf.compiler.front import ast
from luabpf.compiler.front.source import Source
from luabpf.compiler.hooks.base import Environment, Hook, is_plain, is_tracepoint, name_of
from luabpf.compiler.hooks.cpufreq import ThrottleHook
from luabpf.compiler.hooks.function import FunctionHook
from luabpf.compiler.hooks.packet import TcHook, XdpHook
from luabpf.compiler.hooks.tracepoint import TracepointHook

HOOKS: dict[str, type[Hook]] = {hook.name: hook for hook in (
    XdpHook, TcHook, ThrottleHook, TracepointHook, FunctionHook)}
HOOK_NAMES = tuple(HOOKS)

__all__ = ["HOOKS", "HOOK_NAMES", "Environment", "kind_of", "hook_for", "entry_points"]


def kind_of(name: str) -> type[Hook]:
    """The hook named `name`; a ValueError naming the choices for any other name."""
    hook = HOOKS.get(name) if isinstance(name, str) else None
    if hook is None:
        raise ValueError(f"unknown hook {name!r}: choose one of {', '.join(HOOK_NAMES)}")
    return hook


def hook_for(chunk: ast.Chunk, source: Source, names: tuple[str, ...] = HOOK_NAMES) -> str:
    """The hook a script is for when none is named: the first of `names` whose entry
    function it defines (for a filter, the packet hook whose verdict constants it uses);
    `names[0]` when it defines none."""
    for name in names:
        if HOOKS[name].entries(chunk):
            return HOOKS[name].chosen(chunk, source)
    return names[0]


def entry_points(chunk: ast.Chunk) -> list[tuple[str, int]]:
    """(name, parameter count) of each top-level function of a script that can be a
    program: plain functions and `tracepoint.C.E` ones, in source order."""
    return [(name_of(st), len(st.func.params)) for st in chunk.body.stmts
            if is_plain(st) or is_tracepoint(st)]
