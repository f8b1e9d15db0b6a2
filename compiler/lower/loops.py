"""Loops of kernel Lua as real BPF loops: `while`, `repeat` and numeric `for`.

Owns (as a mixin of `lower.Lowerer`) each loop's shape: the iteration bound
(`--@bound N`, `--max-loop`, else the hook's default) checked at run time, `may_goto`
at the head when the kernel has it, Lua 5.4's `for` iteration count (never overflowing
at the integer limits; a constant count above the bound is refused), the blinding of
loop-carried registers (see `lower`'s module docstring for why the verifier needs it),
and the mark on each loop's head block (`ir.Block.loop`, a `cost.LoopInfo`) that carries
its bound to the worst-case estimate of the final program.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.back import cost
from luabpf.compiler.front import ast, luaint
from luabpf.compiler.lower.bindings import Closure, Scope
from luabpf.compiler.front.source import Span
from luabpf.compiler.lower.values import Val, Var


class LoopLowering:
    def default_loop_bound(self) -> int:
        """The bound of a loop without `--@bound`: `--max-loop`, else the hook's default."""
        if self.options.max_loop is not None:
            return self.options.max_loop
        return self.hook.loop_bound

    def declared_bound(self, st) -> int:
        return st.bound if st.bound is not None else self.default_loop_bound()

    def loop_bound(self, st) -> int:
        bound = self.declared_bound(st)
        if self.options.loops != "may_goto" and bound > BOUNDED_MAX:
            why = ("--loops bounded compiles loops without may_goto" if self.options.loops_asked
                   else "this kernel has no may_goto")
            self.error(st, f"{why}, so the verifier walks every iteration of a "
                           f"loop: bound it with --@bound N (N at most {BOUNDED_MAX}) on the line "
                           f"before it")
            return BOUNDED_MAX
        return bound

    def loop_prelude(self, body: ast.Block, scope: Scope):
        """Blind the loop-carried registers; returns the bound counter (or None)."""
        if self.options.loops != "may_goto":        # a counter the verifier can walk
            self.carried = []
            return self.b.copy(0, "iterations")
        zero = self.opaque_zero()
        carried = [r for var in self.assigned_outer_vars(body, scope) for r in var.registers()]
        for r in carried:
            self.b.emit(ir.Bin("add", r, r, zero))
        counter = self.b.copy(zero, "iterations")
        self.carried = carried + [counter]
        return counter

    def back_edge(self, head: ir.Block, carried: list[ir.VReg]) -> None:
        """Jump back to a loop's head, blinding what the loop carries once more: a value the
        body derived from them (a copy, a compared constant) must not reach the head looking
        different each trip, or the verifier's states never converge."""
        if self.options.loops == "may_goto" and self.b.reachable:
            zero = self.opaque_zero()
            for r in carried:
                self.b.emit(ir.Bin("add", r, r, zero))
        self.b.jump(head)

    def raw_loop(self, carried: list[ir.VReg], runs: int = cost.UNMARKED_RUNS,
                 what: str = "loop luabpf generates", budgeted: bool = False,
                 group: object = None, bound: int | None = None) -> ir.Block:
        """Open a loop the compiler itself needs (pattern matching, byte scans): blind the
        registers the loop carries, start the head (with may_goto when the kernel has it)
        and return the head block, which the loop's back-edges jump to. Every such loop
        must be bounded by its own logic (a length, a step counter): `runs` is how many
        times its head can run each time the loop is entered (for the cost estimate,
        cost.py; loops of one `group` share theirs), `bound` the figure messages show; a
        loop over a string's bytes is counted in the estimate but not held to the budget
        unless it is `budgeted`."""
        if self.options.loops == "may_goto":
            zero = self.opaque_zero()
            for r in carried:
                self.b.emit(ir.Bin("add", r, r, zero))
        info = cost.LoopInfo(runs, runs - 1 if bound is None else bound, self.b.loc, what,
                             budgeted, group)
        return self.loop_head(self.budget_block(self.b.loc), info)

    def assigned_outer_vars(self, body: ast.Block, scope: Scope) -> list[Var]:
        """The variables of `scope` the loop body assigns, itself or through the function
        values it names (a closure called in the loop assigns what it captured)."""
        found: dict[int, Var] = {}
        todo, seen = [(body, scope)], set()
        while todo:
            block, where = todo.pop()
            for node in ast.walk(block):
                names = node.targets if isinstance(node, ast.Assign) else \
                    [node] if isinstance(node, ast.Name) else []
                for t in names:
                    if not isinstance(t, ast.Name):
                        continue
                    v = where.lookup(t.name)
                    if isinstance(v, Var) and node is not t:
                        found[id(v)] = v
                    elif isinstance(v, Val) and isinstance(v.obj, Closure) and id(v.obj) not in seen:
                        seen.add(id(v.obj))
                        todo.append((v.obj.fd.node.body, v.obj.env))
        return list(found.values())

    def loop_head(self, exit_budget: ir.Block | None, info: cost.LoopInfo) -> ir.Block:
        """Start the loop's head block, marked with what the cost estimate needs to know;
        with may_goto it is the first instruction."""
        b = self.b
        head = b.block("loop")
        head.loop = info
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
        carried = self.carried
        budget = self.budget_block(st.span)
        bound = self.loop_bound(st)
        head = self.loop_head(budget, cost.LoopInfo(bound + 1, bound, st.span, "while loop"))
        body, done = b.block("while_body"), b.block("while_end")
        self.cond(st.cond, scope, body, done)
        b.start(body)
        self.count_iteration(counter, bound, st.span)
        self.instances[-1].loops.append(done)
        try:
            self.block(st.body, Scope(scope))
        finally:
            self.instances[-1].loops.pop()
        if not b.terminated:
            self.back_edge(head, carried)
        b.start(done)

    def stmt_Repeat(self, st: ast.Repeat, scope: Scope) -> None:
        b = self.b
        counter = self.loop_prelude(st.body, scope)
        carried = self.carried
        budget = self.budget_block(st.span)
        bound = self.loop_bound(st)
        head = self.loop_head(budget, cost.LoopInfo(bound + 1, bound, st.span, "repeat loop"))
        done = b.block("repeat_end")
        self.count_iteration(counter, bound, st.span)
        inner = Scope(scope)
        self.instances[-1].loops.append(done)
        try:
            self.block(st.body, inner)
        finally:
            self.instances[-1].loops.pop()
        if not b.terminated:
            b.loc = st.cond.span
            back = b.block("repeat_back")
            self.cond(st.cond, inner, done, back)
            b.start(back)
            self.back_edge(head, carried)
        b.start(done)

    def stmt_NumericFor(self, st: ast.NumericFor, scope: Scope) -> None:
        b = self.b
        start = self.int_operand(self.expr(st.start, scope), st.start, for_message("initial value"))
        stop = self.int_operand(self.expr(st.stop, scope), st.stop, for_message("limit"))
        step = 1 if st.step is None else self.int_operand(self.expr(st.step, scope), st.step,
                                                          for_message("step"))
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
        declared = self.declared_bound(st)
        if isinstance(count, int) and count >= declared:
            self.trip_count_error(st, count + 1, declared)
        static_ok = isinstance(count, int) and count < min(declared, BOUNDED_MAX
                                                           if self.options.loops != "may_goto" else declared)
        bound = declared if static_ok else self.loop_bound(st)
        counter = self.loop_prelude(st.body, scope)
        carried = self.carried
        if static_ok:
            carried = [r for r in carried if r is not counter]
            counter = None
        i = b.copy(start, "for_i")
        remaining = b.copy(count, "for_n")
        if self.options.loops == "may_goto":
            zero = self.opaque_zero()
            b.emit(ir.Bin("add", i, i, zero))
            b.emit(ir.Bin("add", remaining, remaining, zero))
        budget = self.budget_block(st.span)
        runs = count + 1 if static_ok else bound + 1
        head = self.loop_head(budget, cost.LoopInfo(runs, runs if static_ok else bound, st.span,
                                                    "for loop"))
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
        self.back_edge(head, carried + [i, remaining])
        b.start(done)

    def trip_count_error(self, st, trips: int, declared: int) -> None:
        """A numeric for whose constant trip count exceeds its bound would fail at run time
        on every call: refuse it here."""
        if st.bound is not None:
            whose = f"its '--@bound {declared}'"
        elif self.options.max_loop is not None:
            whose = f"the bound --max-loop {declared} gives"
        else:
            whose = f"the default bound of {self.hook.program_hook.name or 'program'} loops ({declared:,})"
        self.error(st, f"this loop runs {trips:,} times, more than {whose}",
                   f"state its bound with '--@bound {trips}' on the line before the loop")

    def for_count(self, start, stop, step, done: ir.Block, st):
        """Lua 5.4's forprep: iterations minus one, unsigned; None when the loop never runs."""
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


BOUNDED_MAX = 1024      # iterations the verifier can walk when loops are plain back-edges


def for_message(what: str):
    return lambda got: f"bad 'for' {what} (number expected, got {got})"


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


