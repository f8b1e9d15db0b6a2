"""Emission: allocated IR → BPF instructions with symbolic labels.

Owns the translation of each IR operation to instructions once registers are
known: three-address operations become `dst = a; dst op= b`, helper calls
get their arguments by a parallel move into r1–r5, and blocks are laid out so that a jump to the next
block disappears. Labels stay symbolic; `bpf.encode.resolve` turns them into
offsets afterwards ("no instructions are added after this point").
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.bpf import insn as I
from luabpf.compiler.bpf.encode import label_slots
from luabpf.compiler.bpf.opcode import ALUOp, Class, JumpOp, Size
from luabpf.compiler.front.diagnostics import InternalError
from luabpf.compiler.back.regalloc import Allocation

ALU = {"add": (ALUOp.ADD, 0), "sub": (ALUOp.SUB, 0), "mul": (ALUOp.MUL, 0),
       "udiv": (ALUOp.DIV, 0), "umod": (ALUOp.MOD, 0), "sdiv": (ALUOp.DIV, 1),
       "smod": (ALUOp.MOD, 1), "or": (ALUOp.OR, 0), "and": (ALUOp.AND, 0),
       "xor": (ALUOp.XOR, 0), "lsh": (ALUOp.LSH, 0), "rsh": (ALUOp.RSH, 0),
       "arsh": (ALUOp.ARSH, 0)}
JMP = {"eq": JumpOp.JEQ, "ne": JumpOp.JNE, "gt": JumpOp.JGT, "ge": JumpOp.JGE,
       "lt": JumpOp.JLT, "le": JumpOp.JLE, "sgt": JumpOp.JSGT, "sge": JumpOp.JSGE,
       "slt": JumpOp.JSLT, "sle": JumpOp.JSLE, "set": JumpOp.JSET}
NEGATE = ir.NEGATED
FP = 10


def fits32(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


class Emitter:
    def __init__(self, alloc: Allocation, cycle_slot: ir.StackSlot):
        self.alloc = alloc
        self.out: list = []
        self.loc = None
        self.cycle_slot = cycle_slot

    # ---- operand access ----
    def put(self, x) -> None:
        self.out.append(x)

    def reg(self, v: ir.VReg) -> int:
        return self.alloc.regs[id(v)]

    def mov_into(self, r: int, src) -> None:
        if isinstance(src, ir.Phys):
            if src.n != r:
                self.put(I.mov(r, I.Register(src.n), loc=self.loc))
        elif isinstance(src, int):
            if fits32(src):
                self.put(I.mov(r, src, loc=self.loc))
            else:
                self.put(I.ld_imm64(r, src, loc=self.loc))
        elif self.reg(src) != r:
            self.put(I.mov(r, I.Register(self.reg(src)), loc=self.loc))

    # ---- operations ----
    def op(self, op: ir.Op) -> None:
        self.loc = op.loc
        getattr(self, "op_" + type(op).__name__)(op)

    def op_Mov(self, op: ir.Mov) -> None:
        self.mov_into(self.reg(op.dst), op.src)

    def op_Bin(self, op: ir.Bin) -> None:
        alu, off = ALU[op.op]
        r = self.reg(op.dst)
        if isinstance(op.b, ir.VReg):
            rb = self.reg(op.b)
            if rb == r and op.a is not op.b:
                raise InternalError(f"right operand shares the destination register: {op!r}")
            self.mov_into(r, op.a)
            self.put(alu.reg(r, rb, off=off, loc=self.loc))
        else:
            self.mov_into(r, op.a)
            self.put(alu.imm(r, op.b, off=off, loc=self.loc))

    def op_Neg(self, op: ir.Neg) -> None:
        r = self.reg(op.dst)
        self.mov_into(r, op.a)
        self.put(I.neg(r, loc=self.loc))

    def op_Swap(self, op: ir.Swap) -> None:
        r = self.reg(op.dst)
        self.mov_into(r, op.a)
        self.put(I.to_be(r, op.bits, loc=self.loc))

    def base(self, base, off: int) -> tuple[int, int]:
        if isinstance(base, ir.StackSlot):
            assert base.offset is not None, base
            return FP, base.offset + off
        return self.reg(base), off

    def op_Load(self, op: ir.Load) -> None:
        rb, off = self.base(op.base, op.off)
        self.put(I.load(Size.of(op.size), self.reg(op.dst), rb, off, loc=self.loc))

    def op_Store(self, op: ir.Store) -> None:
        rb, off = self.base(op.base, op.off)
        if isinstance(op.src, int):
            if not fits32(op.src):
                raise InternalError(f"store of a 64-bit immediate: {op!r}")
            self.put(I.store_imm(Size.of(op.size), rb, off, op.src, loc=self.loc))
        else:
            self.put(I.store(Size.of(op.size), rb, off, self.reg(op.src), loc=self.loc))

    def op_AtomicAdd(self, op: ir.AtomicAdd) -> None:
        self.put(I.atomic_add(Size.of(op.size), self.reg(op.base), op.off, self.reg(op.src), loc=self.loc))

    def op_SlotAddr(self, op: ir.SlotAddr) -> None:
        r = self.reg(op.dst)
        self.put(I.mov(r, I.Register(FP), loc=self.loc))
        self.put(ALUOp.ADD.imm(r, op.slot.offset, loc=self.loc))

    def op_LoadMap(self, op: ir.LoadMap) -> None:
        if op.value_offset is not None:
            self.put(I.ld_map_value(self.reg(op.dst), op.map_name, op.value_offset, loc=self.loc))
        else:
            self.put(I.ld_map_fd(self.reg(op.dst), op.map_name, loc=self.loc))

    def op_Call(self, op: ir.Call) -> None:
        self.call_args(op.args)
        self.put(I.call(op.helper, loc=self.loc))
        if op.dst is not None and self.reg(op.dst) != 0:
            self.put(I.mov(self.reg(op.dst), I.Register(0), loc=self.loc))

    def op_CallSub(self, op: ir.CallSub) -> None:
        self.call_args(op.args)
        self.put(I.call_local(sub_label(op.target), loc=self.loc))
        if op.dst is not None and self.reg(op.dst) != 0:
            self.put(I.mov(self.reg(op.dst), I.Register(0), loc=self.loc))

    def call_args(self, args: list) -> None:
        """Parallel move of register arguments into r1.., then the constants."""
        pending = {}                              # destination register → source register
        for i, a in enumerate(args):
            if isinstance(a, ir.VReg):
                src = self.reg(a)
                if src != i + 1:
                    pending[i + 1] = src
        parked = "stack"
        while pending:
            ready = [d for d in pending if d not in pending.values()]
            if not ready:                         # a cycle: park one destination's value
                d = next(iter(pending))
                self.put(I.store(Size.of(8), FP, self.cycle_slot.offset, d, loc=self.loc))
                for k, v in pending.items():
                    if v == d:
                        pending[k] = parked
                continue
            for d in ready:
                src = pending.pop(d)
                if src == parked:
                    self.put(I.load(Size.of(8), d, FP, self.cycle_slot.offset, loc=self.loc))
                else:
                    self.put(I.mov(d, I.Register(src), loc=self.loc))
        for i, a in enumerate(args):
            if not isinstance(a, ir.VReg):
                self.mov_into(i + 1, a)

    # ---- terminators ----
    def term(self, t, next_block: ir.Block | None) -> None:
        self.loc = t.loc
        if isinstance(t, ir.Jump):
            if t.target is not next_block:
                self.put(I.ja(t.target.name, loc=self.loc))
        elif isinstance(t, ir.Branch):
            self.branch(t, next_block)
        elif isinstance(t, ir.MayGoto):
            self.put(I.may_goto(t.exhausted.name, loc=self.loc))
            if t.cont is not next_block:
                self.put(I.ja(t.cont.name, loc=self.loc))
        elif isinstance(t, ir.Exit):
            self.mov_into(0, t.value)
            self.put(I.exit_(loc=self.loc))
        else:
            raise InternalError(f"block without terminator: {t!r}")

    def branch(self, t: ir.Branch, next_block) -> None:
        cond, then_, else_ = t.cond, t.then_, t.else_
        if then_ is next_block and cond in NEGATE:
            cond, then_, else_ = NEGATE[cond], else_, then_
        ra = self.reg(t.a)
        jop = JMP[cond]
        if isinstance(t.b, ir.VReg):
            self.put(jop.reg(ra, self.reg(t.b), then_.name, loc=self.loc))
        else:
            self.put(jop.imm(ra, t.b, then_.name, loc=self.loc))
        if else_ is not next_block:
            self.put(I.ja(else_.name, loc=self.loc))


def relax_long_jumps(items: list) -> list:
    """A conditional jump whose target is more than 32767 instructions away (a script of
    thousands of rules) cannot hold its offset: it becomes `if cond goto +1; goto +1;
    gotol target` (`resolve` widens the far goto to gotol). Repeated until every jump
    fits, since each rewrite moves what follows."""
    while True:
        targets = label_slots(items)
        out, slot, changed = [], 0, False
        for item in items:
            if isinstance(item, I.Label):
                out.append(item)
                continue
            far = item.label is not None and not item.target_in_imm \
                and item.code != Class.JMP | JumpOp.JA \
                and not -(1 << 15) <= targets.get(item.label, slot) - (slot + 1) < (1 << 15)
            if far:
                out += [item.replace(label=None, off=1), I.ja(1, loc=item.loc),
                        I.ja(item.label, loc=item.loc)]
                changed = True
            else:
                out.append(item)
            slot += item.slots
        items = out
        if not changed:
            return items


def sub_label(name: str) -> str:
    """The label of a BPF function's first instruction (its calls' target)."""
    return f"func:{name}"


def emit(fn: ir.Function, alloc: Allocation, cycle_slot: ir.StackSlot, prefix: str = "") -> list:
    """The function's instructions; `prefix` keeps its labels apart from other functions'."""
    e = Emitter(alloc, cycle_slot)
    for block in fn.blocks:
        block.name = prefix + block.name
    for i, block in enumerate(fn.blocks):
        e.out.append(I.label(block.name))
        for op in block.ops:
            e.op(op)
        e.term(block.term, fn.blocks[i + 1] if i + 1 < len(fn.blocks) else None)
    return e.out
