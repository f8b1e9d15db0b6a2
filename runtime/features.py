"""Kernel feature probes, and the file systems luabpf needs mounted.

Owns: every "does the running kernel support X" question (STYLE: version and
feature checks live only here), each answered once per process
(`functools.cache`) by loading a tiny hand-encoded program or creating a tiny
map; and `ensure_bpffs()` / `ensure_tracefs()`. Does not own: the compiler's
instruction model (the few raw instructions here are encoded with `struct` so
this module imports nothing from `compiler/`), or loading user programs.

A probe answers True or False from what the kernel did. It does not answer
when it cannot know: without BPF privileges `PermissionProblem` propagates
(and is not cached), so "no permission" is never mistaken for "no feature".

Findings on Linux 6.18 (x86_64) that the probes encode:
- BPF_PROG_TYPE_SYSCALL loads only with BPF_F_SLEEPABLE ("Syscall programs
  can only be sleepable"); its test run takes ctx_in only (no data, ctx_out,
  repeat) and copies the context back into the ctx_in buffer.
- bpf_loop's callback must be described by BTF func_info (else "missing btf
  func_info"), so `has_bpf_loop` builds a four-type BTF blob by hand.
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

from luabpf.runtime import kernel
from luabpf.runtime.errors import PermissionProblem
from luabpf.runtime.kernel import BpfError, MapType, ProgType

__all__ = [
    "has_may_goto", "has_bpf_loop", "has_sdiv", "has_syscall_prog", "has_ringbuf",
    "summary", "ensure_bpffs", "ensure_tracefs", "BPFFS", "TRACEFS",
]

BPFFS = "/sys/fs/bpf"
TRACEFS = "/sys/kernel/tracing"

# ---------------------------------------------------------------------------
# The handful of instructions the probes need: struct bpf_insn is
# code:8 | src:4 dst:4 | off:16 | imm:32, little-endian on the machines we run on.


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _mov(dst: int, imm: int) -> bytes:          # ALU64|MOV|K
    return _insn(0xB7, dst, imm=imm)


_EXIT = _insn(0x95)                             # JMP|EXIT
_MAY_GOTO = 0xE5                                # JMP|JCOND, src=BPF_MAY_GOTO (0)
_BPF_PSEUDO_FUNC = 4
_BPF_FUNC_LOOP = 181
_XDP_PASS = 2


def _try_load(prog_type: int, insns: list[bytes], **kwargs) -> kernel.Fd | None:
    """The program's fd, or None when the kernel rejects it (EINVAL, EACCES …)."""
    try:
        return kernel.prog_load(prog_type, b"".join(insns), **kwargs)
    except PermissionProblem:
        raise
    except BpfError:
        return None


def _xdp_returns(insns: list[bytes], expected: int, **kwargs) -> bool:
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
    insns = [_mov(0, 0), _insn(_MAY_GOTO, off=2), _insn(0x07, 0, imm=1),
             _insn(0xA5, 0, off=-3, imm=_XDP_PASS), _EXIT]
    return _xdp_returns(insns, _XDP_PASS)


def _btf_blob(func_names: list[str]) -> bytes:
    """Raw BTF: [1] int, [2] int(void) proto, [3..] one static FUNC per name."""
    strings = b"\0int\0"
    name_off = []
    for name in func_names:
        name_off.append(len(strings))
        strings += name.encode() + b"\0"
    kind_int, kind_func, kind_proto = 1, 12, 13
    types = struct.pack("<III", 1, kind_int << 24, 4) + struct.pack("<I", (1 << 24) | 32)
    types += struct.pack("<III", 0, kind_proto << 24, 1)
    for off in name_off:
        types += struct.pack("<III", off, kind_func << 24, 2)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


@cache
def has_bpf_loop() -> bool:
    """The bpf_loop helper (181, 5.17+) with a callback: the program calls
    bpf_loop(4, cb, NULL, 0) and returns XDP_PASS when it reports 4 iterations.
    The callback is a BPF_PSEUDO_FUNC ld_imm64, which needs BTF func_info."""
    insns = [
        _mov(1, 4),                                        # 0: r1 = nr_loops
        _insn(0x18, 2, _BPF_PSEUDO_FUNC, imm=9),           # 1: r2 = cb (1 + 1 + 9 = insn 11)
        _insn(0),                                          # 2:   ld_imm64's second half
        _mov(3, 0),                                        # 3: r3 = callback ctx
        _mov(4, 0),                                        # 4: r4 = flags
        _insn(0x85, imm=_BPF_FUNC_LOOP),                   # 5: call bpf_loop
        _insn(0x55, 0, off=2, imm=4),                      # 6: if r0 != 4 goto 9
        _mov(0, _XDP_PASS),                                # 7
        _EXIT,                                             # 8
        _mov(0, 1),                                        # 9: XDP_DROP
        _EXIT,                                             # 10
        _mov(0, 0),                                        # 11: cb: return 0 (go on)
        _EXIT,                                             # 12
    ]
    try:
        btf = kernel.btf_load(_btf_blob(["main", "cb"]))
    except PermissionProblem:
        raise
    except BpfError:
        return False
    with btf:
        func_info = struct.pack("<IIII", 0, 3, 11, 4)
        return _xdp_returns(insns, _XDP_PASS, btf_fd=btf, func_info=func_info, func_info_cnt=2)


@cache
def has_sdiv() -> bool:
    """cpu v4 signed division (6.6+): ALU64|DIV|K with off=1. 7 s/ -3 must be
    -2 (truncating), so r0 = 7 s/ -3 + 4 returns 2."""
    insns = [_mov(0, 7), _insn(0x37, 0, off=1, imm=-3), _insn(0x07, 0, imm=4), _EXIT]
    return _xdp_returns(insns, 2)


@cache
def has_syscall_prog() -> bool:
    """BPF_PROG_TYPE_SYSCALL with BPF_F_SLEEPABLE loads, and its test run with
    a context copies the context back: the program stores ctx[8] = ctx[0] + ctx[4]."""
    insns = [
        _insn(0x61, 2, 1, 0),      # r2 = *(u32 *)(r1 + 0)
        _insn(0x61, 3, 1, 4),      # r3 = *(u32 *)(r1 + 4)
        _insn(0x0F, 2, 3),         # r2 += r3
        _insn(0x63, 1, 2, 8),      # *(u32 *)(r1 + 8) = r2
        _mov(0, 0),
        _EXIT,
    ]
    fd = _try_load(ProgType.SYSCALL, insns, prog_flags=kernel.BPF_F_SLEEPABLE)
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
