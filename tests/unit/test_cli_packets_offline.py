"""`luabpf test` where no kernel is needed: a script that does not compile, packets that are
not packets, none given. A real process, its output and exit code. (Verdicts from
BPF_PROG_TEST_RUN are tests/kernel/test_cli_packets.py.)"""
from __future__ import annotations

import pytest

from cli_runner import DROP_2222, FRAMES, run_luabpf, write_script


def test_compile_errors_exit_1_with_the_line(tmp_path):
    r = run_luabpf("test", write_script(tmp_path, "function filter(hdr, pld)\n  return 1.5\nend\n"),
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
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), *args)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr and "Traceback" not in r.stderr


def test_packets_are_required():
    r = run_luabpf("test", "x.lua")
    assert r.returncode == 2 and "usage:" in r.stderr
