"""The base library's lowerings: `error`, `assert`, `math.*`, `tostring`, `data.layout`.

Owns what each of these does to the IR, given the lowerer, the argument values
(or, for `error`, `assert` and `data.layout`, the argument nodes) and the call
node. Which names they have, on which hooks, is the library table's
(`compiler/lib/table.py`).
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.front import ast, luaint
from luabpf.compiler.lib import events, text
from luabpf.compiler.lib.layout import LayoutError, layout_from_table
from luabpf.compiler.lower.values import Val, static_type

MAXINTEGER = Val.int_(luaint.MAXINT)
MININTEGER = Val.int_(luaint.MININT)


# ---- error and assert ---------------------------------------------------------

def _message(lw, node, scope) -> str | text.Text | None:
    """The message of error/assert: a constant (a string or an integer literal), or text
    of values known only at run time ('..', string.format, tostring)."""
    if isinstance(node, ast.String):
        return node.value.decode("utf-8", "replace")
    if isinstance(node, ast.Paren):
        return _message(lw, node.expr, scope)
    if _is_text(node):                  # '..', string.format, tostring of constants fold
        text.allow(lw, node)
        v = lw.expr(node, scope)
        if v.data is not None:
            return v.data.decode("utf-8", "replace")
        if text.text_of(v) is not None:
            return text.text_of(v)
        if not lw.b.reachable:          # Lua's error while making the message
            return None
    v = lw.expr(node, lw.top) if isinstance(node, (ast.Int, ast.Nil)) else None
    if v is not None and v.is_const:
        return "nil" if v.python() is None else str(v.python())
    lw.error(node, "the message of error/assert must be a constant string in kernel Lua")
    return None


def _is_text(node) -> bool:
    if isinstance(node, ast.BinOp):
        return node.op == ".."
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Index) \
        and isinstance(node.func.obj, ast.Name) and node.func.obj.name == "string" \
        and isinstance(node.func.key, ast.String) and node.func.key.value == b"format" \
        or isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        and node.func.name == "tostring"


def lower_error(lw, arg_nodes, node, scope):
    message = _message(lw, arg_nodes[0], scope) if arg_nodes else "nil"
    for extra in arg_nodes[1:]:
        lw.expr(extra, scope)          # error's level argument: evaluated, not used
    if isinstance(message, text.Text):
        _error_with_text(lw, message, arg_nodes[0], node)
    elif message is not None:
        lw.runtime_error(node.span, message)
    return []


def _error_with_text(lw, message: text.Text, arg, node) -> None:
    """A runtime error whose message is known only at run time: its values go to user
    space in a record just before (compiler/lib/events.py), the error site keeps the
    message's template (what a report shows when the record was dropped)."""
    if lw.own is not None:              # a BPF function reports no values (calls.py)
        lw.error(arg, "an error message of values known only at run time is not available "
                      "in a function compiled as a BPF function")
        return
    if events.send_error_text(lw, arg, message):
        lw.runtime_error(node.span, text.placeholder(message))


def lower_assert(lw, arg_nodes, node, scope):
    if not arg_nodes:
        lw.error(node, "bad argument #1 to 'assert' (value expected)")
        return []
    arg = arg_nodes[0]
    message = _message(lw, arg_nodes[1], scope) if len(arg_nodes) > 1 else "assertion failed!"
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
    if isinstance(message, text.Text):
        _error_with_text(lw, message, arg_nodes[1], node)
    else:
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


def math_abs(lw, args, node, scope):
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


math_min = _extreme("min", "slt", min)
math_max = _extreme("max", "sgt", max)


# ---- strings and layouts ----------------------------------------------------------------

def data_layout(lw, arg_nodes, node, scope):
    if len(arg_nodes) != 1 or not isinstance(arg_nodes[0], ast.Table):
        lw.error(node, "data.layout takes a table: data.layout{ name = {bit_offset, bit_width}, … }")
        return [Val.nil()]
    try:
        return [Val.object(layout_from_table(arg_nodes[0]))]
    except LayoutError as e:
        lw.error(e.node, e.message)
        return [Val.nil()]
