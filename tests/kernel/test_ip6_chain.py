"""IPv6 extension headers, fragments and QinQ: the kernel's parse against the reference.

One probe filter writes what it sees (which headers are there, hdr.ip6.proto, the
Fragment header's fields, both VLAN tags, the ports, `pld`'s length and end bytes)
into an array map; tests/filter_reference.py's `headers` says what it must see. Frames
are scapy-built chains of every shape, each cut at every length, and hypothesis-drawn
chains, run with BPF_PROG_TEST_RUN through XDP and tc.
"""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (AH, ESP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6EchoRequest, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       PadN, Raw)

import luabpf
from luabpf.runtime.verdicts import TcAction, XdpAction, is_drop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from filter_reference import MAX_EXT_HEADERS, Reference, headers  # noqa: E402

pytestmark = pytest.mark.kernel

NIL = -1
PROBE = """
out = map.array(24)
function filter(hdr, pld)
  local n = 0
  if hdr.eth then n = n | 1 end
  if hdr.vlan then n = n | 2 end
  if hdr.vlan2 then n = n | 4 end
  if hdr.ip then n = n | 8 end
  if hdr.ip6 then n = n | 16 end
  if hdr.frag6 then n = n | 32 end
  if hdr.tcp then n = n | 64 end
  if hdr.udp then n = n | 128 end
  if hdr.icmp then n = n | 256 end
  out[0] = n
  out[1] = -1  out[2] = -1  out[3] = -1  out[4] = -1  out[5] = -1  out[6] = -1
  out[7] = -1  out[8] = -1  out[9] = -1  out[10] = -1  out[11] = -1  out[12] = -1
  if hdr.vlan then out[1] = hdr.vlan.vlan  out[2] = hdr.vlan.type end
  if hdr.vlan2 then out[3] = hdr.vlan2.vlan  out[4] = hdr.vlan2.type  out[5] = hdr.vlan2.prio end
  if hdr.ip6 then out[6] = hdr.ip6.proto  out[7] = hdr.ip6.nh end
  if hdr.frag6 then
    out[8] = hdr.frag6.offset  out[9] = hdr.frag6.m  out[10] = hdr.frag6.id  out[11] = hdr.frag6.nh
  end
  if hdr.tcp then out[12] = hdr.tcp.dport end
  if hdr.udp then out[12] = hdr.udp.dport end
  if hdr.icmp then out[12] = hdr.icmp.type end
  out[13] = #pld
  out[14] = pld:byte(1) or -1
  out[15] = pld:byte(-1) or -1
  return true
end
"""
SLOTS = 16
BITS = {"eth": 1, "vlan": 2, "vlan2": 4, "ip": 8, "ip6": 16, "frag6": 32, "tcp": 64, "udp": 128, "icmp": 256}


def expected(frame: bytes) -> list[int]:
    """The probe's map, as the reference parser says it must be."""
    hdr, pld = headers(frame)
    out = [NIL] * SLOTS
    out[0] = sum(bit for name, bit in BITS.items() if name in hdr)
    if "vlan" in hdr:
        out[1:3] = hdr["vlan"]["vlan"], hdr["vlan"]["type"]
    if "vlan2" in hdr:
        out[3:6] = hdr["vlan2"]["vlan"], hdr["vlan2"]["type"], hdr["vlan2"]["prio"]
    if "ip6" in hdr:
        out[6:8] = hdr["ip6"]["proto"], hdr["ip6"]["nh"]
    if "frag6" in hdr:
        f = hdr["frag6"]
        out[8:12] = f["offset"], f["m"], f["id"], f["nh"]
    for l4, field in (("tcp", "dport"), ("udp", "dport"), ("icmp", "type")):
        if l4 in hdr:
            out[12] = hdr[l4][field]
    out[13] = len(pld)
    out[14:16] = (pld[0], pld[-1]) if pld else (NIL, NIL)
    return out


class Probe:
    """The probe loaded for one hook; `seen(frame)` is its map after one run."""

    def __init__(self, hook: str, loops: str):
        self.hook = hook
        self.loaded = luabpf.compile(PROBE, "probe.lua", hook, loops=loops).load()
        self.out = self.loaded.maps["out"]

    def runs(self, frame: bytes) -> bool:
        """Whether the kernel's test run takes the frame: for tc it refuses an untagged IPv6
        frame whose IPv6 header is cut short (net/bpf/test_run.c)."""
        return self.hook == "xdp" or frame[12:14] != b"\x86\xdd" or len(frame) >= 14 + 40

    def seen(self, frame: bytes) -> list[int]:
        self.loaded.run(frame)
        return [self.out[i] for i in range(SLOTS)]


@pytest.fixture(scope="module", params=[("xdp", "may_goto"), ("tc", "may_goto"), ("xdp", "bounded")],
                ids=["xdp", "tc", "xdp-bounded"])
def probe(request):
    """The walk is a may_goto loop on kernels that have it (this one), a bounded loop the
    verifier walks trip by trip on others: both are held to the reference."""
    p = Probe(*request.param)
    yield p
    p.loaded.close()


def ext(kind: str, **kw):
    return {"hbh": IPv6ExtHdrHopByHop, "rt": IPv6ExtHdrRouting, "dst": IPv6ExtHdrDestOpt,
            "frag": IPv6ExtHdrFragment, "ah": AH}[kind](**kw)


def ah(icv: bytes, **kw):
    """An AH header whose length field is right (scapy leaves it 0): (len + 2) 4-octet units."""
    return AH(icv=icv, payloadlen=(12 + len(icv)) // 4 - 2, **kw)


NEXT = {IPv6ExtHdrHopByHop: 0, IPv6ExtHdrRouting: 43, IPv6ExtHdrFragment: 44, AH: 51, ESP: 50,
        IPv6ExtHdrDestOpt: 60, TCP: 6, UDP: 17, ICMPv6EchoRequest: 58}


def chain(*layers, l4=None, payload=b"data!", vlans=()):
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for tpid, vid in vlans:
        pkt = pkt / (Dot1AD if tpid == 0x88A8 else Dot1Q)(vlan=vid, prio=vid % 8)
    pkt = pkt / IPv6(src="2001:db8::1", dst="2001:db8::2")
    following = list(layers[1:]) + [l4]
    for layer, after in zip(layers, following):
        if isinstance(layer, AH) and "nh" not in layer.fields:    # scapy does not fill AH's
            layer.nh = NEXT[type(after)] if after is not None else 59
        pkt = pkt / layer
    if l4 is not None:
        pkt = pkt / l4
    return bytes(pkt / Raw(payload))


TCP22 = TCP(sport=40000, dport=22, flags="S")
SHAPES = {
    "hbh": chain(ext("hbh"), l4=TCP22),
    "hbh-padded": chain(ext("hbh", options=[PadN(optdata=b"\0" * 12)]), l4=TCP22),
    "routing": chain(ext("rt", addresses=["2001:db8::9"]), l4=UDP(dport=53)),
    "dstopt": chain(ext("dst"), l4=ICMPv6EchoRequest()),
    "ah": chain(ah(b"\x01" * 12, spi=7), l4=TCP22),
    "ah-long": chain(ah(b"\x02" * 28, spi=7), l4=UDP(dport=53)),
    "frag-first": chain(ext("frag", offset=0, m=1, id=0xDEADBEEF), l4=TCP22),
    "frag-atomic": chain(ext("frag", offset=0, m=0, id=5), l4=UDP(dport=53)),
    "frag-later": chain(ext("frag", offset=185, m=1, id=9, nh=6), payload=bytes(TCP22) + b"x" * 12),
    "frag-later-last": chain(ext("frag", offset=2, m=0, id=9, nh=17), payload=b"y" * 16),
    "frag-reserved-len": chain(ext("frag", offset=0, res1=0x55, id=1), l4=TCP22),
    "frag-then-frag-later": chain(ext("frag", offset=0, id=1), ext("frag", offset=8, id=2, nh=6),
                                  payload=b"z" * 24),
    "all-kinds": chain(ext("hbh"), ext("dst"), ext("rt"), ext("frag", offset=0, m=1, id=3),
                       ah(b"\x03" * 12, spi=1), ext("dst"), l4=TCP22),
    "esp": chain(ext("hbh"), ESP(spi=5, seq=1)),
    "no-next-header": chain(ext("dst", nh=59), payload=b"ignored"),
    "unknown-next": chain(ext("hbh", nh=253), payload=bytes(TCP22)),
    "gre-after-chain": chain(ext("hbh"), ext("dst", nh=47), payload=b"\0\0\x08\0" + b"q" * 20),
    "max-chain": chain(*[ext("dst") for _ in range(MAX_EXT_HEADERS)], l4=TCP22),
    "past-max-chain": chain(*[ext("dst") for _ in range(MAX_EXT_HEADERS + 1)], l4=TCP22),
    "past-max-mixed": chain(*[ext(k) for k in ("hbh", "rt", "dst", "dst", "rt", "dst", "rt", "dst", "dst")],
                            l4=UDP(dport=53)),
    "qinq-ad": chain(ext("hbh"), l4=TCP22, vlans=((0x88A8, 100), (0x8100, 200))),
    "qinq-q": chain(l4=UDP(dport=53), vlans=((0x8100, 10), (0x8100, 4094))),
    "vlan-one": chain(ext("frag", offset=0, id=2), l4=UDP(dport=53), vlans=((0x8100, 3),)),
    "plain-tcp": chain(l4=TCP22),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_cut_at_every_length_parses_as_the_reference(probe, shape):
    frame = SHAPES[shape]
    for n in range(14, len(frame) + 1):
        cut = frame[:n]
        if not probe.runs(cut):
            continue
        assert probe.seen(cut) == expected(cut), f"{shape} cut at {n} of {len(frame)}: {Ether(cut)!r}"


def test_a_payload_length_shorter_than_the_chain_cuts_it(probe):
    frame = bytearray(SHAPES["all-kinds"])
    for plen in range(0, 120, 3):
        frame[18:20] = plen.to_bytes(2, "big")
        assert probe.seen(bytes(frame)) == expected(bytes(frame)), f"plen {plen}"


def test_ethernet_padding_is_not_payload_after_a_chain(probe):
    frame = SHAPES["hbh"] + b"\0" * 20
    assert probe.seen(frame) == expected(frame)
    assert probe.seen(frame)[13] == len(b"data!")


def test_the_shapes_say_what_the_rules_say():
    """The reference itself, on the decisions the shapes are there for."""
    def proto(shape):
        return headers(SHAPES[shape])[0]["ip6"]["proto"]
    assert "tcp" in headers(SHAPES["hbh"])[0] and proto("hbh") == 6
    assert "tcp" in headers(SHAPES["max-chain"])[0]
    assert "tcp" not in headers(SHAPES["past-max-chain"])[0] and proto("past-max-chain") == 60
    assert "tcp" not in headers(SHAPES["frag-later"])[0] and proto("frag-later") == 6
    assert headers(SHAPES["frag-later"])[0]["frag6"]["offset"] == 185
    assert "tcp" in headers(SHAPES["frag-reserved-len"])[0]
    assert "frag6" in headers(SHAPES["frag-then-frag-later"])[0]
    assert headers(SHAPES["frag-then-frag-later"])[0]["frag6"]["offset"] == 8
    assert proto("esp") == 50 and proto("no-next-header") == 59 and proto("unknown-next") == 253
    assert headers(SHAPES["qinq-ad"])[0]["vlan2"]["vlan"] == 200
    for shape in ("ah", "all-kinds", "frag-first", "hbh-padded", "qinq-ad"):
        assert headers(SHAPES[shape])[0]["tcp"]["dport"] == 22, shape
    assert headers(SHAPES["ah-long"])[0]["udp"]["dport"] == 53


# ---- hypothesis: chains of any kinds, lengths and end -------------------------------

@st.composite
def chains(draw):
    layers = []
    for _ in range(draw(st.integers(0, MAX_EXT_HEADERS + 2))):
        kind = draw(st.sampled_from(["hbh", "rt", "dst", "frag", "ah"]))
        if kind == "frag":
            layers.append(ext("frag", offset=draw(st.sampled_from([0, 0, 1, 8191])), m=draw(st.integers(0, 1)),
                              id=draw(st.integers(0, 2**32 - 1))))
        elif kind == "ah":
            layers.append(ah(b"\x07" * 4 * draw(st.integers(1, 6)), spi=draw(st.integers(0, 2**32 - 1))))
        elif kind == "hbh":
            layers.append(ext("hbh", options=[PadN(optdata=b"\0" * draw(st.sampled_from([4, 12, 20])))]))
        else:
            layers.append(ext(kind))
    end = draw(st.sampled_from(["tcp", "udp", "icmp", "esp", "nnh", "raw"]))
    l4 = {"tcp": TCP(dport=draw(st.integers(0, 65535)), options=draw(st.sampled_from([[], [("MSS", 1460)]]))),
          "udp": UDP(dport=draw(st.integers(0, 65535))), "icmp": ICMPv6EchoRequest(),
          "esp": ESP(spi=1), "nnh": None, "raw": None}[end]
    if end == "nnh" and layers:
        layers[-1].nh = 59
    vlans = draw(st.sampled_from([(), ((0x8100, 5),), ((0x88A8, 6), (0x8100, 7)), ((0x8100, 8), (0x8100, 9))]))
    frame = chain(*layers, l4=l4, payload=draw(st.binary(max_size=24)), vlans=vlans)
    cut = draw(st.one_of(st.just(len(frame)), st.integers(14, len(frame))))
    return frame[:cut]


@settings(max_examples=300, deadline=None)
@given(chains())
def test_hypothesis_chains_parse_as_the_reference(probe, frame):
    if not probe.runs(frame):
        return
    assert probe.seen(frame) == expected(frame), repr(Ether(frame))


# ---- what a filter author relies on ------------------------------------------------

PORT_FILTER = """
function filter(hdr, pld)
  if hdr.tcp and hdr.tcp.dport == 22 then return false end
  return true
end
"""


@pytest.mark.parametrize("hook", ["xdp", "tc"])
@pytest.mark.parametrize("shape", ["hbh", "hbh-padded", "ah", "all-kinds", "frag-first", "qinq-ad"])
def test_a_tcp_port_filter_is_not_bypassed_by_extension_headers(hook, shape):
    """On the old parser one Hop-by-Hop header made hdr.tcp nil: port 22 passed."""
    drop = XdpAction.DROP if hook == "xdp" else TcAction.SHOT
    with luabpf.compile(PORT_FILTER, "ports.lua", hook).load() as p:
        assert p.run(SHAPES["plain-tcp"]) == drop
        assert p.run(SHAPES[shape]) == drop
        assert Reference(PORT_FILTER, hook).verdict(SHAPES[shape]) == "drop"


STRICT = """
-- pass only what was parsed to the end; drop later fragments and unwalked chains
function filter(hdr, pld)
  local ip6 = hdr.ip6
  if ip6 == nil then return true end
  if hdr.frag6 and hdr.frag6.offset ~= 0 then return false end
  local p = ip6.proto
  if p == 0 or p == 43 or p == 44 or p == 51 or p == 60 then return false end
  if p == 6 and hdr.tcp == nil then return false end
  return true
end
"""


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_the_documented_strict_filter_drops_what_was_not_parsed(hook):
    ref = Reference(STRICT, hook)
    want = {"plain-tcp": "pass", "hbh": "pass", "max-chain": "pass", "esp": "pass",
            "past-max-chain": "drop", "past-max-mixed": "drop", "frag-later": "drop",
            "frag-then-frag-later": "drop"}
    with luabpf.compile(STRICT, "strict.lua", hook).load() as p:
        for shape, verdict in want.items():
            assert ref.verdict(SHAPES[shape]) == verdict, shape
            assert is_drop(p.run(SHAPES[shape])) == (verdict == "drop"), shape
        cut_chain = SHAPES["all-kinds"][:14 + 40 + 12]            # the Hop-by-Hop header cut short
        assert ref.verdict(cut_chain) == "drop"
        assert is_drop(p.run(cut_chain))


def test_ipv4_fragments_keep_their_rule():
    """The IPv6 rule is the IPv4 one: a later fragment has no L4 header, the first has."""
    first = bytes(Ether() / IP(flags="MF", frag=0, proto=6) / TCP22)
    later = bytes(Ether() / IP(frag=3, proto=6) / Raw(bytes(TCP22)))
    with luabpf.compile(PORT_FILTER, "ports.lua", "xdp").load() as p:
        assert p.run(first) == XdpAction.DROP
        assert p.run(later) == XdpAction.PASS
    assert "tcp" in headers(first)[0] and "tcp" not in headers(later)[0]


def test_ip6_proto_without_an_ipv6_header_is_luas_nil_index_error():
    src = "function filter(hdr, pld)\n  if hdr.ip6.proto == 6 then return false end\n  return true\nend\n"
    v4 = bytes(Ether() / IP() / TCP22)
    with luabpf.compile(src, "e.lua", "xdp").load() as p:
        assert p.run(v4) == XdpAction.PASS
        assert p.run(SHAPES["hbh"]) == XdpAction.DROP
        assert p.describe_errors() == ["e.lua:2: attempt to index a nil value (field 'ip6') (1 time)"]
    ref = Reference(src)
    assert ref.verdict(v4) == "pass" and ref.verdict(SHAPES["hbh"]) == "drop"
