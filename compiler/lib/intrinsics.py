"""Built-in names of kernel Lua: `math.*`, `error`, `assert`.

Owns the table from a dotted name (`("math", "abs")`) to its binding: a
constant value, or a lowering function that takes the lowerer, the argument
values and the call node and returns the call's values. Library modules add
their bindings to `REGISTRY`; lowering only asks `index` and `call`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from luabpf.compiler import ir
from luabpf.compiler.front import ast, luaint
from luabpf.compiler.lower import strconst
from luabpf.compiler.lower.values import Val, Values


@dataclass(frozen=True)
class Intrinsic:
    value: Val | None = None
    lower: Callable | None = None        # (lowerer, args: list[Val], node, scope) -> list[Val]
    raw: bool = False                    # lower receives the argument nodes, not values
    guard: Callable | None = None        # (lowerer, path, node): may refuse a value here
    # A final argument call whose number of values is known only at run time (s:byte(i, j)
    # on a packet view): 'count' passes them as `Values` (the function minds the count),
    # 'fixed' refuses the call.
    tail: str = "fixed"


REGISTRY: dict[tuple[str, ...], Intrinsic] = {}


def register(path: str, **kw) -> Callable:
    def deco(fn):
        REGISTRY[tuple(path.split("."))] = Intrinsic(lower=fn, **kw)
        return fn
    return deco


REGISTRY[("math", "maxinteger")] = Intrinsic(value=Val.int_(luaint.MAXINT))
REGISTRY[("math", "mininteger")] = Intrinsic(value=Val.int_(luaint.MININT))


def dotted_path(e, scope) -> tuple[str, ...] | None:
    """`a.b.c` as ('a', 'b', 'c') when `a` is not a local or a definition of the script."""
    parts = []
    while isinstance(e, ast.Index) and e.dot and isinstance(e.key, ast.String):
        parts.append(e.key.value.decode())
        e = e.obj
    if not isinstance(e, ast.Name) or scope.lookup(e.name) is not None:
        return None
    parts.append(e.name)
    return tuple(reversed(parts))


def index(lw, e: ast.Index, scope) -> Val | None:
    path = dotted_path(e, scope)
    if path is None:
        return None
    found = REGISTRY.get(path)
    if found is None:
        if path[0] == "math" and len(path) == 2 and path[1] in ("huge", "pi"):
            lw.error(e, f"math.{path[1]} is a floating-point number: not available in kernel Lua")
            return Val.nil()
        lw.error(e, f"unknown name '{'.'.join(path)}'")
        return Val.nil()
    if found.value is None:
        lw.error(e, f"'{'.'.join(path)}' is a function: call it")
        return Val.nil()
    if found.guard is not None:
        found.guard(lw, path, e)
    return found.value


def call(lw, e, scope) -> list[Val] | None:
    if isinstance(e, ast.MethodCall):
        return None
    path = dotted_path(e.func, scope)
    if path is None:
        return None
    found = REGISTRY.get(path)
    if found is None or found.lower is None:
        lw.error(e, f"unknown function '{'.'.join(path)}'")
        return []
    if found.raw:
        return found.lower(lw, e.args, e, scope)
    args, count = lw.explist_count(e.args, scope)
    if not isinstance(count, int):
        if found.tail == "fixed":
            lw.error(e.args[-1], f"'{'.'.join(path)}' would get a number of arguments known only "
                                 "at run time (its last argument is a call whose number of values "
                                 "varies, as s:byte(i, j) on a packet view does): kernel Lua needs "
                                 "it at compile time here",
                     hint="take the values into locals first: local a, b = s:byte(i, j)")
            return [Val.nil()]
        args = Values(args, count)
    if strconst.any_cstr(args):              # once per string the arguments may be
        return strconst.each_value(lw, args, (id(e), "call"),
                                   lambda *alts: found.lower(lw, Values.like(args, alts), e, scope),
                                   e)
    return found.lower(lw, args, e, scope)


# ---- error and assert ---------------------------------------------------------

def _message(lw, node) -> str | None:
    """A constant message for error/assert (a string or an integer literal)."""
    if isinstance(node, ast.String):
        return node.value.decode("utf-8", "replace")
    if isinstance(node, ast.Paren):
        return _message(lw, node.expr)
    v = lw.expr(node, lw.top) if isinstance(node, (ast.Int, ast.Nil)) else None
    if v is not None and v.is_const:
        return "nil" if v.python() is None else str(v.python())
    lw.error(node, "the message of error/assert must be a constant string in kernel Lua")
    return None


@register("error", raw=True)
def _error(lw, arg_nodes, node, scope):
    message = _message(lw, arg_nodes[0]) if arg_nodes else "nil"
    for extra in arg_nodes[1:]:
        lw.expr(extra, scope)          # error's level argument: evaluated, not used
    if message is not None:
        lw.runtime_error(node.span, message)
    return []


@register("assert", raw=True)
def _assert(lw, arg_nodes, node, scope):
    if not arg_nodes:
        lw.error(node, "bad argument #1 to 'assert' (value expected)")
        return []
    arg = arg_nodes[0]
    message = _message(lw, arg_nodes[1]) if len(arg_nodes) > 1 else "assertion failed!"
    b = lw.b
    ok, bad = b.block("assert_ok"), b.block("assert_fail")
    if _is_boolean(arg):                # a comparison that passed is `true`: branch on it
        lw.cond(arg, scope, ok, bad)
        v = Val.bool_(True)
    else:
        v = lw.expr(arg, scope)
        lw.truth_branch(v, ok, bad)
    if message is None:
        message = "assertion failed!"
    b.start(bad)
    lw.runtime_error(node.span, message)
    b.start(ok)
    return [v]


def _is_boolean(node) -> bool:
    while isinstance(node, ast.Paren):
        node = node.expr
    return (isinstance(node, ast.BinOp) and node.op in ("==", "~=", "<", "<=", ">", ">=")
            or isinstance(node, ast.UnOp) and node.op == "not")


# ---- math ---------------------------------------------------------------------

def _ints(lw, args: list[Val], node, name: str, count: int | None = None) -> list:
    if count is not None and len(args) < count or not args:
        lw.error(node, f"bad argument #{len(args) + 1} to '{name}' (number expected, got no value)")
        return []
    return [lw.int_operand(a, node, _bad_argument(i, name)) for i, a in enumerate(args)]


def _bad_argument(i: int, name: str):
    return lambda got: f"bad argument #{i + 1} to '{name}' (number expected, got {got})"


@register("math.abs")
def _abs(lw, args, node, scope):
    xs = _ints(lw, args[:1], node, "abs", 1)          # Lua ignores (never checks) extra arguments
    if not xs:
        return [Val.nil()]
    x = xs[0]
    if isinstance(x, int):
        return [Val.int_(luaint.wrap(abs(x)))]
    b = lw.b
    r = b.copy(x, "abs")
    neg, done = b.block("abs_neg"), b.block("abs_done")
    b.branch("slt", r, 0, neg, done)
    b.start(neg)
    b.emit(ir.Neg(r, r))
    b.jump(done)
    b.start(done)
    return [Val.int_(r)]


def _extreme(name: str, cond: str, pick):
    def lower(lw, args, node, scope):
        from luabpf.compiler.lower.expr import static_type
        if len(args) == 1:                      # Lua returns a lone argument unchecked
            return [args[0]]
        if not args:
            lw.error(node, f"bad argument #1 to '{name}' (number expected, got no value)")
            return [Val.nil()]

        def compare(left, right):               # min: a_i < acc; max: acc < a_i (Lua's order)
            if name == "max":
                left, right = right, left
            return f"attempt to compare two {left} values" if left == right else \
                f"attempt to compare {left} with {right}"
        second = static_type(args[1])
        xs = [lw.int_operand(args[0], node, lambda got: compare(second, got))]
        xs += [lw.int_operand(a, node, lambda got: compare(got, "number")) for a in args[1:]]
        if all(isinstance(x, int) for x in xs):
            return [Val.int_(pick(xs))]
        b = lw.b
        r = b.copy(xs[0], name)
        for x in xs[1:]:
            take, keep = b.block(f"{name}_take"), b.block(f"{name}_keep")
            if isinstance(x, int):
                b.branch(_swap(cond), r, x, take, keep)
            else:
                b.branch(cond, x, r, take, keep)
            b.start(take)
            b.mov(r, x)
            b.jump(keep)
            b.start(keep)
        return [Val.int_(r)]
    return lower


def _swap(cond: str) -> str:
    return {"slt": "sgt", "sgt": "slt"}[cond]


register("math.min")(_extreme("min", "slt", min))
register("math.max")(_extreme("max", "sgt", max))


# ---- strings, layouts, verdicts ---------------------------------------------------------

@register("tostring")
def _tostring(lw, args, node, scope):
    """tostring(view) is the view (kernel Lua's strings are views); constants convert."""
    if not args:
        lw.error(node, "bad argument #1 to 'tostring' (value expected)")
        return [Val.nil()]
    v = args[0]
    if v.kinds == frozenset({"str"}):
        return [v]
    if v.is_const:
        p = v.python()
        return [Val.string(b"nil" if p is None else (b"true" if p is True else b"false" if p is False
                                                         else str(p).encode()))]
    lw.error(node, "tostring of a number known only at run time is not available in kernel Lua "
                   "(there is no string building)")
    return [Val.nil()]


@register("data.layout", raw=True)
def _layout(lw, arg_nodes, node, scope):
    from luabpf.compiler.lib.layout import LayoutError, layout_from_table
    if len(arg_nodes) != 1 or not isinstance(arg_nodes[0], ast.Table):
        lw.error(node, "data.layout takes a table: data.layout{ name = {bit_offset, bit_width}, … }")
        return [Val.nil()]
    try:
        return [Val.object(layout_from_table(arg_nodes[0]))]
    except LayoutError as e:
        lw.error(e.node, e.message)
        return [Val.nil()]


def _register_actions() -> None:
    from luabpf.compiler.hooks.packet import ACTIONS, check_action
    for (module, name), value in ACTIONS.items():
        REGISTRY[(module, name)] = Intrinsic(value=Val.int_(value), guard=check_action)


def _string_function(method: str):
    def lower(lw, args, node, scope):
        from luabpf.compiler.lib import views
        if not args:
            lw.error(node, f"bad argument #1 to '{method}' (string expected, got no value)")
            return [Val.nil()]
        rest = args[1:]
        if isinstance(args, Values):                # the string is never the call's value
            rest = Values(rest, lw.b.bin("sub", args.count, 1, "nargs"))
        return views.call_method(lw, args[0], method, rest, node)
    return lower


for _m in ("byte", "sub", "len", "match", "find"):
    register(f"string.{_m}", tail="count")(_string_function(_m))
_register_actions()
