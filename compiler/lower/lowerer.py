"""Lowering: a checked kernel-Lua chunk and a hook → IR over virtual registers.

Owns the meaning of statements and expressions: scopes, calls (inlined, or
BPF-to-BPF calls of the functions `calls` picks, each lowered once as its own
BPF function: `sub_call`, `SubHook`), multiple values, short-circuit
conditions, loops as real BPF loops, runtime errors and the value
representation of `values`. Integer operators are `intops`'; the library's
names are looked up in `lib/table` (by `expr`), which names the functions that lower them.

Types are inferred by lowering itself: a variable's storage is shaped by the
kinds of value it may hold; when an assignment widens that set, lowering
starts over with the wider set (`Restart`) — only the inlined call that owns
the variable, not the program, so compile time stays linear — which converges
because sets only grow.

Loops (docs/language.md, "Loops"): every loop carries an iteration bound (`--@bound N` or the
default) checked at run time, and — when the kernel has `may_goto` — begins with
it, so the verifier sees a real back-edge. Loop-carried registers are "blinded"
at loop entry (an add of a zero the verifier cannot know, read from the
globals map) so the verifier's states converge after an iteration or two
instead of walking every iteration.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.front import ast
from luabpf.compiler.lib import maps
from luabpf.compiler.lower import calls
from luabpf.compiler.lower.builder import Builder
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic, InternalError
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.lower.bindings import (Closure, ErrorSite, FuncDef, GlobalVar,
                                            InlinedDiagnostics, Instance, Options, Restart, Scope)
from luabpf.compiler.lower.intops import IntOps
from luabpf.compiler.lower.expr import ExprLowering
from luabpf.compiler.lower.loops import LoopLowering
from luabpf.compiler.front.source import Source, Span
from luabpf.compiler.hooks import function as hooks
from luabpf.compiler.lower import strconst
from luabpf.compiler.lower.values import (FALSE, OBJ_CHOICE, OBJ_CHOICE_HINT, PAYLOAD_KINDS, TRUE,
                                          VIEW_KINDS, Val, Var, type_name)

# a function value that lowering cannot follow (docs/language.md, "Nested functions and closures")
ESCAPE = ("a function value escapes here: {where}; kernel Lua inlines every call, so the "
          "function a call reaches must be known at compile time")
ESCAPE_HINT = "call the function where it is defined, or pass it as an argument to a function that calls it"

GLOBALS_MAP = "luabpf_globals"
ERRORS_MAP = "luabpf_errors"
ZERO_OFF = 0                 # word 0 of the globals map: always 0, unknown to the verifier
MAX_INLINE_DEPTH = 200        # calls inlined within one another (Python's stack, set in program.py)


@dataclass
class Lowered:
    function: ir.Function
    sites: list[ErrorSite]
    globals: dict[str, GlobalVar]
    uses_globals_map: bool
    uses_errors_map: bool
    maps: dict           # script name → maps.MapDecl, in declaration order
    prints: list         # events.PrintSite, indexed by the id each record carries
    subs: list = field(default_factory=list)   # (name, ir.Function) of the BPF functions called
    spans: list = field(default_factory=list)  # (name, Span of its definition) of those
    frames: dict = field(default_factory=dict)  # name → bytes of its call frame
    nresults: int = 0                           # how many values the entry returns


class Lowerer(ExprLowering, LoopLowering):
    def __init__(self, chunk: ast.Chunk, source: Source, hook, options: Options, kinds: dict):
        self.chunk = chunk
        self.source = source
        self.hook = hook
        self.options = options
        self.kinds = kinds                     # persistent across restarts: var key → kinds
        self.diags = InlinedDiagnostics(self)
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
        self.packet = None                      # the packet of a filter hook (views.Packet)
        self.maps: dict = {}                    # script name → maps.MapDecl
        self.prints: list = []                  # events.PrintSite
        self._scratch: dict[str, ir.StackSlot] = {}
        self.last_call_count = None             # (values, count) of the last inlined call
        self.calls = None                       # calls.Subprograms: the program's BPF functions
        self.own = None                         # the function a BPF function's lowering is of
        self.used_sigs: dict = {}               # callee name → the Signature its calls used
        self.forwards_errors = False            # a callee's error goes out through err_block
        self._dropped: list[ir.Block] = []      # blocks of rewound calls (see inline_call)
        self._copied = 0                        # syntax nodes inlining has copied
        self.text_nodes: dict = {}              # id → node that may be a text (lib/text.py)

    # ---- diagnostics and runtime errors --------------------------------------

    def error(self, node, message: str, hint: str | None = None) -> None:
        self.diags.error(node.span, message, hint)

    def runtime_error(self, span: Span | None, message: str) -> None:
        """End the current path with a Lua runtime error reported at span."""
        span = span or self.b.loc
        site = self.options.first_site + len(self.sites)
        self.sites.append(ErrorSite(span.line if span else 0, span.col if span else 0, message,
                                    file=span.file if span else self.source.filename))
        stub = ir.Block(f"err{site}", cold=True)
        self.site_blocks.append(stub)
        self.b.jump(stub)
        stub.ops.append(ir.Mov(self.errsite, site, loc=span))
        stub.term = ir.Jump(self.err_block, loc=span)

    def _fail_here(self, message: str) -> None:
        self.runtime_error(self.b.loc, message)

    def count_at(self, span: Span | None, message: str) -> None:
        """Count, without stopping, something the script lives through (a store a full map
        dropped, a print a full ring buffer dropped): the runtime reports it like an error."""
        span = span or self.b.loc
        site = self.options.first_site + len(self.sites)
        self.sites.append(ErrorSite(span.line if span else 0, span.col if span else 0, message,
                                    fatal=False, file=span.file if span else self.source.filename))
        self._count_site(site)

    def _count_site(self, site) -> None:
        """errors[site] += 1, atomically; falls through to the current block's successor."""
        self.count_in(ERRORS_MAP, site, "error_key", atomic=True, cold=True)

    def count_in(self, map_name: str, index, key_name: str, *, atomic: bool,
                 cold: bool = False) -> None:
        """map_name[index] += 1 in a u32-keyed array of counters (per-CPU ones need no
        atomic add); nothing when the index is outside the array."""
        b = self.b
        key = self.scratch(4, key_name)
        b.emit(ir.Store(4, key, 0, index))
        m, k, p = b.vreg(map_name), b.vreg("key"), b.vreg("counter")
        b.emit(ir.LoadMap(m, map_name))
        b.emit(ir.SlotAddr(k, key))
        b.emit(ir.Call(Helper.map_lookup_elem, [m, k], p))
        count, done = b.block("count", cold=cold), b.block("counted", cold=cold)
        b.branch("eq", p, 0, done, count)
        b.start(count)
        if atomic:
            b.emit(ir.AtomicAdd(8, p, 0, b.copy(1)))
        else:
            n = b.vreg("n")
            b.emit(ir.Load(8, n, p, 0))
            b.emit(ir.Store(8, p, 0, b.bin("add", n, 1)))
        b.jump(done)
        b.start(done)

    def scratch(self, size: int, name: str) -> ir.StackSlot:
        """A stack slot shared by every use of one kind (a map key, a print record): each
        use fills it just before the helper call that reads it. It grows to the largest use."""
        slot = self._scratch.get(name)
        if slot is None:
            slot = self._scratch[name] = self.b.slot(size, name)
        slot.size = max(slot.size, size)
        return slot

    # ---- the whole program --------------------------------------------------

    def lower(self) -> Lowered:
        if self.own is None:
            self.collect_toplevel()
        self.diags.raise_if_any(self.source)
        entry = self.own or self.functions.get(self.hook.entry)
        if entry is None:
            raise CompileError([self._diag_at_top(f"no function '{self.hook.entry}' to run for the "
                                                   f"{self.hook.name} hook")], self.source)
        params = self.hook.params
        if params is not None and len(entry.node.params) > len(params):
            raise CompileError([Diagnostic(
                f"'{self.hook.entry}' takes at most {len(params)} parameter"
                f"{'s' if len(params) != 1 else ''} in the {self.hook.name} hook: "
                f"({', '.join(params)})", entry.node.span)], self.source)
        if self.calls is None:
            self.calls = calls.Subprograms(calls.plan(entry, self.functions, self.top.names,
                                                      self.source), self._lower_sub)
        body = self.b.block("body")
        self.b.loc = entry.node.span
        args = self.hook.prologue(self)      # into the entry block, before anything clobbers r1
        self.b.cur = body
        self.b.targeted.add(id(body))
        vals, nret = self.inline_call(entry, args, entry.node.span)
        for i, v in enumerate(vals):
            if v.kinds - {"nil", "bool", "int"}:
                self.error(entry.node, f"'{self.hook.entry}' returns a {type_name(v.kinds)} as "
                                       f"value #{i + 1}: an entry function returns integers, "
                                       "booleans or nil")
                vals[i] = Val.nil()
        self.hook.epilogue(self, vals, nret)
        self.diags.raise_if_any(self.source)
        self.b.loc = entry.node.span          # the hook's own code is the entry's first line
        self._finish_prologue(body)
        self._finish_error_path()
        fn = ir.Function(self.b.blocks + self.site_blocks + [self.err_block], self.b.slots)
        counted = [s for s in self.sites if not s.fatal or self.hook.count_errors]
        return Lowered(fn, self.sites, self.globals, self._gptr is not None, bool(counted),
                       self.maps, self.prints, nresults=len(vals))

    def _diag_at_top(self, message: str):
        return Diagnostic(message, Span(self.source.filename, 1, 1, 1, 2))

    def _finish_prologue(self, body: ir.Block) -> None:
        """The entry block: the hook's set-up (a packet's pointers and headers), then the
        address of the globals map's value, if anything needs it."""
        b = self.b
        b.cur = self.prologue
        self.after_prologue = b.block("setup")
        self.hook.finish_prologue(self)
        if not b.terminated:
            b.jump(self.after_prologue)
        b.cur = self.after_prologue
        if self._gptr is not None:            # the address of the globals (no lookup)
            b.emit(ir.LoadMap(self._gptr, GLOBALS_MAP, value_offset=0))
        b.jump(body)

    def _finish_error_path(self) -> None:
        """error: count the site in the errors map, tell the hook, return the default verdict."""
        b = self.b
        b.cur = self.err_block
        b.loc = None
        if not any(s.fatal for s in self.sites) and not self.forwards_errors:
            b.terminate(ir.Exit(self.hook.default_return))
            return
        self.hook.on_error(self, self.errsite)
        if self.hook.count_errors:
            self._count_site(self.errsite)
        self.exit(self.hook.default_return)

    def exit(self, value) -> None:
        """End the program returning `value`, the way the hook ends it (a hook may count
        its verdicts)."""
        self.hook.exit(self, value)

    def gptr(self) -> ir.VReg:
        if self._gptr is None:
            self._gptr = self.b.vreg("gptr")
        return self._gptr

    def opaque_zero(self) -> ir.VReg:
        """A register holding 0 that the verifier cannot know is 0 (see the module doc)."""
        z = self.hook.opaque_zero(self)
        if z is not None:
            return z
        z = self.b.vreg("zero")
        self.b.emit(ir.Load(8, z, self.gptr(), ZERO_OFF))
        return z

    # ---- top level ------------------------------------------------------------

    def collect_toplevel(self) -> None:
        for st in self.chunk.body.stmts:
            if isinstance(st, ast.FunctionDecl) and not st.method and len(st.path) == 1:
                self.define_function(st.path[0], st.func, st)
            elif isinstance(st, ast.FunctionDecl) and not st.method and len(st.path) == 3 \
                    and st.path[0] == "tracepoint":       # function tracepoint.CATEGORY.EVENT(args)
                self.define_function(".".join(st.path), st.func, st)
            elif isinstance(st, ast.LocalFunction):
                self.define_function(st.name, st.func, st)
            elif isinstance(st, ast.Local):
                vals = [self.const_expr(e) for e in st.values]
                for i, n in enumerate(st.names):
                    v = vals[i] if i < len(vals) else Val.nil()
                    if v is not None:
                        self.top.names[n.name] = v
                        maps.bind(self, n.name, v)
            elif isinstance(st, ast.Assign) and all(isinstance(t, ast.Name) for t in st.targets):
                for i, t in enumerate(st.targets):
                    value = st.values[i] if i < len(st.values) else None
                    self.define_global(t, value)
            else:
                self.error(st, "top-level code runs once at load: only definitions of functions, "
                               "constants, maps and globals may stand here")

    def define_function(self, name: str, func: ast.Function, node) -> None:
        if name in self.top.names:
            self.error(node, f"'{name}' is already defined at top level: each global, "
                             "constant, map and function is defined once")
            return
        fd = FuncDef(name, func)
        self.functions[name] = fd
        self.top.names[name] = fd

    def define_global(self, target: ast.Name, value: ast.Expr | None) -> None:
        before = len(self.diags.items)
        v = self.const_expr(value) if value is not None else Val.nil()
        if v is None or len(self.diags.items) > before:   # its initializer was already reported
            return
        if target.name in self.top.names:
            self.error(target, f"'{target.name}' is already defined at top level: each global, "
                               "constant, map and function is defined once")
            return
        if "obj" in v.kinds or v.data is not None:   # a layout, a map, a constant string
            self.top.names[target.name] = v
            maps.bind(self, target.name, v)
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
        if len(self.diags.items) == nerr and not v.is_const and "obj" not in v.kinds:
            self.error(e, "a top-level value must be a constant expression (integers, booleans, "
                          "math.*, other constants)")
            return None
        return v if v.is_const or "obj" in v.kinds else None

    # ---- functions ----------------------------------------------------------

    def new_var(self, key, name: str, kinds: frozenset, const: Val | None = None) -> Var:
        kinds = frozenset(self.kinds.get(key, frozenset()) | kinds)
        self.kinds[key] = kinds
        var = Var(name, kinds, self.b.vreg, const)
        var.key = key
        var.strs = self.kinds.get((key, "strs"), frozenset())
        return var

    def assign(self, var: Var, v: Val) -> None:
        if not self.b.reachable:
            return
        v = strconst.storable(self, v)        # a constant string: its index (values.py)
        if not v.kinds <= var.kinds:
            self.kinds[var.key] = var.kinds | v.kinds
            raise Restart(var.key[0])
        if "cstr" in v.kinds and not strconst.possible(self, v) <= var.strs:   # as kinds grow
            self.kinds[(var.key, "strs")] = var.strs | strconst.possible(self, v)
            raise Restart(var.key[0])
        var.range = None
        if isinstance(v.obj, Closure):
            self.escape(f"it is stored in '{var.name}', a variable that is assigned more than once")
            return
        if "obj" in v.kinds:
            self.error_at_loc(OBJ_CHOICE, OBJ_CHOICE_HINT)
            return
        if "lview" in v.kinds:
            if var.obj is None:
                var.obj = v.obj
            elif var.obj is not v.obj:
                self.error_at_loc(f"a variable holds views of one layout only in kernel Lua; "
                                  f"this one may be a {var.obj.name} or a {v.obj.name} view (a "
                                  "view's fields are found at compile time, from its layout)",
                                  "read the field where the layout is known: "
                                  "`hdr.tcp and hdr.tcp.dport or hdr.udp and hdr.udp.dport`")
        if var.tag is not None:
            self.b.mov(var.tag, v.tag)
        if var.payload is not None:
            self.b.mov(var.payload, v.payload if v.kinds & PAYLOAD_KINDS else 0)
        if var.length is not None:
            self.b.mov(var.length, v.length if v.kinds & VIEW_KINDS else 0)

    def escape(self, where: str, span: Span | None = None) -> None:
        """The located error of a function value going where lowering cannot follow it."""
        self.diags.error(span or self.b.loc, ESCAPE.format(where=where), ESCAPE_HINT)

    def inline_call(self, fd: FuncDef, args: list[Val], span: Span,
                    env: Scope | None = None) -> tuple[list[Val], object]:
        """Inline one call. A fact that widens inside it (`Restart` owned by this call or
        one nested in it) starts this call over, not the program: the code emitted since
        it began is dropped and the call lowered again with what was learnt, so each call
        is lowered a few times at most, whatever else the program holds."""
        if self.calls is not None and not fd.nested and fd.name in self.calls.plan.subs \
                and fd is not self.own and calls.scalar_args(args[:len(fd.node.params)]):
            return self.sub_call(fd, args, span)
        env = env or self.top
        again = next((k for k, i in enumerate(self.instances)     # the same function value
                      if i.func.node is fd.node and i.env is env), None)
        if again is not None:
            chain = [i.func.name for i in self.instances[again:]] + [fd.name]
            self.diags.error(span, f"recursion is not available in kernel Lua: {' → '.join(chain)}",
                             "rewrite it as a loop")
            return [], 0
        if len(self.instances) >= MAX_INLINE_DEPTH:
            chain = [i.func.name for i in self.instances[:3]] + ["…", fd.name]
            raise CompileError([Diagnostic(
                f"calls nested more than {MAX_INLINE_DEPTH} deep ({' → '.join(chain)}): kernel "
                f"Lua inlines them, at most {MAX_INLINE_DEPTH} deep", span,
                "call the functions one after another rather than each from the last")],
                self.source)
        mark = self._mark()
        while True:
            try:
                return self._inline(fd, args, span, env)
            except Restart as r:
                if r.owner <= mark["ids"]:
                    raise
                self._rewind(mark)

    def _mark(self) -> dict:
        """What `_rewind` needs to undo the lowering of one inlined call."""
        b = self.b
        return {"ids": self._instance_ids, "blocks": len(b.blocks), "slots": len(b.slots),
                "cur": b.cur, "ops": len(b.cur.ops), "term": b.cur.term, "loc": b.loc,
                "sites": len(self.sites), "site_blocks": len(self.site_blocks),
                "diags": len(self.diags.items), "prints": len(self.prints),
                "scratch": dict(self._scratch), "gptr": self._gptr,
                "last": self.last_call_count, "depth": len(self.instances),
                "copied": self._copied}

    def _rewind(self, m: dict) -> None:
        b = self.b
        self._dropped.extend(b.blocks[m["blocks"]:])   # kept alive: `targeted` holds block ids
        del b.blocks[m["blocks"]:]
        del b.slots[m["slots"]:]
        b.cur, b.loc = m["cur"], m["loc"]
        del b.cur.ops[m["ops"]:]
        b.cur.term = m["term"]
        self._dropped.extend(self.site_blocks[m["site_blocks"]:])
        del self.sites[m["sites"]:]
        del self.site_blocks[m["site_blocks"]:]
        del self.diags.items[m["diags"]:]
        del self.diags.calls[m["diags"]:]
        del self.prints[m["prints"]:]
        self._scratch = dict(m["scratch"])
        self._gptr = m["gptr"]
        self.last_call_count = m["last"]
        del self.instances[m["depth"]:]
        self._instance_ids = m["ids"]
        self._copied = m["copied"]

    def _inline(self, fd: FuncDef, args: list[Val], span: Span,
                env: Scope) -> tuple[list[Val], object]:
        if self.calls is not None and not fd.nested and fd.name in self.calls.plan.infos:
            self._copied += self.calls.plan.infos[fd.name].size
            self.calls.plan.inlining(fd.name, self._copied)
        self._instance_ids += 1
        inst = Instance(self._instance_ids, fd, self.b.block("ret"), site=span, env=env)
        scope = Scope(env)
        for i, p in enumerate(fd.node.params):
            v = args[i] if i < len(args) else Val.nil()
            if v.data is not None or "obj" in v.kinds:       # constants are bound, not stored
                scope.names[p] = v
                continue
            var = self.new_var((inst.id, "param", i), p, v.kinds)
            self.assign(var, v)
            scope.names[p] = var
        nres = self.kinds.get((fd.key, "nres"), 0)
        inst.results = [self.new_var((inst.id, "ret", i), f"{fd.name}.ret{i}", frozenset())
                        for i in range(nres)]
        inst.counts = self.kinds.setdefault((inst.id, "counts"), set())
        if len(inst.counts) > 1 or "at run time" in inst.counts:   # the count is known at run time
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
        for i, closure in inst.funcs.items():    # a function value returned: known here
            if i in inst.not_funcs:
                self.escape(f"'{fd.name}' returns a function as value #{i + 1} here and "
                            f"something else at line {inst.not_funcs[i].line}, chosen at run time",
                            closure.fd.node.span if closure.fd.nested else span)
            else:
                vals[i] = Val.object(closure)
        if inst.nret is None:
            return vals, next(iter(inst.counts), 0)
        return vals, inst.nret.read().payload

    def do_return(self, inst: Instance, vals: list[Val], span: Span, count=None) -> None:
        """Store a return's values; `count` is how many there are, when only known at run time
        (a final call whose functions return different numbers of values)."""
        if not self.b.reachable:
            return
        if len(self.instances) == 1:          # the entry function: what its hook takes
            for v in vals:
                if isinstance(v.obj, Closure):
                    self.escape("the entry function returns it to the kernel", span)
            vals = [Val.nil() if isinstance(v.obj, Closure) else v for v in vals]
            vals = hooks.entry_results(self, vals, span)
        if len(vals) > len(inst.results):
            self.kinds[(inst.func.key, "nres")] = len(vals)
            raise Restart(inst.id)
        if count is None:
            count = len(vals)
        vals = self.returned_functions(inst, vals, span)
        for i, r in enumerate(inst.results):
            self.assign(r, vals[i] if i < len(vals) else Val.nil())
        mark = count if isinstance(count, int) else "at run time"
        if mark not in inst.counts:
            inst.counts.add(mark)
            if (len(inst.counts) > 1 or not isinstance(count, int)) and inst.nret is None:
                raise Restart(inst.id)
        if inst.nret is not None:
            self.assign(inst.nret, Val.int_(count))
        self.b.jump(inst.ret_block)


    def returned_functions(self, inst: Instance, vals: list[Val], span: Span) -> list[Val]:
        """vals with the function values a return gives taken out (nil in their place): the
        call's result there is that function, known at compile time, when every return of
        the call gives the same one (`_inline`); two different ones are the error here."""
        out = []
        for i in range(len(inst.results)):
            v = vals[i] if i < len(vals) else Val.nil()
            if not isinstance(v.obj, Closure):
                inst.not_funcs.setdefault(i, span)
                out.append(v)
                continue
            prev = inst.funcs.setdefault(i, v.obj)
            if prev is not v.obj:
                self.escape(f"'{inst.func.name}' returns two different functions as value "
                            f"#{i + 1} (here and at line {prev.fd.node.span.line}), chosen at run time",
                            span)
            out.append(Val.nil())
        return out

    # ---- BPF functions (compiler/lower/calls.py decides which) ------------------------

    def sub_call(self, fd: FuncDef, args: list[Val], span: Span) -> tuple[list[Val], object]:
        """Call the BPF function of fd: arguments in a frame on this function's stack,
        r1 its address; r0 is 0 or an error site + 1; the results come back in the frame."""
        b = self.b
        n = len(fd.node.params)
        args = [args[i] if i < len(args) else Val.nil() for i in range(n)]
        sig = self.calls.ensure(fd, [v.kinds for v in args])
        self.used_sigs[fd.name] = sig
        b.loc = span
        frame = self.scratch(8 * sig.frame_words, "call_frame")
        for i, v in enumerate(args):
            calls.store_val(b, frame, 16 * i, v)
        for off in range(16 * len(args), 8 * sig.frame_words, 8):   # all of the frame written:
            b.emit(ir.Store(8, frame, off, 0))     # no uninitialised stack for the verifier
        addr, status = b.vreg("frame"), b.vreg("status")
        b.emit(ir.SlotAddr(addr, frame))
        b.emit(ir.CallSub(-1, [addr], status, target=fd.name))
        if sig.can_fail:
            fail, ok = b.block("call_failed", cold=True), b.block("call_ok")
            b.branch("ne", status, 0, fail, ok)
            b.start(fail)
            b.emit(ir.Bin("sub", self.errsite, status, 1))
            b.jump(self.err_block)
            self.forwards_errors = True
            b.start(ok)
        vals = [calls.load_val(b, frame, 16 * i, kinds) for i, kinds in enumerate(sig.results)]
        if sig.count is not None:
            return vals, sig.count
        count = b.vreg("nret")
        b.emit(ir.Load(8, count, frame, sig.nret_off))
        return vals, count

    def _lower_sub(self, sub) -> tuple:
        """Lower one BPF function (calls.Subprograms asks, the first time a call site needs
        it and whenever its parameters widen): (Lowered, Signature, callees' signatures)."""
        for _ in range(1000):
            lw = Lowerer(self.chunk, self.source, calls.SubHook(sub, self.hook), dataclasses.replace(
                self.options, first_site=0), sub.kinds)
            lw.calls, lw.own = self.calls, sub.fd
            lw.top, lw.functions, lw.globals, lw.maps = self.top, self.functions, self.globals, \
                self.maps
            try:
                low = lw.lower()
            except Restart:
                continue
            hook = lw.hook
            can_fail = any(s.fatal for s in low.sites) or lw.forwards_errors
            sig = calls.Signature(tuple(sub.params), tuple(v.kinds or frozenset({"nil"})
                                                           for v in hook.results),
                                  hook.count if isinstance(hook.count, int) else None, can_fail)
            low.errsite, low.error_key = lw.errsite, lw._scratch.get("error_key")
            return low, sig, dict(lw.used_sigs)
        raise InternalError("type inference did not converge")

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
            if (v.data is not None or "obj" in v.kinds) and not self.reassigned(n.name):
                scope.names[n.name] = v          # a constant string or a library object
                continue
            var = self.new_var((self._inst_id(), id(n)), n.name, strconst.stored_kinds(v))
            self.assign(var, v)
            scope.names[n.name] = var

    def reassigned(self, name: str) -> bool:
        """Whether the function being lowered assigns to `name` anywhere."""
        body = self.instances[-1].func.node.body if self.instances else self.chunk.body
        return any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.name == name
                                                     for t in n.targets) for n in ast.walk(body))

    def error_at_loc(self, message: str, hint: str | None = None) -> None:
        self.diags.error(self.b.loc, message, hint)

    def stmt_LocalFunction(self, st: ast.LocalFunction, scope: Scope) -> None:
        """`local function f` inside a function: f is bound to its function value, in its
        own body too (a call of f there is recursion, refused when inlined)."""
        env = scope.snapshot()
        v = Val.object(Closure(FuncDef(st.name, st.func, nested=True), env))
        env.names[st.name] = scope.names[st.name] = v

    def stmt_FunctionDecl(self, st: ast.FunctionDecl, scope: Scope) -> None:
        """`function name()` inside a function assigns a variable (Lua: a global): the
        function value would escape there."""
        v = Val.object(Closure(FuncDef(st.func.name or st.path[-1], st.func, nested=True),
                               scope.snapshot()))
        if len(st.path) == 1 and st.method is None:
            self.store(ast.Name(st.span, st.path[0]), v, scope)
        else:
            self.escape("it is stored in a table field", st.span)

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
        length = self.b.copy(v.length) if isinstance(v.length, ir.VReg) else v.length
        return Val(tag, payload, v.kinds, v.range, length, v.data, v.obj, v.strs)

    def store(self, target, v: Val, scope: Scope) -> None:
        if isinstance(v.obj, Closure):
            binding = scope.lookup(target.name) if isinstance(target, ast.Name) else None
            where = ("it is stored in a map or a table" if not isinstance(target, ast.Name) else
                     f"it is stored in global '{target.name}'" if isinstance(binding, GlobalVar)
                     or binding is None else
                     f"it is assigned to '{target.name}', which is not a fresh local")
            self.escape(where, target.span)
            return
        if isinstance(target, ast.Name):
            binding = scope.lookup(target.name)
            if isinstance(binding, Val) and isinstance(binding.obj, Closure):
                self.error(target, f"'{target.name}' is a function: kernel Lua cannot assign to "
                                   "it, since the function a call reaches must be known at "
                                   "compile time", "use another local for the new value")
                return
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
        handler = maps.store_handler(self, target, scope)
        if handler is None:
            self.error(target, "this assignment target is not available in kernel Lua")
            return
        handler(v)

    def store_global(self, g: GlobalVar, v: Val, node) -> None:
        holds = "integers" if g.kind == "int" else "booleans"
        if not self.b.reachable:              # code after a return, or under `if nil`
            return
        if g.kind not in v.kinds:
            self.error(node, f"global '{g.name}' holds {holds}; a {type_name(v.kinds)} value cannot "
                             "be stored in it")
            return
        if v.kinds != {g.kind}:                 # `g = c and 0 or a`: checked when it runs
            if g.kind == "int":
                self.int_operand(v, node, lambda got: f"global '{g.name}' holds {holds} in kernel "
                                                      f"Lua; a {got} value cannot be stored in it")
            else:
                ok, bad, above_nil = self.b.block("is_bool"), self.b.block("not_bool"), self.b.block("not_nil")
                self.b.branch("ge", v.tag, FALSE, above_nil, bad)
                self.b.start(above_nil)
                self.b.branch("le", v.tag, TRUE, ok, bad)
                self.b.start(bad)
                self.runtime_error(node.span, f"global '{g.name}' holds {holds} in kernel Lua")
                self.b.start(ok)
        word = v.payload if g.kind == "int" else v.tag
        self.b.emit(ir.Store(8, self.gptr(), g.offset, self.b.small(word) if isinstance(word, int)
                             and not -(1 << 31) <= word < (1 << 31) else word))

    def stmt_CallStat(self, st: ast.CallStat, scope: Scope) -> None:
        self.call(st.call, scope)

    def stmt_Do(self, st: ast.Do, scope: Scope) -> None:
        self.block(st.body, Scope(scope))

    def stmt_Return(self, st: ast.Return, scope: Scope) -> None:
        vals, count = self.explist_count(st.values, scope)     # `return …, f()`: f's own count
        self.do_return(self.instances[-1], vals, st.span, count)

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

    def _inst_id(self) -> int:
        return self.instances[-1].id if self.instances else 0

def lower(chunk: ast.Chunk, source: Source, hook, options: Options | None = None) -> Lowered:
    """Lower with restarts until every variable's kinds and every BPF function's signature
    are stable; the BPF functions come with the program, their error sites after its own."""
    options = options or Options()
    kinds: dict = {}
    subprograms = None
    for _ in range(1000):
        lw = Lowerer(chunk, source, hook, options, kinds)
        lw.calls = subprograms
        try:
            low = lw.lower()
        except Restart:
            subprograms = lw.calls
            continue
        subprograms = lw.calls
        if subprograms.settle(lw.used_sigs) != lw.used_sigs:
            continue
        break
    else:
        raise InternalError("type inference did not converge")
    base = options.first_site + len(low.sites)
    for name, sub in subprograms.subs.items():
        if sub.lowered is None:
            continue
        sl = sub.lowered
        calls.rebase_sites(sl, base)
        base += len(sl.sites)
        low.sites.extend(sl.sites)
        low.subs.append((name, sl.function))
        low.spans.append((name, sub.fd.node.span))
        low.frames[name] = 8 * sub.sig.frame_words
        low.uses_globals_map |= sl.uses_globals_map
    low.uses_errors_map = any(not s.fatal or hook.count_errors for s in low.sites)
    return low
