"""The intermediate representation: basic blocks of BPF-like operations over
virtual registers.

Owns the data model between lowering and register allocation. Operations are
three-address (`dst = a op b`) over `VReg`s and integer immediates; blocks end
in one terminator (`Jump`, `Branch`, `MayGoto`, `Exit`). Nothing here knows
physical registers or jump offsets: `regalloc` and `emit` decide those.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class VReg:
    id: int
    hint: str = ""

    def __repr__(self) -> str:
        return f"v{self.id}" + (f"<{self.hint}>" if self.hint else "")


@dataclass(eq=False)
class Phys:
    """A physical register named directly (r1 = ctx at entry)."""
    n: int

    def __repr__(self) -> str:
        return f"r{self.n}"


Operand = VReg | int


@dataclass(eq=False)
class StackSlot:
    """Bytes of the BPF stack owned by the program (map keys, buffers)."""
    size: int
    name: str = ""
    offset: int | None = None        # from r10, negative; set by back/stack.py


# ---- operations ----------------------------------------------------------

@dataclass(eq=False)
class Op:
    loc: object = field(default=None, kw_only=True)   # a Span: the Lua source it came from

    def uses(self) -> list[VReg]:
        return []

    def defs(self) -> list[VReg]:
        return []


def _regs(*ops) -> list[VReg]:
    return [o for o in ops if isinstance(o, VReg)]


@dataclass(eq=False)
class Mov(Op):
    dst: VReg
    src: Operand | Phys

    def uses(self):
        return _regs(self.src)

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class Bin(Op):
    """dst = a op b. ops: add sub mul udiv umod sdiv smod or and xor lsh rsh arsh."""
    op: str
    dst: VReg
    a: Operand
    b: Operand

    def uses(self):
        return _regs(self.a, self.b)

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class Neg(Op):
    dst: VReg
    a: VReg

    def uses(self):
        return [self.a]

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class Swap(Op):
    """dst = a with its low `bits` bits in big-endian order read as a number (be16/be32/be64)."""
    dst: VReg
    a: VReg
    bits: int

    def uses(self):
        return [self.a]

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class Load(Op):
    """dst = *(size *)(base + off); base a VReg or the frame (a StackSlot)."""
    size: int
    dst: VReg
    base: VReg | StackSlot
    off: int = 0

    def uses(self):
        return _regs(self.base)

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class Store(Op):
    size: int
    base: VReg | StackSlot
    off: int
    src: Operand

    def uses(self):
        return _regs(self.base, self.src)


@dataclass(eq=False)
class AtomicAdd(Op):
    size: int
    base: VReg
    off: int
    src: VReg

    def uses(self):
        return [self.base, self.src]


@dataclass(eq=False)
class SlotAddr(Op):
    """dst = r10 + offset of slot."""
    dst: VReg
    slot: StackSlot

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class LoadMap(Op):
    """dst = the map (for helpers), or with value_offset the address of that byte of its
    single value (an array of one entry: BPF_PSEUDO_MAP_VALUE, no lookup)."""
    dst: VReg
    map_name: str
    value_offset: int | None = None

    def defs(self):
        return [self.dst]


@dataclass(eq=False)
class Call(Op):
    """A helper call: args go to r1..r5, the result (if dst) comes from r0."""
    helper: int
    args: list[Operand]
    dst: VReg | None = None

    def uses(self):
        return _regs(*self.args)

    def defs(self):
        return [self.dst] if self.dst is not None else []


@dataclass(eq=False)
class CallSub(Call):
    """A BPF-to-BPF call of the program's function `target` (its address in r1): the
    callee clobbers r0–r5 as a helper does."""
    target: str = ""


# ---- terminators ---------------------------------------------------------

@dataclass(eq=False)
class Jump(Op):
    target: "Block"


@dataclass(eq=False)
class Branch(Op):
    """if a cond b goto then_ else goto else_. conds: eq ne gt ge lt le sgt sge slt sle set."""
    cond: str
    a: VReg
    b: Operand
    then_: "Block"
    else_: "Block"

    def uses(self):
        return _regs(self.a, self.b)


@dataclass(eq=False)
class MayGoto(Op):
    """The kernel's may_goto: usually falls through to `cont`, jumps to `exhausted` when
    the per-invocation loop budget is spent."""
    exhausted: "Block"
    cont: "Block"


@dataclass(eq=False)
class Exit(Op):
    """r0 = value; exit."""
    value: Operand

    def uses(self):
        return _regs(self.value)


Terminator = Jump | Branch | MayGoto | Exit

NEGATED = {"eq": "ne", "ne": "eq", "gt": "le", "le": "gt", "ge": "lt", "lt": "ge",
           "sgt": "sle", "sle": "sgt", "sge": "slt", "slt": "sge"}


@dataclass(eq=False)
class Block:
    name: str
    ops: list[Op] = field(default_factory=list)
    term: Terminator | None = None
    cold: bool = False               # on an error path: laid out after the rest
    loop: object = None              # a loop's header: its cost.LoopInfo (bound, line)

    def successors(self) -> list["Block"]:
        t = self.term
        if isinstance(t, Jump):
            return [t.target]
        if isinstance(t, Branch):
            return [t.then_, t.else_]
        if isinstance(t, MayGoto):
            return [t.cont, t.exhausted]
        return []

    def __repr__(self) -> str:
        return f"Block({self.name})"


@dataclass(eq=False)
class Function:
    """One BPF program body: blocks in the order they are emitted (opt/cleanup.py's
    `order_blocks` sets it), the first is the entry."""
    blocks: list[Block]
    slots: list[StackSlot]
