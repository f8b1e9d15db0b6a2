"""The bpf(2) boundary: every BPF system call luabpf makes goes through here.

Owns: the `bpf(2)` syscall via ctypes (no other module calls it), the layout of
`union bpf_attr` for each command we use and of the info structures the kernel
fills (`bpf_prog_info`, `bpf_map_info`, `bpf_link_info`), file-descriptor
ownership (`Fd`), and the convention for verifier logs. Does not own: the
kernel's numbers (`compiler/bpf/uapi.py`: `ProgType`, `MapType`, `AttachType`,
`LinkType`, the flags), deciding what to attach where (`runtime/attach/`),
reading ring buffers (`runtime/ringbuf.py`), mapping verifier logs to Lua lines
(`runtime/load.py`), or feature probes (`runtime/features.py`).

Decision: program loading, BPF_PROG_TEST_RUN, map create/lookup/update/delete/
get_next_key, object pin/get, prog/map/link info, BPF links and BPF_ENABLE_STATS
call bpf(2) directly through ctypes (`syscall(__NR_bpf, cmd, &attr, sizeof attr)`),
because bcc's Python API cannot load a raw instruction array with program
flags (BPF_F_SLEEPABLE), BTF func/line info or fd_array, cannot return the
verifier log of a failed load, and cannot run BPF_PROG_TEST_RUN with a context;
and bcc's ring-buffer reader only serves maps bcc itself created.

Each `*Attr` structure below is the anonymous struct of `union bpf_attr` for
that command, field for field as in include/uapi/linux/bpf.h (Linux 6.18),
with `__aligned_u64` as `c_uint64` (8-byte aligned on every arch we support).
A kernel older than the structure sees zeros in the fields it does not know,
which bpf(2) accepts (it checks that unknown tail bytes are zero).

Verifier-log convention: `prog_load` loads without a log (the fast path; a
log costs the verifier time). `load_with_log` does the same, and only when
that load fails loads again with log_level=1 into a 16 MiB buffer (grown to
the kernel's `log_true_size` when that is larger) and raises `BpfError` whose
`.log` is the verifier's text. `btf_load` follows the same convention.

No ctypes object leaves this module: callers pass and get `bytes`, `int`
(`Fd` is an `int`), dicts and small dataclasses.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
from dataclasses import dataclass
from functools import cache
from typing import Iterator, Sequence

from luabpf.compiler.bpf.uapi import (BPF_ANY, BPF_F_TEST_XDP_LIVE_FRAMES, BPF_INSN_SIZE,
                                      BPF_OBJ_NAME_LEN, BPF_STATS_RUN_TIME, AttachType, Cmd,
                                      LinkType, PerfEventType)
from luabpf.runtime.errors import (CAP_PERFMON, BpfError, PermissionProblem, command_problem,
                                   has_capability, load_problem, verifier_without_perfmon)

__all__ = [
    "BpfError", "PermissionProblem", "Fd", "TestRunResult", "prog_load", "load_with_log",
    "load_verbose", "prog_test_run", "map_create", "map_lookup", "map_update", "map_delete",
    "map_next_key", "map_keys", "map_lookup_batch", "obj_pin", "obj_get", "prog_info",
    "map_info", "prog_ids", "map_ids", "prog_get_fd_by_id", "map_get_fd_by_id",
    "enable_stats", "btf_load", "link_create", "link_create_perf_event", "link_detach",
    "link_info", "link_ids", "link_get_fd_by_id", "struct_layouts", "possible_cpus",
    "percpu_value_size", "split_percpu",
]


LOG_SIZE = 16 << 20        # first verifier-log buffer on a failed load
LOG_SIZE_MAX = 1 << 30     # the kernel's limit is UINT_MAX >> 2

# ---------------------------------------------------------------------------
# union bpf_attr, one structure per command

_u32, _s32, _u64 = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64


class _MapCreateAttr(ctypes.Structure):          # BPF_MAP_CREATE
    _fields_ = [
        ("map_type", _u32), ("key_size", _u32), ("value_size", _u32), ("max_entries", _u32),
        ("map_flags", _u32), ("inner_map_fd", _u32), ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("map_ifindex", _u32),
        ("btf_fd", _u32), ("btf_key_type_id", _u32), ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32), ("map_extra", _u64),
        ("value_type_btf_obj_fd", _s32), ("map_token_fd", _s32),
    ]


class _MapElemAttr(ctypes.Structure):            # BPF_MAP_*_ELEM, BPF_MAP_GET_NEXT_KEY
    _fields_ = [("map_fd", _u32), ("key", _u64), ("value", _u64), ("flags", _u64)]
    # `value` is a union with `next_key`


class _MapBatchAttr(ctypes.Structure):           # BPF_MAP_*_BATCH (`batch`)
    _fields_ = [("in_batch", _u64), ("out_batch", _u64), ("keys", _u64), ("values", _u64),
                ("count", _u32), ("map_fd", _u32), ("elem_flags", _u64), ("flags", _u64)]


class _ProgLoadAttr(ctypes.Structure):           # BPF_PROG_LOAD
    _fields_ = [
        ("prog_type", _u32), ("insn_cnt", _u32), ("insns", _u64), ("license", _u64),
        ("log_level", _u32), ("log_size", _u32), ("log_buf", _u64),
        ("kern_version", _u32), ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("prog_ifindex", _u32),
        ("expected_attach_type", _u32), ("prog_btf_fd", _u32), ("func_info_rec_size", _u32),
        ("func_info", _u64), ("func_info_cnt", _u32), ("line_info_rec_size", _u32),
        ("line_info", _u64), ("line_info_cnt", _u32), ("attach_btf_id", _u32),
        ("attach_prog_fd", _u32),                # union with attach_btf_obj_fd
        ("core_relo_cnt", _u32), ("fd_array", _u64), ("core_relos", _u64),
        ("core_relo_rec_size", _u32), ("log_true_size", _u32), ("prog_token_fd", _s32),
        ("fd_array_cnt", _u32), ("signature", _u64), ("signature_size", _u32),
        ("keyring_id", _s32),
    ]


class _ObjAttr(ctypes.Structure):                # BPF_OBJ_PIN, BPF_OBJ_GET
    _fields_ = [("pathname", _u64), ("bpf_fd", _u32), ("file_flags", _u32), ("path_fd", _s32)]


class _TestRunAttr(ctypes.Structure):            # BPF_PROG_TEST_RUN (`test`)
    _fields_ = [
        ("prog_fd", _u32), ("retval", _u32), ("data_size_in", _u32), ("data_size_out", _u32),
        ("data_in", _u64), ("data_out", _u64), ("repeat", _u32), ("duration", _u32),
        ("ctx_size_in", _u32), ("ctx_size_out", _u32), ("ctx_in", _u64), ("ctx_out", _u64),
        ("flags", _u32), ("cpu", _u32), ("batch_size", _u32),
    ]


class _GetIdAttr(ctypes.Structure):              # BPF_*_GET_NEXT_ID, BPF_*_GET_FD_BY_ID
    _fields_ = [("start_id", _u32), ("next_id", _u32), ("open_flags", _u32),
                ("fd_by_id_token_fd", _s32)]


class _InfoAttr(ctypes.Structure):               # BPF_OBJ_GET_INFO_BY_FD (`info`)
    _fields_ = [("bpf_fd", _u32), ("info_len", _u32), ("info", _u64)]


class _BtfLoadAttr(ctypes.Structure):            # BPF_BTF_LOAD
    _fields_ = [
        ("btf", _u64), ("btf_log_buf", _u64), ("btf_size", _u32), ("btf_log_size", _u32),
        ("btf_log_level", _u32), ("btf_log_true_size", _u32), ("btf_flags", _u32),
        ("btf_token_fd", _s32),
    ]


class _EnableStatsAttr(ctypes.Structure):        # BPF_ENABLE_STATS
    _fields_ = [("type", _u32)]


class _ProgInfo(ctypes.Structure):               # struct bpf_prog_info
    _fields_ = [
        ("type", _u32), ("id", _u32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32), ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64), ("xlated_prog_insns", _u64), ("load_time", _u64),
        ("created_by_uid", _u32), ("nr_map_ids", _u32), ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", _u32),
        ("gpl_compatible", _u32),               # bit 0 of a bitfield word
        ("netns_dev", _u64), ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32), ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64), ("jited_func_lens", _u64),
        ("btf_id", _u32), ("func_info_rec_size", _u32), ("func_info", _u64),
        ("nr_func_info", _u32), ("nr_line_info", _u32), ("line_info", _u64),
        ("jited_line_info", _u64), ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32), ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32), ("prog_tags", _u64),
        ("run_time_ns", _u64), ("run_cnt", _u64), ("recursion_misses", _u64),
        ("verified_insns", _u32), ("attach_btf_obj_id", _u32), ("attach_btf_id", _u32),
    ]


class _MapInfo(ctypes.Structure):                # struct bpf_map_info
    _fields_ = [
        ("type", _u32), ("id", _u32), ("key_size", _u32), ("value_size", _u32),
        ("max_entries", _u32), ("map_flags", _u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32), ("netns_dev", _u64), ("netns_ino", _u64),
        ("btf_id", _u32), ("btf_key_type_id", _u32), ("btf_value_type_id", _u32),
        ("btf_vmlinux_id", _u32), ("map_extra", _u64),
    ]


class _LinkCreateAttr(ctypes.Structure):         # BPF_LINK_CREATE on a device (`link_create`)
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


class _LinkInfo(ctypes.Structure):               # struct bpf_link_info (head + xdp/tcx)
    _fields_ = [
        ("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad", _u32),
        # union: xdp {ifindex}; tcx/netkit {ifindex, attach_type}; others larger
        ("ifindex", _u32), ("attach_type", _u32), ("_rest", _u64 * 6),
    ]


# ---------------------------------------------------------------------------
# The system call

# __NR_bpf per machine (arch/*/include/uapi/asm/unistd*.h); the generic table
# (arm64, riscv64, loongarch64) numbers it 280.
_NR_BPF = {
    "x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280,
    "loongarch64": 280, "i386": 357, "i686": 357, "armv7l": 386, "armv6l": 386,
    "s390x": 351, "ppc64le": 361, "ppc64": 361,
}


@cache
def _syscall():
    machine = platform.machine()
    try:
        nr = _NR_BPF[machine]
    except KeyError:
        raise OSError(errno.ENOSYS, f"luabpf does not know the bpf(2) syscall number on {machine}") from None
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
    return nr, fn


def _bpf(cmd: Cmd, attr: ctypes.Structure) -> int:
    """bpf(cmd, &attr, sizeof attr): the result, or -errno. Retries EINTR, and
    EAGAIN for program loads (as libbpf does: the verifier can be interrupted)."""
    nr, fn = _syscall()
    tries = 0
    while True:
        ret = fn(nr, int(cmd), ctypes.addressof(attr), ctypes.sizeof(attr))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err == errno.EINTR or (err == errno.EAGAIN and cmd == Cmd.PROG_LOAD and tries < 5):
            tries += 1
            continue
        return -err


def _fail(err: int, cmd: Cmd, log: str = "", *, may_be_permission: bool = True) -> BpfError:
    """The exception for a failed command. EPERM (and EACCES outside the verifier)
    becomes a `PermissionProblem` naming the missing capability when one is missing;
    a verifier rejection (EACCES with a log) too when CAP_PERFMON is missing, since
    without it the verifier refuses code it accepts from a privileged process."""
    name = f"BPF_{cmd.name}"
    if may_be_permission and err in (errno.EPERM, errno.EACCES):
        if err == errno.EACCES and cmd == Cmd.PROG_LOAD:
            if log and not has_capability(CAP_PERFMON):
                return verifier_without_perfmon(_verifier_reason(log), name, err)
            return BpfError(err, name, log)
        problem = command_problem(name, err)
        if problem is not None:
            return problem
        if err == errno.EPERM and not log:
            return BpfError(err, name, log, "the process has the capabilities this needs; "
                            "kernel lockdown, an LSM or a sysctl may forbid this")
    return BpfError(err, name, log)


def _verifier_reason(log: str) -> str:
    """The verifier's complaint: the last line of its log that is not an instruction,
    a state or the statistics."""
    for line in reversed(log.splitlines()):
        text = line.strip()
        if text and not re.match(r"^(\d+:|processed |from |;|verification time|stack depth)", text):
            return text
    return "no reason given"


def _buf(data: bytes):
    """A C copy of `data` (kept alive by the caller while the syscall runs)."""
    return ctypes.create_string_buffer(bytes(data), max(len(data), 1))


def _obj_name(name: str) -> bytes:
    """A program or map name as the kernel accepts it: [A-Za-z0-9_.], 15 chars."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", name).encode()[:BPF_OBJ_NAME_LEN - 1]


# ---------------------------------------------------------------------------
# File descriptors


class Fd(int):
    """A file descriptor this process owns: an `int` (pass it wherever an fd
    goes), closed by `close()` or by leaving a `with` block. Closing twice is
    harmless. There is no finaliser: copies made with `int(fd)` must not
    outlive `close()`."""

    def __new__(cls, fd: int):
        self = super().__new__(cls, fd)
        self.closed = False
        return self

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(int(self))

    def __enter__(self) -> "Fd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Fd({int(self)}{', closed' if self.closed else ''})"


# ---------------------------------------------------------------------------
# Programs


def _prog_load_raw(prog_type, insns, *, license, name, log_level, log_size, prog_flags,
                   expected_attach_type, btf_fd, func_info, func_info_cnt, line_info,
                   line_info_cnt, attach_btf_id, attach_prog_fd, fd_array, kern_version):
    """One BPF_PROG_LOAD. Returns (fd or -errno, log text, log_true_size)."""
    if len(insns) % BPF_INSN_SIZE:
        raise ValueError(f"instruction bytes not a multiple of {BPF_INSN_SIZE}: {len(insns)}")
    attr = _ProgLoadAttr()
    c_insns = _buf(insns)
    c_license = ctypes.create_string_buffer(license.encode())
    attr.prog_type = int(prog_type)
    attr.insn_cnt = len(insns) // BPF_INSN_SIZE
    attr.insns = ctypes.addressof(c_insns)
    attr.license = ctypes.addressof(c_license)
    attr.kern_version = kern_version
    attr.prog_flags = prog_flags
    attr.prog_name = _obj_name(name)
    attr.expected_attach_type = int(expected_attach_type)
    attr.prog_btf_fd = btf_fd
    attr.attach_btf_id = attach_btf_id
    attr.attach_prog_fd = attach_prog_fd
    keep = []
    if func_info_cnt:
        c_fi = _buf(func_info)
        keep.append(c_fi)
        attr.func_info = ctypes.addressof(c_fi)
        attr.func_info_cnt = func_info_cnt
        attr.func_info_rec_size = len(func_info) // func_info_cnt
    if line_info_cnt:
        c_li = _buf(line_info)
        keep.append(c_li)
        attr.line_info = ctypes.addressof(c_li)
        attr.line_info_cnt = line_info_cnt
        attr.line_info_rec_size = len(line_info) // line_info_cnt
    if fd_array:
        c_fds = (ctypes.c_int32 * len(fd_array))(*fd_array)
        keep.append(c_fds)
        attr.fd_array = ctypes.addressof(c_fds)
    log_buf = None
    if log_level and log_size:
        log_buf = ctypes.create_string_buffer(log_size)
        attr.log_level = log_level
        attr.log_size = log_size
        attr.log_buf = ctypes.addressof(log_buf)
    ret = _bpf(Cmd.PROG_LOAD, attr)
    log = log_buf.value.decode("utf-8", "replace") if log_buf is not None else ""
    return ret, log, attr.log_true_size


def prog_load(prog_type: int, insns: bytes, *, license: str = "GPL", name: str = "",
              log_level: int = 0, log_size: int = 0, prog_flags: int = 0,
              expected_attach_type: int = 0, btf_fd: int = 0, func_info: bytes = b"",
              func_info_cnt: int = 0, line_info: bytes = b"", line_info_cnt: int = 0,
              attach_btf_id: int = 0, attach_prog_fd: int = 0,
              fd_array: Sequence[int] = (), kern_version: int = 0) -> Fd:
    """BPF_PROG_LOAD `insns` (raw `struct bpf_insn` bytes); the program's fd.
    With log_level and log_size, a failure's BpfError carries the log. Capabilities the
    type needs and the process lacks are named (PermissionProblem) before the kernel
    is asked."""
    _check_load(prog_type)
    ret, log, _ = _prog_load_raw(
        prog_type, insns, license=license, name=name, log_level=log_level, log_size=log_size,
        prog_flags=prog_flags, expected_attach_type=expected_attach_type, btf_fd=btf_fd,
        func_info=func_info, func_info_cnt=func_info_cnt, line_info=line_info,
        line_info_cnt=line_info_cnt, attach_btf_id=attach_btf_id,
        attach_prog_fd=attach_prog_fd, fd_array=fd_array, kern_version=kern_version)
    if ret < 0:
        raise _fail(-ret, Cmd.PROG_LOAD, log)
    return Fd(ret)


def load_with_log(prog_type: int, insns: bytes, **kwargs) -> Fd:
    """`prog_load` without a log; if that fails, load again with log_level=1
    (or the `log_level` given) and a 16 MiB buffer, grown when the kernel's
    log_true_size says it was truncated, and raise BpfError carrying the log
    and the first load's errno. Takes the same keywords as `prog_load`."""
    _check_load(prog_type)
    level = kwargs.pop("log_level", 0) or 1
    size = kwargs.pop("log_size", 0) or LOG_SIZE
    try:
        return prog_load(prog_type, insns, **kwargs)
    except PermissionProblem:
        raise
    except BpfError as first:
        first_errno = first.errno
    while True:
        kw = dict(_LOAD_DEFAULTS, **kwargs)
        ret, log, true_size = _prog_load_raw(prog_type, insns, log_level=level, log_size=size, **kw)
        if ret >= 0:       # verified the second time (should not happen): keep it
            return Fd(ret)
        if -ret == errno.ENOSPC and true_size > size and size < LOG_SIZE_MAX:
            size = min(max(true_size, size * 2), LOG_SIZE_MAX)
            continue
        raise _fail(first_errno, Cmd.PROG_LOAD, log)


def load_verbose(prog_type: int, insns: bytes, *, log_level: int = 1 | 4,
                 **kwargs) -> tuple[Fd, str]:
    """Load with a verifier log even on success; (fd, log). log_level is a mask:
    1 = states at branches, 2 = every instruction, 4 = statistics only."""
    _check_load(prog_type)
    size = kwargs.pop("log_size", 0) or LOG_SIZE
    kw = dict(_LOAD_DEFAULTS, **kwargs)
    while True:
        ret, log, true_size = _prog_load_raw(prog_type, insns, log_level=log_level,
                                             log_size=size, **kw)
        if -ret == errno.ENOSPC and true_size > size and size < LOG_SIZE_MAX:
            size = min(max(true_size, size * 2), LOG_SIZE_MAX)
            continue
        if ret < 0:
            raise _fail(-ret, Cmd.PROG_LOAD, log)
        return Fd(ret), log


def _check_load(prog_type: int) -> None:
    problem = load_problem([prog_type])
    if problem is not None:
        raise problem


_LOAD_DEFAULTS = dict(
    license="GPL", name="", prog_flags=0, expected_attach_type=0, btf_fd=0, func_info=b"",
    func_info_cnt=0, line_info=b"", line_info_cnt=0, attach_btf_id=0, attach_prog_fd=0,
    fd_array=(), kern_version=0)


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN returned. `retval` is the program's r0 truncated
    to 32 bits (the kernel's field is a __u32); `duration_ns` is the mean per
    run (0 for SYSCALL programs, which the kernel does not time)."""
    __test__ = False           # not a pytest test class
    retval: int
    data_out: bytes
    ctx_out: bytes
    duration_ns: int


def prog_test_run(fd: int, *, data_in: bytes = b"", data_size_out: int = 0,
                  ctx_in: bytes = b"", ctx_size_out: int = 0, repeat: int = 1,
                  flags: int = 0, cpu: int = 0, batch_size: int = 0,
                  ctx_inout: bool = False) -> TestRunResult:
    """BPF_PROG_TEST_RUN. `data_out` holds at most `data_size_out` bytes
    (default: len(data_in) + 4096, never unbounded; none with
    BPF_F_TEST_XDP_LIVE_FRAMES); `ctx_out` at most `ctx_size_out` (default
    len(ctx_in)).

    `ctx_inout=True` is the mode for BPF_PROG_TYPE_SYSCALL: the kernel rejects
    data_in/data_out/ctx_out/repeat there and instead copies the context back
    into the ctx_in buffer; the result's `ctx_out` is that buffer after the run.
    """
    attr = _TestRunAttr()
    attr.prog_fd = fd
    attr.flags = flags
    attr.cpu = cpu
    attr.batch_size = batch_size
    keep = []
    c_data_out = c_ctx_out = None
    if ctx_inout:
        if data_in or data_size_out or ctx_size_out or repeat not in (0, 1):
            raise ValueError("ctx_inout runs take only ctx_in (no data, ctx_out or repeat)")
        c_ctx = _buf(ctx_in)
        attr.ctx_in = ctypes.addressof(c_ctx) if ctx_in else 0
        attr.ctx_size_in = len(ctx_in)
    else:
        attr.repeat = repeat
        if data_in:
            c_in = _buf(data_in)
            keep.append(c_in)
            attr.data_in = ctypes.addressof(c_in)
            attr.data_size_in = len(data_in)
        live = flags & BPF_F_TEST_XDP_LIVE_FRAMES      # live frames: no data copied out
        out_size = data_size_out or (len(data_in) + 4096 if data_in and not live else 0)
        if out_size:
            c_data_out = ctypes.create_string_buffer(out_size)
            attr.data_out = ctypes.addressof(c_data_out)
            attr.data_size_out = out_size
        if ctx_in:
            c_ctx = _buf(ctx_in)
            keep.append(c_ctx)
            attr.ctx_in = ctypes.addressof(c_ctx)
            attr.ctx_size_in = len(ctx_in)
        ctx_out_size = ctx_size_out or len(ctx_in)
        if ctx_out_size:
            c_ctx_out = ctypes.create_string_buffer(ctx_out_size)
            attr.ctx_out = ctypes.addressof(c_ctx_out)
            attr.ctx_size_out = ctx_out_size
    ret = _bpf(Cmd.PROG_TEST_RUN, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.PROG_TEST_RUN)
    if ctx_inout:
        ctx_out = c_ctx.raw[:len(ctx_in)]
    else:
        ctx_out = c_ctx_out.raw[:attr.ctx_size_out] if c_ctx_out is not None else b""
    data_out = c_data_out.raw[:attr.data_size_out] if c_data_out is not None else b""
    return TestRunResult(attr.retval, data_out, ctx_out, attr.duration)


# ---------------------------------------------------------------------------
# Maps. Keys and values passed in must be exactly the map's key_size and
# value_size (per-CPU: percpu_value_size): the kernel reads that many bytes.


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               flags: int = 0, name: str = "", btf_fd: int = 0, btf_key_type_id: int = 0,
               btf_value_type_id: int = 0, inner_map_fd: int = 0, map_extra: int = 0) -> Fd:
    """BPF_MAP_CREATE; the map's fd."""
    attr = _MapCreateAttr()
    attr.map_type = int(map_type)
    attr.key_size = key_size
    attr.value_size = value_size
    attr.max_entries = max_entries
    attr.map_flags = flags
    attr.inner_map_fd = inner_map_fd
    attr.map_name = _obj_name(name)
    attr.btf_fd = btf_fd
    attr.btf_key_type_id = btf_key_type_id
    attr.btf_value_type_id = btf_value_type_id
    attr.map_extra = map_extra
    ret = _bpf(Cmd.MAP_CREATE, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.MAP_CREATE)
    return Fd(ret)


def _elem(cmd: Cmd, fd: int, key, value=None, flags: int = 0):
    attr = _MapElemAttr()
    attr.map_fd = fd
    if key is not None:
        attr.key = ctypes.addressof(key)
    if value is not None:
        attr.value = ctypes.addressof(value)
    attr.flags = flags
    return _bpf(cmd, attr)


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored under `key`, or None. For per-CPU maps `value_size` is
    `percpu_value_size(value_size)` and the result splits with `split_percpu`."""
    c_value = ctypes.create_string_buffer(value_size)
    ret = _elem(Cmd.MAP_LOOKUP_ELEM, fd, _buf(key), c_value)
    if ret == -errno.ENOENT:
        return None
    if ret < 0:
        raise _fail(-ret, Cmd.MAP_LOOKUP_ELEM)
    return c_value.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    ret = _elem(Cmd.MAP_UPDATE_ELEM, fd, _buf(key), _buf(value), flags)
    if ret < 0:
        raise _fail(-ret, Cmd.MAP_UPDATE_ELEM)


def map_delete(fd: int, key: bytes) -> bool:
    """Delete `key`; False when it was not there."""
    ret = _elem(Cmd.MAP_DELETE_ELEM, fd, _buf(key))
    if ret == -errno.ENOENT:
        return False
    if ret < 0:
        raise _fail(-ret, Cmd.MAP_DELETE_ELEM)
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after `key` (the first key when `key` is None, or when `key` is
    no longer in a hash map); None at the end."""
    c_next = ctypes.create_string_buffer(key_size)
    ret = _elem(Cmd.MAP_GET_NEXT_KEY, fd, None if key is None else _buf(key), c_next)
    if ret == -errno.ENOENT:
        return None
    if ret < 0:
        raise _fail(-ret, Cmd.MAP_GET_NEXT_KEY)
    return c_next.raw


def map_lookup_batch(fd: int, key_size: int, value_size: int,
                     chunk: int = 4096) -> tuple[bytes, bytes, int]:
    """Every entry of the map by BPF_MAP_LOOKUP_BATCH, `chunk` a call (a few system calls
    for a map that GET_NEXT_KEY would walk with two per entry): (the keys back to back,
    the values back to back, how many). Not a snapshot. `value_size` is per-CPU-sized for
    per-CPU maps. BpfError(EINVAL) for map types without batch operations."""
    token = max(key_size, 8)                     # hash maps keep a bucket number, arrays a key
    in_batch, out_batch = ctypes.create_string_buffer(token), ctypes.create_string_buffer(token)
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    all_keys, all_values, total = bytearray(), bytearray(), 0
    first = True
    while True:
        attr = _MapBatchAttr()
        attr.map_fd = fd
        attr.in_batch = 0 if first else ctypes.addressof(in_batch)
        attr.out_batch = ctypes.addressof(out_batch)
        attr.keys, attr.values = ctypes.addressof(keys), ctypes.addressof(values)
        attr.count = chunk
        ret = _bpf(Cmd.MAP_LOOKUP_BATCH, attr)
        if ret < 0 and -ret != errno.ENOENT:
            raise _fail(-ret, Cmd.MAP_LOOKUP_BATCH)
        all_keys += keys.raw[:attr.count * key_size]
        all_values += values.raw[:attr.count * value_size]
        total += attr.count
        if ret < 0:                               # ENOENT: that was the last batch
            return bytes(all_keys), bytes(all_values), total
        ctypes.memmove(in_batch, out_batch, token)
        first = False


def map_keys(fd: int, key_size: int) -> Iterator[bytes]:
    """Every key, by BPF_MAP_GET_NEXT_KEY (not a snapshot)."""
    key = map_next_key(fd, None, key_size)
    while key is not None:
        yield key
        key = map_next_key(fd, key, key_size)


@cache
def possible_cpus() -> int:
    """How many CPUs per-CPU maps hold a value for (/sys/devices/system/cpu/possible)."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


def percpu_value_size(value_size: int) -> int:
    """The buffer a per-CPU map's lookup and update take: each CPU's value
    rounded up to 8 bytes, times the possible CPUs."""
    return ((value_size + 7) // 8 * 8) * possible_cpus()


def split_percpu(raw: bytes, value_size: int) -> list[bytes]:
    """A per-CPU lookup's bytes as one value per possible CPU."""
    stride = (value_size + 7) // 8 * 8
    return [raw[i:i + value_size] for i in range(0, stride * possible_cpus(), stride)]


# ---------------------------------------------------------------------------
# Objects: pinning, ids, info, statistics, BTF


def obj_pin(fd: int, path: str) -> None:
    """Pin a program or map at `path` in a bpffs."""
    attr = _ObjAttr()
    c_path = ctypes.create_string_buffer(os.fsencode(path))
    attr.pathname = ctypes.addressof(c_path)
    attr.bpf_fd = fd
    ret = _bpf(Cmd.OBJ_PIN, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.OBJ_PIN, may_be_permission=False)


def obj_get(path: str, flags: int = 0) -> Fd:
    """Open the object pinned at `path`; flags: BPF_F_RDONLY / BPF_F_WRONLY."""
    attr = _ObjAttr()
    c_path = ctypes.create_string_buffer(os.fsencode(path))
    attr.pathname = ctypes.addressof(c_path)
    attr.file_flags = flags
    ret = _bpf(Cmd.OBJ_GET, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.OBJ_GET, may_be_permission=False)
    return Fd(ret)


def _get_info(fd: int, info: ctypes.Structure) -> None:
    attr = _InfoAttr()
    attr.bpf_fd = fd
    attr.info_len = ctypes.sizeof(info)
    attr.info = ctypes.addressof(info)
    ret = _bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.OBJ_GET_INFO_BY_FD)


def prog_info(fd: int, *, xlated: bool = False) -> dict:
    """The program's id, type, name, tag, run_time_ns, run_cnt (counted while
    `enable_stats()` is held), xlated_prog_len, jited_prog_len, verified_insns,
    map_ids; with xlated=True also "xlated": the instructions after the
    verifier's rewrites (bytes)."""
    info = _ProgInfo()
    _get_info(fd, info)
    out = {
        "id": info.id, "type": info.type, "name": info.name.decode(errors="replace"),
        "tag": bytes(info.tag).hex(), "run_time_ns": info.run_time_ns, "run_cnt": info.run_cnt,
        "recursion_misses": info.recursion_misses, "xlated_prog_len": info.xlated_prog_len,
        "jited_prog_len": info.jited_prog_len, "verified_insns": info.verified_insns,
        "load_time": info.load_time, "gpl_compatible": bool(info.gpl_compatible & 1),
        "btf_id": info.btf_id,
    }
    nr_maps, xlated_len = info.nr_map_ids, info.xlated_prog_len
    if nr_maps or (xlated and xlated_len):
        info2 = _ProgInfo()
        c_maps = (ctypes.c_uint32 * max(nr_maps, 1))()
        info2.nr_map_ids = nr_maps
        info2.map_ids = ctypes.addressof(c_maps) if nr_maps else 0
        c_x = ctypes.create_string_buffer(max(xlated_len, 1))
        if xlated:
            info2.xlated_prog_len = xlated_len
            info2.xlated_prog_insns = ctypes.addressof(c_x)
        _get_info(fd, info2)
        out["map_ids"] = list(c_maps)[:min(nr_maps, info2.nr_map_ids)]
        if xlated:
            out["xlated"] = c_x.raw[:min(xlated_len, info2.xlated_prog_len)]
    else:
        out["map_ids"] = []
        if xlated:
            out["xlated"] = b""
    return out


def map_info(fd: int) -> dict:
    """The map's id, type, name, key_size, value_size, max_entries, map_flags."""
    info = _MapInfo()
    _get_info(fd, info)
    return {
        "id": info.id, "type": info.type, "name": info.name.decode(errors="replace"),
        "key_size": info.key_size, "value_size": info.value_size,
        "max_entries": info.max_entries, "map_flags": info.map_flags, "btf_id": info.btf_id,
    }


def _next_ids(cmd: Cmd) -> Iterator[int]:
    attr = _GetIdAttr()
    while True:
        ret = _bpf(cmd, attr)
        if ret == -errno.ENOENT:
            return
        if ret < 0:
            raise _fail(-ret, cmd)
        yield attr.next_id
        attr.start_id = attr.next_id


def prog_ids() -> Iterator[int]:
    """The ids of every program loaded in the kernel."""
    return _next_ids(Cmd.PROG_GET_NEXT_ID)


def map_ids() -> Iterator[int]:
    """The ids of every map in the kernel."""
    return _next_ids(Cmd.MAP_GET_NEXT_ID)


def _fd_by_id(cmd: Cmd, obj_id: int) -> Fd:
    attr = _GetIdAttr()
    attr.start_id = obj_id
    ret = _bpf(cmd, attr)
    if ret < 0:
        raise _fail(-ret, cmd)
    return Fd(ret)


def prog_get_fd_by_id(prog_id: int) -> Fd:
    return _fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id)


def map_get_fd_by_id(map_id: int) -> Fd:
    return _fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id)


def enable_stats(stats_type: int = BPF_STATS_RUN_TIME) -> Fd:
    """BPF_ENABLE_STATS: programs' run_time_ns and run_cnt are counted while
    the returned fd is open (system-wide; close it to stop)."""
    attr = _EnableStatsAttr()
    attr.type = stats_type
    ret = _bpf(Cmd.ENABLE_STATS, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.ENABLE_STATS)
    return Fd(ret)


def _btf_load_raw(data: bytes, log_level: int, log_size: int):
    attr = _BtfLoadAttr()
    c_data = _buf(data)
    attr.btf = ctypes.addressof(c_data)
    attr.btf_size = len(data)
    log_buf = None
    if log_level and log_size:
        log_buf = ctypes.create_string_buffer(log_size)
        attr.btf_log_buf = ctypes.addressof(log_buf)
        attr.btf_log_size = log_size
        attr.btf_log_level = log_level
    ret = _bpf(Cmd.BTF_LOAD, attr)
    log = log_buf.value.decode("utf-8", "replace") if log_buf is not None else ""
    return ret, log, attr.btf_log_true_size


def btf_load(data: bytes) -> Fd:
    """BPF_BTF_LOAD the raw BTF blob `data`; on failure load again with a log
    and raise BpfError carrying it (the `load_with_log` convention)."""
    ret, _, _ = _btf_load_raw(data, 0, 0)
    if ret >= 0:
        return Fd(ret)
    first_errno, size = -ret, LOG_SIZE
    while True:
        ret, log, true_size = _btf_load_raw(data, 1, size)
        if ret >= 0:
            return Fd(ret)
        if -ret == errno.ENOSPC and true_size > size and size < LOG_SIZE_MAX:
            size = min(max(true_size, size * 2), LOG_SIZE_MAX)
            continue
        raise _fail(first_errno, Cmd.BTF_LOAD, log)


# ---------------------------------------------------------------------------
# BPF links: a program attached for as long as the link's last fd is open.
# Only `link_create`'s device form (XDP, tcx, netkit: `target_ifindex`,
# `attach_type`, `flags`, and for tcx `relative_fd`, `expected_revision`) and
# its perf-event form are laid out; the kernel sees zeros in the rest.


def link_create(prog_fd: int, attach_type: int, target_ifindex: int, *, flags: int = 0,
                relative_fd: int = 0, expected_revision: int = 0) -> Fd:
    """BPF_LINK_CREATE for a network device (XDP, TCX_INGRESS/EGRESS,
    NETKIT_*); the link's fd. `flags` are XDP_FLAGS_* for XDP, BPF_F_BEFORE/
    AFTER… for tcx. The device is looked up in the network namespace of the
    calling thread."""
    attr = _LinkCreateAttr()
    attr.prog_fd = prog_fd
    attr.target_ifindex = target_ifindex
    attr.attach_type = int(attach_type)
    attr.flags = flags
    attr.relative_fd = relative_fd
    attr.expected_revision = expected_revision
    ret = _bpf(Cmd.LINK_CREATE, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.LINK_CREATE)
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
    ret = _bpf(Cmd.LINK_CREATE, attr)
    if ret < 0:
        raise _fail(-ret, Cmd.LINK_CREATE)
    return Fd(ret)


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH: detach now, though the fd stays open (then close it).
    A link already detached (its device gone) is not an error."""
    attr = _LinkDetachAttr()
    attr.link_fd = link_fd
    ret = _bpf(Cmd.LINK_DETACH, attr)
    if ret < 0 and -ret not in (errno.ENOLINK, errno.ENOENT):
        raise _fail(-ret, Cmd.LINK_DETACH)


def link_info(link_fd: int) -> dict:
    """The link's id, type (LinkType), prog_id, and for XDP and tcx links the
    ifindex (0 once the device is gone) and, for tcx, the attach_type. For
    PERF_EVENT links, "perf_event_type" (PerfEventType) and for a tracepoint
    its "tp_name", for a perf event (EVENT) its "config" and "event_type"
    (the event's attr.type as the kernel keeps it: Linux 6.18 reports a
    cpu-clock event under its cpu_clock PMU's dynamic type, not
    PERF_TYPE_SOFTWARE)."""
    info = _LinkInfo()
    _get_info(link_fd, info)
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
            _get_info(link_fd, again)
        except BpfError:
            return
        out["tp_name"] = name.value.decode(errors="replace")


def link_ids() -> Iterator[int]:
    """The ids of every BPF link in the kernel."""
    return _next_ids(Cmd.LINK_GET_NEXT_ID)


def link_get_fd_by_id(link_id: int) -> Fd:
    return _fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id)


# ---------------------------------------------------------------------------
# Layouts, for checking against the kernel's headers (pahole, bpf.h)

_STRUCTS = {
    "bpf_attr.map_create": _MapCreateAttr, "bpf_attr.map_elem": _MapElemAttr,
    "bpf_attr.batch": _MapBatchAttr, "bpf_attr.prog_load": _ProgLoadAttr,
    "bpf_attr.obj": _ObjAttr, "bpf_attr.test": _TestRunAttr, "bpf_attr.get_id": _GetIdAttr,
    "bpf_attr.info": _InfoAttr, "bpf_attr.btf_load": _BtfLoadAttr,
    "bpf_attr.enable_stats": _EnableStatsAttr, "bpf_attr.link_create": _LinkCreateAttr,
    "bpf_attr.link_create.perf_event": _LinkCreatePerfAttr,
    "bpf_attr.link_detach": _LinkDetachAttr, "bpf_prog_info": _ProgInfo,
    "bpf_map_info": _MapInfo, "bpf_link_info": _LinkInfo,
}


def struct_layouts() -> dict[str, dict[str, tuple[int, int]]]:
    """Every structure this module passes to bpf(2), by name ("bpf_attr.prog_load",
    "bpf_prog_info", …): {field: (byte offset, size)}, and "sizeof": (0, size)."""
    out = {}
    for name, struct in _STRUCTS.items():
        fields = {f: (getattr(struct, f).offset, getattr(struct, f).size)
                  for f, *_ in struct._fields_}
        fields["sizeof"] = (0, ctypes.sizeof(struct))
        out[name] = fields
    return out
