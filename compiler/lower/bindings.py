"""What lowering keeps track of: scopes and what a name is bound to.

Owns the small records shared by the lowering mixins: `Scope` (names → a
`values.Var`, a constant `Val`, a `GlobalVar` or a `FuncDef`), `Closure` (a function
value: a function and the scope it closes over), `Instance` (one
inlined call: its result variables, return count and enclosing loops),
`ErrorSite` (a runtime error's line and Lua message), `Options`,
`Restart` (raised when a variable's kinds widen) and `InlinedDiagnostics` (one
report for an error found in every inlined copy of a function).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import Diagnostic, Diagnostics
from luabpf.compiler.lower.values import Var


class Restart(Exception):
    """A fact lowering relied on widened (a variable's kinds, a function's result count).
    `owner` is the id of the inlined call that owns the fact (0: the top level): lowering
    starts that call over, not the whole program (see `lower.Lowerer.inline_call`)."""

    def __init__(self, owner: int = 0):
        super().__init__(owner)
        self.owner = owner


@dataclass
class Options:
    max_loop: int | None = None      # default loop bound; None: the hook's (its loop_bound)
    budget: int | None = None        # worst-case instructions a run may take; None: the hook's
    loops: str = "may_goto"          # 'may_goto' | 'bounded' (plain back-edges)
    loops_asked: bool = False        # the user chose `loops` (errors say so, not "this kernel")
    # steps of a pattern match without `--@bound`; None: the hook's (its pattern_steps),
    # fewer when the budget cannot hold that (program.py fits them)
    pattern_steps: int | None = None
    # the ids of this program's first error site and first print site: the programs of
    # one script number theirs one after another, sharing the errors map and ring buffer
    first_site: int = 0
    first_print: int = 0


@dataclass
class ErrorSite:
    """A place that counts in the errors map: a runtime error (fatal: the entry function
    stops) or an event the script lives through (a dropped map store or print)."""
    line: int
    col: int
    message: str
    fatal: bool = True
    file: str = ""


@dataclass
class GlobalVar:
    name: str
    offset: int
    kind: str                # 'int' | 'bool'
    initial: int             # the stored word


@dataclass
class FuncDef:
    name: str
    node: ast.Function
    nested: bool = False     # defined inside a function (or an anonymous function value)

    @property
    def key(self):
        """What lowering's learnt facts about the function are keyed by: its name at top level,
        its syntax node inside a function (two nested functions may share a name)."""
        return id(self.node) if self.nested else self.name


@dataclass(eq=False)
class Closure:
    """A function value, known at compile time: the function and the scope it was defined
    in. Its upvalues are that scope's bindings themselves (the same `Var`s), so a captured
    local is shared by reference, as in Lua; calls inline the body in a scope below `env`."""
    fd: FuncDef
    env: "Scope"
    lua_type = "function"    # what Lua's errors call it (values.static_type)


@dataclass
class Instance:
    """One inlined call of a function."""
    id: int
    func: FuncDef
    ret_block: ir.Block
    results: list[Var] = field(default_factory=list)
    nret: Var | None = None                  # None while every return gives the same count
    counts: set = field(default_factory=set)
    loops: list = field(default_factory=list)
    site: object = None                      # the Span of the call
    env: object = None                       # the Scope its body sees beyond its own
    funcs: dict = field(default_factory=dict)     # result index → the Closure returned there
    not_funcs: dict = field(default_factory=dict)  # result index → Span of a non-function return


class Scope:
    def __init__(self, parent: "Scope | None" = None):
        self.parent = parent
        self.names: dict[str, object] = {}

    def snapshot(self) -> "Scope":
        """This scope as it is now: a function defined here sees the names declared so far,
        not those declared after it (the bindings are shared, not copied)."""
        s = Scope(self.parent)
        s.names = dict(self.names)
        return s

    def lookup(self, name: str):
        s = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None


class InlinedDiagnostics(Diagnostics):
    """Diagnostics of a lowering: an error in a function inlined at several places is
    found once per copy; it is reported once, at its own line in the function, with the
    lines of the calls listed."""

    def __init__(self, lw):
        super().__init__()
        self.lw = lw
        self.calls: list = []                 # per item: (function name, call Span) or None

    def error(self, span, message: str, hint: str | None = None) -> None:
        super().error(span, message, hint)
        inner = self.lw.instances[-1] if len(self.lw.instances) > 1 else None   # not the entry
        self.calls.append((inner.func.name, inner.site) if inner and inner.site else None)

    def raise_if_any(self, source=None) -> None:
        groups: dict = {}
        for d, call in zip(self.items, self.calls + [None] * (len(self.items) - len(self.calls))):
            groups.setdefault((d.span, d.message, d.hint), (d, []))[1].append(call)
        merged = []
        for d, where in groups.values():
            sites = {c[1].line for c in where if c is not None}
            if sites:
                d = inlined_diagnostic(d, next(c[0] for c in where if c is not None), sites)
            merged.append(d)
        self.items, self.calls = merged, []
        super().raise_if_any(source)


def inlined_diagnostic(d: Diagnostic, name: str, sites: set[int]) -> Diagnostic:
    """d, an error in function `name` inlined at the lines `sites`, with a note naming them."""
    lines = sorted(sites)
    note = (f"in the cop{'ies' if len(lines) > 1 else 'y'} of '{name}' inlined at "
            f"line{'s' if len(lines) > 1 else ''} {', '.join(str(n) for n in lines)}")
    return Diagnostic(d.message, d.span, f"{d.hint}; {note}" if d.hint else note, d.severity,
                      (name, tuple(lines), d.hint))
