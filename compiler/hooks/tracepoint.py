"""The tracepoint hook: `function tracepoint.CATEGORY.EVENT(args)`.

Owns the hook record (BPF_PROG_TYPE_TRACEPOINT) and `args`, whose fields are read
from the event's record at the offsets of its tracefs format file. The compiler
never reads tracefs (it stays pure): the runtime parses the format
(`runtime/tracefs.py`) and hands the fields in as `TraceField`s.

Decisions (docs/language.md, "Tracepoints"):
- Integer fields of 1, 2, 4 or 8 bytes read as integers, sign-extended when the
  format says signed. Arrays, strings (`char comm[16]`, `__data_loc`) and the
  `common_*` fields are not available yet: using one is a compile error that says so.
- What the function returns is ignored; a runtime error stops it and is counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from luabpf.compiler import ir
from luabpf.compiler.bpf.uapi import ProgType
from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Source
from luabpf.compiler.hooks.base import Environment, Hook, is_tracepoint
from luabpf.compiler.lower.values import Val


@dataclass(frozen=True)
class TraceField:
    name: str
    offset: int
    size: int
    signed: bool
    type: str = ""           # the C type, as the format file writes it
    scalar: bool = True      # False for arrays, strings and __data_loc fields


class TracepointHook(Hook):
    """`function tracepoint.CATEGORY.EVENT(args)`, the event's fields as `args`."""
    name = "tracepoint"
    missing = "a tracepoint program needs a function tracepoint.CATEGORY.EVENT(args)"
    prog_type = ProgType.TRACEPOINT
    params = ("args",)
    loop_bound = 1024
    pattern_steps = 1024
    budget = 50_000

    def __init__(self, category: str, event: str, fields: dict[str, TraceField] | None = None):
        self.category, self.event = category, event
        self.fields = dict(fields or {})
        self.ctx: ir.VReg | None = None

    def __repr__(self) -> str:
        return f"TracepointHook({self.category!r}, {self.event!r})"

    @classmethod
    def entries(cls, chunk: ast.Chunk) -> list:
        return [st for st in chunk.body.stmts if is_tracepoint(st)]

    @classmethod
    def plan(cls, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list]:
        """A record per `tracepoint.C.E` function, its fields from `env`; an event `env`
        does not have is a CompileError at the function's line."""
        hooks, problems = [], []
        for st in cls.entries(chunk):
            _, category, event = st.path
            try:
                hooks.append(cls(category, event, env.fields_of(category, event)))
            except env.no_such_event as e:
                problems.append(Diagnostic(str(e), st.span))
        if problems:
            raise CompileError(problems, source)
        return chunk, hooks

    @property
    def entry(self) -> str:
        return f"tracepoint.{self.category}.{self.event}"

    @property
    def section(self) -> str:
        return f"tracepoint/{self.category}/{self.event}"

    @property
    def label(self) -> str:
        return self.section

    def prologue(self, lw) -> list[Val]:
        self.ctx = lw.b.copy(ir.Phys(1), "ctx")
        return [Val.object(TraceArgs(self))]


class TraceArgs:
    """The compile-time `args` of a tracepoint function: args.FIELD loads the field."""

    def __init__(self, hook: TracepointHook):
        self.hook = hook

    def index(self, lw, key: str, node) -> Val:
        f = self.hook.fields.get(key)
        where = f"{self.hook.category}:{self.hook.event}"
        if f is None or key.startswith("common_"):
            names = ", ".join(n for n in self.hook.fields if not n.startswith("common_"))
            lw.error(node, f"{where} has no field '{key}' (its fields: {names or 'none'})")
            return Val.nil()
        if not f.scalar or f.size not in (1, 2, 4, 8):
            lw.error(node, f"{where}'s field '{key}' is a {f.type or 'non-integer'}: only integer "
                           "fields are available in kernel Lua")
            return Val.nil()
        b = lw.b
        v = b.vreg(f"args.{key}")
        b.emit(ir.Load(f.size, v, self.hook.ctx, f.offset))
        if f.signed and f.size < 8:
            shift = 64 - 8 * f.size
            v = b.bin("arsh", b.bin("lsh", v, shift), shift, f"args.{key}")
            return Val.int_(v, (-(1 << (8 * f.size - 1)), (1 << (8 * f.size - 1)) - 1))
        if f.size < 8:
            return Val.int_(v, (0, (1 << (8 * f.size)) - 1))
        return Val.int_(v)
