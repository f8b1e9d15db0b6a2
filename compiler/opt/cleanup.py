"""Clean-up passes over the IR: unreachable blocks, empty jump-only blocks,
branches whose arms agree, and operations whose results nobody reads.

Owns correctness-preserving simplification only; it never changes what a
program computes. The kernel verifier rejects unreachable instructions, so
removing unreachable blocks is required, not optional.
"""
from __future__ import annotations

from luabpf.compiler import ir

PURE = (ir.Mov, ir.Bin, ir.Neg, ir.Load, ir.SlotAddr, ir.LoadMap)


def reachable(fn: ir.Function) -> list[ir.Block]:
    seen = {id(fn.blocks[0])}
    stack = [fn.blocks[0]]
    while stack:
        for s in stack.pop().successors():
            if id(s) not in seen:
                seen.add(id(s))
                stack.append(s)
    return [b for b in fn.blocks if id(b) in seen]


def thread_jumps(fn: ir.Function) -> None:
    """A block that only jumps elsewhere is skipped by every edge into it."""
    def final(b: ir.Block) -> ir.Block:
        hops = 0
        while not b.ops and isinstance(b.term, ir.Jump) and b.term.target is not b and hops < 64:
            b = b.term.target
            hops += 1
        return b

    for b in fn.blocks:
        t = b.term
        if isinstance(t, ir.Jump):
            t.target = final(t.target)
        elif isinstance(t, ir.Branch):
            t.then_, t.else_ = final(t.then_), final(t.else_)
            if t.then_ is t.else_:
                b.term = ir.Jump(t.then_, loc=t.loc)
        elif isinstance(t, ir.MayGoto):
            t.cont, t.exhausted = final(t.cont), final(t.exhausted)


def remove_dead_ops(fn: ir.Function) -> None:
    while True:
        used = set()
        for b in fn.blocks:
            for op in b.ops + [b.term]:
                used.update(id(v) for v in op.uses())
        changed = False
        for b in fn.blocks:
            keep = []
            for op in b.ops:
                if isinstance(op, PURE) and not any(id(d) in used for d in op.defs()):
                    changed = True
                    continue
                if isinstance(op, ir.Mov) and op.src is op.dst:
                    changed = True
                    continue
                keep.append(op)
            b.ops = keep
        if not changed:
            return


def layout(fn: ir.Function) -> None:
    """Order blocks so that most jumps fall through: follow each block's preferred
    successor (a branch's then-arm, a loop's body), and put error paths last."""
    placed: set[int] = set()
    order: list[ir.Block] = []
    pending = [fn.blocks[0]]
    cold: list[ir.Block] = []
    while pending:
        b = pending.pop()
        while b is not None and id(b) not in placed:
            if b.cold and order:
                if all(c is not b for c in cold):
                    cold.append(b)
                b = None
                break
            placed.add(id(b))
            order.append(b)
            succ = b.successors()
            nxt = None
            for s in succ:
                if id(s) not in placed:
                    if nxt is None:
                        nxt = s
                    else:
                        pending.append(s)
            b = nxt
    for c in cold:
        if id(c) not in placed:
            placed.add(id(c))
            order.append(c)
            pending = [s for s in c.successors() if id(s) not in placed]
            while pending:
                s = pending.pop()
                if id(s) in placed:
                    continue
                placed.add(id(s))
                order.append(s)
                pending.extend(x for x in s.successors() if id(x) not in placed)
    fn.blocks = order


def optimise(fn: ir.Function) -> ir.Function:
    thread_jumps(fn)
    fn.blocks = reachable(fn)
    remove_dead_ops(fn)
    thread_jumps(fn)
    fn.blocks = reachable(fn)
    layout(fn)
    return fn
