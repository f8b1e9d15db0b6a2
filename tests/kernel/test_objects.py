"""Issue 6: object files the standard tools load (`luabpf compile FILE -o OUT.o`).

Every example becomes an object that bpftool loads (and whose BTF it reads back, with
the Lua lines in `prog dump xlated`); a filter's object attached by `ip link … xdp obj`
and by `tc filter … bpf obj` judges real packets through a veth pair as the script
says; libbpf itself (Debian's libbpf.so.1, through ctypes) opens, loads and attaches
one, creating and relocating its maps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess

import pytest

from luabpf.runtime import kernel

from cli_runner import ROOT, run_luabpf

pytestmark = pytest.mark.kernel

EXAMPLES = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".lua"))


def compile_object(example: str, out: str, *extra) -> subprocess.CompletedProcess:
    return run_luabpf("compile", os.path.join(ROOT, "examples", example), "-o", out, *extra)


def bpftool(*argv) -> subprocess.CompletedProcess:
    return subprocess.run(["bpftool", *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("example", EXAMPLES)
def test_bpftool_loads_every_example_and_shows_lua_lines(tmp_path, pin_dir, example):
    obj = str(tmp_path / (example[:-4] + ".o"))
    made = compile_object(example, obj)
    assert made.returncode == 0, made.stderr
    btf = bpftool("btf", "dump", "file", obj)
    assert btf.returncode == 0, btf.stderr
    assert "FUNC '" in btf.stdout and "DATASEC" in btf.stdout
    loaded = bpftool("prog", "loadall", obj, pin_dir)
    assert loaded.returncode == 0, loaded.stderr
    pins = sorted(os.listdir(pin_dir))
    assert pins, "bpftool pinned no program"
    with open(os.path.join(ROOT, "examples", example), encoding="utf-8") as f:
        lua_lines = {line.strip() for line in f if line.strip()}
    for pin in pins:
        dump = bpftool("prog", "dump", "xlated", "pinned", os.path.join(pin_dir, pin))
        assert dump.returncode == 0, dump.stderr
        quoted = {l[2:].strip() for l in dump.stdout.splitlines() if l.startswith("; ")}
        if pin != "sched_switch" or example == "idle_count.lua":   # a policy's companion is stdlib's
            assert quoted & lua_lines, f"{pin}: no Lua line of {example} in\n{dump.stdout[:800]}"


def frames():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return bytes(Ether() / IP() / UDP(dport=53) / (b"x" * 50)), \
        bytes(Ether() / IP() / UDP(dport=53) / (b"x" * 1400))


def udp_exchange(veth, sizes: list[int]) -> list[bool]:
    """Send one datagram of each size from namespace a to b; which arrived."""
    import socket

    def receive(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((veth.b.addr, 9998))
        s.settimeout(0.5)
        got = []
        with s:
            for _ in range(n):
                try:
                    got.append(len(s.recvfrom(65535)[0]))
                except socket.timeout:
                    break
        return got

    def send():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for size in sizes:
                s.sendto(b"y" * size, (veth.b.addr, 9998))

    receiver = veth.b.start(receive, len(sizes))
    import time
    time.sleep(0.1)
    veth.a.call(send)
    got = receiver.result(10)
    return [size in got for size in sizes]


def test_ip_attaches_an_object_to_xdp_and_packets_follow_it(tmp_path, veth):
    obj = str(tmp_path / "udp_threshold.o")
    assert compile_object("udp_threshold.lua", obj).returncode == 0
    assert udp_exchange(veth, [100, 1200]) == [True, True]
    r = veth.b.run(["ip", "link", "set", "dev", veth.b.dev, "xdp", "obj", obj, "sec", "xdp"])
    assert r.returncode == 0, r.stderr
    try:
        assert "prog/xdp" in veth.b.run(["ip", "link", "show", veth.b.dev]).stdout
        assert udp_exchange(veth, [100, 1200, 900]) == [True, False, True]    # MAX_LEN = 1000
    finally:
        veth.b.run(["ip", "link", "set", "dev", veth.b.dev, "xdp", "off"], check=True)
    assert udp_exchange(veth, [1200]) == [True]


def test_tc_attaches_an_object_and_packets_follow_it(tmp_path, veth):
    obj = str(tmp_path / "udp_threshold_tc.o")
    made = compile_object("udp_threshold.lua", obj, "--hook", "tc")
    assert made.returncode == 0, made.stderr
    veth.b.run(["tc", "qdisc", "add", "dev", veth.b.dev, "clsact"], check=True)
    try:
        r = veth.b.run(["tc", "filter", "add", "dev", veth.b.dev, "ingress", "bpf", "da", "obj", obj,
                        "sec", "tc"])
        assert r.returncode == 0, r.stderr
        assert udp_exchange(veth, [100, 1200, 900]) == [True, False, True]
    finally:
        veth.b.run(["tc", "qdisc", "del", "dev", veth.b.dev, "clsact"], check=True)
    assert udp_exchange(veth, [1200]) == [True]


class Libbpf:
    """The few libbpf calls the test needs, from Debian's libbpf.so.1."""

    def __init__(self):
        path = ctypes.util.find_library("bpf") or "libbpf.so.1"
        self.lib = lib = ctypes.CDLL(path, use_errno=True)
        vp = ctypes.c_void_p
        for name, res, args in [
            ("bpf_object__open_file", vp, [ctypes.c_char_p, vp]),
            ("bpf_object__load", ctypes.c_int, [vp]),
            ("bpf_object__close", None, [vp]),
            ("bpf_object__find_program_by_name", vp, [vp, ctypes.c_char_p]),
            ("bpf_object__find_map_by_name", vp, [vp, ctypes.c_char_p]),
            ("bpf_program__fd", ctypes.c_int, [vp]),
            ("bpf_map__fd", ctypes.c_int, [vp]),
            ("bpf_program__attach_xdp", vp, [vp, ctypes.c_int]),
            ("bpf_link__destroy", ctypes.c_int, [vp]),
            ("libbpf_get_error", ctypes.c_long, [vp]),
        ]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args


def test_libbpf_opens_loads_and_attaches_an_object(tmp_path, veth):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    obj = str(tmp_path / "proto_count.o")
    assert compile_object("proto_count.lua", obj).returncode == 0
    bpf = Libbpf()
    handle = bpf.lib.bpf_object__open_file(obj.encode(), None)
    assert handle and not bpf.lib.libbpf_get_error(handle)
    try:
        assert bpf.lib.bpf_object__load(handle) == 0, os.strerror(ctypes.get_errno())
        prog = bpf.lib.bpf_object__find_program_by_name(handle, b"filter")
        counts = bpf.lib.bpf_object__find_map_by_name(handle, b"packets")
        assert prog and counts
        prog_fd, map_fd = bpf.lib.bpf_program__fd(prog), bpf.lib.bpf_map__fd(counts)
        assert prog_fd >= 0 and map_fd >= 0
        # the program was relocated to libbpf's map: packets it judges are counted there
        for frame, n in ((Ether() / IP() / TCP(), 3), (Ether() / IP() / UDP(), 2)):
            for _ in range(n):
                kernel.prog_test_run(prog_fd, data_in=bytes(frame))
        per_cpu = kernel.percpu_value_size(8)
        totals = {}
        for proto in (6, 17, 1):
            raw = kernel.map_lookup(map_fd, proto.to_bytes(4, "little"), per_cpu)
            totals[proto] = sum(int.from_bytes(v, "little") for v in kernel.split_percpu(raw, 8))
        assert totals == {6: 3, 17: 2, 1: 0}
        info = kernel.map_info(map_fd)
        assert (info["type"], info["max_entries"]) == (6, 257)
        ifindex = veth.a.ifindex
        with veth.a.entered():
            link = bpf.lib.bpf_program__attach_xdp(prog, ifindex)
        assert link and not bpf.lib.libbpf_get_error(link)
        try:
            assert "prog/xdp" in veth.a.run(["ip", "link", "show", veth.a.dev]).stdout
        finally:
            bpf.lib.bpf_link__destroy(link)
        assert "prog/xdp" not in veth.a.run(["ip", "link", "show", veth.a.dev]).stdout
    finally:
        bpf.lib.bpf_object__close(handle)


def test_programs_luabpf_loads_show_lua_lines_in_bpftool():
    import luabpf
    with open(os.path.join(ROOT, "examples", "port_blocklist.lua"), encoding="utf-8") as f:
        text = f.read()
    with luabpf.compile(text, "examples/port_blocklist.lua").load() as loaded:
        prog_id = kernel.prog_info(loaded.fd)["id"]
        dump = bpftool("prog", "dump", "xlated", "id", str(prog_id))
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.startswith("int filter(void * ctx):")
    quoted = {l[2:].strip() for l in dump.stdout.splitlines() if l.startswith("; ")}
    assert quoted & {l.strip() for l in text.splitlines() if l.strip()}


FILTERS = [f for f in EXAMPLES
           if "function filter(" in open(os.path.join(ROOT, "examples", f), encoding="utf-8").read()]


@pytest.mark.parametrize("example", FILTERS)
def test_ip_and_tc_load_every_filter_example(tmp_path, veth, example):
    xdp_obj, tc_obj = str(tmp_path / "x.o"), str(tmp_path / "t.o")
    assert compile_object(example, xdp_obj).returncode == 0
    assert compile_object(example, tc_obj, "--hook", "tc").returncode == 0
    end = veth.b
    r = end.run(["ip", "link", "set", "dev", end.dev, "xdp", "obj", xdp_obj, "sec", "xdp"])
    assert r.returncode == 0, r.stderr
    try:
        assert "prog/xdp" in end.run(["ip", "link", "show", end.dev]).stdout
    finally:
        end.run(["ip", "link", "set", "dev", end.dev, "xdp", "off"], check=True)
    end.run(["tc", "qdisc", "add", "dev", end.dev, "clsact"], check=True)
    try:
        r = end.run(["tc", "filter", "add", "dev", end.dev, "ingress", "bpf", "da", "obj", tc_obj,
                     "sec", "tc"])
        assert r.returncode == 0, r.stderr
        shown = end.run(["tc", "filter", "show", "dev", end.dev, "ingress"]).stdout
        assert "bpf" in shown and "direct-action" in shown
    finally:
        end.run(["tc", "qdisc", "del", "dev", end.dev, "clsact"], check=True)
