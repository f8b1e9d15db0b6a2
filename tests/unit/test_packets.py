"""runtime/packets.py and runtime/verdicts.py without a kernel: pcap round trips,
hex parsing, tcpdump-like summaries (never raising, whatever the bytes), and the
names and numbers of verdicts."""
from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import wrpcap, wrpcapng

from luabpf.runtime.packets import (PacketError, parse_hex, read_pcap, summary, tcp_frame,
                                    udp_frame, write_pcap)
from luabpf.runtime.verdicts import (TcAction, XdpAction, action_for, is_drop, is_pass,
                                     verdict_name)

BANNER = tcp_frame("10.0.0.1", "10.0.0.2", 22, 5555, b"SSH-2.0-OpenSSH_6.4\r\n")


def test_pcap_round_trip(tmp_path):
    frames = [BANNER, b"\x00" * 10, udp_frame("fe80::1", "fe80::2", 53, 99, b"q")]
    path = str(tmp_path / "f.pcap")
    write_pcap(path, frames)
    assert read_pcap(path) == frames


def test_pcapng_and_raw_ip_captures(tmp_path):
    ng = str(tmp_path / "f.pcapng")
    wrpcapng(ng, [Ether(BANNER)])
    assert read_pcap(ng) == [BANNER]
    raw = str(tmp_path / "raw.pcap")
    wrpcap(raw, [IP(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=7, dport=8)], linktype=101)
    (frame,) = read_pcap(raw)
    assert frame[12:14] == b"\x08\x00"              # given an Ethernet header
    assert summary(frame).startswith("IP 1.1.1.1.7 > 2.2.2.2.8: Flags [S]")


def test_bad_captures(tmp_path):
    with pytest.raises(PacketError, match="no such file"):
        read_pcap(str(tmp_path / "none.pcap"))
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    with pytest.raises(PacketError, match="not a pcap"):
        read_pcap(str(junk))


@pytest.mark.parametrize("text,frame", [
    ("001122", b"\x00\x11\x22"), ("0x0011", b"\x00\x11"), ("00:11:22", b"\x00\x11\x22"),
    ("00 11-22_33.44", b"\x00\x11\x22\x33\x44"), ("AbCd", b"\xab\xcd"),
])
def test_parse_hex(text, frame):
    assert parse_hex([text]) == [frame]


@pytest.mark.parametrize("text,fragment", [("zz", "not a hex digit"), ("abc", "odd number"),
                                           ("", "empty"), ("0x", "empty")])
def test_parse_hex_errors(text, fragment):
    with pytest.raises(PacketError, match=fragment):
        parse_hex(["00", text])


@pytest.mark.parametrize("frame,expected", [
    (BANNER, 'IP 10.0.0.1.22 > 10.0.0.2.5555: Flags [P.], seq 1000, length 21 "SSH-2.0-OpenSSH_6.4"'),
    (tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, flags="SA"), "IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S.], seq 1000, length 0"),
    (udp_frame("fe80::1", "fe80::2", 53, 1234, b"\x01"), "IP6 fe80::1.53 > fe80::2.1234: UDP, length 1"),
    (bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2", psrc="10.0.0.1")),
     "ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28"),
    (bytes(Ether() / Dot1Q(vlan=10) / IP(src="1.2.3.4", dst="5.6.7.8", proto=99)),
     "vlan 10, IP 1.2.3.4 > 5.6.7.8: ip-proto-99 0"),
    (b"\x00" * 10, "runt frame of 10 bytes (an Ethernet header has 14)"),
    (bytes(Ether(type=0x88CC) / (b"x" * 40)), "ethertype 0x88cc, length 54"),
    (BANNER[:40], "IP 10.0.0.1 > 10.0.0.2: [|tcp] truncated, 6 bytes"),
])
def test_summary(frame, expected):
    assert summary(frame) == expected


@given(st.binary(max_size=200))
def test_summary_never_raises(data):
    assert isinstance(summary(data), str)


@given(st.integers(0, len(BANNER)))
def test_summary_of_a_truncated_frame(n):
    assert isinstance(summary(BANNER[:n]), str)


def test_summary_of_random_bytes_after_real_headers():
    for n in range(200):
        assert isinstance(summary(BANNER[:34] + os.urandom(n)), str)


def test_verdicts():
    assert [int(a) for a in XdpAction] == [0, 1, 2, 3, 4]
    assert TcAction.OK == 0 and TcAction.SHOT == 2 and TcAction.UNSPEC == -1
    assert action_for("xdp", 1) is XdpAction.DROP
    assert action_for(6, 2) is XdpAction.PASS                  # by program type
    assert action_for("tc", 0xFFFFFFFF) is TcAction.UNSPEC     # the kernel's u32 retval
    assert action_for(3, 2) is TcAction.SHOT
    assert action_for("xdp", 77) == 77
    assert verdict_name("xdp", XdpAction.DROP) == "XDP_DROP"
    assert verdict_name("tc", 2) == "TC_ACT_SHOT"
    assert verdict_name("xdp", 9) == "XDP_9?"
    assert is_drop(XdpAction.DROP) and is_drop(TcAction.SHOT) and not is_drop(XdpAction.PASS)
    assert is_pass(XdpAction.PASS) and is_pass(TcAction.OK) and not is_pass(TcAction.SHOT)
    with pytest.raises(ValueError):
        action_for(31, 0)
