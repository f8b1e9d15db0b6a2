"""Builds IR: the current block, fresh virtual registers, and the small
idioms every lowering step uses (move, binary op, branch, start a block).

Owns nothing about Lua: `lower` and `intops` speak Lua and call this.
"""
from __future__ import annotations

from luabpf.compiler import ir


class Builder:
    def __init__(self) -> None:
        self.blocks: list[ir.Block] = []
        self.slots: list[ir.StackSlot] = []
        self._next_vreg = 0
        self._next_block = 0
        self.loc = None                 # the Span of the Lua code being lowered
        self.cur: ir.Block = self.block("entry")
        self.targeted: set[int] = {id(self.cur)}

    # ---- registers and blocks ----
    def vreg(self, hint: str = "") -> ir.VReg:
        self._next_vreg += 1
        return ir.VReg(self._next_vreg, hint)

    def block(self, hint: str = "L", cold: bool = False) -> ir.Block:
        """A new block; a cold one (an error or a drop path) is laid out after the rest."""
        self._next_block += 1
        b = ir.Block(f"{hint}{self._next_block}", cold=cold)
        self.blocks.append(b)
        return b

    def slot(self, size: int, name: str = "") -> ir.StackSlot:
        s = ir.StackSlot(size, name)
        self.slots.append(s)
        return s

    def start(self, block: ir.Block) -> None:
        """Continue emitting into `block` (the previous block must be terminated)."""
        if self.cur.term is None:
            assert not self.reachable, f"{self.cur.name} falls through without a terminator"
            self.cur.term = ir.Exit(0)        # unreachable; removed before emission
        self.cur = block

    @property
    def terminated(self) -> bool:
        return self.cur.term is not None

    @property
    def reachable(self) -> bool:
        """Whether any jump leads to the current block (code after a return does not)."""
        return self.cur.term is None and id(self.cur) in self.targeted

    # ---- operations ----
    def emit(self, op: ir.Op) -> None:
        if self.cur.term is not None:       # dead code after a jump: give it a fresh block
            self.cur = self.block("dead")
        if op.loc is None:
            op.loc = self.loc
        if isinstance(op, ir.Bin):           # instructions carry 32-bit immediates only
            op.b = self.small(op.b)
        elif isinstance(op, ir.Store):
            op.src = self.small(op.src)
        self.cur.ops.append(op)

    def terminate(self, term: ir.Op) -> None:
        if self.cur.term is not None:
            self.cur = self.block("dead")
        if term.loc is None:
            term.loc = self.loc
        self.cur.term = term
        if id(self.cur) in self.targeted:
            self.targeted.update(id(b) for b in self.cur.successors())

    def mov(self, dst: ir.VReg, src) -> None:
        if dst is not src:
            self.emit(ir.Mov(dst, src))

    def copy(self, src, hint: str = "") -> ir.VReg:
        v = self.vreg(hint)
        self.emit(ir.Mov(v, src))
        return v

    def bin(self, op: str, a, b, hint: str = "") -> ir.VReg:
        d = self.vreg(hint)
        self.emit(ir.Bin(op, d, self.small(a), self.small(b)))
        return d

    def small(self, operand):
        """An immediate that fits an instruction's signed 32-bit field, or a register."""
        if isinstance(operand, int) and not -(1 << 31) <= operand < (1 << 31):
            return self.copy(operand)
        return operand

    def reg(self, operand) -> ir.VReg:
        """The operand in a register (immediates are moved into a fresh one)."""
        return operand if isinstance(operand, ir.VReg) else self.copy(operand)

    def limit(self, r: ir.VReg, cond: str, bound, hint: str = "limit") -> None:
        """if r cond bound then r = bound: clamp a register to a bound ("slt", 0 floors
        it at 0; "gt", n caps it at n)."""
        over, done = self.block(hint), self.block(hint + "_ok")
        self.branch(cond, r, bound, over, done)
        self.start(over)
        self.mov(r, bound)
        self.jump(done)
        self.start(done)

    def jump(self, target: ir.Block) -> None:
        self.terminate(ir.Jump(target))

    def branch(self, cond: str, a, b, then_: ir.Block, else_: ir.Block) -> None:
        """if a cond b then goto then_ else goto else_; a constant left side is moved to a register."""
        if not isinstance(a, ir.VReg):
            if isinstance(b, ir.VReg):
                a, b, cond = b, a, SWAPPED[cond]
            else:
                a = self.copy(a)
        self.terminate(ir.Branch(cond, a, self.small(b), then_, else_))


SWAPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "lt": "gt", "ge": "le", "le": "ge",
           "sgt": "slt", "slt": "sgt", "sge": "sle", "sle": "sge", "set": "set"}
