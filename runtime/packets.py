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
import socket
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
    from scapy.error import Scapy_Exception    # scapy takes ~0.2 s to import: on first use only
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
    from scapy.utils import RawPcapWriter    # scapy takes ~0.2 s to import: on first use only
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
    from scapy.layers.inet import TCP    # scapy takes ~0.2 s to import: on first use only
    return bytes(_ip(src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq,
                                     ack=ack) / payload)


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> bytes:
    """An Ethernet + IPv4 (or IPv6) + UDP frame."""
    from scapy.layers.inet import UDP    # scapy takes ~0.2 s to import: on first use only
    return bytes(_ip(src, dst) / UDP(sport=sport, dport=dport) / payload)


def _ip(src: str, dst: str):
    from scapy.layers.inet import IP    # scapy takes ~0.2 s to import: on first use only
    from scapy.layers.inet6 import IPv6  # (as above)
    from scapy.layers.l2 import Ether    # (as above)
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip


# ---- summaries ----------------------------------------------------------------------
# Parsed with struct rather than scapy: a summary per frame must stay cheap for
# captures of many thousands of frames (scapy's dissection costs ~0.4 ms a frame).

_TCP_FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x20, "U"),
              (0x40, "E"), (0x80, "W"))
_ICMP_TYPES = {0: "echo reply", 3: "unreachable", 5: "redirect", 8: "echo request",
               11: "time exceeded"}
_ICMP6_TYPES = {1: "destination unreachable", 128: "echo request", 129: "echo reply",
                133: "router solicitation", 134: "router advertisement",
                135: "neighbor solicitation", 136: "neighbor advertisement"}
_IPV6_EXT = {0, 43, 60}        # hop-by-hop, routing, destination options: skipped
_L4_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}


def summary(frame: bytes) -> str:
    """A tcpdump-like line for a frame, e.g. `IP 10.0.0.1.22 > 10.0.0.2.5555:
    Flags [P.], seq 1, length 21 "SSH-2.0-OpenSSH_6.4"`. Never raises."""
    frame = bytes(frame)
    if len(frame) < MIN_FRAME:
        return f"runt frame of {len(frame)} bytes (an Ethernet header has {MIN_FRAME})"
    try:
        return _summary(frame)
    except (struct.error, IndexError, ValueError):     # cut short where we did not expect
        return f"ethertype 0x{struct.unpack_from('!H', frame, 12)[0]:04x}, length {len(frame)}"


def _summary(frame: bytes) -> str:
    prefix = ""
    off = 12
    etype = struct.unpack_from("!H", frame, off)[0]
    while etype in (ETH_P_8021Q, ETH_P_8021AD) and len(frame) >= off + 6:
        tci = struct.unpack_from("!H", frame, off + 2)[0]
        prefix += f"vlan {tci & 0xFFF}, "
        off += 4
        etype = struct.unpack_from("!H", frame, off)[0]
    body = frame[off + 2:]
    if etype == ETH_P_IP:
        return prefix + _ipv4(body)
    if etype == ETH_P_IPV6:
        return prefix + _ipv6(body)
    if etype == ETH_P_ARP:
        return prefix + _arp(body)
    return f"{prefix}ethertype 0x{etype:04x}, length {len(frame)}"


def _ipv4(ip: bytes) -> str:
    if len(ip) < 20 or ip[0] >> 4 != 4 or (ip[0] & 0xF) < 5:
        return f"IP truncated or bad header, {len(ip)} bytes"
    ihl = (ip[0] & 0xF) * 4
    total, frag, proto = struct.unpack_from("!H", ip, 2)[0], struct.unpack_from("!H", ip, 6)[0], ip[9]
    src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
    if frag & 0x1FFF:
        return f"IP {src} > {dst}: fragment (offset {(frag & 0x1FFF) * 8}), proto {proto}"
    end = min(len(ip), max(total, ihl)) if total else len(ip)
    return "IP " + _l4(src, dst, proto, ip[ihl:end])


def _ipv6(ip: bytes) -> str:
    if len(ip) < 40 or ip[0] >> 4 != 6:
        return f"IP6 truncated or bad header, {len(ip)} bytes"
    plen, nh = struct.unpack_from("!H", ip, 4)[0], ip[6]
    src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
    rest = ip[40:40 + plen] if plen else ip[40:]
    for _ in range(8):
        if nh not in _IPV6_EXT or len(rest) < 8:
            break
        nh, rest = rest[0], rest[(rest[1] + 1) * 8:]
    return "IP6 " + _l4(src, dst, nh, rest)


def _l4(src: str, dst: str, proto: int, l4: bytes) -> str:
    if proto == 6 and len(l4) >= 20:
        sport, dport, seq = struct.unpack_from("!HHI", l4)
        doff, bits = (l4[12] >> 4) * 4, l4[13]
        flags = "".join(ch for bit, ch in _TCP_FLAGS if bits & bit) + ("." if bits & 0x10 else "")
        data = l4[doff:] if doff >= 20 else b""
        return (f"{src}.{sport} > {dst}.{dport}: Flags [{flags or 'none'}], seq {seq}, "
                f"length {len(data)}{_preview(data)}")
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack_from("!HH", l4)
        data = l4[8:]
        return f"{src}.{sport} > {dst}.{dport}: UDP, length {len(data)}{_preview(data)}"
    if proto == 1 and len(l4) >= 8:
        what = _ICMP_TYPES.get(l4[0], f"type {l4[0]}")
        ident, seq = struct.unpack_from("!HH", l4, 4)
        extra = f", id {ident}, seq {seq}" if l4[0] in (0, 8) else ""
        return f"{src} > {dst}: ICMP {what}{extra}, length {len(l4)}"
    if proto == 58 and len(l4) >= 4:
        return f"{src} > {dst}: ICMP6, {_ICMP6_TYPES.get(l4[0], f'type {l4[0]}')}, length {len(l4)}"
    if proto in _L4_NAMES:
        return f"{src} > {dst}: [|{_L4_NAMES[proto]}] truncated, {len(l4)} bytes"
    return f"{src} > {dst}: ip-proto-{proto} {len(l4)}"


def _arp(arp: bytes) -> str:
    if len(arp) < 28 or arp[4] != 6 or arp[5] != 4:
        return f"ARP, length {len(arp)}"
    op = struct.unpack_from("!H", arp, 6)[0]
    sha = ":".join(f"{b:02x}" for b in arp[8:14])
    spa, tpa = socket.inet_ntop(socket.AF_INET, arp[14:18]), socket.inet_ntop(socket.AF_INET, arp[24:28])
    if op == 1:
        return f"ARP, Request who-has {tpa} tell {spa}, length {len(arp)}"
    if op == 2:
        return f"ARP, Reply {spa} is-at {sha}, length {len(arp)}"
    return f"ARP, op {op}, length {len(arp)}"


def _preview(data: bytes, width: int = 24) -> str:
    """A quoted start of the payload when it is text (as SSH banners are)."""
    text = data[:width].rstrip(b"\r\n")
    if not text or any(b < 0x20 or b > 0x7E for b in text):
        return ""
    return f' "{text.decode("ascii")}{"…" if len(data) > width else ""}"'
