"""Who holds a device's hook, or has a device of a given name: for the one sentence a
user reads when attaching fails.

Owns `luabpf_run_of(prog_id)` (the live `luabpf run` whose pinned meta lists the
program), `link_ids_of(prog_id)` (the BPF links holding it; None when this process may
not walk the kernel's links, which needs CAP_SYS_ADMIN) and `namespaces_with(dev)`
(the other network namespaces that have a device of that name: the named ones under
/run/netns, then those of running processes). Every lookup is best effort: what this
process may not see is left out, never an error of its own.
"""
from __future__ import annotations

import os
import socket

from luabpf.runtime import pins
from luabpf.runtime.attach import link as bpflink
from luabpf.runtime.errors import BpfError
from luabpf.runtime.netns import NETNS_DIR, entered

MAX_NAMESPACES = 256          # process namespaces looked into, at most


def luabpf_run_of(prog_id: int):
    """The live `luabpf run` (pins.Running) whose program has this id, or None."""
    try:
        runs = pins.list_running()
    except (pins.PinError, OSError):
        return None
    for run in runs:
        if prog_id in (run.meta.get("prog_ids") or []) and run.alive:
            return run
    return None


def link_ids_of(prog_id: int) -> list[int] | None:
    """The ids of the BPF links holding the program; None when they cannot be listed."""
    try:
        return [info["id"] for info in bpflink.links_of_prog(prog_id)]
    except (BpfError, OSError):
        return None


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _has_device(path: str, dev: str) -> bool:
    try:
        with entered(path):
            socket.if_nametoindex(dev)
        return True
    except OSError:
        return False


def namespaces_with(dev: str, netns: str | None) -> list[str]:
    """Where else a device named `dev` is, as `--netns` takes it: "NAME" for a namespace
    under /run/netns, "/proc/PID/ns/net" for a process's own; "" for this process's
    namespace when `netns` named another one. Empty when none is found (or none may be
    entered: that needs CAP_SYS_ADMIN)."""
    own = "/proc/self/ns/net"
    searched = (netns if "/" in netns else os.path.join(NETNS_DIR, netns)) if netns else own
    seen = {_inode(searched)}
    candidates = [("", own)]
    try:
        candidates += [(name, os.path.join(NETNS_DIR, name)) for name in sorted(os.listdir(NETNS_DIR))]
    except OSError:
        pass
    candidates += [(f"/proc/{p}/ns/net", f"/proc/{p}/ns/net")
                   for p in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int)]
    found = []
    for label, path in candidates:
        ino = _inode(path)
        if ino is None or ino in seen:
            continue
        seen.add(ino)
        if len(seen) > MAX_NAMESPACES:
            break
        if _has_device(path, dev):
            found.append(label)
    return found


def describe_elsewhere(dev: str, netns: str | None) -> str:
    """", but network namespace 'X' has one (use --netns X)" or "" — to follow
    "DEV: no such network interface …"."""
    found = namespaces_with(dev, netns)
    if not found:
        return ""
    parts = []
    for where in found:
        if where == "":
            parts.append("this process's own namespace has one (leave out --netns)")
        elif where.startswith("/proc/"):
            pid = where.split("/")[2]
            parts.append(f"the namespace of pid {pid} ({_comm(pid)}) has one (--netns {where})")
        else:
            parts.append(f"network namespace '{where}' has one (--netns {where})")
    return "; " + "; ".join(parts)


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"
