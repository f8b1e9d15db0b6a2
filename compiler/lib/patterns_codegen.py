"""Lua patterns as BPF code: a parsed `Pattern` compiled against a subject.

Owns `emit_match` (docs/filters-contract.md): the pattern is unrolled at
compile time into the backtracking code that lstrlib's `do_match` would run,
with no interpreter left. Each pattern element is emitted once, in order;
each element that can backtrack (a greedy `*` `+` `?`, a lazy `-`, the
unanchored search over start positions) opens a loop whose body is the rest of
the pattern, and a failure anywhere later jumps to the nearest such loop's
retry block. A greedy quantifier first counts its maximal run, then retries
the rest with one repetition fewer each time; a lazy one tries the rest first
and then extends by one. Quantifiers that cannot profit from giving back
(the rest cannot fail, or its first byte is disjoint from the quantified
class) keep their maximal run without a retry loop. Runs of fixed-width
elements share one length check. Byte classes become short chains of
compares over sorted ranges, or a 64-bit bitmap when that is smaller.

Subjects (docs/filters-contract.md) give `length` and `load_byte`; a subject may
also offer windows, which the matcher then uses for fixed-width runs (one
bounds check per window, loads at constant offsets, literals compared 8, 4
or 2 bytes at a time):

    subject.window(lw, base: VReg, stop: int) -> Window | None
        # called where bytes [base, base + stop) are known to be in the subject;
        # None: no window here (the matcher falls back to load_byte)
    Window.wide: bool                   # whether load takes sizes 2, 4 and 8
    Window.load(lw, offset: int, size: int) -> VReg
        # the size bytes at base + offset, little-endian, zero-extended

Every loop is opened with `lw.raw_loop` (blinding and may_goto) and bounded by
the subject length; all the loops of one match also share a step counter, whose cap
(`--@bound N`, else the hook's) bounds the whole match for the cost budget and stops it
with a runtime error past it (`_Gen.loop`, docs/language.md "Cost of a run"). Three things keep the verifier's work small (each measured
on generated patterns, see `_step`, `length` and `marks`): back edges re-blind
the register they step, the length is reloaded from an untracked stack slot at
each use instead of living in a register, and captures are written only on the
way to success (their positions' base registers are still intact there), so
no capture register is live inside the loops. Does not own parsing
(`patterns`) nor what a subject is (the lowering's views and strings).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.back import cost
from luabpf.compiler.lib.patterns import (ALL, BackRef, Balance, Close, End, Frontier, Open,
                                      Pattern, Position, Single, cannot_fail, keeps_maximum, lua_init,
                                      ranges)

MAX_STEPS = (1 << 31) - 1  # the largest step cap (the counter is 32 bits, compared signed-safe)


@dataclass
class Capture:
    kind: str                              # 'string' | 'position'
    start: ir.VReg | None = None           # string: [start, end), 0-based
    end: ir.VReg | None = None
    position: ir.VReg | None = None        # position: 1-based, as Lua returns it


@dataclass
class MatchResult:
    ok: ir.VReg                            # 1 matched, 0 not
    start: ir.VReg                         # the whole match [start, end), 0-based
    end: ir.VReg
    captures: list[Capture] = field(default_factory=list)


def emit_match(lw, pattern: Pattern, subject, init, anchored_find: bool = False,
               steps: int | None = None, span=None) -> MatchResult:
    """Emit a match of `pattern` on `subject` from the 0-based offset `init` (Lua's
    posrelatI(init) - 1, see `emit_lua_init`; an offset past the end matches nothing).
    `anchored_find` tries `init` alone, as a pattern starting with '^' does. The match
    may take `steps` steps (heads of its loops run, see `_Gen.loop`; by default the
    hook's, its record's `pattern_steps`); one more is the runtime error "pattern too complex" at
    `span`."""
    stated = steps is not None
    if not stated:
        steps = cost.pattern_steps(lw.hook, lw.options)
    return _Gen(lw, pattern, subject, steps, span, stated).run(init, pattern.anchored or anchored_find)


def emit_lua_init(lw, init, length):
    """The 0-based start offset of `string.find(s, p, init)`: posrelatI(init, #s) - 1,
    which exceeds `length` when the search starts after the end."""
    if isinstance(init, int):
        if isinstance(length, int) or init >= 0:
            return lua_init(init, length) if isinstance(length, int) else max(init - 1, 0)
    b = lw.b
    r = b.vreg("init")
    pos, zero, neg, done = b.block("init_pos"), b.block("init_zero"), b.block("init_neg"), b.block("init_ok")
    b.branch("sgt", init, 0, pos, neg)
    b.start(pos)
    b.emit(ir.Bin("sub", r, init, 1))
    b.jump(done)
    b.start(neg)
    fromend = b.block("init_end")
    b.emit(ir.Bin("add", r, b.reg(length), init))
    b.branch("eq", init, 0, zero, fromend)
    b.start(fromend)
    b.branch("slt", r, 0, zero, done)
    b.start(zero)
    b.mov(r, 0)
    b.jump(done)
    b.start(done)
    return r


# ---- byte classes --------------------------------------------------------------

def _chain_cost(rs: list[tuple[int, int]]) -> int:
    """Instructions of `emit_class_test`'s compare chain over ranges `rs`."""
    return sum(1 if lo == hi or lo == 0 or hi == 255 else 2 for lo, hi in rs)


def emit_class_test(b, c: ir.VReg, cls: int, yes: ir.Block, no: ir.Block) -> None:
    """Branch to `yes` when byte `c` (0..255) is in the set `cls`, else to `no`."""
    if cls == 0:
        b.jump(no)
        return
    if cls == ALL:
        b.jump(yes)
        return
    inside, outside = ranges(cls), ranges(ALL ^ cls)
    if _chain_cost(outside) < _chain_cost(inside):
        inside, yes, no, cls = outside, no, yes, ALL ^ cls
    lo, hi = inside[0][0], inside[-1][1]
    if _chain_cost(inside) > 6 and hi - lo < 64:     # a bitmap: 6 instructions
        t = b.bin("sub", c, lo) if lo else c
        go = b.block("cls_map")
        b.branch("gt", t, hi - lo, no, go)
        b.start(go)
        bits = b.copy(cls >> lo & ((1 << 64) - 1), "cls_bits")
        b.emit(ir.Bin("rsh", bits, bits, t))
        b.branch("set", bits, 1, yes, no)
        return
    for i, (lo, hi) in enumerate(inside):
        last = i == len(inside) - 1
        nxt = no if last else b.block("cls")
        if lo == hi:
            b.branch("eq", c, lo, yes, nxt)
        elif lo == 0:
            b.branch("le", c, hi, yes, nxt)
        elif hi == 255:
            b.branch("ge", c, lo, yes, no)
        else:
            upper = b.block("cls_hi")
            b.branch("lt", c, lo, no, upper)
            b.start(upper)
            b.branch("le", c, hi, yes, nxt)
        if not last:
            b.start(nxt)


# ---- the matcher ------------------------------------------------------------------

def _step(lw, reg: ir.VReg, delta: int) -> None:
    """reg += delta on a loop's back edge, re-blinded (+ an opaque zero): the verifier
    then sees the carried register at the loop head as unknown again, as at the loop's
    entry. Without it, a branch that pins the register (`if j == 0`) or a copy in the
    body (a shared scalar id, then BPF_ADD_CONST linking) turns each iteration into a
    new state that never converges ("the sequence of 8193 jumps is too complex")."""
    lw.b.emit(ir.Bin("add", reg, reg, delta))
    lw.b.emit(ir.Bin("add", reg, reg, lw.opaque_zero()))


class _ByteWindow:
    """Loads through `load_byte`, for subjects without windows of their own."""
    wide = False

    def __init__(self, gen, base):
        self.gen, self.base = gen, base

    def load(self, lw, offset: int, size: int) -> ir.VReg:
        assert size == 1
        return self.gen.load(self.gen.at((self.base, offset)))


class _Gen:
    def __init__(self, lw, pattern: Pattern, subject, steps: int, span=None, stated=True):
        self.lw, self.b = lw, lw.b
        self.steps, self.span, self.stated = steps, span or lw.b.loc, stated
        self.group = object()            # this match's loops share one step counter
        self._steps_slot = None
        self._too_complex = None
        self.els = pattern.elements
        self.subject = subject
        self._length = subject.length
        if not isinstance(self._length, int):       # see length()
            self._length_slot = self.b.slot(8, "m_length")
            self.b.emit(ir.Store(4, self._length_slot, 4, self._length))
        self.caps = [Capture("position", position=self.b.vreg(f"cap{i}"))
                     if kind == "position" else
                     Capture("string", self.b.vreg(f"cap{i}s"), self.b.vreg(f"cap{i}e"))
                     for i, kind in enumerate(pattern.captures)]
        self.end = self.b.vreg("m_end")
        self.found = self.b.block("m_found")
        self.known: dict = {}            # (id(base), offset) → a register holding base + offset
        # Where each capture opened, closed or stood ((index, 'O' | 'C' | 'P') → position).
        # Captures are only written on the way to `found`: a position's base register
        # keeps its value for as long as code after the capture runs.
        self.marks: dict = {}

    def loop(self, carried: list[ir.VReg]) -> ir.Block:
        """Open one of the matcher's loops. Each run of any of the match's loop heads is a
        step: it adds one to the match's step counter, and past `steps` the match stops
        with a runtime error. The counter bounds the whole match, however its loops nest,
        to (steps + 1) × its longest step (cost.py's groups), where each loop's own bound
        (the subject's length) would multiply. The counter lives in an untracked stack
        slot, as the length does, so it adds no state for the verifier to tell apart."""
        b = self.b
        saved, b.loc = b.loc, self.span
        head = self.lw.raw_loop(carried, self.steps + 1, "pattern match", budgeted=True,
                                group=self.group, bound=self.steps)
        head.loop.default_cap = not self.stated
        b.loc = saved
        n = b.vreg("m_steps")
        b.emit(ir.Load(4, n, self._steps_slot, 4))
        b.emit(ir.Bin("add", n, n, 1))
        ok = self.cont("m_step")
        b.branch("gt", n, self.steps, self.too_complex(), ok)
        b.start(ok)
        b.emit(ir.Store(4, self._steps_slot, 4, n))
        return head

    def start_steps(self) -> None:
        """Set the step counter to a zero the verifier cannot know (a known zero would be
        one more stack state at each loop head)."""
        self._steps_slot = self.b.slot(8, "m_steps")
        self.b.emit(ir.Store(4, self._steps_slot, 4, self.lw.opaque_zero()))

    def too_complex(self) -> ir.Block:
        """The runtime error of a match past its steps, one block per match."""
        if self._too_complex is None:
            b = self.b
            blk = b.block("m_too_complex")
            saved = b.cur
            b.cur = blk
            self.lw.runtime_error(self.span, f"pattern too complex: more than {self.steps} steps "
                                             f"(raise the cap with --@bound N on the line before "
                                             f"the match)")
            b.cur = saved
            self._too_complex = blk
        return self._too_complex

    def length(self) -> ir.VReg | int:
        """The subject's length, loaded afresh at each use from a stack slot the verifier
        sees as plain bytes (a 4-byte store at offset 4 is not a register spill). A
        length kept in one register collects a different range on every path (each
        `j < length` refines it) and, being live in every loop, multiplies the states
        the verifier must tell apart; fresh loads know nothing, so loop states converge
        (measured: 823,437 instructions explored become 2,866 on a five-loop pattern)."""
        if isinstance(self._length, int):
            return self._length
        v = self.b.vreg("len")
        self.b.emit(ir.Load(4, v, self._length_slot, 4))
        return v

    # ---- positions: (base, constant offset) ----
    def at(self, pos) -> ir.VReg | int:
        """pos as one operand. Bases never change while code that uses them runs (a loop
        changes its register only in its retry block), so a position is computed once."""
        base, off = pos
        if off == 0:
            return base
        if isinstance(base, int):
            return base + off
        key = (id(base), off)
        if key not in self.known:
            self.known[key] = self.b.bin("add", base, off, "pos")
        return self.known[key]

    def reg_at(self, pos) -> ir.VReg:
        v = self.at(pos)
        return v if isinstance(v, ir.VReg) else self.b.copy(v, "pos")

    def assign(self, dst: ir.VReg, pos, extra: int = 0) -> None:
        """dst = pos + extra."""
        base, off = pos
        if isinstance(base, int) or off + extra == 0:
            self.b.mov(dst, base + off + extra if isinstance(base, int) else base)
        else:
            self.b.emit(ir.Bin("add", dst, base, off + extra))

    def window(self, base, stop: int):
        """Loads at constant offsets from base; bytes [base, base + stop) are in the subject."""
        if isinstance(base, ir.VReg) and hasattr(self.subject, "window"):
            w = self.subject.window(self.lw, base, stop)
            if w is not None:
                return w
        return _ByteWindow(self, base)

    def load(self, index) -> ir.VReg:
        return self.subject.load_byte(self.lw, index)

    def branch(self, cond: str, a, b_, then_: ir.Block, else_: ir.Block) -> None:
        """A branch that folds when both sides are constants."""
        if isinstance(a, int) and isinstance(b_, int):
            holds = {"gt": a > b_, "ge": a >= b_, "lt": a < b_, "le": a <= b_,
                     "eq": a == b_, "ne": a != b_}[cond]
            self.b.jump(then_ if holds else else_)
        else:
            self.b.branch(cond, a, b_, then_, else_)

    def cont(self, hint: str) -> ir.Block:
        return self.b.block(hint)

    def fits(self, pos, width: int, fail: ir.Block) -> None:
        """Continue when `width` bytes are left at pos, else go to `fail`."""
        base, off = pos
        ok = self.cont("m_fits")
        if isinstance(base, int):
            self.branch("lt", self.length(), base + off + width, fail, ok)
        else:
            t = self.b.bin("add", base, off + width, "need")
            self.branch("gt", t, self.length(), fail, ok)
        self.b.start(ok)

    # ---- the whole search ----
    def run(self, init, anchored: bool) -> MatchResult:
        b = self.b
        nomatch, done = b.block("m_none"), b.block("m_done")
        ok = b.vreg("m_ok")
        if not (isinstance(init, int) and init == 0):
            go = self.cont("m_init")
            self.branch("gt", init, self.length(), nomatch, go)
            b.start(go)
        start = b.copy(init, "m_start")
        self.start_steps()
        if anchored:
            self.seq(0, (start, 0), nomatch, nomatch)
        else:
            retry = b.block("m_next")
            head = self.loop([start])
            width = self.fixed_width(0)
            self.seq(0, (start, 0), retry, nomatch)
            b.start(retry)
            if width == 0:          # else the first length check already proved start < length
                more = self.cont("m_more")
                self.branch("ge", start, self.length(), nomatch, more)
                b.start(more)
            _step(self.lw, start, 1)
            b.jump(head)
        b.start(self.found)
        b.mov(ok, 1)
        b.jump(done)
        b.start(nomatch)
        b.mov(ok, 0)
        for r in [start, self.end] + [r for c in self.caps for r in (c.start, c.end, c.position) if r]:
            b.mov(r, 0)
        b.jump(done)
        b.start(done)
        return MatchResult(ok, start, self.end, self.caps)

    def fixed_width(self, k: int) -> int:
        """Bytes the unquantified singles from k on need, up to the next other consumer."""
        width = 0
        for el in self.els[k:]:
            if isinstance(el, Single) and el.quant == "":
                width += 1
            elif not isinstance(el, (Open, Close, Position)):
                break
        return width

    def seq(self, k: int, pos, fail: ir.Block, short: ir.Block | None = None) -> None:
        """Elements k.. at pos; failure goes to `fail`. `short`, when given, is where a
        first length check that fails may go instead (no later start can fit either)."""
        b = self.b
        checked = 0                       # bytes from pos known to be in the subject
        win = None
        while k < len(self.els):
            el = self.els[k]
            base, off = pos
            if isinstance(el, Single) and el.quant == "":
                if off + 1 > checked:
                    width = self.fixed_width(k)
                    self.fits(pos, width, short or fail)
                    checked = off + width
                    win = self.window(base, checked)
                n = max(self.literal_run(k), 1) if win.wide else 1
                if n > 1:
                    self.compare_literals(win, off, k, n, fail)
                else:
                    ok = self.cont("m_ok")
                    emit_class_test(b, win.load(self.lw, off, 1), el.cls, ok, fail)
                    b.start(ok)
                pos = (base, off + n)
                k += n - 1
            elif isinstance(el, (Open, Close, Position)):
                self.marks[el.index, type(el).__name__[0]] = pos
            elif isinstance(el, End):
                ok = self.cont("m_end")
                self.branch("ne", self.at(pos), self.length(), fail, ok)
                b.start(ok)
            elif isinstance(el, Single) and el.quant == "-":
                self.lazy(k, pos, fail)
                return
            elif isinstance(el, Single):
                if keeps_maximum(self.els, k):
                    pos, checked = (self.greedy_max(el, pos, fail), 0), 0
                else:
                    self.greedy(k, pos, fail)
                    return
            elif isinstance(el, Balance):
                pos, checked = (self.balance(el, pos, fail), 1), 0
            elif isinstance(el, Frontier):
                self.frontier(el, pos, fail)
            elif isinstance(el, BackRef):
                pos, checked = (self.backref(el, pos, fail), 0), 0
            else:
                raise AssertionError(el)
            short = short if isinstance(el, (Open, Close, Position)) or (
                isinstance(el, Single) and el.quant == "") else None
            k += 1
        self.assign(self.end, pos)
        for i, cap in enumerate(self.caps):
            if cap.kind == "position":
                self.assign(cap.position, self.marks[i, "P"], 1)
            else:
                self.assign(cap.start, self.marks[i, "O"])
                self.assign(cap.end, self.marks[i, "C"])
        b.jump(self.found)

    def literal_run(self, k: int) -> int:
        """How many single-byte literals follow one another from element k."""
        n = 0
        for el in self.els[k:]:
            if not (isinstance(el, Single) and el.quant == "" and el.cls and el.cls & (el.cls - 1) == 0):
                break
            n += 1
        return n

    def compare_literals(self, win, off: int, k: int, n: int, fail: ir.Block) -> None:
        """Literals k..k+n-1 at window offset off, compared 8, 4, 2 bytes at a time."""
        b = self.b
        values = [self.els[k + i].cls.bit_length() - 1 for i in range(n)]
        i = 0
        while i < n:
            size = next(z for z in (8, 4, 2, 1) if z <= n - i)
            word = int.from_bytes(bytes(values[i:i + size]), "little")
            ok = self.cont("m_lit")
            b.branch("ne", win.load(self.lw, off + i, size), word, fail, ok)
            b.start(ok)
            i += size

    # ---- quantifiers ----
    def scan(self, el: Single, p) -> ir.VReg:
        """The end of the maximal run of `el.cls` bytes from p (at most one for '?')."""
        b = self.b
        j = b.copy(p, "run")
        done = b.block("run_end")
        if el.quant == "?":
            go, step = self.cont("opt"), self.cont("opt_take")
            self.branch("ge", j, self.length(), done, go)
            b.start(go)
            emit_class_test(b, self.load(j), el.cls, step, done)
            b.start(step)
            b.emit(ir.Bin("add", j, j, 1))
            b.jump(done)
        else:
            head = self.loop([j])
            go, step = self.cont("run_in"), self.cont("run_take")
            self.branch("ge", j, self.length(), done, go)
            b.start(go)
            emit_class_test(b, self.load(j), el.cls, step, done)
            b.start(step)
            _step(self.lw, j, 1)
            b.jump(head)
        b.start(done)
        return j

    def greedy_max(self, el: Single, pos, fail: ir.Block) -> ir.VReg:
        p = self.at(pos)
        j = self.scan(el, p)
        if el.quant == "+":
            ok = self.cont("plus_ok")
            self.branch("eq", j, p, fail, ok)
            self.b.start(ok)
        return j

    def greedy(self, k: int, pos, fail: ir.Block) -> None:
        """Count the maximal run, then try the rest with fewer repetitions each time."""
        b = self.b
        el = self.els[k]
        p = self.at(pos)
        j = self.scan(el, p)
        if el.quant == "+":
            ok = self.cont("plus_ok")
            self.branch("eq", j, p, fail, ok)
            b.start(ok)
        back = b.block("giveback")
        head = self.loop([j])
        self.seq(k + 1, (j, 0), back)
        b.start(back)
        more = self.cont("giveback_more")
        if el.quant == "+":             # counts from the maximum down to 1
            _step(self.lw, j, -1)
            self.branch("eq", j, p, fail, more)
            b.start(more)
        else:                           # down to 0
            self.branch("eq", j, p, fail, more)
            b.start(more)
            _step(self.lw, j, -1)
        b.jump(head)

    def lazy(self, k: int, pos, fail: ir.Block) -> None:
        """Try the rest first; on its failure take one more repetition."""
        b = self.b
        el = self.els[k]
        if cannot_fail(self.els[k + 1:]):
            self.seq(k + 1, pos, fail)
            return
        j = b.copy(self.at(pos), "lazy")
        extend = b.block("lazy_more")
        head = self.loop([j])
        self.seq(k + 1, (j, 0), extend)
        b.start(extend)
        go, step = self.cont("lazy_in"), self.cont("lazy_take")
        self.branch("ge", j, self.length(), fail, go)
        b.start(go)
        emit_class_test(b, self.load(j), el.cls, step, fail)
        b.start(step)
        _step(self.lw, j, 1)
        b.jump(head)

    # ---- %b, %f, back-references ----
    def balance(self, el: Balance, pos, fail: ir.Block) -> ir.VReg:
        """%bxy: returns the position of the closing byte (the match ends after it)."""
        b = self.b
        self.fits(pos, 1, fail)
        p = self.at(pos)
        ok = self.cont("bal_open")
        self.branch("ne", self.load(p), el.open, fail, ok)
        b.start(ok)
        j = b.copy(p, "bal")
        carried = [j]
        depth = None
        if el.open != el.close:
            depth = b.copy(1, "bal_depth")
            carried.append(depth)
        found = b.block("bal_found")
        head = self.loop(carried)
        _step(self.lw, j, 1)
        go = self.cont("bal_in")
        self.branch("ge", j, self.length(), fail, go)
        b.start(go)
        c = self.load(j)
        if depth is None:               # %bxx: the next x closes
            b.branch("eq", c, el.close, found, head)
        else:
            closing, other, opening = self.cont("bal_close"), self.cont("bal_other"), self.cont("bal_nest")
            b.branch("eq", c, el.close, closing, other)
            b.start(closing)
            _step(self.lw, depth, -1)
            b.branch("eq", depth, 0, found, head)
            b.start(other)
            b.branch("eq", c, el.open, opening, head)
            b.start(opening)
            _step(self.lw, depth, 1)
            b.jump(head)
        b.start(found)
        return j

    def frontier(self, el: Frontier, pos, fail: ir.Block) -> None:
        """%f[set]: the byte before is not in the set and the byte here is (a zero byte
        stands before the subject and after its end, as in Lua's C strings)."""
        b = self.b
        zero_in = el.cls & 1 == 1
        p = self.at(pos)
        prev, here = self.cont("fr_prev"), self.cont("fr_here")
        self.branch("eq", p, 0, fail if zero_in else here, prev)
        b.start(prev)
        emit_class_test(b, self.load(self.at((p, -1)) if isinstance(p, ir.VReg) else p - 1),
                        el.cls, fail, here)
        b.start(here)
        inside, after = self.cont("fr_in"), self.cont("fr_ok")
        self.branch("ge", p, self.length(), after if zero_in else fail, inside)
        b.start(inside)
        emit_class_test(b, self.load(p), el.cls, after, fail)
        b.start(after)

    def backref(self, el: BackRef, pos, fail: ir.Block) -> ir.VReg:
        """%k: the bytes of capture k again; returns the position after them."""
        b = self.b
        cap = self.caps[el.index]
        if cap.kind == "position":        # Lua compares (size_t)-2 bytes: never matches
            b.jump(fail)
            return b.copy(0)
        p = self.reg_at(pos)
        first = self.at(self.marks[el.index, "O"])
        n = b.bin("sub", self.reg_at(self.marks[el.index, "C"]), first, "ref_len")
        after = b.bin("add", p, n, "ref_end")
        go = self.cont("ref_fits")
        self.branch("gt", after, self.length(), fail, go)
        b.start(go)
        i = b.copy(0, "ref_i")
        done = b.block("ref_done")
        head = self.loop([i])
        go = self.cont("ref_in")
        b.branch("ge", i, n, done, go)
        b.start(go)
        x = self.load(b.bin("add", b.reg(first), i))
        y = self.load(b.bin("add", p, i))
        same = self.cont("ref_same")
        b.branch("eq", x, y, same, fail)
        b.start(same)
        _step(self.lw, i, 1)
        b.jump(head)
        b.start(done)
        return after
