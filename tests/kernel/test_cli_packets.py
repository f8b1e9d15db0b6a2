"""`luabpf test` as a user runs it: a real process on a pcap file made with scapy
here, or on `--packet` hex; verdicts from BPF_PROG_TEST_RUN; short frames refused,
never a traceback; exit codes 0 / 1 (compile, verify or runtime error) / 2 (usage).
"""
from __future__ import annotations

import json
import os

import pytest

from luabpf.runtime.packets import tcp_frame, udp_frame, write_pcap

from cli_runner import DROP_2222, FRAMES, ROOT, run_luabpf, write_script

pytestmark = pytest.mark.kernel

DIVIDES_BY_LENGTH = """
function filter(hdr, pld)
  if 100 // #pld > 1 then
    return false
  end
  return true
end
"""

# Figure 2 of the paper, as examples/ssh_filter.lua has it.
with open(os.path.join(ROOT, "examples", "ssh_filter.lua"), encoding="utf-8") as _f:
    SSH_FILTER = _f.read()

def pcap(tmp_path, frames, name: str = "packets.pcap") -> str:
    path = str(tmp_path / name)
    write_pcap(path, frames)
    return path


def json_rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.parametrize("hook,drop,ok", [("xdp", "XDP_DROP", "XDP_PASS"),
                                          ("tc", "TC_ACT_SHOT", "TC_ACT_OK")])
def test_pcap_made_with_scapy(tmp_path, hook, drop, ok):
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--pcap", pcap(tmp_path, FRAMES),
                   "--hook", hook, "--json")
    assert r.returncode == 0, r.stderr
    rows = json_rows(r.stdout)
    assert [row["packet"] for row in rows] == [1, 2, 3, 4]
    assert [row["verdict"] for row in rows] == [drop, ok, ok, ok]
    assert rows[0]["summary"].startswith("IP 10.0.0.1.2222 > 10.0.0.2.5555: Flags [P.]")
    assert '"SSH-2.0-OpenSSH_6.4"' in rows[0]["summary"]


def test_table_output(tmp_path):
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--pcap", pcap(tmp_path, FRAMES))
    assert r.returncode == 0, r.stderr
    assert "XDP_DROP" in r.stdout and "XDP_PASS" in r.stdout
    assert "4 packets: 3 XDP_PASS, 1 XDP_DROP" in r.stdout


def test_hex_packets_and_short_frames_are_refused(tmp_path):
    hexes = [FRAMES[0].hex(), ":".join(f"{b:02x}" for b in FRAMES[1]), "0x0011223344",
             "00" * 14]
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--packet", *hexes, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = json_rows(r.stdout)
    assert [row["verdict"] for row in rows] == ["XDP_DROP", "XDP_PASS", "refused", "XDP_PASS"]
    assert rows[2]["action"] is None and "Ethernet header" in rows[2]["reason"]
    assert rows[2]["summary"].startswith("runt frame of 5 bytes")
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--packet", "0011223344")
    assert r.returncode == 0 and "refused" in r.stdout and "Traceback" not in r.stderr


def test_short_frames_in_a_pcap_are_refused(tmp_path):
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--pcap",
                   pcap(tmp_path, [b"\x01" * 13, b"", FRAMES[0]]), "--json")
    assert r.returncode == 0, r.stderr
    assert [row["verdict"] for row in json_rows(r.stdout)] == ["refused", "refused", "XDP_DROP"]


def test_many_packets(tmp_path):
    frames = FRAMES * 300                  # above the progress bar's threshold and the table's
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--pcap", pcap(tmp_path, frames))
    assert r.returncode == 0, r.stderr
    assert "1200 packets: 900 XDP_PASS, 300 XDP_DROP" in r.stdout
    r = run_luabpf("test", write_script(tmp_path, DROP_2222), "--pcap", pcap(tmp_path, frames),
                   "--json")
    assert len(r.stdout.splitlines()) == 1200


def test_runtime_errors_are_reported_per_packet_and_exit_1(tmp_path):
    empty = tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, flags="S")
    r = run_luabpf("test", write_script(tmp_path, DIVIDES_BY_LENGTH, "div.lua"), "--pcap",
                   pcap(tmp_path, [FRAMES[0], empty]), "--json")
    assert r.returncode == 1
    rows = json_rows(r.stdout)
    assert "runtime_error" not in rows[0]
    assert rows[1]["verdict"] == "XDP_PASS"           # the hook's default verdict
    assert rows[1]["runtime_error"].endswith("div.lua:3: attempt to divide by zero")
    assert rows[2] == {"runtime_error": rows[1]["runtime_error"] + " (1 time)"}


def test_the_ssh_filter_on_a_capture(tmp_path):
    r = run_luabpf("test", write_script(tmp_path, SSH_FILTER, "ssh.lua"), "--pcap",
                   pcap(tmp_path, FRAMES), "--json")
    assert r.returncode == 0, r.stderr
    assert [row["verdict"] for row in json_rows(r.stdout)] == \
        ["XDP_DROP", "XDP_PASS", "XDP_PASS", "XDP_PASS"]


PRINTS_PAYLOAD = """
function filter(hdr, pld)
  if hdr.udp then
    print(#pld, pld:byte(1, 2))
  end
  return true
end
"""


def test_test_shows_what_each_packet_printed(tmp_path):
    path = write_script(tmp_path, PRINTS_PAYLOAD)
    frames = [udp_frame("10.0.0.1", "10.0.0.2", 1, 53, b"hi!"), tcp_frame("10.0.0.1", "10.0.0.2", 1, 2),
              udp_frame("10.0.0.1", "10.0.0.2", 1, 53, b"z")]
    r = run_luabpf("test", path, "--packet", *(f.hex() for f in frames), "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    name = path                          # events name the file as it was given
    assert [row.get("printed") for row in rows] == [
        [f"{name}:4: 3\t104\t105"], None, [f"{name}:4: 1\t122"]]
    r = run_luabpf("test", "filter.lua", "--packet", *(f.hex() for f in frames), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    printed = [line.replace("│", " ").split() for line in r.stdout.splitlines() if "filter.lua:4:" in line]
    assert [words[words.index("filter.lua:4:"):] for words in printed] == [
        ["filter.lua:4:", "3", "104", "105"], ["filter.lua:4:", "1", "122"]]
