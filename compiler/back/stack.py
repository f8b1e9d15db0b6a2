"""The stack frame: where every stack slot lives, spill slots shared where they can be.

Owns `place_stack_slots` and `remove_dead_stores` (spill stores nothing reads). The
program's own slots (map keys, print records, …; their addresses go to helpers) and the
emitter's each get their own bytes. Spill slots, 8 bytes each and only ever read and
written by the spill code, share bytes when their values are never live at once: a
liveness dataflow over the slots (a store defines one, a load uses it), an interference
graph (a store interferes with every slot live after it, so even a dead store cannot
clobber a live value), and greedy coloring in creation order. Reusing a stack slot for values of different types (a packet pointer, then a
number) is fine for the verifier: it tracks each slot's state at each store.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Source, Span

STACK_LIMIT = 512
MAY_GOTO_STACK = 8          # the verifier keeps may_goto's counter on the program's stack


def _accesses(op, slots: set[int]) -> tuple[list[int], list[int]]:
    """(slots op reads, slots op writes), among `slots`."""
    if isinstance(op, ir.Load) and isinstance(op.base, ir.StackSlot) and id(op.base) in slots:
        return [id(op.base)], []
    if isinstance(op, ir.Store) and isinstance(op.base, ir.StackSlot) and id(op.base) in slots:
        return [], [id(op.base)]
    return [], []


def _live_in(fn: ir.Function, ids: set[int]) -> dict[int, set[int]]:
    """The spill slots (by id) live at the start of each block."""
    gen, kill = {}, {}
    for block in fn.blocks:
        g, k = set(), set()
        for op in block.ops:
            reads, writes = _accesses(op, ids)
            g |= {r for r in reads if r not in k}
            k |= set(writes)
        gen[id(block)], kill[id(block)] = g, k
    live_in = {id(block): set() for block in fn.blocks}
    changed = True
    while changed:
        changed = False
        for block in reversed(fn.blocks):
            out = set().union(*(live_in[id(s)] for s in block.successors()))
            inn = gen[id(block)] | (out - kill[id(block)])
            if inn != live_in[id(block)]:
                live_in[id(block)] = inn
                changed = True
    return live_in


def remove_dead_stores(fn: ir.Function, spill_slots: list[ir.StackSlot]) -> int:
    """Drop the spill stores no load ever reads (a value spilled, then moved rather than
    reloaded); how many were dropped."""
    ids = {id(s) for s in spill_slots}
    live_in = _live_in(fn, ids)
    dropped = 0
    for block in fn.blocks:
        live = set().union(*(live_in[id(s)] for s in block.successors()))
        kept = []
        for op in reversed(block.ops):
            reads, writes = _accesses(op, ids)
            if writes and writes[0] not in live:
                dropped += 1
                continue
            for w in writes:
                live.discard(w)
            live |= set(reads)
            kept.append(op)
        block.ops = kept[::-1]
    return dropped


def interference(fn: ir.Function, spill_slots: list[ir.StackSlot]) -> dict[int, set[int]]:
    """For each spill slot (by id), the spill slots whose bytes it may not share."""
    ids = {id(s) for s in spill_slots}
    live_in = _live_in(fn, ids)
    edges: dict[int, set[int]] = {i: set() for i in ids}
    for block in fn.blocks:
        live = set().union(*(live_in[id(s)] for s in block.successors()))
        for op in reversed(block.ops):
            reads, writes = _accesses(op, ids)
            for w in writes:
                for other in live - {w}:
                    edges[w].add(other)
                    edges[other].add(w)
                live.discard(w)
            live |= set(reads)
    return edges


def place_stack_slots(fn: ir.Function, spill_slots: list[ir.StackSlot], own: list[ir.StackSlot],
                      loops: bool, source: Source) -> int:
    """Give every stack slot its offset from r10; returns the bytes used. `own`: slots the
    emitter uses behind the IR's back (the parallel-move slot), never shared."""
    offset = 0
    for slot in fn.slots + own:
        offset += (slot.size + 7) // 8 * 8
        slot.offset = -offset
    edges = interference(fn, spill_slots)
    color_offset: list[int] = []
    color_of: dict[int, int] = {}
    for slot in spill_slots:
        taken = {color_of[n] for n in edges[id(slot)] if n in color_of}
        color = next(c for c in range(len(color_offset) + 1) if c not in taken)
        if color == len(color_offset):
            offset += 8
            color_offset.append(-offset)
        color_of[id(slot)] = color
        slot.offset = color_offset[color]
    limit = STACK_LIMIT - (MAY_GOTO_STACK if loops else 0)
    if offset > limit:
        raise CompileError([Diagnostic(
            f"the program needs {offset} bytes of stack; the kernel allows {limit}",
            Span(source.filename, 1, 1, 1, 2),
            "split the work into smaller functions or use fewer live values at once")], source)
    return offset
