"""Checker: what of Lua 5.4 kernel Lua leaves out (docs/language.md), at its line and column.

Owns the rules of the subset that can be decided on the syntax tree alone:
no floats, `^`, `..`, varargs, goto/labels, metatables, coroutines, functions
using a reassigned top-level local (nested functions and closures over the
locals of enclosing functions are allowed: lowering inlines them), generic `for`, `<close>`, table constructors (except as the argument of a
dotted stdlib call such as `data.layout{...}`), recursion (the cycle is named);
top-level code must be definitions; names must be known (the script's own, or
the library table's global names: `lib/table.global_names`); `<const>` locals are
not reassigned. It reports every problem of a file at once (one `CompileError`)
and leaves types, `#`, methods and strings to the lowering, which says what it
cannot compile. A plain tree walk with `visit_<Class>` dispatch.

Entry point: `check(chunk, known_globals=DEFAULT_GLOBALS)`.
"""
from __future__ import annotations

from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import Diagnostics
from luabpf.compiler.lib import table

DEFAULT_GLOBALS = table.global_names()     # the library table's global names

METATABLE_FUNCS = frozenset({"setmetatable", "getmetatable", "rawget", "rawset", "rawequal", "rawlen"})

TOP_LEVEL_MSG = ("top-level code runs once at load: only definitions of functions, "
                 "constants, maps and globals may stand here")
SHARED_HINT = "to share a value between functions make it a global: declare it at top level without 'local'"


class _Var:
    """A local variable or parameter, and what the program does with it."""
    __slots__ = ("name", "level", "const", "span", "func_key", "reassigned", "outer_reads", "outer_writers")

    def __init__(self, name, level, const, span, func_key=None):
        self.name, self.level, self.const, self.span = name, level, const, span
        self.func_key = func_key          # set for `local function name`
        self.reassigned = False
        self.outer_reads = []             # (span, function name) of reads from a function below level 0
        self.outer_writers = set()        # functions already told they cannot assign it


class Checker:
    """One walk over a chunk; diagnostics accumulate in `self.diags`."""

    def __init__(self, known_globals: frozenset[str]):
        self.known = known_globals
        self.diags = Diagnostics()
        self.scopes: list[dict[str, _Var]] = []
        self.top_vars: list[_Var] = []
        self.depth = 0                    # function nesting: 0 is the chunk
        self.loops = 0
        self.func_name = "?"
        self.func_key: str | None = None
        self.globals: set[str] = set()
        self.functions: set[str] = set()  # keys of functions defined at top level
        self.later_locals: dict[str, int] = {}
        self.edges: list[tuple[str, str, ast.Node]] = []   # caller, callee, call node

    def error(self, node_or_span, message, hint=None):
        span = node_or_span.span if isinstance(node_or_span, ast.Node) else node_or_span
        self.diags.error(span, message, hint)

    # ---- driver -------------------------------------------------------------

    def run(self, chunk: ast.Chunk) -> None:
        self.collect_definitions(chunk.body)
        self.scopes.append({})
        for stmt in chunk.body.stmts:
            self.top_level(stmt)
            self.visit(stmt)
        self.scopes.pop()
        for var in self.top_vars:
            if var.reassigned:
                for span, fname in var.outer_reads:
                    if fname in var.outer_writers:
                        continue
                    self.error(span, f"function '{fname}' uses '{var.name}', a top-level local that is "
                               "reassigned (closures over mutable locals are not available in kernel Lua)",
                               SHARED_HINT)
        self.find_recursion()

    def collect_definitions(self, body: ast.Block) -> None:
        """Globals and functions defined anywhere at top level (globals may be used before)."""
        local_names: set[str] = set()
        for stmt in body.stmts:
            if isinstance(stmt, ast.Local):
                for n in stmt.names:
                    local_names.add(n.name)
                    self.later_locals.setdefault(n.name, n.span.line)
            elif isinstance(stmt, ast.LocalFunction):
                local_names.add(stmt.name)
                self.later_locals.setdefault(stmt.name, stmt.span.line)
                self.functions.add(stmt.name)
            elif isinstance(stmt, ast.FunctionDecl):
                self.functions.add(_decl_key(stmt))
                if len(stmt.path) == 1 and stmt.method is None and stmt.path[0] not in local_names:
                    self.globals.add(stmt.path[0])
            elif isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    if isinstance(t, ast.Name) and t.name not in local_names:
                        self.globals.add(t.name)

    def top_level(self, stmt) -> None:
        """Top level holds definitions only; their values must be computable at load."""
        if isinstance(stmt, (ast.FunctionDecl, ast.LocalFunction)):
            return
        if isinstance(stmt, ast.Local):
            for v in stmt.values:
                self.load_time_value(v)
            return
        if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            for v in stmt.values:
                self.load_time_value(v)
            return
        self.error(stmt, TOP_LEVEL_MSG, "put the code in a function; the hooks (filter, throttle, ...) "
                   "are called by the kernel")

    def load_time_value(self, e) -> None:
        if _constant(e) or (isinstance(e, ast.Call) and _dotted(e.func) and "." in _dotted(e.func)):
            return
        hint = "top-level code runs once at load; compute other values inside a function"
        if isinstance(e, ast.Function):
            hint = "write 'function name(...) ... end' (or 'local function') instead"
        self.error(e, "a top-level value must be a constant, a name, or a stdlib constructor "
                   "such as map.hash(1024)", hint)

    # ---- scopes -------------------------------------------------------------

    def declare(self, name, span, const=False, func_key=None) -> _Var:
        var = _Var(name, self.depth, const, span, func_key)
        self.scopes[-1][name] = var
        if self.depth == 0:
            self.top_vars.append(var)
        return var

    def lookup(self, name) -> _Var | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def block(self, block: ast.Block, declare=()) -> None:
        self.scopes.append({})
        for name, span in declare:
            self.declare(name, span)
        for stmt in block.stmts:
            self.visit(stmt)
        self.scopes.pop()

    def function(self, func: ast.Function, name: str, key: str | None) -> None:
        if func.is_vararg:
            self.error(func, "vararg functions ('...') are not available in kernel Lua",
                       "give the function named parameters")
        saved = (self.func_name, self.func_key, self.loops)
        self.depth += 1
        self.func_name, self.loops = name, 0
        if self.depth == 1:
            self.func_key = key
        self.block(func.body, [(p, func.span) for p in func.params])
        self.depth -= 1
        self.func_name, self.func_key, self.loops = saved

    # ---- names --------------------------------------------------------------

    def read(self, node: ast.Name) -> None:
        name = node.name
        var = self.lookup(name)
        if var is not None:
            if var.level == 0 and self.depth > 0:
                var.outer_reads.append((node.span, self.func_name))
            return
        if name in self.globals or name in self.known:
            return
        if name in METATABLE_FUNCS:
            self.error(node, f"metatables are not available in kernel Lua ('{name}')")
        elif name == "coroutine":
            self.error(node, "coroutines are not available in kernel Lua")
        else:
            hint = None
            if name in self.later_locals:
                hint = f"'{name}' is declared local later, at line {self.later_locals[name]}: move it above"
            self.error(node, f"unknown name '{name}'", hint)

    def write(self, node: ast.Name) -> None:
        name = node.name
        var = self.lookup(name)
        if var is not None:
            if var.const:
                self.error(node, f"attempt to assign to const variable '{name}'")
            var.reassigned = True
            if var.level == 0 and self.depth > 0:      # a closure over a function's local is fine
                var.outer_writers.add(self.func_name)
                self.error(node, f"function '{self.func_name}' cannot assign to '{name}', a "
                           "top-level local (closures over mutable locals are not available in kernel Lua)",
                           SHARED_HINT)
            return
        if self.depth == 0 or name in self.globals:
            return
        if name in self.known:
            self.error(node, f"cannot assign to '{name}': it is part of kernel Lua's library")
        else:
            self.error(node, f"assignment to undeclared global '{name}' "
                       f"(declare it at top level: {name} = 0)")

    # ---- dispatch -----------------------------------------------------------

    def visit(self, node) -> None:
        getattr(self, "visit_" + type(node).__name__)(node)

    def visit_all(self, nodes) -> None:
        for n in nodes:
            self.visit(n)

    # statements

    def visit_Local(self, node: ast.Local) -> None:
        self.visit_all(node.values)
        for n in node.names:
            if n.attrib == "close":
                self.error(n, "to-be-closed variables (<close>) are not available in kernel Lua")
            self.declare(n.name, n.span, const=n.attrib == "const")

    def visit_LocalFunction(self, node: ast.LocalFunction) -> None:
        self.declare(node.name, node.span, func_key=node.name if self.depth == 0 else None)
        self.function(node.func, node.name, node.name)

    def visit_FunctionDecl(self, node: ast.FunctionDecl) -> None:
        root = ast.Name(node.span, node.path[0])
        if len(node.path) == 1 and node.method is None:
            self.write(root)
        else:
            self.read(root)
        self.function(node.func, node.func.name or node.path[-1], _decl_key(node))

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit_all(node.values)
        for t in node.targets:
            if isinstance(t, ast.Name):
                self.write(t)
            else:
                self.visit(t)

    def visit_CallStat(self, node: ast.CallStat) -> None:
        self.visit(node.call)

    def visit_Do(self, node: ast.Do) -> None:
        self.block(node.body)

    def loop_body(self, body: ast.Block, declare=()) -> None:
        self.loops += 1
        self.block(body, declare)
        self.loops -= 1

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.cond)
        self.loop_body(node.body)

    def visit_Repeat(self, node: ast.Repeat) -> None:
        self.loops += 1                   # the condition sees the body's locals
        self.scopes.append({})
        self.visit_all(node.body.stmts)
        self.visit(node.cond)
        self.scopes.pop()
        self.loops -= 1

    def visit_If(self, node: ast.If) -> None:
        for cond, body in node.tests:
            self.visit(cond)
            self.block(body)
        if node.orelse is not None:
            self.block(node.orelse)

    def visit_NumericFor(self, node: ast.NumericFor) -> None:
        self.visit_all([e for e in (node.start, node.stop, node.step) if e is not None])
        self.loop_body(node.body, [(node.var, node.span)])

    def visit_GenericFor(self, node: ast.GenericFor) -> None:
        self.error(node, "generic 'for ... in' is not available in kernel Lua",
                   "use a numeric for: for i = 1, n do ... end")
        self.visit_all(node.exprs)
        self.loop_body(node.body, [(n, node.span) for n in node.names])

    def visit_Return(self, node: ast.Return) -> None:
        self.visit_all(node.values)

    def visit_Break(self, node: ast.Break) -> None:
        if self.loops == 0:
            self.error(node, "'break' outside a loop")

    def visit_Goto(self, node: ast.Goto) -> None:
        self.error(node, "goto is not available in kernel Lua", "use break, or a flag and an if")

    def visit_Label(self, node: ast.Label) -> None:
        self.error(node, "labels are not available in kernel Lua (there is no goto)")

    # expressions

    def visit_Nil(self, node) -> None:
        pass

    visit_Bool = visit_Int = visit_String = visit_Nil

    def visit_Float(self, node: ast.Float) -> None:
        self.error(node, "floating-point numbers are not available in kernel Lua",
                   "numbers are 64-bit integers only; '/' is floor division")

    def visit_Vararg(self, node: ast.Vararg) -> None:
        self.error(node, "varargs '...' are not available in kernel Lua")

    def visit_Name(self, node: ast.Name) -> None:
        self.read(node)

    def visit_Index(self, node: ast.Index) -> None:
        self.visit(node.obj)
        self.visit(node.key)

    def visit_Call(self, node: ast.Call) -> None:
        self.visit(node.func)
        callee = _dotted(node.func)
        allow_tables = callee is not None and "." in callee
        for arg in node.args:
            if allow_tables and isinstance(arg, ast.Table):
                self.table_fields(arg)
            else:
                self.visit(arg)
        if self.func_key is not None and callee is not None:
            var = self.lookup(callee) if "." not in callee else None
            if var is not None and var.func_key is not None:
                self.edges.append((self.func_key, var.func_key, node))
            elif var is None and callee in self.functions:
                self.edges.append((self.func_key, callee, node))

    def visit_MethodCall(self, node: ast.MethodCall) -> None:
        self.visit(node.obj)
        self.visit_all(node.args)

    def visit_Function(self, node: ast.Function) -> None:
        self.function(node, node.name or "anonymous function", None)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if node.op == "^":
            self.error(node, "exponentiation '^' is not available in kernel Lua (integers only)",
                       "multiply in a loop, or use '<<' for powers of two")
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnOp(self, node: ast.UnOp) -> None:
        self.visit(node.operand)

    def visit_Paren(self, node: ast.Paren) -> None:
        self.visit(node.expr)

    def visit_Table(self, node: ast.Table) -> None:
        self.error(node, "table constructors are not available in kernel Lua",
                   "maps come from map.hash(n) and its kin; layouts from data.layout{...}")
        for f in node.fields:
            self.visit_TableField(f)

    def table_fields(self, node: ast.Table) -> None:
        """A table given to a stdlib call: its nested tables are data too."""
        for f in node.fields:
            if f.key is not None and not f.named:
                self.visit(f.key)
            if isinstance(f.value, ast.Table):
                self.table_fields(f.value)
            else:
                self.visit(f.value)

    def visit_TableField(self, node: ast.TableField) -> None:
        if node.key is not None and not node.named:
            self.visit(node.key)
        self.visit(node.value)

    # ---- recursion ----------------------------------------------------------

    def find_recursion(self) -> None:
        """Add call edges in source order; an edge that closes a cycle is the error."""
        graph: dict[str, list[str]] = {}
        for caller, callee, call in sorted(self.edges, key=lambda e: (e[2].span.line, e[2].span.col)):
            path = _path(graph, callee, caller)
            if path is None:
                graph.setdefault(caller, []).append(callee)
                continue
            cycle = " → ".join(path + [callee])
            self.error(call, f"recursion is not available in kernel Lua: {cycle}",
                       "rewrite it as a loop")


def _path(graph, start, goal) -> list[str] | None:
    """A path of function keys from start to goal, or None (iterative DFS)."""
    stack, seen = [(start, [start])], {start}
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def _decl_key(stmt: ast.FunctionDecl) -> str:
    return ".".join(stmt.path) + (":" + stmt.method if stmt.method else "")


def _dotted(e) -> str | None:
    """'a.b.c' for a Name or a chain of dotted indexing on a Name, else None."""
    parts = []
    while isinstance(e, ast.Index) and e.dot:
        parts.append(e.key.value.decode())
        e = e.obj
    if not isinstance(e, ast.Name):
        return None
    return ".".join([e.name] + parts[::-1])


def _constant(e) -> bool:
    """A value computable at load: literals, names, dotted names, operators on those."""
    if isinstance(e, (ast.Nil, ast.Bool, ast.Int, ast.Float, ast.String, ast.Name)):
        return True
    if isinstance(e, ast.Index):
        return _dotted(e) is not None
    if isinstance(e, ast.UnOp):
        return _constant(e.operand)
    if isinstance(e, ast.BinOp):
        return _constant(e.left) and _constant(e.right)
    if isinstance(e, ast.Paren):
        return _constant(e.expr)
    return False


def check(chunk: ast.Chunk, known_globals: frozenset[str] = DEFAULT_GLOBALS) -> None:
    """Raise `CompileError` with every kernel-Lua restriction the chunk breaks."""
    checker = Checker(known_globals)
    checker.run(chunk)
    checker.diags.raise_if_any()
