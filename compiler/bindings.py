"""What lowering keeps track of: scopes and what a name is bound to.

Owns the small records shared by the lowering mixins: `Scope` (names → a
`values.Var`, a constant `Val`, a `GlobalVar` or a `FuncDef`), `Instance` (one
inlined call: its result variables, return count and enclosing loops),
`ErrorSite` (a runtime error's line and Lua message), `Options`, and
`Restart` (raised when a variable's kinds widen).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ast, ir
from luabpf.compiler.values import Var


class Restart(Exception):
    """A fact lowering relied on widened (a variable's kinds, a function's result count).
    `owner` is the id of the inlined call that owns the fact (0: the top level): lowering
    starts that call over, not the whole program (see `lower.Lowerer.inline_call`)."""

    def __init__(self, owner: int = 0):
        super().__init__(owner)
        self.owner = owner


@dataclass
class Options:
    max_loop: int = 1_000_000
    loops: str = "may_goto"          # 'may_goto' | 'bounded' (plain back-edges)
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


class Scope:
    def __init__(self, parent: "Scope | None" = None):
        self.parent = parent
        self.names: dict[str, object] = {}

    def lookup(self, name: str):
        s = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None
