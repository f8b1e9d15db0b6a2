"""Hook records: what an entry function is attached to and how it talks to it.

Owns, per hook kind, the BPF program type and flags, the default verdict
returned when the script fails at run time, and the prologue/epilogue that turn
the hook's context into Lua arguments and Lua results into the hook's answer.
Each hook is a record of functions (STYLE: records, not `if name == …` chains).
The program-type numbers are the kernel UAPI's (`enum bpf_prog_type`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.lower.values import INT, NIL, Val

PROG_TYPE_XDP = 6
PROG_TYPE_SYSCALL = 31
BPF_F_SLEEPABLE = 1 << 4

# The ctx of the function hook (BPF_PROG_TYPE_SYSCALL, used by run_function):
#   0: u64 status   0 = returned, k + 1 = runtime error at error site k
#   8: u64 nret     how many values the function returned
#  16: u64 zero     0, written by user space: a zero the verifier cannot know (loops)
#  24: arguments    (u64 tag, u64 payload) each
#   …: results      (u64 tag, u64 payload) each
STATUS_OFF, NRET_OFF, ZERO_OFF, ARGS_OFF, SLOT = 0, 8, 16, 24, 16


@dataclass
class FunctionHook:
    """Calls one Lua function with arguments of known kinds, for `run_function`."""
    entry: str
    arg_kinds: tuple[str, ...]            # 'int' | 'bool' | 'nil' per argument
    name: str = "function"
    prog_type: int = PROG_TYPE_SYSCALL
    prog_flags: int = BPF_F_SLEEPABLE
    default_return: int = 0
    returns: str = "integers, booleans or nil"
    count_errors: bool = False            # the status word reports the error site
    nresults: int = 0                     # set by the epilogue
    ctx: ir.VReg | None = field(default=None, repr=False)

    @property
    def results_off(self) -> int:
        return ARGS_OFF + SLOT * len(self.arg_kinds)

    @property
    def ctx_size(self) -> int:
        return self.results_off + SLOT * self.nresults

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
        self.nresults = len(results)
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
    from luabpf.compiler.lower.values import type_name
    out = []
    for i, v in enumerate(vals):
        if v.kinds - {"nil", "bool", "int"}:
            returns = getattr(lw.hook, "returns", "integers, booleans or nil")
            lw.diags.error(span, f"'{lw.hook.entry}' returns a {type_name(v.kinds)} as value "
                                 f"#{i + 1}: an entry function of the {lw.hook.name} hook "
                                 f"returns {returns}",
                           "print(s) sends a string to user space; return a value the hook takes")
            v = Val.nil()
        out.append(v)
    return out


__all__ = ["FunctionHook", "INT", "NIL", "entry_results"]
