"""The kernel-Lua syntax tree: one dataclass per Lua 5.4 construct.

Every node carries the `Span` it was parsed from. The tree covers all of Lua
5.4's syntax (so the checker can name what kernel Lua leaves out); it owns no
semantics. Operators are kept as their Lua spelling ('+', '//', '..', 'and').
"""
from __future__ import annotations

from dataclasses import dataclass

from luabpf.compiler.front.source import Span


@dataclass(eq=False)
class Node:
    span: Span


# ---- expressions ---------------------------------------------------------

@dataclass(eq=False)
class Nil(Node):
    pass


@dataclass(eq=False)
class Bool(Node):
    value: bool


@dataclass(eq=False)
class Int(Node):
    value: int          # already wrapped to a signed 64-bit value for hex literals


@dataclass(eq=False)
class Float(Node):
    text: str


@dataclass(eq=False)
class String(Node):
    value: bytes


@dataclass(eq=False)
class Vararg(Node):
    pass


@dataclass(eq=False)
class Name(Node):
    name: str


@dataclass(eq=False)
class Index(Node):
    obj: "Expr"
    key: "Expr"
    dot: bool = False   # written as obj.name (key is then a String)


@dataclass(eq=False)
class Call(Node):
    func: "Expr"
    args: list["Expr"]


@dataclass(eq=False)
class MethodCall(Node):
    obj: "Expr"
    method: str
    args: list["Expr"]


@dataclass(eq=False)
class Function(Node):
    params: list[str]
    is_vararg: bool
    body: "Block"
    name: str | None = None     # filled for `function name()` and `local function name()`


@dataclass(eq=False)
class BinOp(Node):
    op: str
    left: "Expr"
    right: "Expr"


@dataclass(eq=False)
class UnOp(Node):
    op: str             # '-', 'not', '#', '~'
    operand: "Expr"


@dataclass(eq=False)
class TableField(Node):
    key: "Expr | None"  # None for positional fields; a String for name = value
    value: "Expr"
    named: bool = False


@dataclass(eq=False)
class Table(Node):
    fields: list[TableField]


@dataclass(eq=False)
class Paren(Node):
    expr: "Expr"


Expr = Nil | Bool | Int | Float | String | Vararg | Name | Index | Call | MethodCall | Function | BinOp | UnOp | Table | Paren


# ---- statements ----------------------------------------------------------

@dataclass(eq=False)
class Block(Node):
    stmts: list["Stmt"]


@dataclass(eq=False)
class AttribName(Node):
    name: str
    attrib: str | None = None     # 'const' or 'close'


@dataclass(eq=False)
class Local(Node):
    names: list[AttribName]
    values: list[Expr]


@dataclass(eq=False)
class Assign(Node):
    targets: list[Expr]           # Name or Index
    values: list[Expr]


@dataclass(eq=False)
class CallStat(Node):
    call: Expr                    # Call or MethodCall


@dataclass(eq=False)
class Do(Node):
    body: Block


@dataclass(eq=False)
class While(Node):
    cond: Expr
    body: Block
    bound: int | None = None      # from `--@bound N` on the line before


@dataclass(eq=False)
class Repeat(Node):
    body: Block
    cond: Expr
    bound: int | None = None


@dataclass(eq=False)
class If(Node):
    tests: list[tuple[Expr, Block]]   # if / elseif arms in order
    orelse: Block | None


@dataclass(eq=False)
class NumericFor(Node):
    var: str
    start: Expr
    stop: Expr
    step: Expr | None
    body: Block
    bound: int | None = None


@dataclass(eq=False)
class GenericFor(Node):
    names: list[str]
    exprs: list[Expr]
    body: Block
    bound: int | None = None


@dataclass(eq=False)
class FunctionDecl(Node):
    path: list[str]               # a.b.c  → ['a', 'b', 'c']
    method: str | None            # a.b:m  → 'm'
    func: Function


@dataclass(eq=False)
class LocalFunction(Node):
    name: str
    func: Function


@dataclass(eq=False)
class Return(Node):
    values: list[Expr]


@dataclass(eq=False)
class Break(Node):
    pass


@dataclass(eq=False)
class Goto(Node):
    label: str


@dataclass(eq=False)
class Label(Node):
    name: str


Stmt = Local | Assign | CallStat | Do | While | Repeat | If | NumericFor | GenericFor | FunctionDecl | LocalFunction | Return | Break | Goto | Label


@dataclass(eq=False)
class Chunk(Node):
    body: Block
    filename: str = "<string>"


def walk(node):
    """Yield node and every node below it, depth first, in source order."""
    yield node
    for value in vars(node).values():
        if isinstance(value, Node):
            yield from walk(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Node):
                    yield from walk(item)
                elif isinstance(item, tuple):
                    for sub in item:
                        if isinstance(sub, Node):
                            yield from walk(sub)
