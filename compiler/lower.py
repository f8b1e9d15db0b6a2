"""Lowering: a checked kernel-Lua chunk and a hook → IR over virtual registers.

Owns the meaning of statements and expressions: scopes, inlining of every
function call (kernel Lua has no recursion, so inlining terminates), multiple
values, short-circuit conditions, loops as real BPF loops, runtime errors and
the value representation of `values`. Integer operators are `intops`'; the
library functions are `intrinsics`'.

Types are inferred by lowering itself: a variable's storage is shaped by the
kinds of value it may hold; when an assignment widens that set, lowering
starts over with the wider set (`Restart`), which converges because sets only
grow.

Loops (DESIGN §2): every loop carries an iteration bound (`--@bound N` or the
default) checked at run time, and — when the kernel has `may_goto` — begins with
it, so the verifier sees a real back-edge. Loop-carried registers are "blinded"
at loop entry (an add of a zero the verifier cannot know, read from the
globals map) so the verifier's states converge after an iteration or two
instead of walking every iteration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ast, intrinsics, ir
from luabpf.compiler.builder import Builder
from luabpf.compiler.diagnostics import CompileError, Diagnostics, InternalError
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.intops import COMPARE, IntOps
from luabpf.compiler.source import Source, Span
from luabpf.compiler.values import FALSE, INT, NIL, TRUE, Val, Var, falsy_kinds, type_name

GLOBALS_MAP = "luabpf_globals"
ERRORS_MAP = "luabpf_errors"
ZERO_OFF = 0                 # word 0 of the globals map: always 0, unknown to the verifier
ARITH = {"+", "-", "*", "/", "//", "%", "&", "|", "~", "<<", ">>"}
MAX_INLINE_DEPTH = 64


class Restart(Exception):
    """A variable's kinds widened: lower the program again."""


@dataclass
class Options:
    max_loop: int = 1_000_000
    loops: str = "may_goto"          # 'may_goto' | 'bounded' (plain back-edges)


@dataclass
class ErrorSite:
    line: int
    col: int
    message: str


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


@dataclass
class Lowered:
    function: ir.Function
    sites: list[ErrorSite]
    globals: dict[str, GlobalVar]
    uses_globals_map: bool
    uses_errors_map: bool


class Lowerer:
    def __init__(self, chunk: ast.Chunk, source: Source, hook, options: Options, kinds: dict):
        self.chunk = chunk
        self.source = source
        self.hook = hook
        self.options = options
        self.kinds = kinds                     # persistent across restarts: var key → kinds
        self.diags = Diagnostics()
        self.b = Builder()
        self.int = IntOps(self.b, self._fail_here)
        self.sites: list[ErrorSite] = []
        self.site_blocks: list[ir.Block] = []
        self.globals: dict[str, GlobalVar] = {}
        self.functions: dict[str, FuncDef] = {}
        self.top = Scope()
        self.instances: list[Instance] = []
        self._instance_ids = 0
        self.errsite = self.b.vreg("errsite")
        self.err_block = ir.Block("error", cold=True)
        self.prologue = self.b.cur
        self._gptr: ir.VReg | None = None
        self._zero_reads = False

    # ---- diagnostics and runtime errors --------------------------------------

    def error(self, node, message: str, hint: str | None = None) -> None:
        self.diags.error(node.span, message, hint)

    def runtime_error(self, span: Span | None, message: str) -> None:
        """End the current path with a Lua runtime error reported at span."""
        span = span or self.b.loc
        site = len(self.sites)
        self.sites.append(ErrorSite(span.line if span else 0, span.col if span else 0, message))
        stub = ir.Block(f"err{site}", cold=True)
        self.site_blocks.append(stub)
        self.b.jump(stub)
        stub.ops.append(ir.Mov(self.errsite, site, loc=span))
        stub.term = ir.Jump(self.err_block, loc=span)

    def _fail_here(self, message: str) -> None:
        self.runtime_error(self.b.loc, message)

    # ---- the whole program --------------------------------------------------

    def lower(self) -> Lowered:
        self.collect_toplevel()
        self.diags.raise_if_any(self.source)
        entry = self.functions.get(self.hook.entry)
        if entry is None:
            raise CompileError([self._diag_at_top(f"no function '{self.hook.entry}' to run for the "
                                                   f"{self.hook.name} hook")], self.source)
        body = self.b.block("body")
        self.b.loc = entry.node.span
        args = self.hook.prologue(self)      # into the entry block, before anything clobbers r1
        self.b.cur = body
        self.b.targeted.add(id(body))
        vals, nret = self.inline_call(entry, args, entry.node.span)
        self.hook.epilogue(self, vals, nret)
        self.diags.raise_if_any(self.source)
        self._finish_prologue(body)
        self._finish_error_path()
        fn = ir.Function(self.b.blocks + self.site_blocks + [self.err_block], self.b.slots,
                         [])
        return Lowered(fn, self.sites, self.globals, self._gptr is not None,
                       bool(self.sites) and getattr(self.hook, 'count_errors', True))

    def _diag_at_top(self, message: str):
        from luabpf.compiler.diagnostics import Diagnostic
        return Diagnostic(message, Span(self.source.filename, 1, 1, 1, 2))

    def _finish_prologue(self, body: ir.Block) -> None:
        """The entry block: look up the globals map once if anything needs it."""
        b = self.b
        b.cur = self.prologue
        if self._gptr is None:
            b.jump(body)
            return
        key = b.slot(4, "zero_key")
        b.emit(ir.Store(4, key, 0, 0))
        m, k = b.vreg("globals"), b.vreg("key")
        b.emit(ir.LoadMap(m, GLOBALS_MAP))
        b.emit(ir.SlotAddr(k, key))
        b.emit(ir.Call(Helper.map_lookup_elem, [m, k], self._gptr))
        fail = b.block("no_globals")
        b.branch("eq", self._gptr, 0, fail, body)
        b.start(fail)
        b.terminate(ir.Exit(self.hook.default_return))

    def _finish_error_path(self) -> None:
        """error: count the site in the errors map, tell the hook, return the default verdict."""
        b = self.b
        done = ir.Block("error_done", cold=True)
        count = ir.Block("error_count", cold=True)
        b.cur = self.err_block
        b.loc = None
        if not self.sites:
            return
        self.hook.on_error(self, self.errsite)
        if not getattr(self.hook, "count_errors", True):
            b.terminate(ir.Exit(self.hook.default_return))
            return
        key = b.slot(4, "error_key")
        b.emit(ir.Store(4, key, 0, self.errsite))
        m, k, p = b.vreg("errors"), b.vreg("key"), b.vreg("counter")
        b.emit(ir.LoadMap(m, ERRORS_MAP))
        b.emit(ir.SlotAddr(k, key))
        b.emit(ir.Call(Helper.map_lookup_elem, [m, k], p))
        b.terminate(ir.Branch("eq", p, 0, done, count))
        b.cur = count
        b.emit(ir.AtomicAdd(8, p, 0, b.copy(1)))
        b.jump(done)
        b.cur = done
        b.terminate(ir.Exit(self.hook.default_return))
        self.site_blocks += [count, done]

    def gptr(self) -> ir.VReg:
        if self._gptr is None:
            self._gptr = self.b.vreg("gptr")
        return self._gptr

    def opaque_zero(self) -> ir.VReg:
        """A register holding 0 that the verifier cannot know is 0 (see the module doc)."""
        if hasattr(self.hook, "opaque_zero"):
            return self.hook.opaque_zero(self)
        z = self.b.vreg("zero")
        self.b.emit(ir.Load(8, z, self.gptr(), ZERO_OFF))
        return z

    # ---- top level ------------------------------------------------------------

    def collect_toplevel(self) -> None:
        for st in self.chunk.body.stmts:
            if isinstance(st, ast.FunctionDecl) and not st.method and len(st.path) == 1:
                self.define_function(st.path[0], st.func, st)
            elif isinstance(st, ast.LocalFunction):
                self.define_function(st.name, st.func, st)
            elif isinstance(st, ast.Local):
                vals = [self.const_expr(e) for e in st.values]
                for i, n in enumerate(st.names):
                    v = vals[i] if i < len(vals) else Val.nil()
                    if v is not None:
                        self.top.names[n.name] = v
            elif isinstance(st, ast.Assign) and all(isinstance(t, ast.Name) for t in st.targets):
                for i, t in enumerate(st.targets):
                    value = st.values[i] if i < len(st.values) else None
                    self.define_global(t, value)
            else:
                self.error(st, "top-level code runs once at load: only definitions of functions, "
                               "constants, maps and globals may stand here")

    def define_function(self, name: str, func: ast.Function, node) -> None:
        fd = FuncDef(name, func)
        self.functions[name] = fd
        self.top.names[name] = fd

    def define_global(self, target: ast.Name, value: ast.Expr | None) -> None:
        v = self.const_expr(value) if value is not None else Val.nil()
        if v is None:
            return
        if v.kinds == frozenset({"nil"}):
            self.error(target, f"global '{target.name}' needs an initial value (an integer or a boolean)")
            return
        kind = "int" if v.is_int else "bool"
        word = v.payload if kind == "int" else v.tag
        g = GlobalVar(target.name, 8 * (len(self.globals) + 1), kind, word)
        self.globals[target.name] = g
        self.top.names[target.name] = g

    def const_expr(self, e: ast.Expr) -> Val | None:
        """Evaluate a top-level initializer at compile time."""
        saved = self.b.cur
        self.b.cur = ir.Block("const")
        self.b.targeted.add(id(self.b.cur))
        nerr = len(self.diags.items)
        try:
            v = self.expr(e, self.top)
        finally:
            self.b.cur = saved
        if len(self.diags.items) == nerr and not v.is_const:
            self.error(e, "a top-level value must be a constant expression (integers, booleans, "
                          "math.*, other constants)")
            return None
        return v if v.is_const else None

    # ---- functions ----------------------------------------------------------

    def new_var(self, key, name: str, kinds: frozenset, const: Val | None = None) -> Var:
        kinds = frozenset(self.kinds.get(key, frozenset()) | kinds)
        self.kinds[key] = kinds
        var = Var(name, kinds, self.b.vreg, const)
        var.key = key
        return var

    def assign(self, var: Var, v: Val) -> None:
        if not self.b.reachable:
            return
        if not v.kinds <= var.kinds:
            self.kinds[var.key] = var.kinds | v.kinds
            raise Restart()
        var.range = None
        if var.tag is not None:
            self.b.mov(var.tag, v.tag)
        if var.payload is not None:
            self.b.mov(var.payload, v.payload if "int" in v.kinds else 0)

    def inline_call(self, fd: FuncDef, args: list[Val], span: Span) -> tuple[list[Val], object]:
        if len(self.instances) >= MAX_INLINE_DEPTH:
            raise InternalError("inlining too deep")
        self._instance_ids += 1
        inst = Instance(self._instance_ids, fd, self.b.block("ret"))
        scope = Scope(self.top)
        for i, p in enumerate(fd.node.params):
            v = args[i] if i < len(args) else Val.nil()
            var = self.new_var((inst.id, "param", i), p, v.kinds)
            self.assign(var, v)
            scope.names[p] = var
        nres = self.kinds.get((fd.name, "nres"), 0)
        inst.results = [self.new_var((inst.id, "ret", i), f"{fd.name}.ret{i}", frozenset())
                        for i in range(nres)]
        inst.counts = self.kinds.setdefault((inst.id, "counts"), set())
        if len(inst.counts) > 1:              # returns of different lengths: count at run time
            inst.nret = self.new_var((inst.id, "nret"), f"{fd.name}.nret", frozenset({"int"}))
        self.instances.append(inst)
        try:
            self.block(fd.node.body, scope)
            if self.b.reachable:
                self.do_return(inst, [], fd.node.span)
        finally:
            self.instances.pop()
        self.b.start(inst.ret_block)
        vals = [r.read() for r in inst.results]
        if inst.nret is None:
            return vals, next(iter(inst.counts), 0)
        return vals, inst.nret.read().payload

    def do_return(self, inst: Instance, vals: list[Val], span: Span) -> None:
        if not self.b.reachable:
            return
        if len(vals) > len(inst.results):
            self.kinds[(inst.func.name, "nres")] = len(vals)
            raise Restart()
        for i, r in enumerate(inst.results):
            self.assign(r, vals[i] if i < len(vals) else Val.nil())
        if len(vals) not in inst.counts:
            inst.counts.add(len(vals))
            if len(inst.counts) > 1 and inst.nret is None:
                raise Restart()
        if inst.nret is not None:
            self.assign(inst.nret, Val.int_(len(vals)))
        self.b.jump(inst.ret_block)

    # ---- statements ---------------------------------------------------------

    def block(self, blk: ast.Block, scope: Scope) -> None:
        for st in blk.stmts:
            self.stmt(st, scope)        # code after a return or an error lands in a dead block

    def stmt(self, st, scope: Scope) -> None:
        self.b.loc = st.span
        method = getattr(self, "stmt_" + type(st).__name__, None)
        if method is None:
            self.error(st, f"{type(st).__name__.lower()} statements are not available in kernel Lua")
            return
        method(st, scope)

    def stmt_Local(self, st: ast.Local, scope: Scope) -> None:
        vals = self.explist(st.values, scope, len(st.names))
        for i, n in enumerate(st.names):
            v = vals[i] if i < len(vals) else Val.nil()
            var = self.new_var((self._inst_id(), id(n)), n.name, v.kinds)
            self.assign(var, v)
            scope.names[n.name] = var

    def stmt_LocalFunction(self, st: ast.LocalFunction, scope: Scope) -> None:
        self.error(st, "closures are not available in kernel Lua: define functions at top level")

    def stmt_FunctionDecl(self, st: ast.FunctionDecl, scope: Scope) -> None:
        self.error(st, "closures are not available in kernel Lua: define functions at top level")

    def stmt_Assign(self, st: ast.Assign, scope: Scope) -> None:
        vals = self.explist(st.values, scope, len(st.targets))
        if len(st.targets) > 1:           # a, b = b, a: a value must not see an earlier store
            stored: set[int] = set()
            for i, t in enumerate(st.targets):
                if any(id(r) in stored for r in (vals[i].tag, vals[i].payload)):
                    vals[i] = self.snapshot(vals[i])
                binding = scope.lookup(t.name) if isinstance(t, ast.Name) else None
                if isinstance(binding, Var):
                    stored.update(id(r) for r in binding.registers())
        for i, t in enumerate(st.targets):
            v = vals[i] if i < len(vals) else Val.nil()
            self.store(t, v, scope)

    def snapshot(self, v: Val) -> Val:
        tag = self.b.copy(v.tag) if isinstance(v.tag, ir.VReg) else v.tag
        payload = self.b.copy(v.payload) if isinstance(v.payload, ir.VReg) else v.payload
        return Val(tag, payload, v.kinds)

    def store(self, target, v: Val, scope: Scope) -> None:
        if isinstance(target, ast.Name):
            binding = scope.lookup(target.name)
            if isinstance(binding, Var):
                self.assign(binding, v)
                return
            if isinstance(binding, GlobalVar):
                self.store_global(binding, v, target)
                return
            if isinstance(binding, (Val, FuncDef)):
                self.error(target, f"'{target.name}' is a constant: it cannot be assigned")
                return
            self.error(target, f"assignment to undeclared global '{target.name}' "
                               f"(declare it at top level: {target.name} = 0)")
            return
        handler = intrinsics.store_handler(self, target, scope)
        if handler is None:
            self.error(target, "this assignment target is not available in kernel Lua")
            return
        handler(v)

    def store_global(self, g: GlobalVar, v: Val, node) -> None:
        if not v.kinds <= {g.kind}:
            self.error(node, f"global '{g.name}' holds {'integers' if g.kind == 'int' else 'booleans'}; "
                             f"a {type_name(v.kinds)} value cannot be stored in it")
            return
        word = v.payload if g.kind == "int" else v.tag
        self.b.emit(ir.Store(8, self.gptr(), g.offset, self.b.small(word) if isinstance(word, int)
                             and not -(1 << 31) <= word < (1 << 31) else word))

    def stmt_CallStat(self, st: ast.CallStat, scope: Scope) -> None:
        self.call(st.call, scope)

    def stmt_Do(self, st: ast.Do, scope: Scope) -> None:
        self.block(st.body, Scope(scope))

    def stmt_Return(self, st: ast.Return, scope: Scope) -> None:
        vals = self.explist(st.values, scope, None)
        self.do_return(self.instances[-1], vals, st.span)

    def stmt_Break(self, st: ast.Break, scope: Scope) -> None:
        loops = self.instances[-1].loops
        if not loops:
            self.error(st, "break outside a loop")
            return
        self.b.jump(loops[-1])

    def stmt_If(self, st: ast.If, scope: Scope) -> None:
        b = self.b
        done = b.block("endif")
        for cond, body in st.tests:
            b.loc = cond.span
            then_, else_ = b.block("then"), b.block("else")
            self.cond(cond, scope, then_, else_)
            b.start(then_)
            self.block(body, Scope(scope))
            if not b.terminated:
                b.jump(done)
            b.start(else_)
        if st.orelse is not None:
            self.block(st.orelse, Scope(scope))
        if not b.terminated:
            b.jump(done)
        b.start(done)

    # ---- loops ---------------------------------------------------------------

    def loop_bound(self, st) -> int:
        return st.bound if st.bound is not None else self.options.max_loop

    def loop_prelude(self, body: ast.Block, scope: Scope):
        """Blind the loop-carried registers; returns the bound counter (or None)."""
        if self.options.loops != "may_goto":
            return None
        zero = self.opaque_zero()
        for var in self.assigned_outer_vars(body, scope):
            for r in var.registers():
                self.b.emit(ir.Bin("add", r, r, zero))
        return self.b.copy(zero, "iterations")

    def assigned_outer_vars(self, body: ast.Block, scope: Scope) -> list[Var]:
        found: dict[int, Var] = {}
        for node in ast.walk(body):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        v = scope.lookup(t.name)
                        if isinstance(v, Var):
                            found[id(v)] = v
        return list(found.values())

    def loop_head(self, exit_budget: ir.Block | None) -> ir.Block:
        """Start the loop's head block; with may_goto it is the first instruction."""
        b = self.b
        head = b.block("loop")
        b.jump(head)
        b.start(head)
        if exit_budget is not None:
            cont = b.block("loop_go")
            b.terminate(ir.MayGoto(exit_budget, cont))
            b.start(cont)
        return head

    def budget_block(self, span: Span) -> ir.Block | None:
        if self.options.loops != "may_goto":
            return None
        blk = self.b.block("budget")
        saved = self.b.cur
        self.b.cur = blk
        self.runtime_error(span, "loop ran out of the kernel's iteration budget")
        self.b.cur = saved
        return blk

    def count_iteration(self, counter, bound: int, span: Span) -> None:
        if counter is None:
            return
        b = self.b
        b.emit(ir.Bin("add", counter, counter, 1))
        ok, over = b.block("bound_ok"), b.block("bound_over")
        b.branch("gt", counter, bound, over, ok)
        b.start(over)
        self.runtime_error(span, f"loop bound exceeded ({bound} iterations; raise it with --@bound N)")
        b.start(ok)

    def stmt_While(self, st: ast.While, scope: Scope) -> None:
        b = self.b
        counter = self.loop_prelude(st.body, scope)
        budget = self.budget_block(st.span)
        head = self.loop_head(budget)
        body, done = b.block("while_body"), b.block("while_end")
        self.cond(st.cond, scope, body, done)
        b.start(body)
        self.count_iteration(counter, self.loop_bound(st), st.span)
        self.instances[-1].loops.append(done)
        try:
            self.block(st.body, Scope(scope))
        finally:
            self.instances[-1].loops.pop()
        if not b.terminated:
            b.jump(head)
        b.start(done)

    def stmt_Repeat(self, st: ast.Repeat, scope: Scope) -> None:
        b = self.b
        counter = self.loop_prelude(st.body, scope)
        budget = self.budget_block(st.span)
        head = self.loop_head(budget)
        done = b.block("repeat_end")
        self.count_iteration(counter, self.loop_bound(st), st.span)
        inner = Scope(scope)
        self.instances[-1].loops.append(done)
        try:
            self.block(st.body, inner)
        finally:
            self.instances[-1].loops.pop()
        if not b.terminated:
            b.loc = st.cond.span
            self.cond(st.cond, inner, done, head)
        b.start(done)

    def stmt_NumericFor(self, st: ast.NumericFor, scope: Scope) -> None:
        b = self.b
        start = self.int_operand(self.expr(st.start, scope), st.start, "'for' initial value must be a number")
        stop = self.int_operand(self.expr(st.stop, scope), st.stop, "'for' limit must be a number")
        step = 1 if st.step is None else self.int_operand(self.expr(st.step, scope), st.step,
                                                          "'for' step must be a number")
        b.loc = st.span
        if isinstance(step, int) and step == 0:
            self.runtime_error(st.span, "'for' step is zero")
            return
        done = b.block("for_end")
        count = self.for_count(start, stop, step, done, st)
        if count is None:
            b.jump(done)
            b.start(done)
            return
        bound = self.loop_bound(st)
        static_ok = isinstance(count, int) and count < bound
        counter = self.loop_prelude(st.body, scope)
        if static_ok:
            counter = None
        i = b.copy(start, "for_i")
        remaining = b.copy(count, "for_n")
        if self.options.loops == "may_goto":
            zero = self.opaque_zero()
            b.emit(ir.Bin("add", i, i, zero))
            b.emit(ir.Bin("add", remaining, remaining, zero))
        budget = self.budget_block(st.span)
        head = self.loop_head(budget)
        body_scope = Scope(scope)
        self.count_iteration(counter, bound, st.span)
        var = self.new_var((self._inst_id(), id(st)), st.var, frozenset({"int"}))
        self.assign(var, Val.int_(i))
        if not any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.name == st.var
                                                     for t in n.targets) for n in ast.walk(st.body)):
            var.range = for_range(start, stop, step)     # the body never reassigns it
        body_scope.names[st.var] = var
        step_blk = b.block("for_step")
        self.instances[-1].loops.append(done)
        try:
            self.block(st.body, body_scope)
        finally:
            self.instances[-1].loops.pop()
        if not b.terminated:
            b.jump(step_blk)
        b.start(step_blk)
        more = b.block("for_more")
        b.branch("eq", remaining, 0, done, more)
        b.start(more)
        b.emit(ir.Bin("sub", remaining, remaining, 1))
        b.emit(ir.Bin("add", i, i, b.small(step)))
        b.jump(head)
        b.start(done)

    def for_count(self, start, stop, step, done: ir.Block, st):
        """Lua 5.4's forprep: iterations minus one, unsigned; None when the loop never runs."""
        from luabpf.compiler import luaint
        b = self.b
        if all(isinstance(x, int) for x in (start, stop, step)):
            c = luaint.for_count(start, stop, step)
            return c
        if not isinstance(step, int):
            ok, zero = b.block("step_ok"), b.block("step_zero")
            b.branch("eq", step, 0, zero, ok)
            b.start(zero)
            self.runtime_error(st.span, "'for' step is zero")
            b.start(ok)
            pos, neg, join = b.block("step_pos"), b.block("step_neg"), b.block("for_count")
            count = b.vreg("count")
            b.branch("sgt", step, 0, pos, neg)
            b.start(pos)
            self._count_up(start, stop, step, count, done)
            b.jump(join)
            b.start(neg)
            self._count_down(start, stop, step, count, done)
            b.jump(join)
            b.start(join)
            return count
        count = b.vreg("count")
        if step > 0:
            self._count_up(start, stop, step, count, done)
        else:
            self._count_down(start, stop, step, count, done)
        return count

    def _count_up(self, start, stop, step, count, done):
        b = self.b
        go = b.block("for_go")
        b.branch("sgt", start, stop, done, go)
        b.start(go)
        b.emit(ir.Bin("sub", count, b.reg(stop), b.small(start)))
        if not (isinstance(step, int) and step == 1):
            if isinstance(step, int):
                b.emit(ir.Bin("udiv", count, count, b.small(step)))
            else:
                b.emit(ir.Bin("udiv", count, count, step))

    def _count_down(self, start, stop, step, count, done):
        b = self.b
        go = b.block("for_go")
        b.branch("slt", start, stop, done, go)
        b.start(go)
        b.emit(ir.Bin("sub", count, b.reg(start), b.small(stop)))
        if isinstance(step, int):
            divisor = ((-(step + 1)) & ((1 << 64) - 1)) + 1
            if divisor != 1:
                b.emit(ir.Bin("udiv", count, count, b.small(divisor) if divisor < (1 << 31) else b.copy(divisor)))
        else:
            d = b.bin("add", step, 1)
            d2 = self.int.neg(d)
            d3 = b.bin("add", d2, 1)
            b.emit(ir.Bin("udiv", count, count, d3))

    def _inst_id(self) -> int:
        return self.instances[-1].id if self.instances else 0

    # ---- expressions ---------------------------------------------------------

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
        if isinstance(binding, FuncDef):
            self.error(e, f"function '{e.name}' is not a value in kernel Lua: call it")
            return Val.nil()
        self.error(e, f"unknown name '{e.name}'")
        return Val.nil()

    def expr_Index(self, e: ast.Index, scope):
        v = intrinsics.index(self, e, scope)
        if v is None:
            self.error(e, "indexing is not available here in kernel Lua")
            return Val.nil()
        return v

    def expr_Call(self, e, scope):
        vals = self.call(e, scope)
        return vals[0] if vals else Val.nil()

    expr_MethodCall = expr_Call

    def call(self, e, scope: Scope) -> list[Val]:
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            binding = scope.lookup(e.func.name)
            if isinstance(binding, FuncDef):
                args = self.explist(e.args, scope, None)
                vals, _ = self.inline_call(binding, args, e.span)
                return vals
        handler = intrinsics.call(self, e, scope)
        if handler is None:
            self.error(e, f"{describe(e.func) if isinstance(e, ast.Call) else 'this method'} "
                          "cannot be called in kernel Lua")
            return []
        return handler

    def int_operand(self, v: Val, node, message: str):
        """The integer payload of v; a runtime error where v is not an integer."""
        if v.is_int:
            return v.payload
        if "int" not in v.kinds:
            self.runtime_error(node.span, message)
            return 0
        b = self.b
        ok, bad = b.block("is_int"), b.block("not_int")
        b.branch("eq", v.tag, INT, ok, bad)
        b.start(bad)
        self.runtime_error(node.span, message)
        b.start(ok)
        return v.payload

    def expr_BinOp(self, e: ast.BinOp, scope):
        op = e.op
        if op in ("and", "or"):
            return self.logical(e, scope)
        if op in ARITH:
            a = self.expr(e.left, scope)
            bv = self.expr(e.right, scope)
            x = self.int_operand(a, e.left, arith_message(op, a))
            y = self.int_operand(bv, e.right, arith_message(op, bv))
            self.b.loc = e.span
            return Val.int_(self.int.binary(op, x, y, bv.range if bv.is_int else None))
        if op in COMPARE:
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
            x = self.int_operand(v, e.operand, arith_message(e.op, v))
            return Val.int_(self.int.neg(x) if e.op == "-" else self.int.bnot(x))
        self.error(e, f"the '{e.op}' operator is not available here in kernel Lua")
        return Val.nil()

    def logical(self, e: ast.BinOp, scope) -> Val:
        """`a and b` / `a or b` as values: the operand Lua would return."""
        b = self.b
        a = self.expr(e.left, scope)
        truth = a.const_truth()
        if truth is not None:
            if (e.op == "and") == truth:
                return self.expr(e.right, scope)
            return a
        # the part of a that can be the result: its falsy kinds for `and`, truthy ones for `or`
        keep_kinds = falsy_kinds(a.kinds) if e.op == "and" else frozenset(a.kinds & {"int", "bool"})
        other, keep, join = b.block("rhs"), b.block("keep"), b.block("logic_end")
        self.truth_branch(a, other, keep) if e.op == "and" else self.truth_branch(a, keep, other)
        b.start(other)
        rhs = self.expr(e.right, scope)
        var = self.new_var((self._inst_id(), id(e)), "logic", keep_kinds | rhs.kinds)
        self.assign(var, rhs)
        b.jump(join)
        b.start(keep)
        self.assign(var, Val(a.tag, a.payload if "int" in keep_kinds else 0, keep_kinds))
        b.jump(join)
        b.start(join)
        return var.read()

    def materialize(self, e, scope, v: Val | None = None) -> Val:
        """A condition as a boolean value."""
        b = self.b
        t = b.copy(TRUE, "bool")
        yes, no, join = b.block("yes"), b.block("no"), b.block("bool_end")
        if v is not None:                      # `not v`
            self.truth_branch(v, no, yes)
        else:
            self.cond(e, scope, yes, no)
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
        if not (a.is_int and c.is_int):
            x = self.int_operand(a, e.left, compare_message(a, c))
            y = self.int_operand(c, e.right, compare_message(a, c))
        else:
            x, y = a.payload, c.payload
        cond = COMPARE[e.op]
        if isinstance(x, int) and isinstance(y, int):
            from luabpf.compiler import luaint
            b.jump(then_ if luaint.COMPARE[e.op](x, y) else else_)
            return
        b.branch(cond, x, y, then_, else_)

    def equality(self, a: Val, c: Val, yes, no) -> None:
        b = self.b
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


def for_range(start, stop, step) -> tuple[int, int] | None:
    """Bounds of a numeric for's variable when its start, limit and step are constants
    (or, for an upward loop, its start alone bounds it below)."""
    if not isinstance(step, int):
        return None
    if step > 0 and isinstance(start, int):
        return (start, stop if isinstance(stop, int) else (1 << 63) - 1)
    if step < 0 and isinstance(start, int):
        return (stop if isinstance(stop, int) else -(1 << 63), start)
    return None


def arith_message(op: str, v: Val) -> str:
    kind = "bitwise operation" if op in ("&", "|", "~", "<<", ">>") else "arithmetic"
    which = type_name(v.kinds - {"int"}) if v.kinds - {"int"} else "non-number"
    return f"attempt to perform {kind} on a {which} value"


def compare_message(a: Val, c: Val) -> str:
    ta, tc = type_name(a.kinds), type_name(c.kinds)
    if ta == tc:
        return f"attempt to compare two {ta} values"
    return f"attempt to compare {ta} with {tc}"


def describe(e) -> str:
    names = {"Float": "floating-point numbers are", "String": "strings are",
             "Vararg": "varargs ('...') are", "Function": "function values (closures) are",
             "Table": "tables are", "Index": "indexing is", "Name": f"'{getattr(e, 'name', '')}' is"}
    return names.get(type(e).__name__, f"this {type(e).__name__.lower()} is")


def lower(chunk: ast.Chunk, source: Source, hook, options: Options | None = None) -> Lowered:
    """Lower with restarts until every variable's kinds are stable."""
    options = options or Options()
    kinds: dict = {}
    for _ in range(1000):
        try:
            return Lowerer(chunk, source, hook, options, kinds).lower()
        except Restart:
            continue
    raise InternalError("type inference did not converge")
