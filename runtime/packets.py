"""Packets for `luabpf test` and the tests: frames in, frames out, one-line summaries.

Owns, with scapy: reading a capture file (pcap or pcapng) into Ethernet
frames (`read_pcap`; captures of raw IP or Linux "cooked" SLL/SLL2 get an
Ethernet header so every filter sees the frame XDP and tc would), writing
frames to a pcap (`write_pcap`), parsing `--packet HEX…` arguments
(`parse_hex`), building test frames (`tcp_frame`, `udp_frame`), and a
tcpdump-like one-line `summary` of a frame, which never raises, whatever the
bytes. Does not own running programs on frames (`runtime/load.py`) or
verdicts (`runtime/verdicts.py`).

A frame is `bytes`, starting at the Ethernet header. `MIN_FRAME` (14 bytes,
an Ethernet header) is the shortest frame the kernel's test run accepts.
"""
from __future__ import annotations

import re
import struct
from typing import Iterable, Iterator

__all__ = ["PacketError", "MIN_FRAME", "read_pcap", "iter_pcap", "write_pcap", "parse_hex",
           "summary", "tcp_frame", "udp_frame"]

MIN_FRAME = 14
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8
LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2 = 1, 101, 113, 276
_RAW_IP_TYPES = {LINKTYPE_RAW, 12, 14, 228, 229}      # DLT_RAW on various systems, IPV4, IPV6
_ZERO_MACS = b"\x00" * 12


class PacketError(ValueError):
    """A capture file or hex argument that cannot be read; one sentence."""


# ---- input -------------------------------------------------------------------------

def _ether_from_ip(ip: bytes) -> bytes:
    version = ip[0] >> 4 if ip else 4
    return _ZERO_MACS + struct.pack("!H", ETH_P_IPV6 if version == 6 else ETH_P_IP) + ip


def _to_ether(linktype: int, data: bytes, path: str) -> bytes:
    if linktype == LINKTYPE_ETHERNET:
        return data
    if linktype in _RAW_IP_TYPES:
        return _ether_from_ip(data)
    if linktype == LINKTYPE_LINUX_SLL and len(data) >= 16:
        return b"\x00" * 6 + data[6:12].ljust(6, b"\x00")[:6] + data[14:16] + data[16:]
    if linktype == LINKTYPE_LINUX_SLL2 and len(data) >= 20:
        return b"\x00" * 6 + data[12:18] + data[0:2] + data[20:]
    if linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        return data          # too short to convert: reported as a runt frame
    raise PacketError(f"{path}: link type {linktype} is not supported "
                      "(Ethernet, raw IP and Linux cooked captures are)")


def iter_pcap(path: str) -> Iterator[bytes]:
    """The frames of a pcap or pcapng file, one by one, as Ethernet frames."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader
    try:
        reader = RawPcapReader(path)
    except FileNotFoundError:
        raise PacketError(f"{path}: no such file") from None
    except (Scapy_Exception, OSError, EOFError, struct.error) as e:
        raise PacketError(f"{path}: not a pcap or pcapng file ({e})") from None
    with reader:
        linktype = getattr(reader, "linktype", LINKTYPE_ETHERNET)
        while True:
            try:
                data, meta = next(reader)
            except (StopIteration, EOFError):
                return
            except (Scapy_Exception, struct.error, ValueError) as e:
                raise PacketError(f"{path}: damaged capture ({e})") from None
            lt = getattr(meta, "linktype", None) or linktype   # pcapng: per interface
            yield _to_ether(lt, bytes(data), path)


def read_pcap(path: str) -> list[bytes]:
    """Every frame of a pcap or pcapng file (Ethernet frames)."""
    return list(iter_pcap(path))


def write_pcap(path: str, frames: Iterable[bytes]) -> None:
    """Write Ethernet frames to a pcap file."""
    from scapy.utils import RawPcapWriter
    with RawPcapWriter(path, linktype=LINKTYPE_ETHERNET, sync=True) as w:
        for f in frames:
            w.write(bytes(f))


_HEX_JUNK = re.compile(r"[\s:.\-_]")


def parse_hex(args: Iterable[str]) -> list[bytes]:
    """`--packet` arguments as frames: one frame per argument, hex digits
    with optional `0x` and any of ` :.-_` between them."""
    frames = []
    for i, text in enumerate(args, 1):
        digits = _HEX_JUNK.sub("", text)
        if digits[:2].lower() == "0x":
            digits = digits[2:]
        if not digits:
            raise PacketError(f"--packet #{i} is empty")
        bad = re.search(r"[^0-9a-fA-F]", digits)
        if bad:
            raise PacketError(f"--packet #{i}: {bad.group()!r} is not a hex digit")
        if len(digits) % 2:
            raise PacketError(f"--packet #{i} has an odd number of hex digits ({len(digits)})")
        frames.append(bytes.fromhex(digits))
    return frames


# ---- building frames ------------------------------------------------------------------

def tcp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes = b"",
              flags: str = "PA", seq: int = 1000, ack: int = 1) -> bytes:
    """An Ethernet + IPv4 (or IPv6, from the addresses) + TCP frame."""
    from scapy.layers.inet import TCP
    return bytes(_ip(src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq,
                                     ack=ack) / payload)


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> bytes:
    """An Ethernet + IPv4 (or IPv6) + UDP frame."""
    from scapy.layers.inet import UDP
    return bytes(_ip(src, dst) / UDP(sport=sport, dport=dport) / payload)


def _ip(src: str, dst: str):
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip


# ---- summaries ----------------------------------------------------------------------

_TCP_FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x20, "U"),
              (0x40, "E"), (0x80, "W"))
_ICMP_TYPES = {0: "echo reply", 3: "unreachable", 5: "redirect", 8: "echo request",
               11: "time exceeded"}
_ICMP6_TYPES = {1: "destination unreachable", 128: "echo request", 129: "echo reply",
                133: "router solicitation", 134: "router advertisement",
                135: "neighbor solicitation", 136: "neighbor advertisement"}


def summary(frame: bytes) -> str:
    """A tcpdump-like line for a frame, e.g. `IP 10.0.0.1.22 > 10.0.0.2.5555:
    Flags [P.], length 21 "SSH-2.0-OpenSSH_6.4"`. Never raises."""
    frame = bytes(frame)
    if len(frame) < MIN_FRAME:
        return f"runt frame of {len(frame)} bytes (an Ethernet header has {MIN_FRAME})"
    try:
        return _summary(frame)
    except Exception:                         # scapy on hostile bytes: say what we can
        etype = struct.unpack_from("!H", frame, 12)[0]
        return f"ethertype 0x{etype:04x}, length {len(frame)}"


def _summary(frame: bytes) -> str:
    import scapy.layers.inet  # noqa: F401  (binds IP to Ether before dissecting)
    import scapy.layers.inet6  # noqa: F401
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    pkt = Ether(frame)
    prefix = ""
    layer = pkt.payload
    while isinstance(layer, (Dot1Q, Dot1AD)):
        prefix += f"vlan {layer.vlan}, "
        layer = layer.payload
    if isinstance(layer, ARP):
        return prefix + _arp(layer, len(frame))
    text = _l3(layer)
    if text is None:
        etype = _last_ethertype(frame)
        return f"{prefix}ethertype 0x{etype:04x}, length {len(frame)}"
    return prefix + text


def _last_ethertype(frame: bytes) -> int:
    off = 12
    etype = struct.unpack_from("!H", frame, off)[0]
    while etype in (ETH_P_8021Q, ETH_P_8021AD) and len(frame) >= off + 6:
        off += 4
        etype = struct.unpack_from("!H", frame, off)[0]
    return etype


def _arp(arp, length: int) -> str:
    if arp.op == 1:
        return f"ARP, Request who-has {arp.pdst} tell {arp.psrc}, length {length - MIN_FRAME}"
    if arp.op == 2:
        return f"ARP, Reply {arp.psrc} is-at {arp.hwsrc}, length {length - MIN_FRAME}"
    return f"ARP, op {arp.op}, length {length - MIN_FRAME}"


def _l3(layer) -> str | None:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw
    if isinstance(layer, IP):
        name, src, dst, l4 = "IP", layer.src, layer.dst, layer.payload
        proto = layer.proto
        if layer.frag or layer.flags.MF:
            return f"IP {src} > {dst}: fragment (offset {layer.frag * 8}), proto {proto}"
    elif isinstance(layer, IPv6):
        name, src, dst, l4 = "IP6", layer.src, layer.dst, layer.payload
        proto = layer.nh
    elif isinstance(layer, Raw) and layer.load[:1] and layer.load[0] >> 4 in (4, 6):
        return f"IP truncated, {len(layer.load)} bytes of header"
    else:
        return None
    return f"{name} {_l4(src, dst, proto, l4)}"


def _l4(src: str, dst: str, proto: int, l4) -> str:
    from scapy.layers.inet import ICMP, TCP, UDP
    from scapy.packet import NoPayload, Raw
    if isinstance(l4, TCP):
        flags = "".join(ch for bit, ch in _TCP_FLAGS if int(l4.flags) & bit)
        flags += "." if int(l4.flags) & 0x10 else ""
        data = bytes(l4.payload)
        return (f"{src}.{l4.sport} > {dst}.{l4.dport}: Flags [{flags or 'none'}], "
                f"seq {l4.seq}, length {len(data)}{_preview(data)}")
    if isinstance(l4, UDP):
        data = bytes(l4.payload)
        return f"{src}.{l4.sport} > {dst}.{l4.dport}: UDP, length {len(data)}{_preview(data)}"
    if isinstance(l4, ICMP):
        what = _ICMP_TYPES.get(l4.type, f"type {l4.type}")
        extra = f", id {l4.id}, seq {l4.seq}" if l4.type in (0, 8) else ""
        return f"{src} > {dst}: ICMP {what}{extra}, length {len(bytes(l4))}"
    if proto == 58 and not isinstance(l4, (NoPayload, Raw)):
        what = _ICMP6_TYPES.get(getattr(l4, "type", -1), f"type {getattr(l4, 'type', '?')}")
        return f"{src} > {dst}: ICMP6, {what}, length {len(bytes(l4))}"
    names = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}
    if proto in names:                       # the header is cut short
        return f"{src} > {dst}: [|{names[proto]}] truncated, {len(bytes(l4))} bytes"
    return f"{src} > {dst}: ip-proto-{proto} {len(bytes(l4))}"


def _preview(data: bytes, width: int = 24) -> str:
    """A quoted start of the payload when it is text (as SSH banners are)."""
    if not data:
        return ""
    head = data[:width]
    text = head.rstrip(b"\r\n")
    if not text or any(b < 0x20 or b > 0x7E for b in text):
        return ""
    more = "…" if len(data) > width else ""
    return f' "{text.decode("ascii")}{more}"'
