"""BPF links: the bpf(2) commands that attach a program so that it detaches
when the last file descriptor of the link closes (the process exits or dies).

Owns BPF_LINK_CREATE, BPF_LINK_DETACH, BPF_LINK_GET_NEXT_ID,
BPF_LINK_GET_FD_BY_ID and BPF_OBJ_GET_INFO_BY_FD on a link (`struct
bpf_link_info`), with the `union bpf_attr` layouts of include/uapi/linux/bpf.h
(Linux 6.18), and the `LinkType` enum. It goes through the syscall wrapper of
`runtime/kernel.py` (`kernel._bpf`, `kernel._fail`), so errors are the same
`BpfError`/`PermissionProblem` as everywhere else; these commands could move
into kernel.py as they are. Does not own what is attached where
(`attach/xdp.py`, `attach/tc.py`) or network namespaces (`runtime/netns.py`).

Only `link_create`'s XDP and tcx forms are laid out: `target_ifindex`,
`attach_type`, `flags` (XDP_FLAGS_* for XDP; BPF_F_BEFORE/AFTER… for tcx)
and, for tcx, `relative_fd` and `expected_revision`; and its perf-event form
(`link_create_perf_event`: `target_fd` is a perf_event_open(2) fd, attach
type BPF_PERF_EVENT, then `perf_event.bpf_cookie`). The kernel zero-fills
the part of the attribute union we do not pass.
"""
from __future__ import annotations

import ctypes
import enum
import errno
import os
from typing import Iterator

from luabpf.runtime import kernel
from luabpf.runtime.kernel import AttachType, BpfError, Cmd, Fd

__all__ = ["LinkType", "PerfEventType", "link_create", "link_create_perf_event", "link_detach",
           "link_info", "link_ids", "link_get_fd_by_id", "link_exists",
           "XDP_FLAGS_UPDATE_IF_NOEXIST", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE",
           "XDP_FLAGS_HW_MODE"]

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4


class LinkType(enum.IntEnum):
    """enum bpf_link_type."""
    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class PerfEventType(enum.IntEnum):
    """enum bpf_perf_event_type: what a PERF_EVENT link's perf event is."""
    UNSPEC = 0
    UPROBE = 1
    URETPROBE = 2
    KPROBE = 3
    KRETPROBE = 4
    TRACEPOINT = 5
    EVENT = 6


_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64


class _LinkCreateAttr(ctypes.Structure):         # BPF_LINK_CREATE (`link_create`)
    _fields_ = [
        ("prog_fd", _u32), ("target_ifindex", _u32), ("attach_type", _u32), ("flags", _u32),
        # the union starts here (8-aligned); its `tcx` member:
        ("relative_fd", _u32), ("_pad", _u32), ("expected_revision", _u64),
    ]


class _LinkCreatePerfAttr(ctypes.Structure):     # BPF_LINK_CREATE, `perf_event` member
    _fields_ = [
        ("prog_fd", _u32), ("target_fd", _u32), ("attach_type", _u32), ("flags", _u32),
        ("bpf_cookie", _u64),
    ]


class _LinkDetachAttr(ctypes.Structure):         # BPF_LINK_DETACH
    _fields_ = [("link_fd", _u32)]


class _GetIdAttr(ctypes.Structure):              # BPF_LINK_GET_NEXT_ID / _GET_FD_BY_ID
    _fields_ = [("start_id", _u32), ("next_id", _u32), ("open_flags", _u32)]


class _InfoAttr(ctypes.Structure):               # BPF_OBJ_GET_INFO_BY_FD
    _fields_ = [("bpf_fd", _u32), ("info_len", _u32), ("info", _u64)]


class _LinkInfo(ctypes.Structure):               # struct bpf_link_info (head + xdp/tcx)
    _fields_ = [
        ("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad", _u32),
        # union: xdp {ifindex}; tcx/netkit {ifindex, attach_type}; others larger
        ("ifindex", _u32), ("attach_type", _u32), ("_rest", _u64 * 6),
    ]


def link_create(prog_fd: int, attach_type: int, target_ifindex: int, *, flags: int = 0,
                relative_fd: int = 0, expected_revision: int = 0) -> Fd:
    """BPF_LINK_CREATE for a network device (XDP, TCX_INGRESS/EGRESS,
    NETKIT_*); the link's fd. The device is looked up in the network
    namespace of the calling thread."""
    attr = _LinkCreateAttr()
    attr.prog_fd = prog_fd
    attr.target_ifindex = target_ifindex
    attr.attach_type = int(attach_type)
    attr.flags = flags
    attr.relative_fd = relative_fd
    attr.expected_revision = expected_revision
    ret = kernel._bpf(Cmd.LINK_CREATE, attr)
    if ret < 0:
        raise kernel._fail(-ret, Cmd.LINK_CREATE)
    return Fd(ret)


def link_create_perf_event(prog_fd: int, perf_fd: int, *, bpf_cookie: int = 0) -> Fd:
    """BPF_LINK_CREATE attaching a PERF_EVENT, TRACEPOINT or KPROBE program
    to the perf event `perf_fd` (attach type BPF_PERF_EVENT, Linux >= 5.15);
    the link's fd. The link holds the perf event until it is closed."""
    attr = _LinkCreatePerfAttr()
    attr.prog_fd = prog_fd
    attr.target_fd = perf_fd
    attr.attach_type = int(AttachType.PERF_EVENT)
    attr.bpf_cookie = bpf_cookie
    ret = kernel._bpf(Cmd.LINK_CREATE, attr)
    if ret < 0:
        raise kernel._fail(-ret, Cmd.LINK_CREATE)
    return Fd(ret)


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH: detach now, though the fd stays open (then close it).
    A link already detached (its device gone) is not an error."""
    attr = _LinkDetachAttr()
    attr.link_fd = link_fd
    ret = kernel._bpf(Cmd.LINK_DETACH, attr)
    if ret < 0 and -ret not in (errno.ENOLINK, errno.ENOENT):
        raise kernel._fail(-ret, Cmd.LINK_DETACH)


def _get_link_info(link_fd: int, info: _LinkInfo) -> None:
    attr = _InfoAttr()
    attr.bpf_fd = link_fd
    attr.info_len = ctypes.sizeof(info)
    attr.info = ctypes.addressof(info)
    ret = kernel._bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    if ret < 0:
        raise kernel._fail(-ret, Cmd.OBJ_GET_INFO_BY_FD)


def link_info(link_fd: int) -> dict:
    """The link's id, type (LinkType), prog_id, and for XDP and tcx links the
    ifindex (0 once the device is gone) and, for tcx, the attach_type. For
    PERF_EVENT links, "perf_event_type" (PerfEventType) and for a tracepoint
    its "tp_name", for a perf event (EVENT) its "config" and "event_type"
    (the event's attr.type as the kernel keeps it: Linux 6.18 reports a
    cpu-clock event under its cpu_clock PMU's dynamic type, not
    PERF_TYPE_SOFTWARE)."""
    info = _LinkInfo()
    _get_link_info(link_fd, info)
    try:
        kind = LinkType(info.type)
    except ValueError:
        kind = info.type
    out = {"id": info.id, "type": kind, "prog_id": info.prog_id}
    if kind in (LinkType.XDP, LinkType.TCX, LinkType.NETKIT):
        out["ifindex"] = info.ifindex
    if kind in (LinkType.TCX, LinkType.NETKIT):
        try:
            out["attach_type"] = AttachType(info.attach_type)
        except ValueError:
            out["attach_type"] = info.attach_type
    if kind == LinkType.PERF_EVENT:
        _perf_event_info(link_fd, info, out)
    return out


def _perf_event_info(link_fd: int, info: _LinkInfo, out: dict) -> None:
    # bpf_link_info.perf_event: {u32 type; u32 pad; union {...}} — the `type`
    # is where xdp's ifindex is; the union starts at _rest[0].
    try:
        ptype = PerfEventType(info.ifindex)
    except ValueError:
        ptype = info.ifindex
    out["perf_event_type"] = ptype
    if ptype == PerfEventType.EVENT:             # event {u64 config; u32 type; u32 pad; u64 cookie}
        out["config"] = info._rest[0]
        out["event_type"] = info._rest[1] & 0xFFFFFFFF
    elif ptype == PerfEventType.TRACEPOINT:      # tracepoint {u64 tp_name; u32 name_len; …}
        name = ctypes.create_string_buffer(256)
        again = _LinkInfo()
        again._rest[0] = ctypes.addressof(name)
        again._rest[1] = ctypes.sizeof(name)     # name_len (low half, little-endian)
        try:
            _get_link_info(link_fd, again)
        except BpfError:
            return
        out["tp_name"] = name.value.decode(errors="replace")


def link_ids() -> Iterator[int]:
    """The ids of every BPF link in the kernel."""
    attr = _GetIdAttr()
    while True:
        ret = kernel._bpf(Cmd.LINK_GET_NEXT_ID, attr)
        if ret == -errno.ENOENT:
            return
        if ret < 0:
            raise kernel._fail(-ret, Cmd.LINK_GET_NEXT_ID)
        yield attr.next_id
        attr.start_id = attr.next_id


def link_get_fd_by_id(link_id: int) -> Fd:
    attr = _GetIdAttr()
    attr.start_id = link_id
    ret = kernel._bpf(Cmd.LINK_GET_FD_BY_ID, attr)
    if ret < 0:
        raise kernel._fail(-ret, Cmd.LINK_GET_FD_BY_ID)
    return Fd(ret)


def link_exists(link_id: int) -> bool:
    """Whether a link with this id is still in the kernel."""
    try:
        fd = link_get_fd_by_id(link_id)
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    os.close(fd)
    return True


def links_gone(link_ids, timeout: float = 5.0) -> bool:
    """Wait until none of these links is in the kernel any more (it releases a link as
    its last fd closes, e.g. when a killed process's files are closed); whether they went."""
    import time
    deadline = time.monotonic() + timeout
    while any(link_exists(i) for i in link_ids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def links_of_prog(prog_id: int) -> list[dict]:
    """The info of every link that holds program `prog_id`."""
    found = []
    for lid in list(link_ids()):
        try:
            fd = link_get_fd_by_id(lid)
        except BpfError:
            continue            # went away meanwhile
        try:
            info = link_info(fd)
        finally:
            os.close(fd)
        if info["prog_id"] == prog_id:
            found.append(info)
    return found
