"""Expressions and conditions of kernel Lua.

Owns (as a mixin of `lower.Lowerer`) how each expression becomes a `Val`:
names, calls, arithmetic through `intops`, `and`/`or` returning an operand,
comparisons as branches in conditions and as booleans in values, equality of
values of any kind, and the runtime checks that an operand is an integer.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.front import ast, luaint
from luabpf.compiler.lib import maps, table, text, views
from luabpf.compiler.lower import strconst
from luabpf.compiler.lower.intops import COMPARE
from luabpf.compiler.lower.bindings import Closure, FuncDef, GlobalVar, Scope
from luabpf.compiler.lower.values import (CSTR, FALSE, INT, KINDS, LVIEW, NIL, OBJ, OBJ_CHOICE,
                                          OBJ_CHOICE_HINT, STR, TRUE, Val, Values, Var, falsy_kinds,
                                          lua_type, static_type)

ARITH = {"+", "-", "*", "/", "//", "%", "&", "|", "~", "<<", ">>"}


class ExprLowering:
    def explist(self, exprs: list, scope: Scope, want: int | None) -> list[Val]:
        """Lua's adjustment: every expression gives one value, a final call gives all of its."""
        vals: list[Val] = []
        for i, e in enumerate(exprs):
            last = i == len(exprs) - 1
            if last and isinstance(e, (ast.Call, ast.MethodCall)):
                vals.extend(self.call(e, scope))
            else:
                vals.append(self.expr(e, scope))
        if want is not None:
            vals = vals[:want] if len(vals) >= want else vals + [Val.nil()] * (want - len(vals))
        return vals

    def explist_count(self, exprs: list, scope: Scope) -> tuple[list[Val], object]:
        """explist(exprs) and how many values Lua has there: an int, or a VReg when the
        final call's count is known only at run time (the values past it are nil)."""
        self.last_call_count = None
        vals = self.explist(exprs, scope, None)
        tail = self.last_call_count if exprs and isinstance(exprs[-1], (ast.Call, ast.MethodCall)) else None
        if tail is None:
            return vals, len(vals)
        if isinstance(tail[1], int):
            vals = vals[:len(vals) - tail[0] + tail[1]]
            return vals, len(vals)
        return vals, self.b.bin("add", tail[1], len(vals) - tail[0], "nvals")

    def expr(self, e, scope: Scope) -> Val:
        method = getattr(self, "expr_" + type(e).__name__, None)
        if method is None:
            self.error(e, f"{describe(e)} not available in kernel Lua")
            return Val.nil()
        saved = self.b.loc
        self.b.loc = e.span
        try:
            return method(e, scope)
        finally:
            self.b.loc = saved

    def expr_Nil(self, e, scope):
        return Val.nil()

    def expr_Bool(self, e, scope):
        return Val.bool_(e.value)

    def expr_Int(self, e, scope):
        return Val.int_(e.value)

    def expr_Paren(self, e, scope):
        return self.expr(e.expr, scope)

    def expr_Name(self, e: ast.Name, scope):
        binding = scope.lookup(e.name)
        if isinstance(binding, Var):
            return binding.read()
        if isinstance(binding, Val):
            return binding
        if isinstance(binding, GlobalVar):
            v = self.b.vreg(e.name)
            self.b.emit(ir.Load(8, v, self.gptr(), binding.offset))
            return Val.int_(v) if binding.kind == "int" else Val.bool_(v)
        if isinstance(binding, FuncDef):           # a top-level function as a value
            return Val.object(Closure(binding, self.top))
        self.error(e, f"unknown name '{e.name}'")
        return Val.nil()

    def expr_Index(self, e: ast.Index, scope):
        v = table.index(self, e, scope)
        if v is not None:
            return v
        obj = self.expr(e.obj, scope)
        decl = maps.decl_of(obj)
        if decl is not None and not (e.dot and isinstance(e.key, ast.String)):
            return maps.read(self, decl, self.expr(e.key, scope), e)
        if not isinstance(e.key, ast.String):
            self.error(e, "indexing with a computed key is not available in kernel Lua")
            return Val.nil()
        key = e.key.value.decode()
        if strconst.has(obj):                        # once per string it may be
            return (strconst.each_value(self, [obj], (id(e), "index"),
                                        lambda o: [views.index_value(self, o, key, e)])
                    or [Val.nil()])[0]
        return views.index_value(self, obj, key, e)

    def expr_Function(self, e: ast.Function, scope):
        """A function value: the function and the names it sees now (Closure)."""
        fd = FuncDef(e.name or "anonymous function", e, nested=True)
        return Val.object(Closure(fd, scope.snapshot()))

    def expr_String(self, e: ast.String, scope):
        return Val.string(e.value)

    def expr_Call(self, e, scope):
        vals = self.call(e, scope)
        return vals[0] if vals else Val.nil()

    expr_MethodCall = expr_Call

    def call(self, e, scope: Scope) -> list[Val]:
        target = self.call_target(e, scope)
        if target is not None:
            fd, env = target
            args = self.explist(e.args, scope, None)
            self.b.loc = e.span
            vals, count = self.inline_call(fd, args, e.span, env)
            self.last_call_count = (len(vals), count)
            return vals
        if isinstance(e, ast.MethodCall):
            obj = self.expr(e.obj, scope)
            args, count = self.explist_count(e.args, scope)
            if not isinstance(count, int):
                args = Values(args, count)
            self.b.loc = e.span
            if strconst.any_cstr([obj] + args):        # once per string the values may be
                vals = strconst.each_value(
                    self, [obj] + args, (id(e), "method"),
                    lambda o, *a: self.method_on_path(e, o, Values.like(args, a)))
            else:
                vals = table.call_method(self, obj, e.method, args, e)
        else:
            vals = table.call(self, e, scope) if self.library_arguments(e, scope) else []
        if vals is None and isinstance(e, ast.Call) and isinstance(e.func, ast.Name) \
                and isinstance(scope.lookup(e.func.name), Var):
            self.error(e, f"'{e.func.name}' is a variable, not a function known at compile time: "
                          "kernel Lua inlines every call, so the function a call reaches must be "
                          "known when it compiles")
            vals = []
        elif vals is None:
            self.error(e, f"{describe(e.func) if isinstance(e, ast.Call) else 'this method'} "
                          "cannot be called in kernel Lua")
            vals = []
        # a library call's own count (never a count left by a call among its arguments)
        self.last_call_count = (len(vals), vals.count) if isinstance(vals, Values) else None
        return vals

    def library_arguments(self, e: ast.Call, scope: Scope) -> bool:
        """False, and the error, where a function value is named or written as an argument
        of a library call: it escapes (print, math.max, a map: none can call it back)."""
        ok = True
        for arg in e.args:
            bound = scope.lookup(arg.name) if isinstance(arg, ast.Name) else None
            if isinstance(arg, ast.Function) or isinstance(bound, FuncDef) or \
                    isinstance(bound, Val) and isinstance(bound.obj, Closure):
                self.escape(f"it is passed to '{dotted_name(e.func)}', a library function",
                            arg.span)
                ok = False
        return ok

    def call_target(self, e, scope: Scope):
        """(FuncDef, the Scope it sees) of a call of a function of the script, or None (a
        library call, a method). The callee is a name, or an expression whose value is a
        function known at compile time: `make()()`, `(function() ... end)()`."""
        if not isinstance(e, ast.Call):
            return None
        if isinstance(e.func, ast.Name):
            binding = scope.lookup(e.func.name)
            if isinstance(binding, FuncDef):
                return binding, None
            if isinstance(binding, Val) and isinstance(binding.obj, Closure):
                return binding.obj.fd, binding.obj.env
            return None
        if isinstance(e.func, (ast.Call, ast.Paren, ast.Function)):
            v = self.expr(e.func, scope)
            if isinstance(v.obj, Closure):
                return v.obj.fd, v.obj.env
        return None

    def int_operand(self, v: Val, node, message):
        """The integer payload of v; a runtime error where v is not an integer. `message` is
        Lua's text, or a function of the Lua type name the value has when it fails."""
        if v.is_int:
            return v.payload
        say = message if callable(message) else (lambda _got: message)
        return self.require_kind(v, "int", node, say).payload

    def require_kind(self, v: Val, kind: str, node, say) -> Val:
        """v as a value of `kind`; where it is something else, Lua's runtime error,
        say(Lua type name of what it is)."""
        if v.kinds == frozenset({kind}):
            return v
        others = [k for k in KINDS if k in v.kinds and k != kind]
        b = self.b
        if kind in v.kinds:
            ok, bad = b.block("is_" + kind), b.block("not_" + kind)
            b.branch("eq", v.tag, KIND_TAG[kind], ok, bad)
            b.start(bad)
        for k in others[:-1]:                   # which kind it is decides Lua's message
            this, rest = b.block("is_" + k), b.block("not_" + k)
            if k == "bool":                     # nil, checked before, is the only lower tag
                b.branch("le", v.tag, TRUE, this, rest)
            else:
                b.branch("eq", v.tag, KIND_TAG[k], this, rest)
            b.start(this)
            self.runtime_error(node.span, say(lua_type(k)))
            b.start(rest)
        self.runtime_error(node.span, say(("function" if isinstance(v.obj, Closure) else
                                           lua_type(others[-1])) if others else "no value"))
        if kind in v.kinds:
            b.start(ok)
            return Val(KIND_TAG[kind], v.payload, frozenset({kind}), v.range, v.length, v.data, v.obj)
        return Val(KIND_TAG[kind], 0, frozenset({kind}))

    def expr_BinOp(self, e: ast.BinOp, scope):
        op = e.op
        if op in ("and", "or"):
            return self.logical(e, scope)
        if op == "..":
            return text.concat(self, e, scope)
        if op in ARITH:
            a = self.expr(e.left, scope)
            bv = self.expr(e.right, scope)
            x = self.int_operand(a, e.left, arith_message(op))
            y = self.int_operand(bv, e.right, arith_message(op))
            self.b.loc = e.span
            return Val.int_(self.int.binary(op, x, y, bv.range if bv.is_int else None))
        if op in COMPARE:
            if op in ("<", "<=", ">", ">="):
                a, c = self.expr(e.left, scope), self.expr(e.right, scope)
                if a.is_const and c.is_const and a.is_int and c.is_int:
                    return Val.bool_(luaint.COMPARE[op](a.payload, c.payload))
                if a.data is not None and c.data is not None:     # two constant strings
                    return Val.bool_(luaint.COMPARE[op](a.data, c.data))
                return self.materialize_compare(e, a, c)
            return self.materialize(e, scope)
        self.error(e, f"the '{op}' operator is not available in kernel Lua"
                      + (" (integers only)" if op in ("^",) else ""))
        return Val.nil()

    def expr_UnOp(self, e: ast.UnOp, scope):
        if e.op == "not":
            v = self.expr(e.operand, scope)
            t = v.const_truth()
            if t is not None:
                return Val.bool_(not t)
            return self.materialize(e, scope, v)
        if e.op in ("-", "~"):
            v = self.expr(e.operand, scope)
            x = self.int_operand(v, e.operand, arith_message(e.op))
            return Val.int_(self.int.neg(x) if e.op == "-" else self.int.bnot(x))
        if e.op == "#":
            v = self.expr(e.operand, scope)
            if strconst.has(v):                     # once per string it may be
                return (strconst.each_value(self, [v], (id(e), "len"),
                                            lambda alt: [self.length_of(alt, e, True)])
                        or [Val.nil()])[0]
            return self.length_of(v, e)
        self.error(e, f"the '{e.op}' operator is not available here in kernel Lua")
        return Val.nil()

    def length_of(self, v: Val, e, one_path: bool = False) -> Val:
        """#v. one_path: v is what a value is on one path only (of a strconst split), so a
        value with no string is Lua's runtime error there, not a compile error."""
        if v.kinds & {"str"} or one_path and v.kinds <= {"nil", "bool", "int"}:
            v = self.require_kind(v, "str", e, lambda got: f"attempt to get length of a {got} value")
            if not self.b.reachable:
                return Val.nil()
            return Val.int_(views.length(self, v), (0, 0xFFFF))
        self.error(e, "'#' gives the length of strings and views only in kernel Lua")
        return Val.nil()

    def method_on_path(self, e, obj: Val, args: list[Val]) -> list[Val]:
        """obj:method(args) on one path of a strconst split (see length_of)."""
        if obj.kinds <= {"nil", "bool", "int", "str"}:
            obj = self.require_kind(obj, "str", e, lambda got: f"attempt to index a {got} value")
            if not self.b.reachable:
                return [Val.nil()]
        return table.call_method(self, obj, e.method, args, e)

    def logical(self, e: ast.BinOp, scope) -> Val:
        """`a and b` / `a or b` as values: the operand Lua would return. The result may mix
        kinds (a view or a constant string: `x or "default"`); constant strings are held as
        `strconst` values."""
        b = self.b
        left = e.left.expr if isinstance(e.left, ast.Paren) else e.left
        if e.op == "or" and isinstance(left, ast.BinOp) and left.op == "and":
            return self.choice(e, left, scope)
        a = self.expr(e.left, scope)
        truth = a.const_truth()
        if truth is not None:
            if (e.op == "and") == truth:
                return self.expr(e.right, scope)
            return a
        other, keep, join = b.block("rhs"), b.block("keep"), b.block("logic_end")
        self.truth_branch(a, other, keep) if e.op == "and" else self.truth_branch(a, keep, other)
        # the part of a that can be the result: its falsy kinds for `and`, truthy ones for `or`
        kept = falsy_part(a) if e.op == "and" else truthy_part(a)
        return self.join_values(e, scope, kept, keep, other, join)

    def choice(self, e: ast.BinOp, left: ast.BinOp, scope) -> Val:
        """`c and x or y`: x where c and x are true, else y. Lowered as one choice so the
        result's kinds are x's truthy kinds and y's (not also c's falsy ones)."""
        b = self.b
        other, keep, join, mid = b.block("rhs"), b.block("keep"), b.block("logic_end"), b.block("and_rhs")
        self.cond(left.left, scope, mid, other)
        b.start(mid)
        x = self.expr(left.right, scope)
        self.truth_branch(x, keep, other)
        return self.join_values(e, scope, truthy_part(x), keep, other, join)

    def join_values(self, e, scope, kept: Val, keep, other, join) -> Val:
        """The value of e: `kept` on the path through `keep`, e.right's value through `other`."""
        b = self.b
        b.start(other)
        reached = b.reachable
        rhs = self.expr(e.right, scope)
        kinds = strconst.stored_kinds(kept) | (strconst.stored_kinds(rhs) if reached else frozenset())
        if isinstance(kept.obj, Closure) or reached and isinstance(rhs.obj, Closure):
            self.escape(f"'{e.op}' chooses it at run time", e.span)
        elif "obj" in kinds:
            self.error(e, OBJ_CHOICE, OBJ_CHOICE_HINT)
        if "obj" in kinds:
            b.jump(join)
            b.start(keep)
            b.jump(join)
            b.start(join)
            return Val.nil()
        var = self.new_var((self._inst_id(), id(e)), "logic", kinds)
        self.assign(var, rhs)
        b.jump(join)
        b.start(keep)
        self.assign(var, kept)
        b.jump(join)
        b.start(join)
        return var.read()

    def materialize_compare(self, e, a: Val, c: Val) -> Val:
        """An ordering comparison of evaluated operands as a boolean value."""
        return self.as_boolean(lambda yes, no: self.compare_values(e, a, c, yes, no))

    def materialize(self, e, scope, v: Val | None = None) -> Val:
        """A condition (or `not v`) as a boolean value."""
        if v is not None:
            return self.as_boolean(lambda yes, no: self.truth_branch(v, no, yes))
        return self.as_boolean(lambda yes, no: self.cond(e, scope, yes, no))

    def as_boolean(self, branch) -> Val:
        """true where branch(yes, no) goes to yes, false where it goes to no."""
        b = self.b
        t = b.copy(TRUE, "bool")
        yes, no, join = b.block("yes"), b.block("no"), b.block("bool_end")
        branch(yes, no)
        b.start(no)
        b.mov(t, FALSE)
        b.jump(join)
        b.start(yes)
        b.jump(join)
        b.start(join)
        return Val.bool_(t)

    # ---- conditions ----------------------------------------------------------

    def cond(self, e, scope: Scope, then_: ir.Block, else_: ir.Block) -> None:
        """Branch to then_ when e is true (in Lua's sense), else to else_."""
        b = self.b
        if isinstance(e, ast.Paren):
            return self.cond(e.expr, scope, then_, else_)
        if isinstance(e, ast.UnOp) and e.op == "not":
            return self.cond(e.operand, scope, else_, then_)
        if isinstance(e, ast.BinOp) and e.op in ("and", "or"):
            mid = b.block("cond")
            if e.op == "and":
                self.cond(e.left, scope, mid, else_)
            else:
                self.cond(e.left, scope, then_, mid)
            b.start(mid)
            return self.cond(e.right, scope, then_, else_)
        if isinstance(e, ast.BinOp) and e.op in COMPARE:
            return self.compare(e, scope, then_, else_)
        self.truth_branch(self.expr(e, scope), then_, else_)

    def string_equality(self, a: Val, c: Val, yes, no) -> None:
        """== where both sides may be strings: same tag, then bytes (or payloads)."""
        b = self.b
        sa, sc = as_string(a), as_string(c)
        if a.kinds == c.kinds == frozenset({"str"}):
            return views.equal_strings(self, sa, sc, yes, no)
        same, strings, other = b.block("eq_tag"), b.block("eq_str"), b.block("eq_other")
        b.branch("eq", a.tag, c.tag, same, no)
        b.start(same)
        b.branch("eq", a.tag if isinstance(a.tag, ir.VReg) else c.tag, STR, strings, other)
        b.start(strings)
        views.equal_strings(self, sa, sc, yes, no)
        b.start(other)
        if "int" in a.kinds and "int" in c.kinds:
            b.branch("eq", a.payload, c.payload, yes, no)
        else:
            b.jump(yes)

    def truth_branch(self, v: Val, then_: ir.Block, else_: ir.Block) -> None:
        t = v.const_truth()
        if t is not None:
            self.b.jump(then_ if t else else_)
        else:
            self.b.branch("ge", v.tag, TRUE, then_, else_)

    def compare(self, e: ast.BinOp, scope, then_, else_) -> None:
        b = self.b
        a = self.expr(e.left, scope)
        c = self.expr(e.right, scope)
        b.loc = e.span
        if e.op in ("==", "~="):
            yes, no = (then_, else_) if e.op == "==" else (else_, then_)
            return self.equality(a, c, yes, no)
        self.compare_values(e, a, c, then_, else_)

    def compare_values(self, e: ast.BinOp, a: Val, c: Val, then_, else_) -> None:
        b = self.b
        if strconst.any_cstr([a, c]):
            return strconst.branch_each(self, [a, c], lambda x, y: self.compare_values(
                e, x, y, then_, else_))
        if "str" in a.kinds and "str" in c.kinds:
            other = self.string_order(e.op, a, c, then_, else_)
            if other is None:
                return
            b.start(other)                      # not two strings: numbers, or Lua's error
        if not (a.is_int and c.is_int):
            x = self.int_operand(a, e.left, compare_message(e.op, a, c, True))
            y = self.int_operand(c, e.right, compare_message(e.op, a, c, False))
        else:
            x, y = a.payload, c.payload
        cond = COMPARE[e.op]
        if isinstance(x, int) and isinstance(y, int):
            b.jump(then_ if luaint.COMPARE[e.op](x, y) else else_)
            return
        b.branch(cond, x, y, then_, else_)

    def string_order(self, op: str, a: Val, c: Val, then_, else_) -> ir.Block | None:
        """<, <=, >, >= where both sides may be strings: byte-wise when both are (Lua 5.4's
        order, docs/language.md); returns the block where they are not (None: they are)."""
        b = self.b
        less = then_ if op in ("<", "<=") else else_
        same = then_ if op in ("<=", ">=") else else_
        more = then_ if op in (">", ">=") else else_
        other = None
        for v in (a, c):
            if v.kinds != frozenset({"str"}):
                other = other or b.block("cmp_other")
                is_str = b.block("cmp_str")
                b.branch("eq", v.tag, STR, is_str, other)
                b.start(is_str)
        views.order_strings(self, as_string(a), as_string(c), less, same, more)
        return other

    def equality(self, a: Val, c: Val, yes, no) -> None:
        b = self.b
        if strconst.any_cstr([a, c]):
            return strconst.branch_each(self, [a, c], lambda x, y: self.equality(x, y, yes, no))
        if isinstance(a.obj, Closure) or isinstance(c.obj, Closure):
            self.escape("it is compared (functions are not values kernel Lua can compare)")
            b.jump(no)
            return
        if "lview" in a.kinds and "lview" in c.kinds or "obj" in a.kinds | c.kinds:
            self.error_at_loc("comparing layouts or library values is not available in kernel Lua")
            b.jump(no)
            return
        if "str" in a.kinds and "str" in c.kinds:
            return self.string_equality(a, c, yes, no)
        if a.is_const and c.is_const:
            b.jump(yes if (a.tag, a.payload) == (c.tag, c.payload) else no)
            return
        if not (a.kinds & c.kinds):
            b.jump(no)
            return
        if isinstance(a.tag, int) and isinstance(c.tag, int):
            if a.tag != c.tag:
                b.jump(no)
            elif a.tag == INT:
                b.branch("eq", a.payload, c.payload, yes, no)
            else:
                b.jump(yes)
            return
        same_tag = b.block("same_tag")
        b.branch("eq", a.tag, c.tag, same_tag, no)
        b.start(same_tag)
        if "int" in a.kinds and "int" in c.kinds:
            b.branch("eq", a.payload, c.payload, yes, no)
        else:
            b.jump(yes)



def as_string(v: Val) -> Val:
    """v where it holds a string (its tag checked already)."""
    return Val(STR, v.payload, frozenset({"str"}), None, v.length, v.data)


KIND_TAG = {"nil": NIL, "int": INT, "str": STR, "lview": LVIEW, "obj": OBJ, "cstr": CSTR}


def truthy_part(a: Val) -> Val:
    """a where it is true: without nil (and with only true for booleans)."""
    return Val(a.tag, a.payload, a.kinds - {"nil"}, a.range, a.length, a.data, a.obj, a.strs)


def falsy_part(a: Val) -> Val:
    return Val(a.tag, 0, falsy_kinds(a.kinds))


def arith_message(op: str):
    kind = "bitwise operation" if op in ("&", "|", "~", "<<", ">>") else "arithmetic"
    return lambda got: f"attempt to perform {kind} on a {got} value"


def compare_message(op: str, a: Val, c: Val, failing_left: bool):
    """Lua evaluates a > b as b < a, and names the operands in that order."""
    def say(got):
        left, right = (got, static_type(c)) if failing_left else (static_type(a), got)
        if op in (">", ">="):
            left, right = right, left
        return f"attempt to compare two {left} values" if left == right else \
            f"attempt to compare {left} with {right}"
    return say


def dotted_name(e) -> str:
    """'string.format' for a chain of dotted names; 'this function' for anything else."""
    parts = []
    while isinstance(e, ast.Index) and e.dot and isinstance(e.key, ast.String):
        parts.append(e.key.value.decode())
        e = e.obj
    return ".".join([e.name] + parts[::-1]) if isinstance(e, ast.Name) else "this function"


def describe(e) -> str:
    names = {"Float": "floating-point numbers are", "String": "strings are",
             "Vararg": "varargs ('...') are", "Function": "function values (closures) are",
             "Table": "tables are", "Index": "indexing is", "Name": f"'{getattr(e, 'name', '')}' is"}
    return names.get(type(e).__name__, f"this {type(e).__name__.lower()} is")


