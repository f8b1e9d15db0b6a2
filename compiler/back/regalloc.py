"""Register allocation: virtual registers → BPF registers r0–r9 or stack slots.

Owns liveness (a dataflow over blocks, sets as bit sets), live intervals over the linear block
order, and linear-scan allocation. The BPF calling convention shapes it:
a helper call clobbers r0–r5, so a value live across a call must sit in
r6–r9 (or be spilled). A spilled value lives in an 8-byte stack slot: every
use loads it into a fresh temporary and every definition stores one, and
allocation runs again (the temporaries are short and never spilled).

Positions: operation k of the linear order reads its operands at 2k and
writes its result at 2k+1. The right operand of `dst = a op b` is held until
2k+1, since `emit` writes dst before it reads b (`dst = a; dst op= b`).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from luabpf.compiler import ir

CALLER_SAVED = [1, 2, 3, 4, 5, 0]       # preference order for values not live across calls
CALLEE_SAVED = [6, 7, 8, 9]


@dataclass
class Interval:
    vreg: ir.VReg
    start: int
    end: int
    crosses_call: bool = False
    ranges: list = field(default_factory=list)    # (start, end) per block: the holes are free
    weight: float = 1.0                           # uses and defs: what spilling it costs


@dataclass
class Allocation:
    regs: dict[int, int] = field(default_factory=dict)        # vreg id → register


def _operands(fn: ir.Function) -> list[list[tuple]]:
    """Per block, per operation: (op, uses, defs), asked of each operation once."""
    return [[(op, op.uses(), op.defs()) for op in block.ops + [block.term]] for block in fn.blocks]


def liveness(fn: ir.Function, ops: list | None = None) -> tuple[list[int], list[int], list]:
    """Live-in and live-out sets per block (in block order), as bit sets over the values
    numbered in order of appearance; and the values by number."""
    ops = ops if ops is not None else _operands(fn)
    number: dict[int, int] = {}
    values: list[ir.VReg] = []

    def bit(v: ir.VReg) -> int:
        n = number.get(id(v))
        if n is None:
            n = number[id(v)] = len(values)
            values.append(v)
        return 1 << n

    use, defs = [], []
    for block_ops in ops:
        u = d = 0
        for _, uses, ds in block_ops:
            for v in uses:
                m = bit(v)
                if not d & m:
                    u |= m
            for v in ds:
                d |= bit(v)
        use.append(u)
        defs.append(d)
    position = {id(block): i for i, block in enumerate(fn.blocks)}
    succ = [[position[id(s)] for s in block.successors()] for block in fn.blocks]
    n = len(fn.blocks)
    live_in, live_out = [0] * n, [0] * n
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            out = 0
            for s in succ[i]:
                out |= live_in[s]
            inn = use[i] | (out & ~defs[i])
            if out != live_out[i] or inn != live_in[i]:
                live_out[i], live_in[i] = out, inn
                changed = True
    return live_in, live_out, values


def _bits(x: int):
    """The numbers of the bits set in x."""
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


def intervals(fn: ir.Function) -> tuple[list[Interval], list[int]]:
    """Each value's live ranges (one per run of blocks it is live in: holes between them).
    Blocks come in order, so a value's ranges arrive sorted and join as they come."""
    ops = _operands(fn)
    live_in, live_out, values = liveness(fn, ops)
    vregs: dict[int, ir.VReg] = {}
    ranges: dict[int, list[list[int]]] = {}
    uses: dict[int, int] = {}
    calls: list[int] = []
    k = 0
    for bi, block_ops in enumerate(ops):
        first = 2 * k
        local: dict[int, list[int]] = {}
        for op, op_uses, op_defs in block_ops:
            if isinstance(op, ir.Call):
                calls.append(2 * k)
            touched = [(v, 2 * k) for v in op_uses]
            if isinstance(op, ir.Bin) and isinstance(op.b, ir.VReg):
                touched.append((op.b, 2 * k + 1))
            touched += [(v, 2 * k + 1) for v in op_defs]
            for v, pos in touched:
                vid = id(v)
                vregs[vid] = v
                uses[vid] = uses.get(vid, 0) + 1
                r = local.get(vid)
                if r is None:
                    local[vid] = [pos, pos]
                else:
                    if pos < r[0]:
                        r[0] = pos
                    if pos > r[1]:
                        r[1] = pos
            k += 1
        last = 2 * k - 1
        lin, lout = live_in[bi], live_out[bi]
        for n in _bits(lin | lout):
            vid = id(values[n])
            r = local.get(vid)
            if r is None:
                r = local[vid] = [first, last + 1]
            if lin >> n & 1:
                r[0] = first
            if lout >> n & 1:
                r[1] = last + 1
        for vid, r in local.items():
            have = ranges.get(vid)
            if have is None:
                ranges[vid] = [r]
            elif r[0] <= have[-1][1] + 1:
                have[-1][1] = max(have[-1][1], r[1])
            else:
                have.append(r)
    result = []
    for vid, rs in ranges.items():
        iv = Interval(vregs[vid], rs[0][0], rs[-1][1])
        iv.ranges = [tuple(r) for r in rs]
        iv.crosses_call = any(_call_within(calls, a, e - 2) for a, e in iv.ranges)
        iv.weight = uses.get(vid, 1)        # what spilling it costs: a load or store per use
        result.append(iv)
    result.sort(key=lambda iv: (iv.start, iv.end))
    return result, calls


def _call_within(calls: list[int], lo: int, hi: int) -> bool:
    """Whether a call position c (calls sorted) has lo <= c <= hi."""
    i = bisect.bisect_left(calls, lo)
    return i < len(calls) and calls[i] <= hi


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    """Whether two sorted lists of disjoint closed ranges meet: each range of the shorter
    list is looked up in the longer one by bisection (a value live across the whole
    program has a range per block; scanning it for every short value was quadratic)."""
    if len(a) > len(b):
        a, b = b, a
    for x0, x1 in a:
        i = bisect.bisect_right(b, (x1, _INF))       # ranges of b starting at or before x1
        if i and b[i - 1][1] >= x0:
            return True
    return False


_INF = float("inf")


def hints(fn: ir.Function) -> dict[int, list[ir.VReg]]:
    """Registers a value would like to share: a move's source, an operation's left
    operand (then `dst = a; dst op= b` needs no move)."""
    prefer: dict[int, list[ir.VReg]] = {}
    for block in fn.blocks:
        for op in block.ops:
            if isinstance(op, ir.Mov) and isinstance(op.src, ir.VReg):
                prefer.setdefault(id(op.dst), []).append(op.src)
                prefer.setdefault(id(op.src), []).append(op.dst)
            elif isinstance(op, (ir.Bin, ir.Neg, ir.Swap)) and isinstance(op.a, ir.VReg):
                prefer.setdefault(id(op.dst), []).append(op.a)
    return prefer


def allocate(fn: ir.Function, new_slot) -> Allocation:
    """Allocate; values that do not fit are spilled and allocation runs again."""
    unspillable: set[int] = set()
    for _ in range(32):
        ivs, _ = intervals(fn)
        alloc, spilled = _scan(ivs, hints(fn), unspillable)
        if not spilled:
            return alloc
        unspillable |= spill(fn, spilled, new_slot)
    raise AssertionError("register allocation did not converge")


def spill(fn: ir.Function, spilled: list[ir.VReg], new_slot) -> set[int]:
    """Give each spilled value a stack slot: every use loads it into a fresh temporary
    just before, every definition stores one just after. Returns the temporaries' ids."""
    slots = {id(v): new_slot(v) for v in spilled}
    temps: set[int] = set()
    fields = ("src", "a", "b", "base", "value", "dst")
    for block in fn.blocks:
        out: list[ir.Op] = []
        for op in block.ops + [block.term]:
            touched = {id(v): v for v in op.uses() + op.defs() if id(v) in slots}
            if not touched:
                out.append(op)
                continue
            if isinstance(op, ir.Mov) and isinstance(op.src, int) and -(1 << 31) <= op.src < (1 << 31):
                out.append(ir.Store(8, slots[id(op.dst)], 0, op.src, loc=op.loc))   # store the
                continue                                                            # constant itself
            renamed = {}
            for vid, v in touched.items():
                t = ir.VReg(v.id * 1000 + len(temps) + 1, v.hint + "'")
                temps.add(id(t))
                renamed[vid] = t
            for vid, v in touched.items():
                if v in op.uses():
                    last = out[-1] if out else None
                    if isinstance(last, ir.Store) and last.base is slots[vid] \
                            and isinstance(last.src, ir.VReg):       # just stored: still there
                        out.append(ir.Mov(renamed[vid], last.src, loc=op.loc))
                    else:
                        out.append(ir.Load(8, renamed[vid], slots[vid], 0, loc=op.loc))
            for name in fields:
                x = getattr(op, name, None)
                if isinstance(x, ir.VReg) and id(x) in renamed:
                    setattr(op, name, renamed[id(x)])
            if isinstance(op, ir.Call):
                op.args = [renamed.get(id(a), a) if isinstance(a, ir.VReg) else a for a in op.args]
            out.append(op)
            for vid, v in touched.items():
                if any(d is renamed[vid] for d in op.defs()):
                    out.append(ir.Store(8, slots[vid], 0, renamed[vid], loc=op.loc))
        term = out.pop()
        if not (term is block.term):
            raise AssertionError("spill code after a terminator")
        block.ops = out
    return temps


def _scan(ivs: list[Interval], prefer, unspillable: set[int]):
    """First fit over exact live ranges, in order of start. When no register is free,
    the cheaper side (fewer uses and definitions) is marked for spilling."""
    alloc = Allocation()
    spilled: list[ir.VReg] = []
    owners: dict[int, list[Interval]] = {r: [] for r in range(10)}

    def conflicts(r: int, iv: Interval) -> list[Interval]:
        # intervals come in order of start: an owner that ended before this one starts
        # can never conflict again, so it leaves the list (linear, not quadratic, scan)
        live = owners[r] = [o for o in owners[r] if o.end >= iv.start]
        return [o for o in live if o.start <= iv.end and _overlap(o.ranges, iv.ranges)]

    def cost(ivals) -> float:
        return sum(float("inf") if id(o.vreg) in unspillable else o.weight for o in ivals)

    for iv in ivs:
        order = CALLEE_SAVED if iv.crosses_call else CALLER_SAVED + CALLEE_SAVED
        wished = [alloc.regs.get(id(h)) for h in prefer.get(id(iv.vreg), ())]
        choice = next((r for r in wished if r in order and not conflicts(r, iv)), None)
        if choice is None:
            choice = next((r for r in order if not conflicts(r, iv)), None)
        if choice is None:
            costs = {r: conflicts(r, iv) for r in order}
            best = min(order, key=lambda r: cost(costs[r]))
            if cost(costs[best]) >= cost([iv]):
                spilled.append(iv.vreg)
                continue
            for o in costs[best]:
                owners[best].remove(o)
                del alloc.regs[id(o.vreg)]
                spilled.append(o.vreg)
            choice = best
        owners[choice].append(iv)
        alloc.regs[id(iv.vreg)] = choice
    return alloc, spilled
