"""The bpf(2) boundary (runtime/kernel.py, runtime/features.py) against the
running kernel, with programs hand-encoded here so that nothing in compiler/
is needed to trust the loader. (The attr structs' layouts:
tests/unit/test_kernel_boundary_offline.py.)"""
from __future__ import annotations

import errno
import os
import platform
import struct
import subprocess
import sys

import pytest

from luabpf.compiler.bpf.uapi import (BPF_EXIST, BPF_F_SLEEPABLE, BPF_NOEXIST, XDP_DROP, XDP_PASS,
                                      MapType, ProgType)
from luabpf.runtime import features, kernel
from luabpf.runtime.kernel import BpfError

pytestmark = pytest.mark.kernel



def insn(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov(dst, imm):                      # ALU64|MOV|K
    return insn(0xB7, dst, imm=imm)


def ld_map_fd(dst, fd):                 # ld_imm64 with src = BPF_PSEUDO_MAP_FD
    return insn(0x18, dst, 1, imm=fd) + insn(0)


EXIT = insn(0x95)

# if the packet's first byte is 0: XDP_DROP, else XDP_PASS
XDP_FIRST_BYTE = b"".join([
    insn(0x61, 2, 1, 0),                # r2 = ctx->data
    insn(0x61, 3, 1, 4),                # r3 = ctx->data_end
    insn(0xBF, 4, 2),                   # r4 = r2
    insn(0x07, 4, imm=1),               # r4 += 1
    insn(0x2D, 4, 3, off=4),            # if r4 > r3 goto drop
    insn(0x71, 5, 2, 0),                # r5 = *(u8 *)(r2 + 0)
    insn(0x15, 5, off=2, imm=0),        # if r5 == 0 goto drop
    mov(0, XDP_PASS),
    EXIT,
    mov(0, XDP_DROP),                   # drop:
    EXIT,
])

# ctx[8] = ctx[0] + ctx[4] (u32s), for a SYSCALL program
SYSCALL_ADD = b"".join([
    insn(0x61, 2, 1, 0), insn(0x61, 3, 1, 4), insn(0x0F, 2, 3), insn(0x63, 1, 2, 8),
    mov(0, 0), EXIT,
])

UNINIT_R2 = mov(1, 0) + insn(0xBF, 0, 2) + EXIT      # r0 = r2: r2 was never written


def xdp(insns=XDP_FIRST_BYTE, **kw):
    return kernel.prog_load(ProgType.XDP, insns, name="luabpf_test", **kw)


# --- programs and test runs

@pytest.mark.parametrize("first, verdict", [(0, XDP_DROP), (1, XDP_PASS), (0xFF, XDP_PASS)])
def test_xdp_verdict_by_first_byte(first, verdict):
    packet = bytes([first]) + bytes(range(1, 64))
    with xdp() as fd:
        res = kernel.prog_test_run(fd, data_in=packet)
    assert res.retval == verdict
    assert res.data_out == packet


def test_xdp_repeat_measures_duration():
    with xdp() as fd:
        res = kernel.prog_test_run(fd, data_in=b"\x01" * 64, repeat=1000)
    assert res.retval == XDP_PASS
    assert 0 < res.duration_ns < 1_000_000


def test_syscall_program_copies_ctx_back():
    with kernel.prog_load(ProgType.SYSCALL, SYSCALL_ADD, prog_flags=BPF_F_SLEEPABLE) as fd:
        res = kernel.prog_test_run(fd, ctx_in=struct.pack("<III", 40, 2, 99), ctx_inout=True)
        assert struct.unpack("<III", res.ctx_out) == (40, 2, 42)
        assert res.retval == 0
        # the kernel refuses data (and ctx_out, and repeat) for SYSCALL programs
        with pytest.raises(BpfError) as exc:
            kernel.prog_test_run(fd, data_in=bytes(16), ctx_in=bytes(12))
        assert exc.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        kernel.prog_test_run(0, data_in=b"x", ctx_inout=True)


def test_syscall_program_must_be_sleepable():
    with pytest.raises(BpfError) as exc:
        kernel.load_with_log(ProgType.SYSCALL, SYSCALL_ADD)
    assert exc.value.errno == errno.EINVAL
    assert "sleepable" in exc.value.log


def test_program_uses_a_map():
    with kernel.map_create(MapType.ARRAY, 4, 8, 1, name="counter") as m:
        prog = b"".join([
            mov(1, 0), insn(0x63, 10, 1, -4),          # *(u32 *)(r10 - 4) = 0
            ld_map_fd(1, m),                           # r1 = map
            insn(0xBF, 2, 10), insn(0x07, 2, imm=-4),  # r2 = r10 - 4
            insn(0x85, imm=1),                         # call map_lookup_elem
            insn(0x15, 0, off=2, imm=0),               # if r0 == 0 goto out
            mov(1, 1), insn(0xDB, 0, 1, 0, 0),         # lock *(u64 *)(r0 + 0) += r1
            mov(0, XDP_PASS), EXIT,                    # out:
        ])
        with xdp(prog) as fd:
            res = kernel.prog_test_run(fd, data_in=bytes(64), repeat=5)
            assert res.retval == XDP_PASS
            assert kernel.prog_info(fd)["map_ids"] == [kernel.map_info(m)["id"]]
        assert kernel.map_lookup(m, struct.pack("<I", 0), 8) == struct.pack("<Q", 5)


# --- verifier logs

def test_verifier_rejection_carries_log():
    with pytest.raises(BpfError) as exc:
        kernel.load_with_log(ProgType.XDP, UNINIT_R2)
    assert exc.value.errno == errno.EACCES
    assert "R2 !read_ok" in exc.value.log
    assert not isinstance(exc.value, kernel.PermissionProblem)


def test_fast_path_has_no_log():
    with pytest.raises(BpfError) as exc:
        kernel.prog_load(ProgType.XDP, UNINIT_R2)
    assert exc.value.errno == errno.EACCES
    assert exc.value.log == ""


def test_log_grows_when_truncated():
    with pytest.raises(BpfError) as exc:
        kernel.load_with_log(ProgType.XDP, UNINIT_R2, log_size=64)
    assert exc.value.errno == errno.EACCES           # the verifier's errno, not ENOSPC
    assert "R2 !read_ok" in exc.value.log and len(exc.value.log) > 64


def test_load_verbose_returns_statistics():
    fd, log = kernel.load_verbose(ProgType.XDP, XDP_FIRST_BYTE, log_level=4)
    with fd:
        assert "processed" in log


def test_btf_rejection_carries_log():
    bad = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 1) + struct.pack("<III", 0, 99 << 24, 0) + b"\0"
    with pytest.raises(BpfError) as exc:
        kernel.btf_load(bad)
    assert exc.value.errno == errno.EINVAL
    assert exc.value.log


# --- maps

def key32(k):
    return struct.pack("<I", k)


def test_hash_map():
    with kernel.map_create(MapType.HASH, 4, 8, 16, name="h") as m:
        assert kernel.map_lookup(m, key32(1), 8) is None
        assert kernel.map_next_key(m, None, 4) is None
        for k in (1, 2, 3):
            kernel.map_update(m, key32(k), struct.pack("<q", -k))
        assert kernel.map_lookup(m, key32(2), 8) == struct.pack("<q", -2)
        assert sorted(kernel.map_keys(m, 4)) == [key32(1), key32(2), key32(3)]
        with pytest.raises(BpfError) as exc:
            kernel.map_update(m, key32(1), bytes(8), BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST
        with pytest.raises(BpfError) as exc:
            kernel.map_update(m, key32(9), bytes(8), BPF_EXIST)
        assert exc.value.errno == errno.ENOENT
        assert kernel.map_delete(m, key32(2)) is True
        assert kernel.map_delete(m, key32(2)) is False
        assert kernel.map_lookup(m, key32(2), 8) is None
        info = kernel.map_info(m)
        assert (info["type"], info["key_size"], info["value_size"], info["max_entries"],
                info["name"]) == (MapType.HASH, 4, 8, 16, "h")


def test_array_map():
    with kernel.map_create(MapType.ARRAY, 4, 8, 4) as m:
        assert kernel.map_lookup(m, key32(3), 8) == bytes(8)       # arrays start zeroed
        assert kernel.map_lookup(m, key32(4), 8) is None            # out of range
        kernel.map_update(m, key32(3), struct.pack("<Q", 7))
        assert kernel.map_lookup(m, key32(3), 8) == struct.pack("<Q", 7)
        assert list(kernel.map_keys(m, 4)) == [key32(i) for i in range(4)]
        assert kernel.map_next_key(m, key32(3), 4) is None
        with pytest.raises(BpfError) as exc:
            kernel.map_delete(m, key32(0))                          # arrays cannot delete
        assert exc.value.errno == errno.EINVAL


def test_percpu_array_map():
    ncpu = kernel.possible_cpus()
    size = kernel.percpu_value_size(4)
    assert size == 8 * ncpu
    with kernel.map_create(MapType.PERCPU_ARRAY, 4, 4, 2) as m:
        values = b"".join(struct.pack("<I4x", 100 + cpu) for cpu in range(ncpu))
        kernel.map_update(m, key32(1), values)
        raw = kernel.map_lookup(m, key32(1), size)
        assert kernel.split_percpu(raw, 4) == [struct.pack("<I", 100 + c) for c in range(ncpu)]
        assert kernel.split_percpu(kernel.map_lookup(m, key32(0), size), 4) == [bytes(4)] * ncpu


# --- objects

def test_pin_and_get(bpffs_dir):
    with kernel.map_create(MapType.HASH, 4, 4, 4) as m, xdp() as p:
        kernel.obj_pin(m, os.path.join(bpffs_dir, "map"))
        kernel.obj_pin(p, os.path.join(bpffs_dir, "prog"))
        with kernel.obj_get(os.path.join(bpffs_dir, "map")) as m2:
            assert kernel.map_info(m2)["id"] == kernel.map_info(m)["id"]
            kernel.map_update(m2, key32(5), key32(6))
            assert kernel.map_lookup(m, key32(5), 4) == key32(6)
        with kernel.obj_get(os.path.join(bpffs_dir, "prog")) as p2:
            assert kernel.prog_info(p2)["id"] == kernel.prog_info(p)["id"]
    with pytest.raises(BpfError) as exc:
        kernel.obj_get(os.path.join(bpffs_dir, "absent"))
    assert exc.value.errno == errno.ENOENT


def test_prog_info_counts_runs_with_stats():
    with xdp() as fd, kernel.enable_stats():
        kernel.prog_test_run(fd, data_in=b"\x01" * 64, repeat=100)
        info = kernel.prog_info(fd, xlated=True)
        assert info["id"] in set(kernel.prog_ids())
        with kernel.prog_get_fd_by_id(info["id"]) as again:
            assert kernel.prog_info(again)["tag"] == info["tag"]
    assert info["run_cnt"] == 100
    assert info["run_time_ns"] > 0
    assert info["name"] == "luabpf_test"
    assert info["verified_insns"] > 0
    assert len(info["xlated"]) == info["xlated_prog_len"] > 0
    assert info["jited_prog_len"] > 0


def test_fd_closes_once():
    fd = kernel.map_create(MapType.ARRAY, 4, 4, 1)
    assert isinstance(fd, int)
    fd.close()
    fd.close()
    with pytest.raises(OSError):
        os.fstat(int(fd))


def test_unprivileged_user_gets_one_sentence():
    code = ("from luabpf.compiler.bpf.uapi import MapType\n"
            "from luabpf.runtime import kernel\n"
            "try:\n    kernel.map_create(MapType.HASH, 4, 4, 1)\n"
            "except kernel.PermissionProblem as e:\n    print(e)\n")
    try:
        # without any capability (uid 0 keeps read access to a private checkout)
        out = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all",
                              sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("setpriv (util-linux) is not installed")
    assert out.stdout.strip() == ("the bpf(2) command BPF_MAP_CREATE needs CAP_BPF; this process "
                                  "lacks CAP_BPF (this root process had it dropped: give it "
                                  "CAP_BPF)."), out.stderr


# --- features

def _kernel_at_least(major, minor):
    release = platform.release().split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


@pytest.mark.parametrize("probe, since", [
    (features.has_may_goto, (6, 9)), (features.has_bpf_loop, (5, 17)),
    (features.has_sdiv, (6, 6)), (features.has_syscall_prog, (5, 14)),
    (features.has_ringbuf, (5, 8)),
])
def test_feature_probe(probe, since):
    # as in cilium/ebpf: an old kernel may lack a feature (skip), a new one must have it
    if not _kernel_at_least(*since) and not probe():
        pytest.skip(f"kernel {platform.release()} predates {probe.__name__} ({since[0]}.{since[1]})")
    assert probe() is True


def test_filesystems_mounted_idempotently():
    assert features.ensure_bpffs() == features.ensure_bpffs() == "/sys/fs/bpf"
    assert features.ensure_tracefs() == features.ensure_tracefs() == "/sys/kernel/tracing"
    assert features._mounted_fstype("/sys/fs/bpf") == "bpf"
    assert os.path.exists("/sys/kernel/tracing/events")
