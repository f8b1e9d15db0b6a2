"""Clean-up passes over the IR: unreachable blocks, empty jump-only blocks,
branches whose arms agree, and operations whose results nobody reads; and the order
the blocks are emitted in (`order_blocks`).

Owns correctness-preserving simplification only; it never changes what a
program computes. The kernel verifier rejects unreachable instructions, so
removing unreachable blocks is required, not optional.
"""
from __future__ import annotations

from luabpf.compiler import ir

PURE = (ir.Mov, ir.Bin, ir.Neg, ir.Swap, ir.Load, ir.SlotAddr, ir.LoadMap)


def reachable(fn: ir.Function) -> list[ir.Block]:
    seen = {id(fn.blocks[0])}
    stack = [fn.blocks[0]]
    while stack:
        for s in stack.pop().successors():
            if id(s) not in seen:
                seen.add(id(s))
                stack.append(s)
    return [block for block in fn.blocks if id(block) in seen]


def thread_jumps(fn: ir.Function) -> None:
    """A block that only jumps elsewhere is skipped by every edge into it."""
    def final(block: ir.Block) -> ir.Block:
        hops = 0
        while (not block.ops and isinstance(block.term, ir.Jump)
               and block.term.target is not block and hops < 64
               and block.loop is None):            # a loop's header keeps its mark (cost.py)
            block = block.term.target
            hops += 1
        return block

    for block in fn.blocks:
        t = block.term
        if isinstance(t, ir.Jump):
            t.target = final(t.target)
        elif isinstance(t, ir.Branch):
            t.then_, t.else_ = final(t.then_), final(t.else_)
            if t.then_ is t.else_:
                block.term = ir.Jump(t.then_, loc=t.loc)
        elif isinstance(t, ir.MayGoto):
            t.cont, t.exhausted = final(t.cont), final(t.exhausted)


def remove_dead_ops(fn: ir.Function) -> None:
    while True:
        used = set()
        for block in fn.blocks:
            for op in block.ops + [block.term]:
                used.update(id(v) for v in op.uses())
        changed = False
        for block in fn.blocks:
            keep = []
            for op in block.ops:
                if isinstance(op, PURE) and not any(id(d) in used for d in op.defs()):
                    changed = True
                    continue
                if isinstance(op, ir.Mov) and op.src is op.dst:
                    changed = True
                    continue
                keep.append(op)
            block.ops = keep
        if not changed:
            return


def order_blocks(fn: ir.Function) -> None:
    """Order blocks in reverse postorder, so that a block comes after its dominators,
    the arms of an `if` come before their join and a loop's blocks stay together (short
    live ranges); the preferred successor (a branch's then-arm) is visited last so that
    it lands right after its block and its jump falls through. Error paths go last."""
    seen: set[int] = set()
    post: list[ir.Block] = []
    cold: list[ir.Block] = []

    def preferred_last(block: ir.Block) -> list[ir.Block]:
        t = block.term
        if isinstance(t, ir.Branch):
            return [t.else_, t.then_]
        if isinstance(t, ir.MayGoto):
            return [t.exhausted, t.cont]
        return block.successors()

    stack = [(fn.blocks[0], iter(preferred_last(fn.blocks[0])))]
    seen.add(id(fn.blocks[0]))
    while stack:
        block, it = stack[-1]
        for s in it:
            if id(s) in seen:
                continue
            seen.add(id(s))
            if s.cold:
                cold.append(s)
                continue
            stack.append((s, iter(preferred_last(s))))
            break
        else:
            stack.pop()
            post.append(block)
    order = post[::-1]
    pending = list(cold)
    while pending:                       # error paths, in the order they were reached
        c = pending.pop(0)
        order.append(c)
        for s in c.successors():
            if id(s) not in seen:
                seen.add(id(s))
                pending.append(s)
    fn.blocks = order


def _replace_uses(op: ir.Op, old: ir.VReg, new: ir.VReg) -> None:
    for name in ("src", "a", "b", "base", "value"):
        if getattr(op, name, None) is old:
            setattr(op, name, new)
    if isinstance(op, ir.Call):
        op.args = [new if x is old else x for x in op.args]


def propagate_copies(fn: ir.Function) -> None:
    """`d = s` followed, in the same block, by the only uses of d (d defined once, s not
    redefined in between): the uses read s and the move goes."""
    defs: dict[int, int] = {}
    uses: dict[int, int] = {}
    for block in fn.blocks:
        for op in block.ops + [block.term]:
            for v in op.defs():
                defs[id(v)] = defs.get(id(v), 0) + 1
            for v in op.uses():
                uses[id(v)] = uses.get(id(v), 0) + 1
    for block in fn.blocks:
        i = 0
        while i < len(block.ops):
            op = block.ops[i]
            if not (isinstance(op, ir.Mov) and isinstance(op.src, ir.VReg)
                    and defs.get(id(op.dst)) == 1):
                i += 1
                continue
            d, src = op.dst, op.src
            want = uses.get(id(d), 0)
            found, ok = 0, True
            rest = block.ops[i + 1:] + [block.term]
            for later in rest:
                found += sum(1 for v in later.uses() if v is d)
                if found == want:
                    break
                if any(v is src or v is d for v in later.defs()):
                    ok = False
                    break
            if ok and found == want and want > 0:
                for later in rest:
                    _replace_uses(later, d, src)
                del block.ops[i]
                uses[id(src)] = uses.get(id(src), 0) + want - 1
                continue
            i += 1


COMMUTATIVE = {"add", "mul", "and", "or", "xor"}


def retarget(fn: ir.Function) -> None:
    """`t = a op b; v = t` with t used nowhere else becomes `v = a op b`."""
    uses: dict[int, int] = {}
    defs: dict[int, int] = {}
    for block in fn.blocks:
        for op in block.ops + [block.term]:
            for v in op.uses():
                uses[id(v)] = uses.get(id(v), 0) + 1
            for v in op.defs():
                defs[id(v)] = defs.get(id(v), 0) + 1
    for block in fn.blocks:
        i = 1
        while i < len(block.ops):
            mov, prev = block.ops[i], block.ops[i - 1]
            if (isinstance(mov, ir.Mov) and isinstance(mov.src, ir.VReg)
                    and isinstance(prev, (ir.Bin, ir.Neg, ir.Swap, ir.Load, ir.Mov))
                    and prev.dst is mov.src and uses.get(id(mov.src)) == 1
                    and defs.get(id(mov.src)) == 1 and _can_write(prev, mov.dst)):
                prev.dst = mov.dst
                del block.ops[i]
                continue
            i += 1


def _can_write(op: ir.Op, dst: ir.VReg) -> bool:
    """Whether op may write dst: `dst = a op dst` would clobber its right operand."""
    if isinstance(op, ir.Bin) and op.b is dst:
        if op.op in COMMUTATIVE and op.a is not dst:
            op.a, op.b = op.b, op.a
            return True
        return False
    return True


def optimise(fn: ir.Function) -> ir.Function:
    thread_jumps(fn)
    fn.blocks = reachable(fn)
    propagate_copies(fn)
    retarget(fn)
    remove_dead_ops(fn)
    thread_jumps(fn)
    fn.blocks = reachable(fn)
    order_blocks(fn)
    return fn
