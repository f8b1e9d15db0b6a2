"""Register allocation: virtual registers → BPF registers r0–r9 or stack slots.

Owns liveness (a dataflow over blocks), live intervals over the linear block
order, and linear-scan allocation. The BPF calling convention shapes it:
a helper call clobbers r0–r5, so a value live across a call must sit in
r6–r9 (or be spilled). Spilled values live in 8-byte stack slots; when any
value is spilled, two scratch registers (r0, r5) are kept out of allocation
for `emit` to load and store spilled operands through.

Positions: operation k of the linear order reads its operands at 2k and
writes its result at 2k+1. The right operand of `dst = a op b` is held until
2k+1, since `emit` writes dst before it reads b (`dst = a; dst op= b`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir

CALLER_SAVED = [1, 2, 3, 4, 5, 0]       # preference order for values not live across calls
CALLEE_SAVED = [6, 7, 8, 9]
SCRATCH = (0, 5)


@dataclass
class Interval:
    vreg: ir.VReg
    start: int
    end: int
    crosses_call: bool = False


@dataclass
class Allocation:
    regs: dict[int, int] = field(default_factory=dict)        # vreg id → register
    spills: dict[int, ir.StackSlot] = field(default_factory=dict)
    scratch: tuple[int, int] | None = None

    def where(self, v: ir.VReg):
        if id(v) in self.regs:
            return self.regs[id(v)]
        return self.spills[id(v)]


def linear_ops(fn: ir.Function) -> list[tuple[ir.Block, ir.Op]]:
    out = []
    for b in fn.blocks:
        for op in b.ops:
            out.append((b, op))
        out.append((b, b.term))
    return out


def liveness(fn: ir.Function) -> dict[int, set[int]]:
    """live-out sets (of vreg ids) per block id."""
    use: dict[int, set[int]] = {}
    defs: dict[int, set[int]] = {}
    for b in fn.blocks:
        u, d = set(), set()
        for op in b.ops + [b.term]:
            for v in op.uses():
                if id(v) not in d:
                    u.add(id(v))
            for v in op.defs():
                d.add(id(v))
        use[id(b)], defs[id(b)] = u, d
    live_in = {id(b): set() for b in fn.blocks}
    live_out = {id(b): set() for b in fn.blocks}
    changed = True
    while changed:
        changed = False
        for b in reversed(fn.blocks):
            out = set()
            for s in b.successors():
                out |= live_in[id(s)]
            inn = use[id(b)] | (out - defs[id(b)])
            if out != live_out[id(b)] or inn != live_in[id(b)]:
                live_out[id(b)], live_in[id(b)] = out, inn
                changed = True
    return live_in, live_out


def intervals(fn: ir.Function) -> tuple[list[Interval], list[int]]:
    live_in, live_out = liveness(fn)
    span: dict[int, list] = {}
    vregs: dict[int, ir.VReg] = {}
    calls: list[int] = []

    def touch(v: ir.VReg, pos: int) -> None:
        vregs[id(v)] = v
        s = span.setdefault(id(v), [pos, pos])
        s[0] = min(s[0], pos)
        s[1] = max(s[1], pos)

    k = 0
    for b in fn.blocks:
        first = 2 * k
        for op in b.ops + [b.term]:
            if isinstance(op, ir.Call):
                calls.append(2 * k)
            for v in op.uses():
                touch(v, 2 * k)
            if isinstance(op, ir.Bin) and isinstance(op.b, ir.VReg):
                touch(op.b, 2 * k + 1)
            for v in op.defs():
                touch(v, 2 * k + 1)
            k += 1
        last = 2 * k - 1
        for vid in live_in[id(b)]:
            span[vid][0] = min(span[vid][0], first)
        for vid in live_out[id(b)]:
            span[vid][1] = max(span[vid][1], last + 1)
    result = []
    for vid, (s, e) in span.items():
        crosses = any(s < c and e > c + 1 for c in calls)
        result.append(Interval(vregs[vid], s, e, crosses))
    result.sort(key=lambda iv: (iv.start, iv.end))
    return result, calls


def hints(fn: ir.Function) -> dict[int, list[ir.VReg]]:
    """Registers a value would like to share: a move's source, an operation's left
    operand (then `dst = a; dst op= b` needs no move)."""
    prefer: dict[int, list[ir.VReg]] = {}
    for b in fn.blocks:
        for op in b.ops:
            if isinstance(op, ir.Mov) and isinstance(op.src, ir.VReg):
                prefer.setdefault(id(op.dst), []).append(op.src)
                prefer.setdefault(id(op.src), []).append(op.dst)
            elif isinstance(op, (ir.Bin, ir.Neg, ir.Swap)) and isinstance(op.a, ir.VReg):
                prefer.setdefault(id(op.dst), []).append(op.a)
    return prefer


def allocate(fn: ir.Function, new_slot) -> Allocation:
    """Linear scan; retried with scratch registers reserved when anything spills."""
    ivs, _ = intervals(fn)
    prefer = hints(fn)
    alloc = _scan(ivs, prefer, reserved=(), new_slot=None)
    if alloc is not None:
        return alloc
    alloc = _scan(ivs, prefer, reserved=SCRATCH, new_slot=new_slot)
    alloc.scratch = SCRATCH
    return alloc


def _scan(ivs: list[Interval], prefer, reserved, new_slot) -> Allocation | None:
    alloc = Allocation()
    active: list[Interval] = []
    free = set(range(10)) - set(reserved)
    for iv in ivs:
        for old in [a for a in active if a.end < iv.start]:
            active.remove(old)
            free.add(alloc.regs[id(old.vreg)])
        order = CALLEE_SAVED if iv.crosses_call else CALLER_SAVED + CALLEE_SAVED
        wished = [alloc.regs.get(id(h)) for h in prefer.get(id(iv.vreg), ())]
        choice = next((r for r in wished if r in free and r in order), None)
        if choice is None:
            choice = next((r for r in order if r in free), None)
        if choice is not None:
            free.discard(choice)
            alloc.regs[id(iv.vreg)] = choice
            active.append(iv)
            continue
        if new_slot is None:
            return None
        # spill whichever of the conflicting intervals ends last
        candidates = [a for a in active if alloc.regs[id(a.vreg)] in order]
        victim = max(candidates, key=lambda a: a.end, default=None)
        if victim is not None and victim.end > iv.end:
            reg = alloc.regs.pop(id(victim.vreg))
            alloc.spills[id(victim.vreg)] = new_slot(victim.vreg)
            active.remove(victim)
            alloc.regs[id(iv.vreg)] = reg
            active.append(iv)
        else:
            alloc.spills[id(iv.vreg)] = new_slot(iv.vreg)
    return alloc
