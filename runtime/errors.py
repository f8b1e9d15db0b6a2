"""Errors raised at the bpf(2) boundary.

Owns: `BpfError` (a failed bpf(2) command, with the verifier's or BTF checker's
log when there is one) and `PermissionProblem` (the one sentence a user without
BPF privileges sees, DESIGN §7). Does not own: mapping a verifier log to Lua
source lines (`runtime/load.py`), or user-facing diagnostics (`compiler/diagnostics.py`).

`runtime/kernel.py` re-exports both, so `kernel.BpfError` is the name callers use.
"""
from __future__ import annotations

import errno as _errno
import os

PERMISSION_SENTENCE = (
    "luabpf needs root or CAP_BPF (with CAP_NET_ADMIN / CAP_PERFMON for attaching) "
    "to load programs into the kernel; run it with sudo."
)

# Bit numbers from include/uapi/linux/capability.h.
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


class BpfError(OSError):
    """A bpf(2) command failed. `.errno`, `.strerror`, `.cmd` (the command's
    name, e.g. "BPF_PROG_LOAD") and `.log` (verifier or BTF log text; empty
    when none was asked for or the kernel wrote none)."""

    def __init__(self, err: int, cmd: str, log: str = "", detail: str = ""):
        message = f"{cmd}: {os.strerror(err)}"
        if detail:
            message += f" ({detail})"
        super().__init__(err, message)
        self.cmd = cmd
        self.log = log

    def __str__(self) -> str:
        return self.strerror


class PermissionProblem(BpfError):
    """bpf(2) refused because the process lacks BPF privileges. `str()` is the
    one sentence to show the user; `.reason` says what was missing."""

    def __init__(self, err: int, cmd: str, reason: str = ""):
        OSError.__init__(self, err, PERMISSION_SENTENCE)
        self.cmd = cmd
        self.log = ""
        self.reason = reason

    def __str__(self) -> str:
        return PERMISSION_SENTENCE


def effective_capabilities() -> int:
    """The CapEff bit mask of this process (0 if /proc cannot say)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def bpf_privileged() -> bool:
    """True when this process may load BPF programs: CAP_BPF or CAP_SYS_ADMIN
    (root has both unless they were dropped)."""
    caps = effective_capabilities()
    return bool(caps & ((1 << CAP_BPF) | (1 << CAP_SYS_ADMIN)))


def missing_privilege() -> str:
    """Empty when privileged; else a short phrase naming what is missing."""
    if bpf_privileged():
        return ""
    if os.geteuid() != 0:
        return f"running as uid {os.geteuid()} without CAP_BPF"
    return "running as root, but CAP_BPF and CAP_SYS_ADMIN are not in the effective set"


def is_permission_errno(err: int) -> bool:
    return err in (_errno.EPERM, _errno.EACCES)
