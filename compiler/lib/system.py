"""`time.ns()` and `bpf.cpu()`: the kernel's clock and the CPU a program runs on.

Owns the lowering of the library functions that read the machine rather than the
script's values; any hook may call them, and so may a BPF function.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.lower.values import Val


def time_ns(lw, args, node, scope):
    """Nanoseconds since boot (the monotonic clock, bpf_ktime_get_ns)."""
    t = lw.b.vreg("now")
    lw.b.emit(ir.Call(Helper.ktime_get_ns, [], t))
    return [Val.int_(t, (0, (1 << 63) - 1))]


def bpf_cpu(lw, args, node, scope):
    """The number of the CPU the program runs on (bpf_get_smp_processor_id)."""
    cpu = lw.b.vreg("cpu")
    lw.b.emit(ir.Call(Helper.get_smp_processor_id, [], cpu))
    return [Val.int_(cpu, (0, 4095))]
