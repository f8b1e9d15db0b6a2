"""The function hook: calls one Lua function with arguments of known kinds (`run_function`,
`luabpf call`).

Owns the record (BPF_PROG_TYPE_SYSCALL, sleepable, run by BPF_PROG_TEST_RUN with a
context user space writes and reads back) and that context's layout, which
`runtime/call.py` reads; and `entry_results`, what any entry function may return.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.bpf.uapi import BPF_F_SLEEPABLE, ProgType
from luabpf.compiler.front import ast
from luabpf.compiler.front.source import Source
from luabpf.compiler.hooks.base import Environment, Hook, is_plain, name_of
from luabpf.compiler.lower.values import Val, type_name

# The ctx of the function hook (BPF_PROG_TYPE_SYSCALL, used by run_function):
#   0: u64 status   0 = returned, k + 1 = runtime error at error site k
#   8: u64 nret     how many values the function returned
#  16: u64 zero     0, written by user space: a zero the verifier cannot know (loops)
#  24: arguments    (u64 tag, u64 payload) each
#   …: results      (u64 tag, u64 payload) each
STATUS_OFF, NRET_OFF, ZERO_OFF, ARGS_OFF, SLOT = 0, 8, 16, 24, 16


def ctx_size(arg_count: int, result_count: int) -> int:
    """The bytes of the context of a call with these many arguments and results."""
    return results_off(arg_count) + SLOT * result_count


def results_off(arg_count: int) -> int:
    """Where the results start in the context of a call with `arg_count` arguments."""
    return ARGS_OFF + SLOT * arg_count


class FunctionHook(Hook):
    """Calls one Lua function with arguments of known kinds ('int', 'bool' or 'nil' each).
    How many values it returns is the compiled program's (`CompiledProgram.nresults`)."""
    name = "function"
    missing = "the script defines no function to compile"
    shares_state = False                  # each function is a program of its own
    prog_type = ProgType.SYSCALL
    prog_flags = BPF_F_SLEEPABLE
    section = "syscall"
    loop_bound = 1_000_000
    pattern_steps = 1_000_000
    budget = 100_000_000

    def __init__(self, entry: str, arg_kinds: tuple[str, ...], count_errors: bool = False):
        self.entry = entry
        self.arg_kinds = tuple(arg_kinds)
        self.count_errors = count_errors       # the status word reports the error site
        self.ctx: ir.VReg | None = None

    def __repr__(self) -> str:
        return f"FunctionHook({self.entry!r}, {self.arg_kinds!r})"

    @classmethod
    def entries(cls, chunk: ast.Chunk) -> list:
        return [st for st in chunk.body.stmts if is_plain(st)]

    @classmethod
    def plan(cls, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list]:
        """Each top-level function, called with integer arguments (`luabpf call`)."""
        return chunk, [cls(name_of(st), ("int",) * len(st.func.params)) for st in cls.entries(chunk)]

    @property
    def results_off(self) -> int:
        return results_off(len(self.arg_kinds))

    def prologue(self, lw) -> list[Val]:
        b = lw.b
        self.ctx = b.copy(ir.Phys(1), "ctx")
        args = []
        for i, kind in enumerate(self.arg_kinds):
            off = ARGS_OFF + SLOT * i
            if kind == "int":
                v = b.vreg(f"arg{i}")
                b.emit(ir.Load(8, v, self.ctx, off + 8))
                args.append(Val.int_(v))
            elif kind == "bool":
                v = b.vreg(f"arg{i}")
                b.emit(ir.Load(8, v, self.ctx, off))
                args.append(Val.bool_(v))
            else:
                args.append(Val.nil())
        return args

    def epilogue(self, lw, results: list[Val], nret) -> None:
        b = lw.b
        for i, v in enumerate(results):
            off = self.results_off + SLOT * i
            b.emit(ir.Store(8, self.ctx, off, v.tag))
            b.emit(ir.Store(8, self.ctx, off + 8, v.payload))
        b.emit(ir.Store(8, self.ctx, NRET_OFF, nret))
        b.emit(ir.Store(8, self.ctx, STATUS_OFF, 0))
        b.terminate(ir.Exit(0))

    def opaque_zero(self, lw) -> ir.VReg:
        z = lw.b.vreg("zero")
        lw.b.emit(ir.Load(8, z, self.ctx, ZERO_OFF))
        return z

    def on_error(self, lw, site: ir.VReg) -> None:
        status = lw.b.bin("add", site, 1)
        lw.b.emit(ir.Store(8, self.ctx, STATUS_OFF, status))


def entry_results(lw, vals: list[Val], span) -> list[Val]:
    """The values a `return` of the entry function gives its hook: a string, a view or a
    library value is a located error there (it has no way out of the program: a view's
    bytes are the packet's, a constant string has no run-time bytes), replaced by nil."""
    out = []
    for i, v in enumerate(vals):
        if v.kinds - {"nil", "bool", "int"}:
            lw.diags.error(span, f"'{lw.hook.entry}' returns a {type_name(v.kinds)} as value "
                                 f"#{i + 1}: an entry function of the {lw.hook.name} hook "
                                 f"returns {lw.hook.returns}",
                           "print(s) sends a string to user space; return a value the hook takes")
            v = Val.nil()
        out.append(v)
    return out


__all__ = ["FunctionHook", "entry_results", "ctx_size"]
