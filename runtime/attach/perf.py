"""Perf events: running a program on a timer on every CPU, or at a tracepoint.

Owns perf_event_open(2) through ctypes (`struct perf_event_attr` as in
include/uapi/linux/perf_event.h, PERF_ATTR_SIZE_VER8 = 136 bytes, the size
passed in `attr.size`), the perf ioctls, and two ways of attaching:

- `attach_timer(prog_fd, interval_ms, cpus=None)` — a BPF_PROG_TYPE_PERF_EVENT
  program run every `interval_ms` on each CPU: one PERF_TYPE_SOFTWARE /
  PERF_COUNT_SW_CPU_CLOCK event per CPU (pid -1, cpu N, sample_period =
  the interval in ns; cpu-clock is an hrtimer, so it fires on idle CPUs too),
  the program attached to each.
- `attach_tracepoint(prog_fd, category, event)` — a BPF_PROG_TYPE_TRACEPOINT
  program run at every hit of CATEGORY:EVENT, on every CPU.

Both return a `PerfLink`. Does not own reading tracepoint formats
(`runtime/tracefs.py`) or the bpf(2) link commands (`runtime/kernel.py`).

How the program is attached. Preferred: a BPF link per perf event
(BPF_LINK_CREATE, attach type BPF_PERF_EVENT, target_fd = the perf fd;
Linux >= 5.15), `mode` "link". Only when the kernel cannot create such links
(EINVAL/EOPNOTSUPP/ENOSYS from BPF_LINK_CREATE) do we fall back to the
ioctls PERF_EVENT_IOC_SET_BPF + PERF_EVENT_IOC_ENABLE, `mode` "ioctl".
Either way the attachment lives in file descriptors of this process only:
when the process exits or is killed they close and the kernel detaches the
program — nothing needs cleaning up from outside. `detach()` closes them
earlier (and at interpreter exit, through `attachment.LIVE`).
Events are opened disabled and enabled once the program is on them.

Why one perf event for a tracepoint, not one per CPU. For a tracepoint the
kernel does not keep the program on the perf event: it adds it to the
tracepoint's own program array (trace_event_call.prog_array), which runs at
every hit of the tracepoint on any CPU, whatever CPU the perf event was
opened for. The array refuses the same program twice, so a second per-CPU
event for the same program fails with EEXIST (verified on Linux 6.18), and
if it did not, the program would run once per event at each hit. So, as
libbpf does, `attach_tracepoint` opens a single PERF_TYPE_TRACEPOINT event
(config = the tracefs event id, pid -1, cpu = the first online CPU) and the
program sees every CPU, including CPUs that come online later.
(BPF_RAW_TRACEPOINT_OPEN is no alternative: it takes RAW_TRACEPOINT
programs, whose context is the tracepoint's arguments, not the record
described by the format file.) A program already attached to that
tracepoint cannot be attached again (AttachError).

Findings on Linux 6.18 (x86_64, a Firecracker VM):
- the kernel rewrites a cpu-clock event's attr.type to the dynamic type of
  its own `cpu_clock` PMU (6 here), so `link_info` of a timer's link reports
  event_type 6, not PERF_TYPE_SOFTWARE;
- a 10 ms cpu-clock timer on a busy CPU fires 50 times in 0.5 s, but on an
  idle vCPU erratically (from ~27 down to 0): the host does not run an idle
  vCPU on time. The timer is right; the VM's idle CPUs are late.

Errors are `AttachError` with one sentence (unknown tracepoint, wrong
program type, a CPU not online, perf_event_open refused for lack of
privileges …); a bpf(2) refusal for lack of privileges stays the
`PermissionProblem` every bpf(2) command raises.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
from functools import cache

from luabpf.compiler.bpf.uapi import ProgType
from luabpf.runtime import kernel, tracefs
from luabpf.runtime.attach.attachment import LIVE, NO_LINKS, AttachError
from luabpf.runtime.errors import CAP_PERFMON, PermissionProblem, capability_problem

__all__ = ["PerfLink", "attach_timer", "attach_tracepoint", "perf_event_open", "online_cpus",
           "PerfEventAttr", "PERF_ATTR_SIZE_VER8", "PERF_TYPE_SOFTWARE", "PERF_TYPE_TRACEPOINT",
           "PERF_COUNT_SW_CPU_CLOCK"]

# include/uapi/linux/perf_event.h
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_ATTR_SIZE_VER8 = 136            # through config3 (Linux 6.3 – 6.18)

# bits of the attr's flag word (disabled:1, inherit:1, pinned:1, …)
ATTR_DISABLED = 1 << 0
ATTR_FREQ = 1 << 10

# ioctls: _IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32) with the generic
# _IOC encoding (x86, arm64, riscv)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408

# __NR_perf_event_open: arch/x86/entry/syscalls/syscall_64.tbl; the generic
# table (include/uapi/asm-generic/unistd.h) for arm64
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}

_u16, _u32, _s32, _u64 = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr, PERF_ATTR_SIZE_VER8. Unions are named by
    their first member (sample_period/sample_freq, wakeup_events/
    wakeup_watermark, bp_addr/kprobe_func/uprobe_path/config1,
    bp_len/kprobe_addr/probe_offset/config2, aux_action); the bitfield word
    after read_format is `flags` (ATTR_*)."""
    _fields_ = [
        ("type", _u32), ("size", _u32), ("config", _u64),
        ("sample_period", _u64), ("sample_type", _u64), ("read_format", _u64),
        ("flags", _u64),
        ("wakeup_events", _u32), ("bp_type", _u32),
        ("config1", _u64), ("config2", _u64),
        ("branch_sample_type", _u64), ("sample_regs_user", _u64),
        ("sample_stack_user", _u32), ("clockid", _s32),
        ("sample_regs_intr", _u64), ("aux_watermark", _u32),
        ("sample_max_stack", _u16), ("_reserved_2", _u16),
        ("aux_sample_size", _u32), ("aux_action", _u32),
        ("sig_data", _u64), ("config3", _u64),
    ]


assert ctypes.sizeof(PerfEventAttr) == PERF_ATTR_SIZE_VER8


@cache
def _syscall():
    machine = platform.machine()
    try:
        nr = _NR_PERF_EVENT_OPEN[machine]
    except KeyError:
        raise AttachError(f"luabpf does not know the perf_event_open(2) system call number "
                          f"on {machine} (it knows {', '.join(sorted(set(_NR_PERF_EVENT_OPEN)))})"
                          ) from None
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                   ctypes.c_ulong]
    return nr, fn


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = -1, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> kernel.Fd:
    """perf_event_open(2); `attr.size` is set to PERF_ATTR_SIZE_VER8 when 0.
    OSError (with .errno) on failure; EINTR is retried."""
    if not attr.size:
        attr.size = ctypes.sizeof(attr)
    nr, fn = _syscall()
    while True:
        ret = fn(nr, ctypes.addressof(attr), pid, cpu, group_fd, flags)
        if ret >= 0:
            return kernel.Fd(ret)
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def online_cpus() -> list[int]:
    """The online CPUs, from /sys/devices/system/cpu/online ("0-3,6")."""
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())


def parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _paranoid() -> str:
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _open_error(e: OSError, what: str, cpu: int) -> AttachError:
    err = e.errno
    if err in (errno.EACCES, errno.EPERM):
        problem = capability_problem(f"opening a perf event for {what}", (CAP_PERFMON,),
                                     why=f"kernel.perf_event_paranoid is {_paranoid()}")
        if problem is not None:
            return AttachError(str(problem))
        return AttachError(f"the kernel refused to open a perf event for {what} "
                           f"({os.strerror(err).lower()}) although this process has CAP_PERFMON "
                           f"(kernel.perf_event_paranoid is {_paranoid()}; an LSM may forbid it)")
    if err == errno.ENODEV:
        return AttachError(f"cannot open a perf event for {what} on CPU {cpu}: "
                           f"that CPU is not online")
    if err in (errno.EMFILE, errno.ENFILE):
        return AttachError(f"cannot open a perf event for {what}: too many open files")
    return AttachError(f"cannot open a perf event for {what} on CPU {cpu}: {os.strerror(err)}")


def _prog_type(prog_fd: int, want: ProgType, what: str) -> int:
    """The program's id, after checking that it has type `want`."""
    info = kernel.prog_info(prog_fd)
    if info["type"] != want:
        try:
            have = f"BPF_PROG_TYPE_{ProgType(info['type']).name}"
        except ValueError:
            have = f"program type {info['type']}"
        raise AttachError(f"{what} runs BPF_PROG_TYPE_{want.name} programs, "
                          f"and program {info['id']} is {have}")
    return info["id"]


class PerfLink:
    """A program attached to perf events: one per CPU for a timer, one for
    a tracepoint. `detach()` (alias `close()`, and leaving a `with` block)
    closes the BPF links and perf events, once.

    Attributes: `kind` ("timer" or "tracepoint"), `mode` ("link" or
    "ioctl"), `cpus` (the CPUs the program runs on: a timer's, or for a
    tracepoint every CPU online when it was attached), `interval_ms`
    (timers), `event` ("sched:sched_switch") and `event_id` (tracepoints),
    `prog_id`, `link_ids` (the kernel's BPF link ids; empty in "ioctl"
    mode), `perf_fds`, `link_fds`, `attached`."""

    def __init__(self, kind: str, mode: str, prog_id: int, cpus: list[int],
                 perf_fds: list[kernel.Fd], link_fds: list[kernel.Fd], *,
                 interval_ms: float | None = None, event: str | None = None,
                 event_id: int | None = None):
        self.kind, self.mode, self.prog_id = kind, mode, prog_id
        self.cpus = list(cpus)
        self.perf_fds, self.link_fds = list(perf_fds), list(link_fds)
        self.interval_ms, self.event, self.event_id = interval_ms, event, event_id
        self.link_ids = [kernel.link_info(fd)["id"] for fd in self.link_fds]
        self.attached = True
        LIVE.add(self)

    def detach(self) -> None:
        """Detach the program (once; later calls do nothing): close every
        link, then every perf event."""
        if not self.attached:
            return
        self.attached = False
        LIVE.discard(self)
        _close_all(self.link_fds + self.perf_fds)

    close = detach

    def __enter__(self) -> "PerfLink":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def describe(self) -> str:
        """"timer every 10 ms on 2 CPUs (BPF links 12, 13)",
        "tracepoint sched:sched_switch on all CPUs (BPF link 14)"."""
        if self.kind == "timer":
            what = f"timer every {self.interval_ms:g} ms on {len(self.cpus)} " \
                   f"CPU{'s' if len(self.cpus) != 1 else ''}"
        else:
            what = f"tracepoint {self.event} on all CPUs"
        if self.link_ids:
            s = "s" if len(self.link_ids) > 1 else ""
            how = f"BPF link{s} {', '.join(map(str, self.link_ids))}"
        else:
            how = "perf event ioctl"
        return f"{what} ({how})"

    def info(self) -> dict:
        """A JSON-ready description."""
        out = {"kind": self.kind, "mode": self.mode, "cpus": list(self.cpus),
               "prog_id": self.prog_id, "link_ids": list(self.link_ids),
               "attached": self.attached}
        if self.kind == "timer":
            out["interval_ms"] = self.interval_ms
        else:
            out["event"] = self.event
            out["event_id"] = self.event_id
        return out

    def __repr__(self) -> str:
        return f"<PerfLink {self.describe()}{'' if self.attached else ' detached'}>"


def _close_all(fds) -> None:
    for fd in fds:
        try:
            fd.close()
        except OSError:
            pass


def _attach_each(prog_fd: int, perf_fds: list[kernel.Fd], use_link: bool | None,
                 what: str) -> tuple[str, list[kernel.Fd]]:
    """Put the program on every perf event and enable them: ("link", link
    fds) or ("ioctl", []). Closes what it made on failure (not perf_fds)."""
    links: list[kernel.Fd] = []
    mode = "ioctl" if use_link is False else "link"
    try:
        for pfd in perf_fds:
            if mode == "link":
                try:
                    links.append(kernel.link_create_perf_event(prog_fd, pfd))
                except PermissionProblem:
                    raise
                except kernel.BpfError as e:
                    if e.errno == errno.EEXIST:
                        raise AttachError(f"the program is already attached to {what}") from None
                    if use_link or links or e.errno not in NO_LINKS:
                        raise AttachError(f"cannot attach the program to {what}: "
                                          f"{e.strerror}") from None
                    mode = "ioctl"          # no BPF links for perf events on this kernel
            if mode == "ioctl":
                try:
                    fcntl.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog_fd)
                except OSError as e:
                    if e.errno == errno.EEXIST:
                        raise AttachError(f"the program is already attached to {what}") from None
                    raise AttachError(f"cannot attach the program to {what} "
                                      f"(PERF_EVENT_IOC_SET_BPF): {os.strerror(e.errno)}") from None
        for pfd in perf_fds:
            fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    except BaseException:
        _close_all(links)
        raise
    return mode, links


def attach_timer(prog_fd: int, interval_ms: float, cpus: list[int] | None = None, *,
                 use_link: bool | None = None) -> PerfLink:
    """Run BPF_PROG_TYPE_PERF_EVENT program `prog_fd` every `interval_ms`
    milliseconds on each of `cpus` (default: every online CPU). `use_link`:
    None prefers BPF links and falls back to the ioctl; True requires links;
    False uses the ioctl."""
    if not interval_ms or interval_ms <= 0:
        raise ValueError(f"the timer interval must be a positive number of ms, not {interval_ms!r}")
    period_ns = round(interval_ms * 1_000_000)
    if period_ns < 1000:
        raise ValueError(f"a timer interval of {interval_ms} ms is too short (at least 0.001 ms)")
    online = online_cpus()
    if cpus is None:
        cpus = online
    else:
        cpus = sorted(set(cpus))
        off = [c for c in cpus if c not in online]
        if off:
            raise AttachError(f"CPU {off[0]} is not online (online CPUs: "
                              f"{', '.join(map(str, online))})")
        if not cpus:
            raise ValueError("no CPUs to run the timer on")
    prog_id = _prog_type(prog_fd, ProgType.PERF_EVENT, "a timer")
    what = f"a {interval_ms:g} ms timer"
    perf_fds: list[kernel.Fd] = []
    try:
        for cpu in cpus:
            attr = PerfEventAttr()
            attr.type = PERF_TYPE_SOFTWARE
            attr.config = PERF_COUNT_SW_CPU_CLOCK
            attr.sample_period = period_ns
            attr.flags = ATTR_DISABLED
            try:
                perf_fds.append(perf_event_open(attr, -1, cpu))
            except OSError as e:
                raise _open_error(e, what, cpu) from None
        mode, links = _attach_each(prog_fd, perf_fds, use_link, what)
        try:
            return PerfLink("timer", mode, prog_id, cpus, perf_fds, links,
                            interval_ms=interval_ms)
        except BaseException:
            _close_all(links)
            raise
    except BaseException:
        _close_all(perf_fds)
        raise


def attach_tracepoint(prog_fd: int, category: str, event: str, *,
                      use_link: bool | None = None) -> PerfLink:
    """Run BPF_PROG_TYPE_TRACEPOINT program `prog_fd` at every hit of
    tracepoint CATEGORY:EVENT on any CPU (one perf event; see the module
    docstring). `use_link` as for `attach_timer`."""
    try:
        fmt = tracefs.event_format(category, event)
    except tracefs.TracefsError as e:
        raise AttachError(str(e)) from None
    name = f"{category}:{event}"
    prog_id = _prog_type(prog_fd, ProgType.TRACEPOINT, f"tracepoint {name}")
    what = f"tracepoint {name}"
    online = online_cpus()
    attr = PerfEventAttr()
    attr.type = PERF_TYPE_TRACEPOINT
    attr.config = fmt.id
    attr.flags = ATTR_DISABLED
    try:
        pfd = perf_event_open(attr, -1, online[0])
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINVAL):
            raise AttachError(f"the kernel cannot open a perf event for {what} (id {fmt.id}): "
                              f"{os.strerror(e.errno)}") from None
        raise _open_error(e, what, online[0]) from None
    try:
        mode, links = _attach_each(prog_fd, [pfd], use_link, what)
        try:
            return PerfLink("tracepoint", mode, prog_id, online, [pfd], links,
                            event=name, event_id=fmt.id)
        except BaseException:
            _close_all(links)
            raise
    except BaseException:
        pfd.close()
        raise
