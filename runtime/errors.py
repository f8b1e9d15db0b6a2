"""Errors raised at the bpf(2) boundary, and the capabilities each operation needs.

Owns: `BpfError` (a failed bpf(2) command, with the verifier's or BTF checker's
log when there is one), `PermissionProblem` (the one sentence a user without
the privileges for what they asked sees) and the table of which
capabilities each thing luabpf asks of the kernel needs (`LOAD_NEEDS`, `run_problem`,
`SYS_ADMIN_CMDS`), read against the process's effective set (`effective_capabilities`,
/proc/self/status CapEff; none in a user namespace, whose capabilities the kernel's
BPF checks do not take). Does not own: mapping a verifier log to Lua source
lines (`runtime/load.py`), or user-facing diagnostics (`compiler/front/diagnostics.py`).

What Linux 6.18 asks (CAP_SYS_ADMIN stands in for each of the others):
- loading any program but a socket filter, loading BTF, and (with the default
  `kernel.unprivileged_bpf_disabled`) every bpf(2) command: CAP_BPF;
- loading an XDP or tc (SCHED_CLS) program: CAP_NET_ADMIN too; a tracepoint or
  perf-event program: CAP_PERFMON too;
- luabpf's packet filters also need CAP_PERFMON: without it the verifier refuses the
  packet-pointer subtraction every filter's preamble does ("R3 pointer -= pointer
  prohibited"), so that is named before loading instead;
- attaching a tracepoint or a per-CPU timer (perf_event_open): CAP_PERFMON;
  entering another network namespace (`--netns`): CAP_SYS_ADMIN;
- BPF_ENABLE_STATS and walking the kernel's ids (BPF_*_GET_NEXT_ID, _GET_FD_BY_ID):
  CAP_SYS_ADMIN itself.
A test run needs nothing more than the load did.

`runtime/kernel.py` re-exports `BpfError` and `PermissionProblem`, so `kernel.BpfError`
is the name callers use.
"""
from __future__ import annotations

import errno as _errno
import os

from luabpf.compiler.bpf.uapi import ProgType

# Bit numbers from include/uapi/linux/capability.h.
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

CAP_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
             CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}

# What loading each program type luabpf makes needs, and how to call it
LOAD_NEEDS = {
    ProgType.XDP: ("an XDP program", (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)),
    ProgType.SCHED_CLS: ("a tc program", (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)),
    ProgType.TRACEPOINT: ("a tracepoint program", (CAP_BPF, CAP_PERFMON)),
    ProgType.PERF_EVENT: ("a perf-event program", (CAP_BPF, CAP_PERFMON)),
    ProgType.SYSCALL: ("a function program", (CAP_BPF,)),
}
PACKET_PROG_TYPES = (ProgType.XDP, ProgType.SCHED_CLS)
PERFMON_WHY = ("without CAP_PERFMON the verifier refuses the packet-pointer arithmetic every "
               "luabpf filter does")

# bpf(2) commands that need CAP_SYS_ADMIN itself (kernel/bpf/syscall.c)
SYS_ADMIN_CMDS = ("BPF_ENABLE_STATS", "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID",
                  "BPF_BTF_GET_NEXT_ID", "BPF_LINK_GET_NEXT_ID", "BPF_PROG_GET_FD_BY_ID",
                  "BPF_MAP_GET_FD_BY_ID", "BPF_BTF_GET_FD_BY_ID", "BPF_LINK_GET_FD_BY_ID")


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
    """The process lacks the privileges for what it asked. `str()` is the one
    sentence to show the user, naming the missing capabilities; `.reason` is a
    short phrase of what was missing, `.missing` the capability names."""

    def __init__(self, err: int, cmd: str, reason: str = "", sentence: str = "",
                 missing: tuple = ()):
        self.sentence = sentence or needs_sentence(f"the bpf(2) command {cmd}", (CAP_BPF,),
                                                   (CAP_BPF,))
        OSError.__init__(self, err, self.sentence)
        self.cmd = cmd
        self.log = ""
        self.reason = reason
        self.missing = tuple(missing)

    def __str__(self) -> str:
        return self.sentence


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


def in_user_namespace() -> bool:
    """Whether this process is in a user namespace other than the initial one (its uid
    map is not the identity over all uids), where its capabilities are that namespace's."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


USERNS_WHY = ("its capabilities are those of a user namespace, which the kernel does not "
              "take for BPF")


def bpf_capabilities() -> int:
    """The capabilities the kernel's BPF checks see: the effective set, or none in a
    user namespace (they check against the initial one; luabpf uses no BPF token)."""
    return 0 if in_user_namespace() else effective_capabilities()


def has_capability(cap: int, caps: int | None = None) -> bool:
    """Whether the effective set has `cap`, or CAP_SYS_ADMIN, which the kernel's BPF
    checks (bpf_token_capable, perfmon_capable) take for any of them."""
    caps = bpf_capabilities() if caps is None else caps
    return bool(caps & ((1 << cap) | (1 << CAP_SYS_ADMIN)))


def missing_capabilities(needed, caps: int | None = None) -> list[int]:
    caps = bpf_capabilities() if caps is None else caps
    return [c for c in needed if not has_capability(c, caps)]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def remedy(missing) -> str:
    """How to get the missing capabilities: "run luabpf as root, or give it CAP_X"."""
    lack = _and([CAP_NAMES[c] for c in missing])
    if in_user_namespace():
        return f"run luabpf in the initial user namespace, as root or with {lack}"
    if os.geteuid() == 0:
        return f"this root process had {'it' if len(missing) == 1 else 'them'} dropped: give it {lack}"
    return f"run luabpf as root, or give it {lack}"


def needs_sentence(what: str, needed, missing, why: str = "") -> str:
    """"WHAT needs A, B and C; this process lacks B (WHY; run luabpf as root, or give it B)."
    — one sentence."""
    need = _and([CAP_NAMES[c] for c in needed])
    lack = _and([CAP_NAMES[c] for c in missing])
    whys = [w for w in (USERNS_WHY if in_user_namespace() else "", why) if w]
    why = "".join(f"{w}; " for w in whys)
    return f"{what} needs {need}; this process lacks {lack} ({why}{remedy(missing)})."


def verifier_without_perfmon(reason: str, cmd: str, err: int) -> PermissionProblem:
    """A verifier rejection in a process without CAP_PERFMON: the verifier refuses pointer
    arithmetic (and more) it accepts from a privileged process, so that is the likely cause."""
    return PermissionProblem(
        err, cmd, "without CAP_PERFMON",
        f"the kernel verifier rejected the program ({reason}) and this process lacks "
        f"CAP_PERFMON, without which the verifier refuses pointer arithmetic luabpf's code "
        f"does ({remedy((CAP_PERFMON,))}).", ("CAP_PERFMON",))


def capability_problem(what: str, needed, *, why: str = "", cmd: str = "",
                       err: int = _errno.EPERM) -> PermissionProblem | None:
    """A PermissionProblem naming what of `needed` the process lacks, or None when it has
    them all (the kernel may still refuse: lockdown, an LSM, a user namespace)."""
    missing = missing_capabilities(needed)
    if not missing:
        return None
    return PermissionProblem(err, cmd, f"without {_and([CAP_NAMES[c] for c in missing])}",
                             needs_sentence(what, needed, missing, why),
                             tuple(CAP_NAMES[c] for c in missing))


def load_needs(prog_types) -> tuple[str, tuple[int, ...]]:
    """(what, capabilities) for loading programs of these types, in the table's order."""
    whats, needed = [], []
    for t in dict.fromkeys(int(t) for t in prog_types):
        what, caps = LOAD_NEEDS.get(t, ("a BPF program", (CAP_BPF,)))
        whats.append(what)
        needed += [c for c in caps if c not in needed]
    order = (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN)
    return "loading " + _and(whats), tuple(c for c in order if c in needed)


def load_problem(prog_types, *, cmd: str = "BPF_PROG_LOAD") -> PermissionProblem | None:
    """The PermissionProblem of loading programs of these types, or None."""
    what, needed = load_needs(prog_types)
    missing = missing_capabilities(needed)
    why = PERFMON_WHY if (CAP_PERFMON in missing and
                          any(int(t) in PACKET_PROG_TYPES for t in prog_types)) else ""
    return capability_problem(what, needed, why=why, cmd=cmd)


def run_problem(what: str, types, netns: bool = False) -> PermissionProblem | None:
    """The PermissionProblem of `luabpf run` doing `what` ("attaching an XDP filter":
    a hook's `RuntimeHook.doing`), which loads programs of these types and attaches them
    (a device in another network namespace: entering it needs CAP_SYS_ADMIN), or None.
    Attaching needs nothing the load does not (a BPF link on a device: CAP_NET_ADMIN;
    a tracepoint or a timer's perf event: CAP_PERFMON)."""
    _, needed = load_needs(types)
    whys = []
    missing = missing_capabilities(needed)
    if CAP_PERFMON in missing and any(int(t) in PACKET_PROG_TYPES for t in types):
        whys.append(PERFMON_WHY)
    if netns:
        what += " in another network namespace"
        needed += (CAP_SYS_ADMIN,)
        if not has_capability(CAP_SYS_ADMIN):
            whys.append("entering a network namespace needs CAP_SYS_ADMIN")
    return capability_problem(what, needed, why="; ".join(whys), cmd="BPF_LINK_CREATE")


def command_problem(cmd: str, err: int) -> PermissionProblem | None:
    """What an EPERM/EACCES from bpf(2) command `cmd` means when capabilities are missing."""
    needed = (CAP_SYS_ADMIN,) if cmd in SYS_ADMIN_CMDS else (CAP_BPF,)
    return capability_problem(f"the bpf(2) command {cmd}", needed, cmd=cmd, err=err)


def bpf_privileged() -> bool:
    """True when this process may load BPF programs: CAP_BPF or CAP_SYS_ADMIN
    (root has both unless they were dropped)."""
    return has_capability(CAP_BPF)


def missing_privilege() -> str:
    """Empty when privileged; else a short phrase naming what is missing."""
    if bpf_privileged():
        return ""
    if os.geteuid() != 0:
        return f"running as uid {os.geteuid()} without CAP_BPF"
    return "running as root, but CAP_BPF and CAP_SYS_ADMIN are not in the effective set"


def is_permission_errno(err: int) -> bool:
    return err in (_errno.EPERM, _errno.EACCES)
