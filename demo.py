"""`luabpf demo`: the built-in demonstration, run in the kernel.

Owns the demo and what it prints: the paper's Figure 2 (examples/ssh_filter.lua)
compiled for XDP and tc, verified by the kernel and run with
BPF_PROG_TEST_RUN on SSH identification strings it builds itself (scapy),
then the integer functions of examples/intmath.lua called in the kernel.
"""
from __future__ import annotations

import os


from luabpf import api
from luabpf.runtime.verdicts import verdict_name

BANNERS = [
    b"SSH-2.0-OpenSSH_6.4 Debian-5ubuntu1.1\r\n",
    b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n",
    b"SSH-2.0-OpenSSH_6.4",
    b"SSH-2.0-OpenSSH_6.4\r\n",
    b"SSH-2.0-dropbear_2022.83\r\n",
    b"HTTP/1.1 200 OK\r\n",
]
CALLS = [("gcd", (1071, 462)), ("isqrt", (10 ** 18,)), ("collatz", (27,)), ("bits", (0x0F0F,)),
         ("perfect", (8128,)), ("isqrt", (-4,))]


def example_path(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", name)


def read(name: str) -> str:
    with open(example_path(name), encoding="utf-8") as f:
        return f.read()


def ssh_demo(console) -> None:
    # scapy is heavy to import (seconds); only this demo builds frames with it.
    from scapy.all import IP, TCP, Ether, Raw
    from rich.table import Table     # rich costs ~10 ms to import: only the demo's tables
    source = read("ssh_filter.lua")
    table = Table(title="examples/ssh_filter.lua (the paper's Figure 2) in the kernel")
    for col in ("server's first TCP payload", "XDP verdict", "tc verdict"):
        table.add_column(col)
    programs = {hook: api.compile(source, "ssh_filter.lua", hook) for hook in ("xdp", "tc")}
    loaded = {hook: p.load() for hook, p in programs.items()}
    try:
        for banner in BANNERS:
            frame = bytes(Ether() / IP(src="192.0.2.22", dst="192.0.2.1") / TCP(sport=22, dport=40000)
                          / Raw(banner))
            row = [repr(banner)[2:-1]]
            for hook in ("xdp", "tc"):
                row.append(verdict_name(hook, loaded[hook].run(frame)))
            table.add_row(*row)
    finally:
        for p in loaded.values():
            p.close()
    console.print(table)
    console.print(f"  {programs['xdp'].insn_count} BPF instructions (XDP); the Lua pattern is compiled "
                  "to BPF, not interpreted.\n")


def intmath_demo(console) -> None:
    from rich.table import Table     # (as in ssh_demo)
    source = read("intmath.lua")
    table = Table(title="examples/intmath.lua: Lua functions called in the kernel")
    for col in ("call", "result", "BPF instructions"):
        table.add_column(col)
    for name, args in CALLS:
        prog = api.compile_function(source, name, ("int",) * len(args), "intmath.lua")
        try:
            result = api.run_function(source, name, *args, filename="intmath.lua")
            shown = ", ".join(_lua(v) for v in (result if isinstance(result, tuple) else (result,)))
        except api.LuaRuntimeError as e:
            shown = f"error: {e}"
        table.add_row(f"{name}({', '.join(map(str, args))})", shown, str(prog.insn_count))
    console.print(table)


def demo(console) -> int:
    ssh_demo(console)
    intmath_demo(console)
    return 0


def _lua(v) -> str:
    return "nil" if v is None else ("true" if v is True else "false" if v is False else str(v))
