"""Kernel feature probes, and the file systems luabpf needs mounted.

Owns: every "does the running kernel support X" question (version and feature
checks live only here), each answered once per process (`functools.cache`) by
loading a tiny program, built with compiler/bpf's instruction builders and BTF
with compiler/obj/btf.py's writer, or by creating a tiny map; and
`ensure_bpffs()` / `ensure_tracefs()`. Does not own: the
instruction model or its encoding (`compiler/bpf/`), or loading user programs.

A probe answers True or False from what the kernel did. It does not answer
when it cannot know: without BPF privileges `PermissionProblem` propagates
(and is not cached), so "no permission" is never mistaken for "no feature".

Findings on Linux 6.18 (x86_64) that the probes encode:
- BPF_PROG_TYPE_SYSCALL loads only with BPF_F_SLEEPABLE ("Syscall programs
  can only be sleepable"); its test run takes ctx_in only (no data, ctx_out,
  repeat) and copies the context back into the ctx_in buffer.
- bpf_loop's callback must be described by BTF func_info (else "missing btf
  func_info") as a static function (else "callback function not static"), so
  `has_bpf_loop` loads a four-type BTF blob: int, int(void), two static FUNCs.
- may_goto (JMP|JCOND, 0xe5) is accepted in XDP and SYSCALL programs. Its
  budget is time-based: a loop bounded only by may_goto ran 438 M iterations
  in 250 ms before falling through. A loop whose counter is compared with a
  constant is still verified iteration by iteration, may_goto or not (a
  1000-iteration loop: ~5000 insns processed, 1000 states) — bpf_loop is what
  keeps verification cost independent of the bound.
- XDP programs' return values are not range-checked by the verifier.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
from functools import cache

from luabpf.compiler.bpf.encode import encode, label_slots
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.bpf.insn import (R0, R1, R2, R3, R4, call, exit_, label, ld_func, load,
                                      may_goto, mov, sdiv, store)
from luabpf.compiler.bpf.opcode import ALUOp, JumpOp, Size
from luabpf.compiler.bpf.uapi import BPF_F_SLEEPABLE, XDP_DROP, XDP_PASS, MapType, ProgType
from luabpf.compiler.obj.btf import FUNC_STATIC, Btf
from luabpf.runtime import kernel
from luabpf.runtime.errors import BpfError, PermissionProblem

__all__ = [
    "has_may_goto", "has_bpf_loop", "has_sdiv", "has_syscall_prog", "has_ringbuf",
    "summary", "ensure_bpffs", "ensure_tracefs", "BPFFS", "TRACEFS",
]

BPFFS = "/sys/fs/bpf"
TRACEFS = "/sys/kernel/tracing"


def _try_load(prog_type: int, insns: list, **kwargs) -> kernel.Fd | None:
    """The program's fd, or None when the kernel rejects it (EINVAL, EACCES …)."""
    try:
        return kernel.prog_load(prog_type, encode(insns), **kwargs)
    except PermissionProblem:
        raise
    except BpfError:
        return None


def _xdp_returns(insns: list, expected: int, **kwargs) -> bool:
    """Loads as XDP and test-runs on a 64-byte packet; True if r0 == expected."""
    fd = _try_load(ProgType.XDP, insns, **kwargs)
    if fd is None:
        return False
    with fd:
        return kernel.prog_test_run(fd, data_in=bytes(64)).retval == expected


# ---------------------------------------------------------------------------
# Probes


@cache
def has_may_goto() -> bool:
    """`may_goto` (JMP|JCOND 0xe5, 6.9+) inside a loop:
        0: r0 = 0;  1: may_goto +2;  2: r0 += 1;  3: if r0 < 2 goto 1;  4: exit
    must load as XDP and return 2 (XDP_PASS). On 6.18 may_goto's budget is
    time-based: a loop bounded by may_goto alone falls through after ~250 ms."""
    insns = [
        mov(R0, 0),
        label("loop"),
        may_goto("out"),
        ALUOp.ADD.imm(R0, 1),
        JumpOp.JLT.imm(R0, XDP_PASS, "loop"),
        label("out"),
        exit_(),
    ]
    return _xdp_returns(insns, XDP_PASS)


def _static_funcs_btf(names: list[str]) -> bytes:
    """Raw BTF: [1] int, [2] int(void) proto, [3..] one static FUNC per name."""
    btf = Btf()
    proto = btf.func_proto(btf.int_("int", 4, True), [])
    for name in names:
        btf.func(name, proto, FUNC_STATIC)
    return btf.encode()


@cache
def has_bpf_loop() -> bool:
    """The bpf_loop helper (181, 5.17+) with a callback: the program calls
    bpf_loop(4, cb, NULL, 0) and returns XDP_PASS when it reports 4 iterations.
    The callback's address is a BPF_PSEUDO_FUNC ld_imm64, which needs BTF func_info."""
    insns = [
        mov(R1, 4),                              # nr_loops
        ld_func(R2, "cb"),                       # callback
        mov(R3, 0),                              # callback ctx
        mov(R4, 0),                              # flags
        call(Helper.loop),
        JumpOp.JNE.imm(R0, 4, "drop"),
        mov(R0, XDP_PASS),
        exit_(),
        label("drop"),
        mov(R0, XDP_DROP),
        exit_(),
        label("cb"),
        mov(R0, 0),                              # 0: go on looping
        exit_(),
    ]
    try:
        btf = kernel.btf_load(_static_funcs_btf(["main", "cb"]))
    except PermissionProblem:
        raise
    except BpfError:
        return False
    with btf:
        func_info = struct.pack("<IIII", 0, 3, label_slots(insns)["cb"], 4)
        return _xdp_returns(insns, XDP_PASS, btf_fd=btf, func_info=func_info, func_info_cnt=2)


@cache
def has_sdiv() -> bool:
    """cpu v4 signed division (6.6+): ALU64|DIV|K with off=1. 7 s/ -3 must be
    -2 (truncating), so r0 = 7 s/ -3 + 4 returns 2."""
    insns = [mov(R0, 7), sdiv(R0, -3), ALUOp.ADD.imm(R0, 4), exit_()]
    return _xdp_returns(insns, 2)


@cache
def has_syscall_prog() -> bool:
    """BPF_PROG_TYPE_SYSCALL with BPF_F_SLEEPABLE loads, and its test run with
    a context copies the context back: the program stores ctx[8] = ctx[0] + ctx[4]."""
    insns = [
        load(Size.W, R2, R1, 0),
        load(Size.W, R3, R1, 4),
        ALUOp.ADD.reg(R2, R3),
        store(Size.W, R1, 8, R2),
        mov(R0, 0),
        exit_(),
    ]
    fd = _try_load(ProgType.SYSCALL, insns, prog_flags=BPF_F_SLEEPABLE)
    if fd is None:
        return False
    with fd:
        try:
            res = kernel.prog_test_run(fd, ctx_in=struct.pack("<III", 5, 7, 0), ctx_inout=True)
        except BpfError:
            return False
        return struct.unpack("<III", res.ctx_out) == (5, 7, 12)


@cache
def has_ringbuf() -> bool:
    """BPF_MAP_TYPE_RINGBUF (5.8+): a one-page ring buffer can be created."""
    try:
        fd = kernel.map_create(MapType.RINGBUF, 0, 0, os.sysconf("SC_PAGE_SIZE"))
    except PermissionProblem:
        raise
    except BpfError:
        return False
    fd.close()
    return True


def summary() -> dict[str, bool]:
    """Every probe's answer, by name (for `luabpf` diagnostics and bug reports)."""
    return {f.__name__: f() for f in (has_may_goto, has_bpf_loop, has_sdiv,
                                      has_syscall_prog, has_ringbuf)}


# ---------------------------------------------------------------------------
# File systems


def _mounted_fstype(path: str) -> str | None:
    """The type of the file system mounted exactly at `path`, or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:                 # later lines are mounted on top of earlier ones
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and fields[4].encode().decode("unicode_escape") == path:
            found = right.split()[0]
    return found


def _mount(fstype: str, path: str) -> str:
    if _mounted_fstype(path) == fstype:
        return path
    os.makedirs(path, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(fstype.encode(), path.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        if err == errno.EBUSY and _mounted_fstype(path) == fstype:   # raced with another mounter
            return path
        raise OSError(err, f"cannot mount {fstype} at {path}: {os.strerror(err)}")
    return path


def ensure_bpffs() -> str:
    """Mount the BPF file system at /sys/fs/bpf unless it is there; the path."""
    return _mount("bpf", BPFFS)


def ensure_tracefs() -> str:
    """Mount tracefs at /sys/kernel/tracing unless it is there; the path."""
    return _mount("tracefs", TRACEFS)
