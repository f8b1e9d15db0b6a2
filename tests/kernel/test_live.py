"""Issue 4 end to end: programs running under `luabpf run`, seen and steered from outside.

Real UDP traffic through a veth pair (the `veth` fixture) into a filter that
`luabpf run --json` attached in namespace b:
- examples/rate_limit.lua holds a flood from one source while another source
  passes; the drops are visible through the Python API (`luabpf.open_running`)
  and in `luabpf run --json`'s stats;
- examples/udp_threshold.lua follows `luabpf set` from the very next datagram,
  and its print event arrives;
- `luabpf ls` lists the run, and nothing stays pinned after it.
"""
from __future__ import annotations

import ipaddress
import json
import os
import queue
import socket
import subprocess
import threading
import time

import pytest

import luabpf
from luabpf.runtime import pins

from cli_runner import LUABPF_COMMAND, ROOT, run_luabpf, stop_run

pytestmark = pytest.mark.kernel

PORT = 9999


class Run:
    """`luabpf run FILE --xdp DEV --json` in the background; its JSON lines in a queue."""

    def __init__(self, example: str, end, name: str):
        self.name = name
        self.proc = subprocess.Popen(
            [*LUABPF_COMMAND, "run", os.path.join(ROOT, "examples", example),
             "--xdp", end.dev, "--netns", end.netns, "--json", "--name", name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next(lambda e: True, timeout=20)
        assert first is not None and first["event"] == "attached", self.stop()
        self.attached = first

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, want, timeout: float = 10.0) -> dict | None:
        """The next JSON line for which want(line) holds, within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if want(event):
                return event
        return None

    def stop(self) -> str:
        return stop_run(self.proc)


def receiver(end, stop: threading.Event, counts: dict, ready: threading.Event) -> None:
    """Count the UDP datagrams arriving on PORT in this namespace, by source address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((end.addr, PORT))
    sock.settimeout(0.05)
    ready.set()
    with sock:
        while not stop.is_set():
            try:
                _, (src, _port) = sock.recvfrom(65535)
            except socket.timeout:
                continue
            counts[src] = counts.get(src, 0) + 1


def send(src: str, dst: str, n: int, size: int = 32, gap: float = 0.0) -> int:
    """Send n datagrams of `size` bytes from src to dst:PORT; how many were sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src, 0))
        for _ in range(n):
            try:
                sock.sendto(b"x" * size, (dst, PORT))
                sent += 1
            except BlockingIOError:
                pass
            if gap:
                time.sleep(gap)
    return sent


class Traffic:
    """A receiver in namespace b and senders in namespace a, for one test."""

    def __init__(self, net):
        self.net = net
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()
        ready = threading.Event()
        self.thread = net.b.start(receiver, net.b, self.stop, self.counts, ready)
        assert ready.wait(10)

    def settle(self) -> dict[str, int]:
        time.sleep(0.3)
        return dict(self.counts)

    def close(self) -> None:
        self.stop.set()
        self.thread.result(10)


def second_source(net) -> str:
    """Another address on a's device, routed back from b (so b does not discard it)."""
    extra = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(net.b.addr)) + 100))
    net.a.run(["ip", "addr", "add", f"{extra}/32", "dev", net.a.dev], check=True)
    net.b.run(["ip", "route", "add", f"{extra}/32", "dev", net.b.dev], check=True)
    return extra


def ip_key(addr: str) -> int:
    """An IPv4 address as the filter sees hdr.ip.src: a host-order integer."""
    return int(ipaddress.IPv4Address(addr))


def test_rate_limiter_holds_a_flood_while_another_source_passes(veth):
    flooder, polite = veth.a.addr, second_source(veth)
    name = f"rl-{veth.token}"
    traffic = Traffic(veth)
    run = Run("rate_limit.lua", veth.b, name)
    try:
        assert run_luabpf("set", name, "RATE=40").returncode == 0
        polite_sender = veth.a.start(send, polite, veth.b.addr, 30, gap=0.01)
        flood_sent = veth.a.call(send, flooder, veth.b.addr, 3000)
        polite_sent = polite_sender.result(30)
        got = traffic.settle()
        # the flood spans at most a few one-second windows of 40 packets each
        assert 0 < got.get(flooder, 0) <= 40 * 3, got
        assert got.get(polite, 0) == polite_sent == 30, got
        with luabpf.open_running(name) as running:
            assert running.globals["RATE"] == 40
            dropped = dict(running.maps["dropped"])
            assert dropped.get(ip_key(flooder), 0) >= flood_sent - got[flooder] - 300, dropped
            assert ip_key(polite) not in dropped
            assert running.maps["count"][ip_key(polite)] >= 1
            assert running.describe_errors() == []
        stats = run.next(lambda e: e["event"] == "stats"
                         and any(k == ip_key(flooder) for k, _ in e["maps"]["dropped"]), timeout=5)
        assert stats is not None, "no stats line showed the flooder's drops"
        assert stats["globals"] == {"RATE": 40}
        assert stats["verdicts"].get("XDP_DROP", 0) > 0 and stats["verdicts"].get("XDP_PASS", 0) > 0
    finally:
        errs = run.stop()
        traffic.close()
    assert "Traceback" not in errs
    assert not os.path.exists(os.path.join(pins.root(), name))


def test_set_changes_a_running_filters_threshold_for_the_next_packets(veth):
    name = f"thr-{veth.token}"
    traffic = Traffic(veth)
    run = Run("udp_threshold.lua", veth.b, name)
    src, dst = veth.a.addr, veth.b.addr
    try:
        assert veth.a.call(send, src, dst, 5, size=500, gap=0.01) == 5
        assert traffic.settle().get(src, 0) == 5
        first = run.next(lambda e: e["event"] == "print")
        assert first is not None and first["values"][1] == 1000

        listed = run_luabpf("ls", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(l) for l in listed.stdout.splitlines()]
        mine = [r for r in rows if r["name"] == name]
        assert mine and mine[0]["alive"] and mine[0]["globals"] == {"MAX_LEN": 1000}

        changed = run_luabpf("set", name, "MAX_LEN=100")
        assert changed.returncode == 0, changed.stderr
        assert "MAX_LEN = 100 (was 1000)" in changed.stdout
        veth.a.call(send, src, dst, 5, size=500, gap=0.01)
        assert traffic.settle().get(src, 0) == 5           # none of the 500-byte ones passed
        veth.a.call(send, src, dst, 5, size=50, gap=0.01)
        assert traffic.settle().get(src, 0) == 10          # the short ones do
        second = run.next(lambda e: e["event"] == "print")
        assert second is not None and second["values"][1] == 100
        assert second["text"] == "udp_threshold: now dropping UDP payloads over\t100\tbytes"
        assert second["line"] == 11
    finally:
        errs = run.stop()
        traffic.close()
    assert "Traceback" not in errs


def test_set_refuses_unknown_targets_globals_and_wrong_types(veth):
    name = f"bad-{veth.token}"
    run = Run("udp_threshold.lua", veth.b, name)
    try:
        cases = [
            (("set", f"nothing-{veth.token}", "X=1"), 1, "no running luabpf program"),
            (("set", name, "LIMIT=1"), 1, "has no global 'LIMIT' (its globals: MAX_LEN)"),
            (("set", name, "MAX_LEN=true"), 1, "global 'MAX_LEN' holds integers; true is not one"),
            (("set", name, "MAX_LEN=nil"), 2, "cannot be set to nil"),
            (("set", name, "MAX_LEN"), 2, "write NAME=VALUE"),
            (("set", name, "MAX_LEN=ten"), 2, "is not an integer"),
        ]
        for argv, code, words in cases:
            r = run_luabpf(*argv)
            assert r.returncode == code, (argv, r.stderr)
            assert words in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
        with luabpf.open_running(name) as running:
            assert running.globals["MAX_LEN"] == 1000          # nothing was half-applied
    finally:
        run.stop()


def test_without_permission_to_the_pins_one_sentence_and_exit_1(veth):
    """A process that may not read a run's pins (here: no capabilities, and the run's
    directory owned by another user, as a non-root user finds root's) gets one sentence."""
    import shutil
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop capabilities")
    name = f"priv-{veth.token}"
    run = Run("udp_threshold.lua", veth.b, name)
    path = os.path.join(pins.root(), name)
    try:
        os.chown(path, 65534, 65534)
        for argv in (("ls",), ("set", name, "MAX_LEN=5")):
            r = run_luabpf(*argv, capabilities="")
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            assert r.returncode == 1, (argv, r.stdout, r.stderr)
            assert len(lines) == 1 and "permission denied" in lines[0], (argv, r.stderr)
        with luabpf.open_running(name) as running:
            assert running.globals["MAX_LEN"] == 1000
    finally:
        os.chown(path, 0, 0)
        run.stop()
    assert not os.path.exists(path)


def test_protocol_counter_sums_per_cpu_counts():
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether
    with open(os.path.join(ROOT, "examples", "proto_count.lua")) as f:
        prog = luabpf.compile(f.read(), "proto_count.lua", hook="xdp")
    frames = {6: Ether() / IP() / TCP(), 17: Ether() / IP() / UDP(), 1: Ether() / IP() / ICMP(),
              58: Ether() / IPv6(nh=58) / b"\x80\0\0\0", 256: Ether() / ARP()}
    with prog.load() as p:
        for proto, frame in frames.items():
            for _ in range(proto % 7 + 1):
                assert p.run(bytes(frame)).name.endswith("PASS")
        counts = p.maps["packets"]
        for proto in frames:
            assert counts[proto] == proto % 7 + 1, proto
            assert len(counts.per_cpu(proto)) == luabpf.runtime.kernel.possible_cpus()
        assert counts[2] == 0                                   # an array: present, zero
        busiest = counts.busiest(2)
        assert [k for k, _ in busiest] == sorted(frames, key=lambda k: (-(k % 7 + 1), k))[:2]
        assert p.describe_errors() == []


def test_a_name_already_running_is_refused(veth):
    name = f"dup-{veth.token}"
    run = Run("udp_threshold.lua", veth.b, name)
    try:
        r = run_luabpf("run", os.path.join(ROOT, "examples", "udp_threshold.lua"),
                       "--xdp", veth.a.dev, "--netns", veth.a.netns, "--name", name,
                       "--duration", "0.2")
        assert r.returncode == 1
        assert f"{name} is already running (pid {run.attached['pid']})" in r.stderr
        assert "Traceback" not in r.stderr
        assert "prog/xdp" not in veth.a.run(["ip", "link", "show", veth.a.dev]).stdout
        bad = run_luabpf("run", os.path.join(ROOT, "examples", "udp_threshold.lua"),
                         "--xdp", veth.a.dev, "--netns", veth.a.netns, "--name", "no/slashes")
        assert bad.returncode == 2 and "--name" in bad.stderr
    finally:
        run.stop()


@pytest.mark.parametrize("hook,passed,dropped", [("xdp", "XDP_PASS", "XDP_DROP"),
                                                  ("tc", "TC_ACT_OK", "TC_ACT_SHOT")])
def test_verdicts_are_counted_when_asked_and_runtime_errors_count_as_the_default(hook, passed,
                                                                                  dropped):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    source = ("function filter(hdr, pld)\n"
              "  if hdr.udp == nil then return true end\n"
              "  if #pld == 3 then error('three') end\n"
              "  return #pld < 10\n"
              "end\n")
    sizes = [1, 20, 3, 3, 5, 40, 60]
    with luabpf.compile(source, "v.lua", hook=hook, count_verdicts=True).load() as p:
        for n in sizes:
            p.run(bytes(Ether() / IP() / UDP() / (b"x" * n)))
        p.run(bytes(Ether() / IP() / b"not udp"))
        assert p.verdict_counts() == {passed: 5, dropped: 3}       # 1, 5, the two errors, not-udp
        assert p.describe_errors() == ["v.lua:3: three (2 times)"]
    with luabpf.compile(source, "v.lua", hook=hook).load() as p:
        p.run(bytes(Ether() / IP() / UDP() / b"x"))
        assert p.verdict_counts() == {}


def test_a_tracepoint_script_runs_with_no_flag_and_a_sigkill_detaches_it(tmp_path):
    from luabpf.runtime.attach import link as bpflink
    proc = subprocess.Popen(
        [*LUABPF_COMMAND, "run", os.path.join(ROOT, "examples", "idle_count.lua"),
         "--json", "--name", f"tp-{os.getpid()}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        attached = json.loads(proc.stdout.readline())
        assert attached["event"] == "attached" and attached["hook"] == "tracepoint"
        [link] = attached["links"]
        assert link["event"] == "sched:sched_switch" and link["mode"] == "link"
        assert all(bpflink.link_exists(i) for i in link["link_ids"])
        stats = json.loads(proc.stdout.readline())
        while stats["event"] != "stats":
            stats = json.loads(proc.stdout.readline())
        assert stats["run_cnt"] > 0 and stats["maps"]["switches"]
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert bpflink.links_gone(link["link_ids"])
    listed = [json.loads(l) for l in run_luabpf("ls", "--json").stdout.splitlines()]
    mine = [r for r in listed if r["name"] == f"tp-{os.getpid()}"]
    assert [r["alive"] for r in mine] == [False]
    pins.clean_stale(f"tp-{os.getpid()}")
    assert not os.path.exists(os.path.join(pins.root(), f"tp-{os.getpid()}"))
