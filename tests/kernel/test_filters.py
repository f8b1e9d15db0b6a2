"""Every example filter, on XDP and tc, in the kernel: its verdicts equal the same
script's under Lua 5.4 (tests/filter_reference.py) on generated packets."""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, Raw

import luabpf
from luabpf.runtime.verdicts import is_drop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from filter_reference import Reference  # noqa: E402

pytestmark = pytest.mark.kernel
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples")


def source(name: str) -> str:
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        return f.read()


_loaded: dict = {}


def kernel_verdict(name: str, hook: str, frame: bytes) -> str:
    key = (name, hook)
    if key not in _loaded:
        prog = luabpf.compile(source(name), name, hook)
        _loaded[key] = (prog, prog.load())
    verdict = _loaded[key][1].run(frame)
    return "drop" if is_drop(verdict) else "pass"


@pytest.fixture(scope="module", autouse=True)
def close_programs():
    yield
    for _, loaded in _loaded.values():
        loaded.close()
    _loaded.clear()


def l3_cut_short(frame: bytes) -> bool:
    """The kernel's tc test run refuses an IPv4 or IPv6 frame whose IP header is cut short."""
    etype = int.from_bytes(frame[12:14], "big")
    return (etype == 0x0800 and len(frame) < 34) or (etype == 0x86DD and len(frame) < 54)


def agree(name: str, frame: bytes) -> None:
    for hook in ("xdp", "tc"):
        want = Reference(source(name), hook).verdict(frame)
        try:
            got = kernel_verdict(name, hook, frame)
        except ValueError:
            assert hook == "tc" and l3_cut_short(frame), f"{hook} refused {frame!r}"
            continue
        assert got == want, f"{name} on {hook}: kernel says {got}, Lua says {want} for {Ether(frame)!r}"


ports = st.one_of(st.sampled_from([22, 23, 53, 80, 135, 139, 443, 445, 3389]), st.integers(0, 65535))
truncate = st.floats(0.3, 1.0)


def cut(frame: bytes, fraction: float) -> bytes:
    return frame[:max(14, int(len(frame) * fraction))] if fraction < 0.95 else frame


@settings(max_examples=60)
@given(ports, ports, st.sampled_from(["tcp", "udp", "tcp6"]), truncate)
def test_port_blocklist(sport, dport, kind, fraction):
    l3 = IPv6() if kind == "tcp6" else IP()
    l4 = UDP(sport=sport, dport=dport) if kind == "udp" else TCP(sport=sport, dport=dport)
    agree("port_blocklist.lua", cut(bytes(Ether() / l3 / l4 / Raw(b"x" * 10)), fraction))


@settings(max_examples=60)
@given(st.integers(0, 200), st.sampled_from([0, 3, 8, 128]), st.integers(0, 5), st.booleans(), truncate)
def test_icmp_guard(size, icmp_type, ttl, v6, fraction):
    if v6:
        pkt = Ether() / IPv6(hlim=ttl) / ICMPv6EchoRequest() / Raw(b"p" * size)
    else:
        pkt = Ether() / IP(ttl=ttl) / ICMP(type=icmp_type) / Raw(b"p" * size)
    agree("icmp_guard.lua", cut(bytes(pkt), fraction))


names = st.one_of(st.sampled_from(["example.com", "example.org", "www.example.com", "example.co", "a.b"]),
                  st.from_regex(r"[a-z]{1,10}\.(com|net)", fullmatch=True))


@settings(max_examples=60)
@given(names, st.sampled_from([53, 5353]), st.integers(0, 1), truncate)
@example("example.com", 53, 0, 1.0)
@example("www.example.com", 53, 0, 1.0)
def test_dns_blocklist(name, dport, qr, fraction):
    pkt = Ether() / IP() / UDP(dport=dport) / DNS(qr=qr, rd=1, qd=DNSQR(qname=name))
    agree("dns_blocklist.lua", cut(bytes(pkt), fraction))


BANNERS = [b"SSH-2.0-OpenSSH_6.4\r\n", b"SSH-2.0-OpenSSH_6.4 Debian-5ubuntu1\r\n", b"SSH-2.0-OpenSSH_6.4",
           b"SSH-2.0-OpenSSH_9.6 Ubuntu\r\n", b"SSH-1.99-OpenSSH_6.4 x", b"SSH-2.0--OpenSSH_6.4 y", b"HTTP/1.1 200"]


@settings(max_examples=80)
@given(st.one_of(st.sampled_from(BANNERS), st.binary(max_size=80),
                 st.builds(lambda a, b: b"SSH-" + a + b"-" + b, st.binary(max_size=12), st.binary(max_size=20))),
       ports, truncate)
def test_ssh_filter_drops_exactly_what_lua_says(payload, sport, fraction):
    agree("ssh_filter.lua", cut(bytes(Ether() / IP() / TCP(sport=sport) / Raw(payload)), fraction))


def test_figure_2_drops_the_vulnerable_banner_and_passes_others():
    frames = {b: bytes(Ether() / IP() / TCP(sport=22) / Raw(b)) for b in BANNERS}
    for hook in ("xdp", "tc"):
        verdicts = {b: kernel_verdict("ssh_filter.lua", hook, f) for b, f in frames.items()}
        assert verdicts[b"SSH-2.0-OpenSSH_6.4 Debian-5ubuntu1\r\n"] == "drop"
        assert verdicts[b"SSH-2.0-OpenSSH_6.4"] == "drop"
        assert verdicts[b"SSH-2.0-OpenSSH_6.4\r\n"] == "drop"
        assert verdicts[b"SSH-2.0-OpenSSH_9.6 Ubuntu\r\n"] == "pass"
        assert verdicts[b"HTTP/1.1 200"] == "pass"


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".lua")))
def test_every_example_passes_luabpf_check(name):
    from luabpf.cli import main
    assert main(["check", os.path.join(EXAMPLES, name)]) == 0
