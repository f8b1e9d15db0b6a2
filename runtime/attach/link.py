"""BPF links seen from outside: whether a link is still in the kernel, waiting
for links to go, and which links hold a program.

Owns `link_exists`, `links_gone` and `links_of_prog`, built on the link
commands of `runtime/kernel.py` (`link_ids`, `link_get_fd_by_id`,
`link_info`), which own the bpf(2) calls themselves (as do `link_create`,
`link_create_perf_event` and `link_detach`). Does not own what is attached
where (`attach/xdp.py`, `attach/tc.py`, `attach/perf.py`).
"""
from __future__ import annotations

import errno
import os
import time

from luabpf.runtime import kernel
from luabpf.runtime.errors import BpfError

__all__ = ["link_exists", "links_gone", "links_of_prog"]


def link_exists(link_id: int) -> bool:
    """Whether a link with this id is still in the kernel."""
    try:
        fd = kernel.link_get_fd_by_id(link_id)
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    os.close(fd)
    return True


def links_gone(link_ids, timeout: float = 5.0) -> bool:
    """Wait until none of these links is in the kernel any more (it releases a link as
    its last fd closes, e.g. when a killed process's files are closed); whether they went."""
    deadline = time.monotonic() + timeout
    while any(link_exists(i) for i in link_ids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def links_of_prog(prog_id: int) -> list[dict]:
    """The info of every link that holds program `prog_id`."""
    found = []
    for lid in list(kernel.link_ids()):
        try:
            fd = kernel.link_get_fd_by_id(lid)
        except BpfError:
            continue            # went away meanwhile
        try:
            info = kernel.link_info(fd)
        finally:
            os.close(fd)
        if info["prog_id"] == prog_id:
            found.append(info)
    return found
