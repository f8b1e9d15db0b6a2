"""Issue 11's map CLI and map files, end to end: `luabpf run --map NAME=@FILE` fills a
script's maps before it is attached, `luabpf map TARGET NAME …` reads and changes them
while it runs, and the running filter's decisions follow.

The filter (BLOCKLIST) drops UDP datagrams to the ports in `blocked` (a set-like hash
map, filled from a file), counts what it drops per port in `dropped` (per-CPU), and
drops payloads longer than `limits[0]` when that is not 0 (an array map). Its
decisions are observed two ways: real datagrams through a veth pair, and
BPF_PROG_TEST_RUN of the program `luabpf run` pinned (exact counts). Every run is
stopped, and its pins are gone after it; the `veth` fixture removes its namespaces.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time

import pytest

import luabpf
from luabpf.compiler.bpf.uapi import XDP_DROP, XDP_PASS
from luabpf.runtime import kernel, pins
from luabpf.runtime.mapdata import MapFileError
from luabpf.runtime.packets import udp_frame

from cli_runner import LUABPF_COMMAND, ROOT, json_failure, run_luabpf, stop_run, write_script

pytestmark = pytest.mark.kernel

BLOCKLIST = """
blocked = map.hash(4)
dropped = map.percpu_hash(16)
limits = map.array(4)

function filter(hdr, pld)
  if hdr.udp then
    local port = hdr.udp.dport
    if blocked[port] ~= nil then
      map.add(dropped, port, 1)
      return false
    end
    local most = limits[0]
    if most ~= 0 and #pld > most then
      return false
    end
  end
  return true
end
"""


class Run:
    """`luabpf run SCRIPT --xdp DEV --netns NS --json --name NAME ARGS…` in the background."""

    def __init__(self, script: str, end, name: str, *args: str):
        self.name = name
        self.proc = subprocess.Popen(
            [*LUABPF_COMMAND, "run", script, "--xdp", end.dev, "--netns", end.netns, "--json",
             "--name", name, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self.lines.get(timeout=30)
        except queue.Empty:
            first = None
        assert first is not None and first["event"] == "attached", self.stop()
        self.attached = first
        self._prog = kernel.obj_get(os.path.join(pins.root(), name, "progs", "filter"))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def verdict(self, port: int, size: int = 8) -> int:
        """The pinned program's verdict on a UDP datagram to `port` (BPF_PROG_TEST_RUN)."""
        frame = udp_frame("10.0.0.1", "10.0.0.2", 40000, port, b"x" * size)
        return kernel.prog_test_run(self._prog, data_in=frame).retval

    def map(self, *argv: str) -> subprocess.CompletedProcess:
        return run_luabpf("map", self.name, *argv)

    def stop(self) -> str:
        if getattr(self, "_prog", None) is not None:
            self._prog.close()
            self._prog = None
        errs = stop_run(self.proc)
        assert not os.path.exists(os.path.join(pins.root(), self.name)), "pins left behind"
        return errs


@pytest.fixture
def blocklist(tmp_path):
    return write_script(tmp_path, BLOCKLIST, "blocklist.lua")


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stderr == ""
    return r.stdout


def delivered(net, port: int, n: int = 5, size: int = 16) -> int:
    """How many of n UDP datagrams sent from namespace a reach `port` in namespace b."""
    ready = threading.Event()

    def receive() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((net.b.addr, port))
            sock.settimeout(0.5)
            ready.set()
            got = 0
            while True:
                try:
                    sock.recv(65535)
                except socket.timeout:
                    return got
                got += 1

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(n):
                sock.sendto(b"x" * size, (net.b.addr, port))
                time.sleep(0.005)

    receiver = net.b.start(receive)
    assert ready.wait(10)
    net.a.call(send)
    return receiver.result(15)


def test_a_filled_blocklist_drops_real_traffic_and_follows_map_changes(veth, blocklist, tmp_path):
    ports = write_script(tmp_path, "# blocked UDP ports\n7001\n\n0x1b5b  # 7003\n", "ports.txt")
    limits = write_script(tmp_path, "0 100\n", "limits.txt")
    run = Run(blocklist, veth.b, f"bl-{veth.token}", "--map", f"blocked=@{ports}",
              "--map", f"limits=@{limits}")
    try:
        # filled before the first packet: nothing to 7001 or 7003 ever arrives
        assert delivered(veth, 7001) == 0
        assert delivered(veth, 7003) == 0
        assert delivered(veth, 7002) == 5
        assert delivered(veth, 7002, size=101) == 0 and delivered(veth, 7002, size=100) == 5
        got = json.loads(ok(run.map("dropped", "get", "7001", "--json")))
        assert got["value"] == 5 and sum(got["per_cpu"]) == 5
        assert len(got["per_cpu"]) == kernel.possible_cpus()

        assert ok(run.map("blocked", "del", "7001")) == f"{run.name}: blocked[7001] deleted (was 1)\n"
        assert delivered(veth, 7001) == 5
        ok(run.map("blocked", "set", "7002", "1"))
        assert delivered(veth, 7002) == 0
        ok(run.map("limits", "set", "0", "0"))
        assert delivered(veth, 7004, size=1000) == 5
        ok(run.map("blocked", "clear"))
        assert delivered(veth, 7003) == 5 and delivered(veth, 7002) == 5
        ok(run.map("blocked", "load", ports))
        assert delivered(veth, 7001) == 0 and delivered(veth, 7003) == 0
        assert ok(run.map("blocked", "dump")) == "7001 1\n7003 1\n"
    finally:
        errs = run.stop()
    assert "Traceback" not in errs


def test_every_map_command_on_a_running_filter(veth, blocklist, tmp_path):
    ports = write_script(tmp_path, "53\n", "ports.txt")
    run = Run(blocklist, veth.b, f"cmd-{veth.token}", "--map", f"blocked=@{ports}")
    try:
        assert run.verdict(53) == XDP_DROP and run.verdict(80) == XDP_PASS
        # set, get, dump (the map file format, by key), in text and JSON
        assert ok(run.map("blocked", "set", "0x50", "7")) == f"{run.name}: blocked[80] = 7 (was nil)\n"
        assert ok(run.map("blocked", "set", "80", "-2")) == f"{run.name}: blocked[80] = -2 (was 7)\n"
        assert run.verdict(80) == XDP_DROP
        assert ok(run.map("blocked", "get", "80")) == "-2\n"
        assert json.loads(ok(run.map("blocked", "get", "53", "--json"))) == \
            {"map": "blocked", "key": 53, "value": 1}
        assert ok(run.map("blocked", "dump")) == "53 1\n80 -2\n"
        assert [json.loads(l) for l in ok(run.map("blocked", "dump", "--json")).splitlines()] == \
            [{"map": "blocked", "key": 53, "value": 1}, {"map": "blocked", "key": 80, "value": -2}]
        assert json.loads(ok(run.map("blocked", "set", "9", "9", "--json"))) == \
            {"event": "set", "map": "blocked", "key": 9, "value": 9, "was": None}
        assert json.loads(ok(run.map("blocked", "del", "9", "--json"))) == \
            {"event": "deleted", "map": "blocked", "key": 9, "was": 9}

        # a per-CPU map: the sum, then each CPU's value; as many CPUs as the kernel has
        for _ in range(3):
            run.verdict(53)
        ncpu = kernel.possible_cpus()
        line53, line80 = ok(run.map("dropped", "dump")).splitlines()     # 80 was dropped once
        key, total, note = line53.split(" ", 2)
        assert (key, total) == ("53", "4") and note.startswith(" # per CPU: ")
        per_cpu = [int(v) for v in note.split(": ")[1].split()]
        assert len(per_cpu) == ncpu and sum(per_cpu) == 4
        assert line80.startswith("80 1  # per CPU: ")
        assert ok(run.map("dropped", "get", "53")) == f"4  # per CPU: {' '.join(map(str, per_cpu))}\n"
        assert json.loads(ok(run.map("dropped", "dump", "--json")).splitlines()[0]) == \
            {"map": "dropped", "key": 53, "value": 4, "per_cpu": per_cpu}
        ok(run.map("dropped", "set", "53", "100"))           # CPU 0 holds it, the others 0
        assert json.loads(ok(run.map("dropped", "get", "53", "--json")))["per_cpu"] == \
            [100] + [0] * (ncpu - 1)

        # an array map: every key is there; clear sets them to 0
        assert ok(run.map("limits", "get", "3")) == "0\n"
        ok(run.map("limits", "set", "0", "4"))
        assert run.verdict(7000, size=5) == XDP_DROP and run.verdict(7000, size=4) == XDP_PASS
        assert ok(run.map("limits", "dump")) == "0 4\n1 0\n2 0\n3 0\n"
        assert ok(run.map("limits", "clear")) == f"{run.name}: limits cleared (1 entry set to 0)\n"
        assert run.verdict(7000, size=500) == XDP_PASS

        # dump > file, clear, load file: the same map, and the program sees it
        saved = tmp_path / "saved.txt"
        saved.write_text(ok(run.map("blocked", "dump")))
        assert json.loads(ok(run.map("blocked", "clear", "--json"))) == \
            {"event": "cleared", "map": "blocked", "entries": 2}
        assert ok(run.map("blocked", "dump")) == "" and run.verdict(53) == XDP_PASS
        assert ok(run.map("blocked", "load", str(saved))) == \
            f"{run.name}: blocked: 2 entries stored from {saved}\n"
        assert ok(run.map("blocked", "dump")) == "53 1\n80 -2\n" and run.verdict(53) == XDP_DROP
        assert json.loads(ok(run.map("blocked", "load", str(saved), "--json"))) == \
            {"event": "loaded", "map": "blocked", "file": str(saved), "entries": 2}

        # the pin directory works as TARGET too
        path = os.path.join(pins.root(), run.name)
        assert ok(run_luabpf("map", path, "blocked", "get", "53")) == "1\n"
        # and the Python views take and return the same
        with luabpf.open_running(run.name) as running:
            assert dict(running.maps["blocked"]) == {53: 1, 80: -2}
            running.maps["blocked"][81] = 5
            assert running.maps["blocked"].types.key_from_text("0x51") == 81
        assert run.verdict(81) == XDP_DROP
    finally:
        errs = run.stop()
    assert "Traceback" not in errs


def test_map_command_errors_are_one_sentence_each(veth, blocklist, tmp_path):
    run = Run(blocklist, veth.b, f"err-{veth.token}")
    bad = write_script(tmp_path, "1\n2 two\n", "bad.txt")
    many = write_script(tmp_path, "10\n11\n12\n13\n", "many.txt")
    try:
        ok(run.map("blocked", "set", "1", "1"))
        ok(run.map("blocked", "set", "2", "1"))
        name = run.name
        cases = [
            (("map", f"nothing-{veth.token}", "blocked", "dump"), 1,
             f"luabpf: no running luabpf program 'nothing-{veth.token}'"),
            (("map", name, "nope", "dump"), 1,
             f"luabpf: {name} has no map 'nope' (its maps: blocked, dropped, limits)"),
            (("map", name, "luabpf_globals", "dump"), 1,
             f"luabpf: {name} has no map 'luabpf_globals' (its maps: blocked, dropped, limits)"),
            (("map", name, "blocked", "get", "3"), 1, "luabpf: map 'blocked' has no key 3"),
            (("map", name, "blocked", "del", "3"), 1,
             "luabpf: map 'blocked' has no key 3; nothing was deleted"),
            (("map", name, "blocked", "get", "9223372036854775808"), 1,
             "luabpf: key 9223372036854775808 does not fit a 64-bit integer, the keys of map "
             "'blocked' (decimal numbers do not wrap)"),
            (("map", name, "limits", "get", "4"), 1,
             "luabpf: key 4 is outside array map 'limits' (keys 0 to 3)"),
            (("map", name, "limits", "set", "-1", "5"), 1,
             "luabpf: key -1 is outside array map 'limits' (keys 0 to 3)"),
            (("map", name, "limits", "del", "0"), 1,
             "luabpf: 'limits' is an array map: its entries cannot be deleted (set the entry "
             "to 0, or clear the map)"),
            (("map", name, "blocked", "set", "0x10", "ten"), 2,
             "luabpf: value 'ten' is not an integer, as the values of map 'blocked' are"),
            (("map", name, "blocked", "get", "port"), 2,
             "luabpf: key 'port' is not an integer, as the keys of map 'blocked' are"),
            (("map", name, "blocked", "load", str(tmp_path / "none.txt")), 2,
             f"luabpf: {tmp_path / 'none.txt'}: no such file"),
            (("map", name, "blocked", "load", bad), 1,
             f"luabpf: {bad}:2: value 'two' is not an integer, as the values of map 'blocked' are"),
        ]
        for argv, code, words in cases:
            r = run_luabpf(*argv)
            assert r.returncode == code, (argv, r.stderr)
            assert r.stdout == "" and len(r.stderr.splitlines()) == 1, (argv, r.stderr)
            assert r.stderr.startswith(words), (argv, r.stderr)

        # a full hash map: set refuses a new key, load refuses before storing anything
        ok(run.map("blocked", "set", "3", "1"))
        ok(run.map("blocked", "set", "4", "1"))
        r = run.map("blocked", "set", "5", "1")
        assert (r.returncode, r.stderr) == \
            (1, "luabpf: map 'blocked' is full: it holds 4 entries; key 5 was not stored\n")
        ok(run.map("blocked", "set", "4", "2"))                 # an existing key still updates
        ok(run.map("blocked", "del", "4"))
        r = run.map("blocked", "load", many)
        assert r.returncode == 1
        assert r.stderr == (f"luabpf: {many}:2: map 'blocked' is full at this entry: it holds 4 "
                            "entries at most, 3 before loading, and the file has 4 new keys; "
                            "nothing was stored\n")
        assert ok(run.map("blocked", "dump")) == "1 1\n2 1\n3 1\n"
        assert run.verdict(10) == XDP_PASS

        # --json: the failure as a located diagnostic on stdout
        [d] = json_failure(run.map("blocked", "load", bad, "--json"), 1)
        assert (d["file"], d["line"], d["column"]) == (bad, 2, None)
        assert d["message"] == "value 'two' is not an integer, as the values of map 'blocked' are"
        ok(run.map("blocked", "set", "4", "1"))
        [d] = json_failure(run.map("blocked", "set", "5", "1", "--json"), 1)
        assert d["message"] == "map 'blocked' is full: it holds 4 entries; key 5 was not stored"
        [d] = json_failure(run.map("blocked", "get", "x", "--json"), 2)
        assert d["message"] == "key 'x' is not an integer, as the keys of map 'blocked' are"
        assert ok(run.map("blocked", "dump")) == "1 1\n2 1\n3 1\n4 1\n"   # nothing half-applied
    finally:
        errs = run.stop()
    assert "Traceback" not in errs
    r = run_luabpf("map", run.name, "blocked", "dump")          # the run is gone
    assert r.returncode == 1 and f"no running luabpf program '{run.name}'" in r.stderr


@pytest.mark.parametrize("flag,file_text,code,message", [
    ("blocked", "53\n80\n2 x y\n", 1, "{file}:3: 3 fields; a line holds one entry: KEY VALUE, "
     "or KEY alone (value 1)"),
    ("blocked", "1\n2\n3\n4\n5\n", 1, "{file}:5: one entry too many: map 'blocked' holds 4 "
     "entries at most"),
    ("limits", "0 100\n4 1\n", 1, "{file}:2: key 4 is outside array map 'limits' (keys 0 to 3)"),
    ("blocked", "7 1\n7 2\n", 1, "{file}:2: key 7 again, with another value (line 1 gives 1)"),
    ("counts", "1\n", 1, "--map counts: {script} has no map 'counts' (its maps: blocked, "
     "dropped, limits)"),
    ("blocked", None, 2, "{file}: no such file"),
])
def test_a_bad_map_file_attaches_nothing(veth, blocklist, tmp_path, flag, file_text, code, message):
    file = str(tmp_path / "entries.txt")
    if file_text is not None:
        write_script(tmp_path, file_text, "entries.txt")
    name = f"badf-{veth.token}"
    argv = ["run", blocklist, "--xdp", veth.b.dev, "--netns", veth.b.netns, "--name", name,
            "--map", f"{flag}=@{file}"]
    r = run_luabpf(*argv)
    assert r.returncode == code, r.stderr
    assert r.stderr == "luabpf: " + message.format(file=file, script=blocklist) + "\n"
    [d] = json_failure(run_luabpf(*argv, "--json"), code)
    assert all(json.loads(l)["event"] == "error" for l in run_luabpf(*argv, "--json").stdout.splitlines())
    if code == 1 and flag != "counts":
        assert (d["file"], d["line"]) == (file, int(message.split(":")[1]))
    assert "prog/xdp" not in veth.b.run(["ip", "link", "show", veth.b.dev]).stdout
    assert not os.path.exists(os.path.join(pins.root(), name))


def test_the_text_view_says_what_each_file_filled(veth, blocklist, tmp_path):
    ports = write_script(tmp_path, "53\n", "ports.txt")
    limits = write_script(tmp_path, "0 10\n1 10\n", "limits.txt")
    name = f"txt-{veth.token}"
    r = run_luabpf("run", blocklist, "--xdp", veth.b.dev, "--netns", veth.b.netns, "--name",
                   name, "--map", f"blocked=@{ports}", "--map", f"limits=@{limits}",
                   "--duration", "0.3")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[:2] == [f"luabpf: map blocked: 1 entry from {ports}",
                         f"luabpf: map limits: 2 entries from {limits}"]
    assert "map blocked" in r.stdout and "53: 1" in r.stdout      # the final view's maps
    assert not os.path.exists(os.path.join(pins.root(), name))


# ---- the Python views ----------------------------------------------------------------

def _compile_maps():
    source = ("h = map.hash(4)\na = map.array(4)\np = map.percpu_array(2)\nl = map.lru(4)\n"
              "function f(k) return h[k] end\n")
    return luabpf.compile(source, "t.lua", hook="function")


def test_python_views_load_files_and_clear(tmp_path):
    with _compile_maps().load() as loaded:
        h, a, p = loaded.maps["h"], loaded.maps["a"], loaded.maps["p"]
        assert h.load(write_script(tmp_path, "1\n0x2 -3\n", "h.txt")) == 2
        assert dict(h) == {1: 1, 2: -3} and loaded.call(2) == -3
        assert a.load(write_script(tmp_path, "3 30\n", "a.txt")) == 1
        assert dict(a) == {0: 0, 1: 0, 2: 0, 3: 30}
        assert p.load(write_script(tmp_path, "1 9\n", "p.txt")) == 1
        assert p[1] == 9 and p.per_cpu(1) == [9] + [0] * (kernel.possible_cpus() - 1)
        assert p.per_cpu_entries() == [(0, [0] * kernel.possible_cpus()), (1, p.per_cpu(1))]
        with pytest.raises(MapFileError) as e:
            h.load(write_script(tmp_path, "5\n6\n7\n", "more.txt"))
        assert (e.value.line, dict(h)) == (3, {1: 1, 2: -3})        # 5, 6 fit; 7 does not
        assert "nothing was stored" in e.value.reason
        assert h.clear() == 2 and dict(h) == {} and loaded.call(1) is None
        assert a.clear() == 1 and dict(a) == {0: 0, 1: 0, 2: 0, 3: 0}
        assert p.clear() == 1 and p[1] == 0


def test_an_lru_map_that_evicts_the_files_own_entries_says_so(tmp_path):
    """The kernel's LRU keeps free entries per CPU: an entry stored on one CPU can make a
    store on another evict, though the map is not full (docs/language.md, "Maps")."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("an LRU map's per-CPU free lists need two usable CPUs to evict early")
    before = os.sched_getaffinity(0)
    with _compile_maps().load() as loaded:
        lru = loaded.maps["l"]
        path = write_script(tmp_path, "100\n101\n102\n103\n", "l.txt")
        try:
            os.sched_setaffinity(0, {cpus[1]})
            lru[0] = 0
            os.sched_setaffinity(0, {cpus[0]})
            try:
                lru.load(path)
            except MapFileError as e:
                lost = [k for k in (100, 101, 102, 103) if k not in lru]
                assert lost and e.line == lost[0] - 99
                assert e.reason == (f"LRU map 'l' evicted {len(lost)} of the file's 4 entries "
                                    "(this one first) to make room while they were stored; "
                                    "give it more than 4 entries")
            else:
                assert all(k in lru for k in (100, 101, 102, 103))
        finally:
            os.sched_setaffinity(0, before)
