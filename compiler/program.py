"""The compiler pipeline and its product.

Owns `compile_program`: parse → check → lower → optimise → allocate → emit →
resolve, and `CompiledProgram`, everything a loader or an object writer needs:
resolved instructions (map references still symbolic), the maps to create
with their initial contents, the runtime error sites, the globals' layout and
the hook. Pure: no kernel access.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.bpf import disasm, encode
from luabpf.compiler.check import check

from luabpf.compiler.diagnostics import CompileError, Diagnostic
from luabpf.compiler.emit import emit
from luabpf.compiler.lower import ERRORS_MAP, GLOBALS_MAP, ErrorSite, GlobalVar, Options, lower
from luabpf.compiler.opt import optimise
from luabpf.compiler.parser import parse
from luabpf.compiler.regalloc import allocate
from luabpf.compiler.source import Source, Span

MAP_TYPE_ARRAY = 2
STACK_LIMIT = 512
MAY_GOTO_STACK = 8          # the verifier keeps may_goto's counter on the program's stack


@dataclass
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    initial: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class CompiledProgram:
    source: Source
    hook: object
    insns: list                       # resolved bpf.insn.Insn, map fds still symbolic
    maps: list[MapSpec]
    sites: list[ErrorSite]
    globals: dict[str, GlobalVar]
    stack_size: int

    def asm(self) -> str:
        return disasm.disassemble(self.insns, self.source.lines)

    def bytecode(self, map_fds: dict[str, int] | None = None) -> bytes:
        insns = self.insns
        if map_fds is not None:
            insns = [i.replace(imm=map_fds[i.map_ref]) if i.map_ref else i for i in insns]
        return encode.encode(insns)

    @property
    def insn_count(self) -> int:
        return sum(i.slots for i in self.insns)


def layout_frame(fn: ir.Function, spill_slots: list[ir.StackSlot], loops: bool, source: Source) -> int:
    """Give every stack slot its offset from r10; returns the bytes used."""
    offset = 0
    for slot in fn.slots + spill_slots:
        size = (slot.size + 7) // 8 * 8
        offset += size
        slot.offset = -offset
    limit = STACK_LIMIT - (MAY_GOTO_STACK if loops else 0)
    if offset > limit:
        raise CompileError([Diagnostic(
            f"the program needs {offset} bytes of stack; the kernel allows {limit}",
            Span(source.filename, 1, 1, 1, 2),
            "split the work into smaller functions or use fewer live values at once")], source)
    return offset


def parse_and_check(text: str, filename: str):
    """The checked syntax tree of a script; every error carries the source for rendering."""
    try:
        chunk = parse(text, filename)
        check(chunk)
    except CompileError as e:
        if e.source is None:
            e.source = Source(text, filename)
        raise
    return chunk


def compile_program(text: str, filename: str, hook, options: Options | None = None,
                    chunk=None) -> CompiledProgram:
    source = Source(text, filename)
    if chunk is None:
        chunk = parse_and_check(text, filename)
    options = options or Options()
    low = lower(chunk, source, hook, options)
    fn = optimise(low.function)
    spill_slots: list[ir.StackSlot] = []

    def new_slot(vreg):
        s = ir.StackSlot(8, f"spill:{vreg!r}")
        spill_slots.append(s)
        return s

    alloc = allocate(fn, new_slot)
    cycle = ir.StackSlot(8, "call_cycle")
    uses_loops = any(isinstance(b.term, ir.MayGoto) for b in fn.blocks)
    stack = layout_frame(fn, spill_slots + [cycle], uses_loops, source)
    insns = encode.resolve(emit(fn, alloc, cycle))
    return CompiledProgram(source, hook, insns, program_maps(low), low.sites, low.globals, stack)


def program_maps(low) -> list[MapSpec]:
    maps = []
    if low.uses_globals_map or low.globals:
        words = [0] + [g.initial for g in low.globals.values()]
        value = struct.pack(f"<{len(words)}q", *words)
        maps.append(MapSpec(GLOBALS_MAP, MAP_TYPE_ARRAY, 4, len(value), 1,
                            {struct.pack("<I", 0): value}))
    if low.uses_errors_map:
        maps.append(MapSpec(ERRORS_MAP, MAP_TYPE_ARRAY, 4, 8, max(1, len(low.sites))))
    return maps
