"""`luabpf test` where no kernel is needed: a script that does not compile, packets that are
not packets, none given. A real process, its output and exit code. (Verdicts from
BPF_PROG_TEST_RUN are tests/kernel/test_cli_packets.py.)"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from luabpf.runtime.packets import tcp_frame, udp_frame

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DROP_2222 = """
function filter(hdr, pld)
  if hdr.tcp and hdr.tcp.sport == 2222 and #pld > 0 then
    return false
  end
  return true
end
"""

FRAMES = [
    tcp_frame("10.0.0.1", "10.0.0.2", 2222, 5555, b"SSH-2.0-OpenSSH_6.4\r\n"),
    tcp_frame("10.0.0.1", "10.0.0.2", 2223, 5555, b"SSH-2.0-OpenSSH_9.6\r\n"),
    tcp_frame("10.0.0.1", "10.0.0.2", 2222, 5555, flags="S"),
    udp_frame("10.0.0.1", "10.0.0.2", 2222, 53, b"x"),
]


def luabpf(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "luabpf.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def script(tmp_path, text: str, name: str = "filter.lua") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_compile_errors_exit_1_with_the_line(tmp_path):
    r = luabpf("test", script(tmp_path, "function filter(hdr, pld)\n  return 1.5\nend\n"),
               "--packet", FRAMES[0].hex())
    assert r.returncode == 1
    assert "filter.lua:2:" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,fragment", [
    (["--packet", "zz"], "not a hex digit"),
    (["--packet", "abc"], "odd number of hex digits"),
    (["--pcap", "/nonexistent.pcap"], "no such file"),
    (["--pcap", __file__], "not a pcap or pcapng file"),
])
def test_bad_packets_are_usage_errors(tmp_path, args, fragment):
    r = luabpf("test", script(tmp_path, DROP_2222), *args)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr and "Traceback" not in r.stderr


def test_packets_are_required():
    r = luabpf("test", "x.lua")
    assert r.returncode == 2 and "usage:" in r.stderr
