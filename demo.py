"""`luabpf demo`: the built-in demonstration, run in the kernel.

Owns the demo's script and what it prints: it compiles the integer functions
of examples/intmath.lua, passes each through the kernel verifier and calls
them there with BPF_PROG_TEST_RUN, printing each result next to its
instruction count.
"""
from __future__ import annotations

import os

from rich.table import Table

CALLS = [("gcd", (1071, 462)), ("gcd", (-48, 36)), ("isqrt", (10 ** 18,)), ("collatz", (27,)),
         ("bits", (0x0F0F,)), ("perfect", (8128,)), ("isqrt", (-4,))]


def example_path(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", name)


def demo(console) -> int:
    import luabpf
    from luabpf.api import compile_function
    path = example_path("intmath.lua")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    table = Table(title="kernel Lua in the kernel: examples/intmath.lua")
    for col in ("call", "result (from the kernel)", "BPF instructions"):
        table.add_column(col)
    for name, args in CALLS:
        arg_kinds = ("int",) * len(args)
        prog = compile_function(source, name, arg_kinds, "intmath.lua")
        try:
            result = luabpf.run_function(source, name, *args, filename="intmath.lua")
            shown = ", ".join(_lua(v) for v in (result if isinstance(result, tuple) else (result,)))
        except luabpf.LuaRuntimeError as e:
            shown = f"error: {e}"
        table.add_row(f"{name}({', '.join(map(str, args))})", shown, str(prog.insn_count))
    console.print(table)
    return 0


def _lua(v) -> str:
    return "nil" if v is None else ("true" if v is True else "false" if v is False else str(v))
