"""Which functions become BPF functions (BPF-to-BPF calls) and which are inlined.

Owns the call plan of one program: a pre-pass over the syntax tree, before lowering,
that decides for every top-level function whether its calls are inlined or become a
call of a global BPF function (verified once by the kernel, whatever the number of
call sites); `Subprograms`, the record of the BPF functions lowered so far (their
parameter kinds, widened as call sites are lowered, and their signatures); and the
calling convention: the frame (`store_val`, `load_val`) and `SubHook`, what a BPF
function's lowering has in place of a hook. `lower.Lowerer.sub_call` emits the calls.

The rules (docs/language.md, "Calls and inlining"):
- a function may be a BPF function when everything it does (and everything it calls)
  works on integers, booleans and nil: no packet header, view, string, layout or
  library object crosses the call, and no `print` (its record ids are the program's);
- it becomes one when it is large (`BIG` syntax nodes once its inlined callees are
  counted) or called from several places and not small (`SMALL`); small functions
  and functions called once are inlined, so the example filters keep their code;
- a call site passes its arguments in a frame on the caller's stack; each BPF function
  returns 0 or the id of the error site + 1, and the caller takes the error path;
- BPF allows 8 frames in a call chain: when a plan is deeper, the smallest BPF
  functions on the deepest chain are inlined until it fits;
- code that inlining would copy more than `MAX_COPIED` syntax nodes' worth is a
  located compile error naming the function and the figure, before any lowering.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.front import ast
from luabpf.compiler.lib import maps, table
from luabpf.compiler.lower.bindings import FuncDef, GlobalVar
from luabpf.compiler.hooks.base import Hook
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic, InternalError
from luabpf.compiler.lower.values import INT, NIL, Val

SMALL = 24              # syntax nodes: inlined even when called from many places
BIG = 400               # syntax nodes: a BPF function even when called once
MAX_FRAMES = 8          # the kernel's limit on a chain of BPF function calls (MAX_CALL_FRAMES)
MAX_FUNCTIONS = 200     # BPF functions per program (the kernel allows 256 subprograms)
MAX_COPIED = 40_000     # syntax nodes inlining may add to one program beyond the source's
SCALAR = frozenset({"nil", "bool", "int"})


@dataclass
class FuncInfo:
    fd: FuncDef
    size: int                                   # syntax nodes of the body
    calls: list = field(default_factory=list)   # (callee name, ast.Call) per call site
    why_not: str | None = None                  # why it cannot be a BPF function


@dataclass
class Plan:
    subs: set = field(default_factory=set)      # names of the functions that are BPF functions
    infos: dict = field(default_factory=dict)
    inlined: set = field(default_factory=set)   # planned BPF functions a call had to inline
    entry: FuncDef | None = None
    order: list = field(default_factory=list)
    source: object = None
    source_nodes: int = 0

    def inlining(self, name: str, copied: int) -> None:
        """Lowering inlines `name` (a BPF function when a call passes it something a BPF
        function cannot take), `copied` syntax nodes so far: past MAX_COPIED, the error."""
        if name in self.subs:
            self.inlined.add(name)
        if copied > MAX_COPIED + self.source_nodes:
            _check_copies(self.entry, self.order, self.infos, self, self.source, self.inlined)
            raise CompileError([Diagnostic(
                f"inlining copies {copied:,} syntax nodes into the program, {MAX_COPIED:,} more "
                "than the script's own is the limit",
                self.infos[name].fd.node.span, "call this function from fewer places")],
                self.source)


def scalar_args(args: list[Val]) -> bool:
    """Whether values can cross a BPF call (a frame word each for tag and payload)."""
    return all(v.kinds <= SCALAR and v.data is None and "obj" not in v.kinds for v in args)


def _dotted(e) -> tuple[str, ...] | None:
    parts = []
    while isinstance(e, ast.Index) and e.dot and isinstance(e.key, ast.String):
        parts.append(e.key.value.decode())
        e = e.obj
    if not isinstance(e, ast.Name):
        return None
    parts.append(e.name)
    return tuple(reversed(parts))


def _is_map(b) -> bool:
    return isinstance(b, Val) and maps.decl_of(b) is not None


def _scalar_binding(b) -> bool:
    if isinstance(b, (GlobalVar, FuncDef)):
        return True
    if isinstance(b, Val):
        return maps.decl_of(b) is not None or (b.kinds <= SCALAR and b.data is None)
    return False


def _bpf_function_may_call(path: tuple[str, ...]) -> bool:
    """A library function that needs no hook context and no program-wide ids (the table's)."""
    entry = table.lookup(path)
    return entry is not None and entry.lower is not None and entry.in_bpf_function


def _examine(fd: FuncDef, top: dict, functions: dict) -> FuncInfo:
    """Size, call sites and, when it cannot be a BPF function, the reason."""
    body = fd.node.body
    nodes = list(ast.walk(body))
    info = FuncInfo(fd, len(nodes))
    declared = set(fd.node.params)
    for n in nodes:
        if isinstance(n, ast.Local):
            declared.update(a.name for a in n.names)
        elif isinstance(n, ast.NumericFor):
            declared.add(n.var)
    allowed_strings: set[int] = set()
    ok_index: set[int] = set()                  # Index nodes of library paths already judged

    def library(path) -> bool:
        return path is not None and path[0] not in declared and path[0] not in top

    def chain(e) -> None:
        while isinstance(e, ast.Index):
            ok_index.add(id(e))
            allowed_strings.add(id(e.key))
            e = e.obj

    for n in nodes:
        if isinstance(n, ast.Call):
            path = _dotted(n.func)
            if path is not None and len(path) == 1 and path[0] in functions \
                    and path[0] not in declared:
                info.calls.append((path[0], n))
            elif library(path) and _bpf_function_may_call(path):
                chain(n.func)
                if path in (("error",), ("assert",)):
                    allowed_strings.update(id(a) for a in n.args if isinstance(a, ast.String))
            else:
                info.why_not = info.why_not or \
                    f"it calls {'.'.join(path) if path else 'a method or a computed function'}"
        elif isinstance(n, ast.Index) and id(n) not in ok_index:
            path = _dotted(n)
            if isinstance(n.obj, ast.Name) and n.obj.name not in declared \
                    and _is_map(top.get(n.obj.name)) and not n.dot:
                continue                                    # m[k]: a map of the script
            entry = table.lookup(path) if library(path) else None
            if entry is not None and entry.in_bpf_function and entry.value is not None:
                chain(n)                                    # math.maxinteger
                continue
            info.why_not = info.why_not or "it indexes a value (a header, a view or a table)"
    for n in nodes:
        if info.why_not:
            break
        if isinstance(n, ast.String) and id(n) not in allowed_strings:
            info.why_not = "it uses a string"
        elif isinstance(n, ast.Function):
            info.why_not = "it defines a function (function values are inlined)"
        elif isinstance(n, ast.BinOp) and n.op == "..":
            info.why_not = "it builds text with '..'"
        elif isinstance(n, (ast.MethodCall, ast.Table, ast.Vararg, ast.Float)):
            info.why_not = "it uses strings, tables or methods"
        elif isinstance(n, ast.Name) and n.name not in declared:
            b = top.get(n.name)
            if b is not None and not _scalar_binding(b):
                info.why_not = f"it uses '{n.name}', which is not an integer, boolean or map"
    return info


def plan(entry: FuncDef, functions: dict, top: dict, source) -> Plan:
    """The call plan of the program whose entry function is `entry`."""
    infos = {name: _examine(fd, top, functions) for name, fd in functions.items()}
    order: list[str] = []                       # callees before callers
    seen: set[str] = set()

    def visit(name: str) -> None:
        stack = [(name, iter(infos[name].calls))]
        seen.add(name)
        while stack:
            cur, it = stack[-1]
            for callee, _ in it:
                if callee not in seen and callee in infos:
                    seen.add(callee)
                    stack.append((callee, iter(infos[callee].calls)))
                    break
            else:
                stack.pop()
                order.append(cur)

    visit(entry.name)
    for name in order:                          # a callee that cannot be one taints callers
        info = infos[name]
        if info.why_not is None:
            bad = next((c for c, _ in info.calls if infos[c].why_not), None)
            if bad is not None:
                info.why_not = f"it calls '{bad}', which cannot be a BPF function"
    sites: dict[str, int] = {}
    for name in order:
        for callee, _ in infos[name].calls:
            sites[callee] = sites.get(callee, 0) + 1
    p = Plan(infos=infos)

    def sizes() -> dict[str, int]:
        isize: dict[str, int] = {}
        for name in order:
            isize[name] = infos[name].size + sum(isize[c] for c, _ in infos[name].calls
                                                 if c not in p.subs)
        return isize

    isize = {}
    for name in order:
        isize[name] = infos[name].size + sum(isize[c] for c, _ in infos[name].calls
                                             if c not in p.subs)
        if name != entry.name and infos[name].why_not is None and (
                isize[name] > BIG or (isize[name] > SMALL and sites.get(name, 0) >= 2)):
            p.subs.add(name)
    while True:                                 # the kernel's limits: frames and functions
        frames, via = {}, {}
        for name in order:
            deepest = max(((frames[c], c) for c, _ in infos[name].calls), default=(0, None))
            frames[name] = deepest[0] + (1 if name in p.subs or name == entry.name else 0)
            via[name] = deepest[1]
        isize = sizes()
        if frames[entry.name] > MAX_FRAMES:
            chain, cur = [], entry.name
            while cur is not None:
                if cur in p.subs:
                    chain.append(cur)
                cur = via[cur]
            p.subs.discard(min(chain, key=lambda n: isize[n]))
        elif len(p.subs) > MAX_FUNCTIONS:
            p.subs.discard(min(p.subs, key=lambda n: isize[n]))
        else:
            break
    _check_copies(entry, order, infos, p, source)
    p.entry, p.order, p.source = entry, order, source
    p.source_nodes = sum(i.size for i in infos.values())
    return p


def _check_copies(entry: FuncDef, order: list[str], infos: dict, p: Plan, source,
                  inlined: set = frozenset()) -> None:
    """A located error when inlining would copy code without bound (before lowering it,
    or while lowering, when calls pass a function values it cannot take as a BPF
    function: `inlined`)."""
    subs = p.subs - set(inlined)
    copies = {entry.name: 1}
    for name in reversed(order):                # callers first
        here = 1 if name in subs or name == entry.name else copies.get(name, 0)
        for callee, _ in infos[name].calls:
            copies[callee] = copies.get(callee, 0) + (here if callee not in subs else 0)
    total = sum(infos[n].size * (1 if n in subs or n == entry.name else copies.get(n, 0))
                for n in order)
    if total <= MAX_COPIED + sum(i.size for i in infos.values()):
        return
    worst = max((n for n in order if n not in subs and n != entry.name),
                key=lambda n: (n in inlined, infos[n].size * copies.get(n, 0)))
    info = infos[worst]
    why = info.why_not or ("a call passes it a string, view, header or library value"
                           if worst in inlined else
                           "it is small, or the kernel's limit of 8 nested BPF calls was reached")
    raise CompileError([Diagnostic(
        f"function '{worst}' would be copied {copies[worst]:,} times into the program by "
        f"inlining ({total:,} syntax nodes in all, {MAX_COPIED:,} more than the script's "
        f"own is the limit); it cannot be "
        f"a BPF function of its own because {why}", info.fd.node.span,
        "pass it integers, booleans or nil only, or call it from fewer places")], source)


@dataclass
class Signature:
    """What a caller needs of a BPF function: its frame and what it returns."""
    params: tuple            # kinds per parameter
    results: tuple           # kinds per result
    count: int | None        # how many results, or None when only known at run time
    can_fail: bool           # whether it may stop with a runtime error

    @property
    def frame_words(self) -> int:
        """A tag and a payload word per parameter or result, and the result count when
        it is only known at run time; one word at least (the kernel refuses a pointer to
        nothing)."""
        return max(1, 2 * max(len(self.params), len(self.results)) + (self.count is None))

    @property
    def nret_off(self) -> int:
        return 16 * max(len(self.params), len(self.results))


@dataclass
class Sub:
    fd: FuncDef
    params: list                                # kinds per parameter, widened by call sites
    kinds: dict = field(default_factory=dict)   # its lowering's learnt kinds
    lowered: object = None                      # lower.Lowered
    sig: Signature | None = None
    used: dict = field(default_factory=dict)    # callee name → the Signature it was lowered with


class Subprograms:
    """The BPF functions of one program, lowered on demand by their first caller."""

    def __init__(self, plan: Plan, lower_sub):
        self.plan = plan
        self.subs: dict[str, Sub] = {}
        self._lower_sub = lower_sub             # (Sub) → (Lowered, Signature, used)

    def ensure(self, fd: FuncDef, arg_kinds: list) -> Signature:
        """The signature of fd, lowered (again) if these arguments widen its parameters."""
        sub = self.subs.get(fd.name)
        n = len(fd.node.params)
        want = [frozenset(arg_kinds[i]) if i < len(arg_kinds) else frozenset({"nil"})
                for i in range(n)]
        if sub is None:
            sub = self.subs[fd.name] = Sub(fd, want)
        else:
            wider = [a | b for a, b in zip(sub.params, want)]
            if wider == sub.params and sub.sig is not None:
                return sub.sig
            sub.params = wider
        self._lower(sub)
        return sub.sig

    def _lower(self, sub: Sub) -> None:
        sub.lowered, sub.sig, sub.used = self._lower_sub(sub)

    def settle(self, main_used: dict) -> dict:
        """Lower again every function that saw a callee's older signature, until none
        did; returns the (possibly new) signatures the main program must have used."""
        for _ in range(64):
            stale = [s for s in self.subs.values()
                     if any(self.subs[c].sig != sig for c, sig in s.used.items())]
            for s in stale:
                self._lower(s)
            if not stale:
                return {c: self.subs[c].sig for c in main_used}
        raise InternalError("BPF function signatures did not settle")


# ---- the frame of a call, and a BPF function's own "hook" -------------------------

def store_val(b, frame: ir.StackSlot, off: int, v: Val) -> None:
    """A scalar value into a call frame: its tag word, then its payload word."""
    b.emit(ir.Store(8, frame, off, v.tag))
    b.emit(ir.Store(8, frame, off + 8, v.payload if "int" in v.kinds else 0))


def load_val(b, frame: ir.StackSlot | ir.VReg, off: int, kinds: frozenset) -> Val:
    """A scalar value of `kinds` from a call frame (registers only for what varies)."""
    kinds = kinds or frozenset({"nil"})
    if len(kinds) > 1 or "bool" in kinds:
        tag = b.vreg("tag")
        b.emit(ir.Load(8, tag, frame, off))
    else:
        tag = {"nil": NIL, "int": INT}[next(iter(kinds))]
    payload = 0
    if "int" in kinds:
        payload = b.vreg("word")
        b.emit(ir.Load(8, payload, frame, off + 8))
    return Val(tag, payload, kinds)


class SubHook(Hook):
    """The 'hook' of a BPF function: r1 is the caller's frame (never NULL: callers pass
    their stack, the check is for the verifier); parameters come from it and results go
    back to it; r0 is 0, or the error site + 1 (the caller takes its error path)."""
    name = "function"
    default_return = 0
    count_errors = False

    def __init__(self, sub, caller):
        self.sub = sub
        self.caller = caller
        self.entry = sub.fd.name
        self.results: list[Val] = []
        self.count = 0
        self.frame: ir.VReg | None = None

    # Being called, not inlined, changes nothing: its loops' bounds and its pattern
    # matches' steps are those of the program that calls it.
    @property
    def program_hook(self) -> Hook:
        return self.caller.program_hook

    @property
    def loop_bound(self) -> int:
        return self.program_hook.loop_bound

    @property
    def pattern_steps(self) -> int:
        return self.program_hook.pattern_steps

    @property
    def budget(self) -> int:
        return self.program_hook.budget

    def prologue(self, lw) -> list[Val]:
        b = lw.b
        self.frame = b.copy(ir.Phys(1), "frame")
        ok, null = b.block("frame_ok"), b.block("frame_null")
        b.branch("eq", self.frame, 0, null, ok)
        b.start(null)
        b.terminate(ir.Exit(0))
        b.start(ok)
        lw.prologue = ok
        return [load_val(b, self.frame, 16 * i, kinds) for i, kinds in enumerate(self.sub.params)]

    def epilogue(self, lw, results: list[Val], nret) -> None:
        b = lw.b
        self.results, self.count = results, nret
        for i, v in enumerate(results):
            store_val(b, self.frame, 16 * i, v)
        if not isinstance(nret, int):
            nret_off = 16 * max(len(self.sub.params), len(results))
            b.emit(ir.Store(8, self.frame, nret_off, nret))
        b.terminate(ir.Exit(0))

    def on_error(self, lw, site) -> None:
        lw.b.terminate(ir.Exit(lw.b.bin("add", site, 1)))

    def exit(self, lw, value) -> None:
        if not lw.b.terminated:
            lw.b.terminate(ir.Exit(value))


def rebase_sites(low, base: int) -> None:
    """Number a BPF function's error sites from `base` (they were numbered from 0)."""
    for blk in low.function.blocks:
        for op in blk.ops:
            if isinstance(op, ir.Mov) and op.dst is low.errsite and isinstance(op.src, int):
                op.src += base
            elif isinstance(op, ir.Store) and op.base is low.error_key and op.base is not None \
                    and isinstance(op.src, int):
                op.src += base
