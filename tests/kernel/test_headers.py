"""Header fields read in the kernel against scapy's dissection of the same frame.

A probe filter drops a frame when a header field equals the value scapy reads
(or when the set of headers present is the one expected) and passes it
otherwise, so every verdict is a yes/no answer from the kernel. Frames come
from hypothesis, truncated and malformed ones included (a truncated header
must be nil).
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, Raw)

import luabpf
from luabpf.compiler.lib.layout import stdlib_layouts
from luabpf.runtime.verdicts import XdpAction

pytestmark = pytest.mark.kernel

SCAPY = {"eth": Ether, "vlan": Dot1Q, "vlan2": Dot1Q, "ip": IP, "ip6": IPv6, "frag6": IPv6ExtHdrFragment,
         "tcp": TCP, "udp": UDP, "icmp": ICMP}
INT_FIELDS = {name: [f for f, spec in layout.fields.items() if not spec.is_string]
              for name, layout in stdlib_layouts().items()}
INT_FIELDS["vlan2"] = INT_FIELDS["vlan"]

FIELD_PROBE = """
function filter(hdr, pld)
  local h = hdr.{header}
  if h == nil then return xdp.ABORTED end
  if h.{field} == {value} then return xdp.DROP end
  return xdp.PASS
end
"""

PRESENCE_PROBE = """
function filter(hdr, pld)
  local n = 0
  if hdr.eth then n = n + 1 end
  if hdr.vlan then n = n + 2 end
  if hdr.ip then n = n + 4 end
  if hdr.ip6 then n = n + 8 end
  if hdr.tcp then n = n + 16 end
  if hdr.udp then n = n + 32 end
  if hdr.icmp then n = n + 64 end
  if n == {expected} then return xdp.DROP end
  return xdp.PASS
end
"""

_programs: dict[str, object] = {}


def verdict(source: str, frame: bytes):
    prog = _programs.get(source)
    if prog is None:
        prog = _programs[source] = luabpf.compile(source, "probe.lua", "xdp")
    with prog.load() as p:
        return p.run(frame)


def vlan_tags(pkt) -> list:
    """The VLAN tags right after the Ethernet header, outer first (Dot1AD is a Dot1Q)."""
    tags, layer = [], pkt.payload
    while isinstance(layer, Dot1Q):
        tags.append(layer)
        layer = layer.payload
    return tags


def scapy_value(pkt, header: str, field: str) -> int:
    if header in ("vlan", "vlan2"):
        layer = vlan_tags(pkt)[header == "vlan2"]
        return {"prio": layer.prio, "dei": layer.dei, "vlan": layer.vlan, "type": layer.type}[field]
    layer = pkt[SCAPY[header]]
    if header == "eth" and field in ("dst", "src"):
        return int(getattr(layer, field).replace(":", ""), 16)
    if header in ("ip",) and field in ("src", "dst"):
        return int.from_bytes(bytes(map(int, getattr(layer, field).split("."))), "big")
    value = getattr(layer, field)
    return int(value)


def expected_presence(frame: bytes) -> int:
    """Which headers a correct parser finds (truncation-aware), from scapy's dissection."""
    pkt = Ether(frame)
    n = 1 if len(frame) >= 14 else 0
    if pkt.haslayer(Dot1Q) or pkt.haslayer(Dot1AD):
        n |= 2
    ip = pkt.getlayer(IP)
    if ip is not None and isinstance(ip, IP) and ip.version == 4 and ip.ihl >= 5 and \
            len(bytes(ip)) >= 20 and ip.len >= ip.ihl * 4 and len(bytes(ip)) >= ip.ihl * 4:
        n |= 4
        if ip.frag == 0:
            n |= _l4(ip, ip.proto, min(len(bytes(ip)), ip.len) - ip.ihl * 4, 1)
    ip6 = pkt.getlayer(IPv6)
    if ip6 is not None and ip6.version == 6 and len(bytes(ip6)) >= 40:
        n |= 8
        n |= _l4(ip6, ip6.nh, min(len(bytes(ip6)) - 40, ip6.plen), 58)
    return n


def _l4(layer, proto: int, room: int, icmp: int) -> int:
    l4 = bytes(layer.payload)[:room]
    if proto == 6 and len(l4) >= 20 and 20 <= (l4[12] >> 4) * 4 <= len(l4):
        return 16
    if proto == 17 and len(l4) >= 8:
        return 32
    if proto == icmp and len(l4) >= 8:
        return 64
    return 0


payloads = st.binary(max_size=40)
ports = st.integers(0, 65535)
ips = st.integers(0, 2**32 - 1).map(lambda v: ".".join(str(b) for b in v.to_bytes(4, "big")))


@st.composite
def frames(draw):
    eth = Ether(dst=draw(st.sampled_from(["ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", "52:54:00:12:34:56"])),
                src=draw(st.sampled_from(["02:00:00:00:00:02", "aa:bb:cc:dd:ee:ff"])))
    vlans = draw(st.integers(0, 2))
    pkt = eth
    for i in range(vlans):
        pkt = pkt / (Dot1AD if i == 0 and vlans == 2 else Dot1Q)(vlan=draw(st.integers(0, 4095)),
                                                                  prio=draw(st.integers(0, 7)))
    l3 = draw(st.sampled_from(["ip", "ip6", "raw"]))
    if l3 == "ip":
        ip = IP(src=draw(ips), dst=draw(ips), ttl=draw(st.integers(0, 255)), id=draw(st.integers(0, 65535)),
                tos=draw(st.integers(0, 255)), flags=draw(st.integers(0, 7)),
                frag=draw(st.sampled_from([0, 0, 0, 5])),
                options=draw(st.sampled_from([[], [b"\x01\x01\x01\x00"]])))
        pkt = pkt / ip
    elif l3 == "ip6":
        pkt = pkt / IPv6(hlim=draw(st.integers(0, 255)), fl=draw(st.integers(0, 2**20 - 1)))
    l4 = draw(st.sampled_from(["tcp", "udp", "icmp", "none"]))
    if l3 != "raw":
        if l4 == "tcp":
            pkt = pkt / TCP(sport=draw(ports), dport=draw(ports), seq=draw(st.integers(0, 2**32 - 1)),
                            flags=draw(st.integers(0, 511)), window=draw(ports),
                            options=draw(st.sampled_from([[], [("MSS", 1460)], [("NOP", None)] * 4])))
        elif l4 == "udp":
            pkt = pkt / UDP(sport=draw(ports), dport=draw(ports))
        elif l4 == "icmp":
            pkt = pkt / (ICMP(type=draw(st.integers(0, 255))) if l3 == "ip" else ICMPv6EchoRequest())
    pkt = pkt / Raw(draw(payloads))
    frame = bytes(pkt)
    cut = draw(st.one_of(st.just(len(frame)), st.integers(14, len(frame))))
    return frame[:cut]


@settings(max_examples=150)
@given(frames())
def test_headers_present_exactly_when_complete(frame):
    want = expected_presence(frame)
    assert verdict(PRESENCE_PROBE.replace("{expected}", str(want)), frame) == XdpAction.DROP, \
        f"presence differs from {want:07b} for {Ether(frame)!r}"


COMPLETE = [
    bytes(Ether(src="02:00:00:00:00:02", dst="52:54:00:12:34:56") / IP(src="192.0.2.1", dst="198.51.100.7",
          ttl=61, id=4660, tos=0x28, flags=2) / TCP(sport=22, dport=51000, seq=123456789, ack=987654321,
                                                    flags="PA", window=501) / Raw(b"SSH-2.0-x")),
    bytes(Ether() / Dot1Q(vlan=100, prio=5) / IP(src="10.1.2.3", dst="10.3.2.1", options=[b"\x01" * 4])
          / UDP(sport=5353, dport=53) / Raw(b"q")),
    bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=7, fl=0xABCDE, tc=3)
          / TCP(sport=443, dport=1234, flags="S")),
    bytes(Ether() / IP(src="1.2.3.4", dst="4.3.2.1") / ICMP(type=8, code=0, id=77, seq=9) / Raw(b"ping")),
    bytes(Ether() / Dot1AD(vlan=300, prio=6, dei=1) / Dot1Q(vlan=4001, prio=2) / IPv6(hlim=9, tc=5)
          / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=0, m=1, id=0x8765_4321, res1=3, res2=1)
          / UDP(sport=1234, dport=53) / Raw(b"q")),
]


@pytest.mark.parametrize("frame", COMPLETE, ids=["tcp", "vlan-udp", "ip6-tcp", "icmp", "qinq-ip6-frag-udp"])
def test_every_integer_field_equals_scapys(frame):
    pkt = Ether(frame)
    checked = 0
    for header, cls in SCAPY.items():
        if header in ("vlan", "vlan2"):
            if len(vlan_tags(pkt)) < 1 + (header == "vlan2"):
                continue
        elif not pkt.haslayer(cls):
            continue
        for field in INT_FIELDS[header]:
            if header == "icmp" and field in ("id", "seq") and pkt[ICMP].type not in (0, 8):
                continue
            want = scapy_value(pkt, header, field)
            src = FIELD_PROBE.replace("{header}", header).replace("{field}", field).replace("{value}", str(want))
            got = verdict(src, frame)
            assert got == XdpAction.DROP, f"hdr.{header}.{field} is not {want} ({got!r})"
            checked += 1
    assert checked >= 10


def test_payload_is_the_l4_payload_cut_at_the_ip_length():
    src = """
    function filter(hdr, pld)
      if #pld == 5 and pld:byte(1) == 104 and pld:byte(-1) == 111 and pld:byte(6) == nil then
        return false
      end
      return true
    end
    """
    frame = bytes(Ether() / IP() / UDP() / Raw(b"hello")) + b"\x00" * 10     # Ethernet padding
    assert verdict(src, frame) == XdpAction.DROP
    assert verdict(src, bytes(Ether() / IP() / UDP() / Raw(b"hellx"))) == XdpAction.PASS


def test_reading_a_field_of_an_absent_header_is_a_runtime_error_that_passes():
    src = "function filter(hdr, pld)\n  if hdr.tcp.dport == 22 then return false end\n  return true\nend\n"
    prog = luabpf.compile(src, "e.lua", "xdp")
    with prog.load() as p:
        assert p.run(bytes(Ether() / IP() / UDP())) == XdpAction.PASS
        assert p.run(bytes(Ether() / IP() / TCP(dport=22))) == XdpAction.DROP
        assert p.describe_errors() == ["e.lua:2: attempt to index a nil value (field 'tcp') (1 time)"]
