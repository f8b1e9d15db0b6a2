"""Perf events and tracepoints (runtime/attach/perf.py, runtime/tracefs.py)
against the running kernel: tracepoint formats parsed from this machine's
tracefs, a hand-written PERF_EVENT program on a 10 ms timer on every CPU,
a hand-written TRACEPOINT program on sched:sched_switch, and what is left
once they are detached or their process is gone. (Parsing fixed text and the structs'
layouts: tests/unit/test_perf_offline.py.)"""
from __future__ import annotations

import glob
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from luabpf.compiler.bpf import asm, encode
from luabpf.compiler.bpf.uapi import LinkType, MapType, PerfEventType, ProgType
from luabpf.runtime import kernel, tracefs
from luabpf.runtime.attach import AttachError
from luabpf.runtime.attach import link as bpflink
from luabpf.runtime.attach import perf
from luabpf.runtime.attach.attachment import LIVE

pytestmark = pytest.mark.kernel

EVENTS = "/sys/kernel/tracing/events"

# ---- formats of this machine (fixed text: tests/unit/test_perf_offline.py) ----------------

def test_sched_switch_format_of_this_machine():
    fmt = tracefs.event_format("sched", "sched_switch")
    with open(f"{EVENTS}/sched/sched_switch/id") as f:
        assert fmt.id == int(f.read())
    assert fmt.category == "sched" and fmt.qualified == "sched:sched_switch"
    common = fmt.common_fields
    assert [c.name for c in common][0] == "common_type" and common[0].offset == 0
    assert all(c.name.startswith("common_") for c in common)
    assert all(not f.name.startswith("common_") for f in fmt.event_fields)
    header = max(c.offset + c.size for c in common)
    prev, nxt = fmt.field("prev_pid"), fmt.field("next_pid")
    for f in (prev, nxt):
        assert (f.size, f.signed, f.type, f.is_array, f.dynamic, f.common) == \
            (4, True, "pid_t", False, False, False)
        assert f.offset >= header and f.offset % 4 == 0
        assert f"REC->{f.name}" in fmt.print_fmt
    assert nxt.offset > prev.offset
    comm = fmt.field("next_comm")
    assert comm.is_array and comm.type == "char" and comm.array_len == comm.size >= 16
    assert comm.offset < nxt.offset
    spans = sorted((f.offset, f.offset + f.size) for f in fmt.fields)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans


def test_a_data_loc_field_of_this_machine():
    fmt = tracefs.event_format("sched", "sched_process_exec")
    fn = fmt.field("filename")
    assert (fn.data_loc, fn.dynamic, fn.size, fn.type, fn.is_array, fn.array_len) == \
        (True, True, 4, "char", True, None)
    assert "__get_str(filename)" in fmt.print_fmt
    assert not fmt.field("pid").dynamic


def test_every_format_file_of_this_machine_parses():
    paths = glob.glob(f"{EVENTS}/*/*/format")
    assert len(paths) > 100
    dynamic = 0
    for path in paths:
        with open(path) as f:
            fmt = tracefs.parse_format(f.read(), path.split("/")[-3])
        assert fmt.name == path.split("/")[-2]
        assert fmt.common_fields and all(c.name.startswith("common_") for c in fmt.common_fields)
        for fld in fmt.fields:
            assert fld.decl.endswith(fld.name) or fld.decl.endswith("]")
            if fld.array_len:
                assert fld.size % fld.array_len == 0, (path, fld)
            if fld.dynamic:
                assert fld.size == 4, (path, fld)
                dynamic += 1
    assert dynamic > 10


def test_unknown_tracepoints_are_named_with_close_names():
    with pytest.raises(tracefs.TracefsError,
                       match=r"no tracepoint sched:sched_swich \(did you mean 'sched_switch'"):
        tracefs.event_format("sched", "sched_swich")
    with pytest.raises(tracefs.TracefsError, match=r"no tracepoint category 'shed' .*'sched'"):
        tracefs.event_format("shed", "sched_switch")
    with pytest.raises(tracefs.TracefsError, match=r"it is in 'sched:sched_switch'"):
        tracefs.event_format("irq", "sched_switch")
    with pytest.raises(tracefs.TracefsError, match="not a tracepoint event name"):
        tracefs.event_format("sched", "../sched/sched_switch")
    assert ("sched", "sched_switch") in tracefs.events("sched")
    assert all(c == "sched" for c, _ in tracefs.events("sched"))
    assert "sched" in tracefs.categories()
    assert len(tracefs.events()) > len(tracefs.events("sched"))
    with pytest.raises(tracefs.TracefsError, match="category 'nope'"):
        tracefs.events("nope")


# ---- programs -----------------------------------------------------------------------

# struct bpf_perf_event_data {bpf_user_pt_regs_t regs; __u64 sample_period; __u64 addr;}
PT_REGS_SIZE = {"x86_64": 21 * 8, "aarch64": 34 * 8}

# value: {u64 runs, u64 sample_period seen}
TIMER_PROG = """
    r7 = *(u64 *)(r1 +{period_off})
    *(u32 *)(r10 -4) = 0
    r2 = r10
    r2 += -4
    r1 = map[fd:{counts}] ll
    call bpf_map_lookup_elem
    if r0 == 0 goto Lout
    r1 = *(u64 *)(r0 +0)
    r1 += 1
    *(u64 *)(r0 +0) = r1
    *(u64 *)(r0 +8) = r7
Lout:
    r0 = 0
    exit
"""

# value: {u64 events, u64 last next_pid, u64 events whose prev_pid is the current
# thread, u64 events whose next_pid is the current thread}; `seen`: next_pid -> 1
SWITCH_PROG = """
    r6 = r1
    call bpf_get_current_pid_tgid
    w8 = w0                     ; the current thread's id
    r7 = *(u32 *)(r6 +{next_pid})
    r9 = *(u32 *)(r6 +{prev_pid})
    *(u32 *)(r10 -4) = r7
    *(u64 *)(r10 -16) = 1
    r1 = map[fd:{seen}] ll
    r2 = r10
    r2 += -4
    r3 = r10
    r3 += -16
    r4 = 0
    call bpf_map_update_elem
    *(u32 *)(r10 -4) = 0
    r2 = r10
    r2 += -4
    r1 = map[fd:{counts}] ll
    call bpf_map_lookup_elem
    if r0 == 0 goto Lout
    r1 = *(u64 *)(r0 +0)
    r1 += 1
    *(u64 *)(r0 +0) = r1
    *(u64 *)(r0 +8) = r7
    if r9 != r8 goto Lnext
    r1 = *(u64 *)(r0 +16)
    r1 += 1
    *(u64 *)(r0 +16) = r1
Lnext:
    if r7 != r8 goto Lout
    r1 = *(u64 *)(r0 +24)
    r1 += 1
    *(u64 *)(r0 +24) = r1
Lout:
    r0 = 0
    exit
"""


class PerCpu:
    """A one-slot per-CPU array of `n` u64s."""

    def __init__(self, n: int):
        self.size = 8 * n
        self.fd = kernel.map_create(MapType.PERCPU_ARRAY, 4, self.size, 1, name="perf_test")

    def read(self) -> list[tuple[int, ...]]:
        """One tuple per possible CPU, indexed by CPU number."""
        raw = kernel.map_lookup(self.fd, bytes(4), kernel.percpu_value_size(self.size))
        return [struct.unpack(f"<{self.size // 8}Q", v)
                for v in kernel.split_percpu(raw, self.size)]


@pytest.fixture
def timer_prog():
    machine = platform.machine()
    if machine not in PT_REGS_SIZE:
        pytest.skip(f"sizeof(pt_regs) on {machine} is not known to this test")
    counts = PerCpu(2)
    text = TIMER_PROG.format(period_off=PT_REGS_SIZE[machine], counts=int(counts.fd))
    try:
        with kernel.load_with_log(ProgType.PERF_EVENT, encode.encode(asm.assemble(text)),
                                  name="perf_timer") as fd:
            yield fd, counts
    finally:
        counts.fd.close()


@pytest.fixture
def switch_prog():
    fmt = tracefs.event_format("sched", "sched_switch")
    counts = PerCpu(4)
    seen = kernel.map_create(MapType.HASH, 4, 8, 16384, name="perf_seen")
    text = SWITCH_PROG.format(next_pid=fmt.field("next_pid").offset,
                              prev_pid=fmt.field("prev_pid").offset,
                              counts=int(counts.fd), seen=int(seen))
    try:
        with kernel.load_with_log(ProgType.TRACEPOINT, encode.encode(asm.assemble(text)),
                                  name="perf_switch") as fd:
            yield fd, counts, seen
    finally:
        counts.fd.close()
        seen.close()


def assert_detached(pl: perf.PerfLink) -> None:
    assert not pl.attached and pl not in LIVE
    assert all(fd.closed for fd in pl.perf_fds + pl.link_fds)
    for link_id in pl.link_ids:
        assert not bpflink.link_exists(link_id)
    assert not bpflink.links_of_prog(pl.prog_id)


class Busy:
    """A process spinning on each of `cpus` while the block runs. On this VM
    an idle vCPU's cpu-clock timer fires erratically (4 of 50 expected hits
    in 0.5 s, sometimes none: the host does not run an idle vCPU on time),
    so the timer tests keep the CPUs busy."""

    SPIN = "import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\n" \
           "print(flush=True)\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"

    def __init__(self, cpus: list[int]):
        self.cpus = cpus

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", self.SPIN, str(cpu)],
                                       stdout=subprocess.PIPE, text=True) for cpu in self.cpus]
        for proc in self.procs:
            proc.stdout.readline()              # pinned and spinning
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
            proc.stdout.close()


def switch_on_every_cpu(cpus: list[int], seconds: float = 0.3) -> list[int]:
    """Context switches on each CPU: a thread pinned there sleeps 1 ms at a
    time. The threads' ids."""
    tids: list[int] = []

    def run(cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})
        tids.append(threading.get_native_id())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.001)

    threads = [threading.Thread(target=run, args=(cpu,)) for cpu in cpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tids


# ---- timer --------------------------------------------------------------------------

@pytest.mark.parametrize("use_link, mode", [(None, "link"), (False, "ioctl")])
def test_timer_runs_every_10ms_on_every_cpu(timer_prog, use_link, mode):
    prog, counts = timer_prog
    online = perf.online_cpus()
    with Busy(online), perf.attach_timer(prog, 10, use_link=use_link) as pl:
        assert pl in LIVE
        time.sleep(0.5)
        during = counts.read()
        assert (pl.kind, pl.mode, pl.cpus, pl.interval_ms) == ("timer", mode, online, 10)
        info = json.loads(json.dumps(pl.info()))
        assert info == {"kind": "timer", "mode": mode, "cpus": online, "interval_ms": 10,
                        "prog_id": kernel.prog_info(prog)["id"], "link_ids": pl.link_ids,
                        "attached": True}
        if mode == "link":
            assert len(pl.link_ids) == len(online)
            assert all(bpflink.link_exists(i) for i in pl.link_ids)
            assert pl.describe() == (f"timer every 10 ms on {len(online)} CPU"
                                     f"{'s' if len(online) > 1 else ''} (BPF link"
                                     f"{'s' if len(online) > 1 else ''} "
                                     f"{', '.join(map(str, pl.link_ids))})")
            for fd in pl.link_fds:
                li = kernel.link_info(fd)
                assert (li["type"], li["perf_event_type"], li["config"]) == \
                    (LinkType.PERF_EVENT, PerfEventType.EVENT,
                     perf.PERF_COUNT_SW_CPU_CLOCK)
                # Linux 6.18 hands cpu-clock events to a PMU of their own and
                # rewrites attr.type to its dynamic type (>= PERF_TYPE_MAX, 6)
                assert li["event_type"] == perf.PERF_TYPE_SOFTWARE or li["event_type"] >= 6
        else:
            assert pl.link_ids == [] and not bpflink.links_of_prog(pl.prog_id)
            assert pl.describe().endswith("(perf event ioctl)")
    assert_detached(pl)
    for cpu in online:
        runs, period = during[cpu]
        assert 10 <= runs <= 200, f"CPU {cpu} ran the program {runs} times in 0.5 s"
        assert period == 10_000_000, f"CPU {cpu}: sample_period {period}"
    after = counts.read()
    time.sleep(0.1)
    assert counts.read() == after, "the program still runs after detach()"
    pl.detach()                         # again: nothing happens
    assert not pl.attached


def test_timer_on_chosen_cpus_only(timer_prog):
    prog, counts = timer_prog
    online = perf.online_cpus()
    if len(online) < 2:
        pytest.skip("needs two online CPUs")
    with Busy(online), perf.attach_timer(prog, 5, cpus=[online[-1]]) as pl:
        time.sleep(0.3)
    assert pl.cpus == [online[-1]] and len(pl.link_ids) == 1
    values = counts.read()
    assert values[online[-1]][0] > 0
    assert all(values[cpu][0] == 0 for cpu in online[:-1])
    assert values[online[-1]][1] == 5_000_000
    assert_detached(pl)


def test_timer_errors(timer_prog, switch_prog):
    prog, _ = timer_prog
    tp_prog = switch_prog[0]
    with pytest.raises(AttachError, match="CPU 4096 is not online"):
        perf.attach_timer(prog, 10, cpus=[4096])
    with pytest.raises(AttachError, match=r"a timer runs BPF_PROG_TYPE_PERF_EVENT programs, "
                                          r"and program \d+ is BPF_PROG_TYPE_TRACEPOINT"):
        perf.attach_timer(tp_prog, 10)
    with pytest.raises(ValueError, match="positive"):
        perf.attach_timer(prog, 0)
    assert not bpflink.links_of_prog(kernel.prog_info(prog)["id"])


# ---- tracepoint ---------------------------------------------------------------------

@pytest.mark.parametrize("use_link, mode", [(None, "link"), (False, "ioctl")])
def test_sched_switch_program_sees_every_cpu(switch_prog, use_link, mode):
    prog, counts, seen = switch_prog
    online = perf.online_cpus()
    event_id = tracefs.event_format("sched", "sched_switch").id
    with perf.attach_tracepoint(prog, "sched", "sched_switch", use_link=use_link) as pl:
        tids = switch_on_every_cpu(online)
        assert (pl.kind, pl.mode, pl.event, pl.event_id) == \
            ("tracepoint", mode, "sched:sched_switch", event_id)
        info = json.loads(json.dumps(pl.info()))
        assert info == {"kind": "tracepoint", "mode": mode, "cpus": online,
                        "event": "sched:sched_switch", "event_id": event_id,
                        "prog_id": kernel.prog_info(prog)["id"], "link_ids": pl.link_ids,
                        "attached": True}
        if mode == "link":
            assert len(pl.link_ids) == 1 and bpflink.link_exists(pl.link_ids[0])
            assert pl.describe() == \
                f"tracepoint sched:sched_switch on all CPUs (BPF link {pl.link_ids[0]})"
            li = kernel.link_info(pl.link_fds[0])
            assert (li["perf_event_type"], li["tp_name"]) == \
                (PerfEventType.TRACEPOINT, "sched_switch")
        else:
            assert pl.link_ids == [] and not bpflink.links_of_prog(pl.prog_id)
    assert_detached(pl)
    values = counts.read()
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    for cpu in online:
        events, last_next, prev_is_current, next_is_current = values[cpu]
        assert events > 0, f"no sched_switch seen on CPU {cpu}"
        assert 0 <= last_next < pid_max
        # the tracepoint fires in the thread being switched out: prev_pid is the
        # current thread (the offsets from the format file are right), next_pid is not
        assert prev_is_current == events and next_is_current == 0, values[cpu]
    next_pids = {struct.unpack("<I", k)[0] for k in kernel.map_keys(seen, 4)}
    assert set(tids) <= next_pids, "the sleeping threads were never switched to"
    assert all(0 <= p < pid_max for p in next_pids)
    time.sleep(0.05)
    settled = counts.read()
    switch_on_every_cpu(online, 0.1)
    assert counts.read() == settled, "the program still runs after detach()"


def test_a_program_goes_on_a_tracepoint_once(switch_prog):
    prog = switch_prog[0]
    with perf.attach_tracepoint(prog, "sched", "sched_switch") as pl:
        with pytest.raises(AttachError, match="already attached to tracepoint sched:sched_switch"):
            perf.attach_tracepoint(prog, "sched", "sched_switch")
        assert len(bpflink.links_of_prog(pl.prog_id)) == 1
    assert_detached(pl)


def test_tracepoint_errors(switch_prog, timer_prog):
    prog = switch_prog[0]
    with pytest.raises(AttachError, match=r"there is no tracepoint sched:sched_swtich "
                                          r"\(did you mean 'sched_switch'"):
        perf.attach_tracepoint(prog, "sched", "sched_swtich")
    with pytest.raises(AttachError, match="no tracepoint category 'schedd'"):
        perf.attach_tracepoint(prog, "schedd", "sched_switch")
    with pytest.raises(AttachError, match=r"tracepoint sched:sched_switch runs "
                                          r"BPF_PROG_TYPE_TRACEPOINT programs, and program \d+ "
                                          r"is BPF_PROG_TYPE_PERF_EVENT"):
        perf.attach_tracepoint(timer_prog[0], "sched", "sched_switch")
    assert not bpflink.links_of_prog(kernel.prog_info(prog)["id"])


# ---- lifetime and privileges ----------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    from luabpf.compiler.bpf import asm, encode
    from luabpf.compiler.bpf.uapi import ProgType
    from luabpf.runtime import kernel
    from luabpf.runtime.attach import perf
    nop = encode.encode(asm.assemble("r0 = 0\\nexit"))
    timer = kernel.load_with_log(ProgType.PERF_EVENT, nop)
    tp = kernel.load_with_log(ProgType.TRACEPOINT, nop)
    if sys.argv[1] == "unprivileged":
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        try:
            perf.attach_timer(timer, 10)
        except Exception as e:
            print(json.dumps({"error": type(e).__name__, "message": str(e)}), flush=True)
        sys.exit(0)
    links = [perf.attach_timer(timer, 10), perf.attach_tracepoint(tp, "sched", "sched_switch")]
    ids = [i for l in links for i in l.link_ids]
    print(json.dumps({"link_ids": ids, "prog_ids": [l.prog_id for l in links]}), flush=True)
    if sys.argv[1] == "exit":
        sys.stdin.readline()
        sys.exit(0)
    time.sleep(60)
""")


def run_child(how: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, how], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the child did not attach: {proc.communicate(timeout=10)[1]}")
    return proc, json.loads(line)


@pytest.mark.parametrize("how", ["exit", "SIGKILL"])
def test_nothing_stays_attached_when_the_process_is_gone(how):
    proc, got = run_child(how)
    try:
        assert len(got["link_ids"]) == len(perf.online_cpus()) + 1
        assert all(bpflink.link_exists(i) for i in got["link_ids"])
        if how == "SIGKILL":
            proc.send_signal(signal.SIGKILL)
        else:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, errs = proc.communicate(timeout=10)
    assert "Traceback" not in errs
    assert bpflink.links_gone(got["link_ids"])     # released as the process's fds close
    live = set(kernel.prog_ids())
    assert not any(p in live for p in got["prog_ids"])


def test_an_unprivileged_timer_is_refused_in_one_sentence():
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        if int(f.read()) < 1:
            pytest.skip("kernel.perf_event_paranoid lets anyone open CPU-wide events")
    proc, got = run_child("unprivileged")
    proc.communicate(timeout=10)
    assert got["error"] == "AttachError"
    assert "needs CAP_PERFMON; this process lacks CAP_PERFMON" in got["message"]
    assert "perf_event_paranoid" in got["message"] and "\n" not in got["message"]
