"""The reference model of a packet filter: the same Lua script, run by Lua 5.4.

`Reference(source).verdict(frame)` walks the frame's headers as the rules of
docs/language.md say (`headers`), builds the `hdr` table from scapy's fields of
each header found whole (others are nil) and the payload `pld` as a view over Lua strings implemented in plain
Lua below (segment, sub, byte, layout, match, find, #, tostring), calls the
script's `filter` in lupa, and returns "pass" or "drop" — what the kernel
must answer for the same frame.
"""
from __future__ import annotations

from lupa import lua54
from scapy.all import IP, TCP, Dot1Q, Ether, IPv6, IPv6ExtHdrFragment

PRELUDE = r"""
local View = {}
View.__index = View
local function view(s) return setmetatable({s = s}, View) end
View.__len = function(v) return #v.s end
View.__tostring = function(v) return v.s end
function View:segment(off, len)
  off = math.max(0, math.min(off or 0, #self.s))
  local n = #self.s - off
  if len ~= nil then n = math.max(0, math.min(len, n)) end
  return view(self.s:sub(off + 1, off + n))
end
function View:sub(i, j) return self.s:sub(i, j) end   -- a string: == compares it with constants
function View:byte(i) return self.s:byte(i or 1) end
function View:len() return #self.s end
function View:match(p, init) return self.s:match(p, init) end
function View:find(p, init, plain) return self.s:find(p, init, plain) end
function View:layout(L)
  local s = self.s
  return setmetatable({}, {__index = function(_, name)
    local f = L[name]
    local first, last = f[1] // 8, (f[1] + f[2] + 7) // 8
    if last > #s then return nil end
    if f[3] == "string" then return s:sub(first + 1, last) end
    local v = 0
    for k = first + 1, last do v = (v << 8) | s:byte(k) end
    return (v >> (last * 8 - f[1] - f[2])) & ((1 << f[2]) - 1)
  end})
end
data = {layout = function(t) return t end}
xdp = {ABORTED = 0, DROP = 1, PASS = 2, TX = 3, REDIRECT = 4}
tc = {OK = 0, SHOT = 2}
function __luabpf_view(s) return view(s) end
local tostring0 = tostring
function tostring(v) if getmetatable(v) == View then return v.s end return tostring0(v) end
"""


ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8)                 # 802.1Q, 802.1ad: either, at either depth
EXT_HEADERS = (0, 43, 44, 51, 60)             # Hop-by-Hop, Routing, Fragment, AH, Destination Options
MAX_EXT_HEADERS = 8
ICMP, ICMPV6 = 1, 58


def _ip4(addr: str) -> int:
    return int.from_bytes(bytes(map(int, addr.split("."))), "big")


def _be16(frame: bytes, at: int) -> int:
    return int.from_bytes(frame[at:at + 2], "big")


def headers(frame: bytes) -> tuple[dict, bytes]:
    """hdr's fields and the payload bytes, as the kernel parser must find them.

    The walk (which header is where, and which are whole) is written out here from the
    rules in docs/language.md; each header's fields are scapy's dissection of its bytes.
    `pld` is the bytes after the last header parsed (the whole frame without one)."""
    hdr: dict = {}
    if len(frame) < 14:
        return hdr, frame
    eth = Ether(frame[:14])
    hdr["eth"] = {"dst": int(eth.dst.replace(":", ""), 16), "src": int(eth.src.replace(":", ""), 16),
                  "type": eth.type}
    etype, off = eth.type, 14
    payload = frame[off:]
    for name in ("vlan", "vlan2"):                # the outer tag, then the inner one
        if etype not in VLAN_TPIDS:
            break
        if len(frame) < off + 4:
            return hdr, payload
        tag = Dot1Q(frame[off:off + 4])
        hdr[name] = {"prio": tag.prio, "dei": tag.dei, "vlan": tag.vlan, "type": tag.type}
        etype, off = tag.type, off + 4
        payload = frame[off:]
    if etype == ETH_P_IP:
        return _ipv4(frame, off, hdr, payload)
    if etype == ETH_P_IPV6:
        return _ipv6(frame, off, hdr, payload)
    return hdr, payload


def _ipv4(frame: bytes, off: int, hdr: dict, payload: bytes) -> tuple[dict, bytes]:
    if len(frame) < off + 20 or frame[off] >> 4 != 4:
        return hdr, payload
    ihl, total = (frame[off] & 15) * 4, _be16(frame, off + 2)
    if ihl < 20 or total < ihl:
        return hdr, payload
    end = min(off + total, len(frame))
    if off + ihl > end:
        return hdr, payload
    ip = IP(frame[off:off + ihl])
    hdr["ip"] = {f: getattr(ip, f) for f in ("version", "ihl", "tos", "len", "id", "ttl", "proto")}
    hdr["ip"].update(flags=int(ip.flags), frag=ip.frag, chksum=ip.chksum, src=_ip4(ip.src), dst=_ip4(ip.dst))
    payload = frame[off + ihl:end]
    if ip.frag != 0:                              # a later fragment: no L4 header
        return hdr, payload
    return _l4(ip.proto, frame, off + ihl, end, ICMP, hdr, payload)


def _ipv6(frame: bytes, off: int, hdr: dict, payload: bytes) -> tuple[dict, bytes]:
    if len(frame) < off + 40 or frame[off] >> 4 != 6:
        return hdr, payload
    ip6 = IPv6(frame[off:off + 40])
    cur = off + 40
    end = min(cur + ip6.plen, len(frame))
    fields = {"version": 6, "tc": ip6.tc, "fl": ip6.fl, "plen": ip6.plen, "nh": ip6.nh,
              "hlim": ip6.hlim, "src": frame[off + 8:off + 24], "dst": frame[off + 24:off + 40]}
    hdr["ip6"] = fields
    nh, walked = ip6.nh, 0
    while nh in EXT_HEADERS:
        if walked == MAX_EXT_HEADERS or cur + 8 > end:       # past the bound, or cut short
            fields["proto"] = nh
            return hdr, frame[cur:end]
        if nh == 44:                              # Fragment: 8 bytes
            frag = IPv6ExtHdrFragment(frame[cur:cur + 8])
            hdr["frag6"] = {"nh": frag.nh, "res1": frag.res1, "offset": frag.offset, "res2": frag.res2,
                            "m": frag.m, "id": frag.id}
            if frag.offset != 0:                  # a later fragment: no L4 header
                fields["proto"] = frag.nh
                return hdr, frame[cur + 8:end]
            size = 8
        elif nh == 51:                            # AH: (len + 2) 4-octet units
            size = (frame[cur + 1] + 2) * 4
        else:                                     # (len + 1) 8-octet units
            size = (frame[cur + 1] + 1) * 8
        if cur + size > end:
            fields["proto"] = nh
            return hdr, frame[cur:end]
        nh, cur, walked = frame[cur], cur + size, walked + 1
    fields["proto"] = nh
    return _l4(nh, frame, cur, end, ICMPV6, hdr, frame[cur:end])


def _l4(proto: int, frame: bytes, off: int, end: int, icmp: int, hdr: dict, payload: bytes):
    body = frame[off:end]
    if proto == 6 and len(body) >= 20 and 20 <= (body[12] >> 4) * 4 <= len(body):
        t = TCP(body)
        hdr["tcp"] = {"sport": t.sport, "dport": t.dport, "seq": t.seq, "ack": t.ack,
                      "dataofs": t.dataofs, "reserved": t.reserved, "flags": int(t.flags),
                      "window": t.window, "chksum": t.chksum, "urgptr": t.urgptr}
        payload = body[t.dataofs * 4:]
    elif proto == 17 and len(body) >= 8:
        hdr["udp"] = {"sport": _be16(body, 0), "dport": _be16(body, 2), "len": _be16(body, 4),
                      "chksum": _be16(body, 6)}
        payload = body[8:]
    elif proto == icmp and len(body) >= 8:
        hdr["icmp"] = {"type": body[0], "code": body[1], "chksum": _be16(body, 2),
                       "id": _be16(body, 4), "seq": _be16(body, 6)}
        payload = body[8:]
    return hdr, payload


class Reference:
    """One script loaded in Lua 5.4, asked for verdicts frame by frame."""

    def __init__(self, source: str, hook: str = "xdp"):
        self.lua = lua54.LuaRuntime(encoding=None, unpack_returned_tuples=True)
        self.lua.execute(PRELUDE)
        self.lua.execute(source)
        self.filter = self.lua.globals()[b"filter"]
        self.hook = hook

    def verdict(self, frame: bytes) -> str:
        hdr, payload = headers(frame)
        table = self.lua.table_from({name.encode(): self.lua.table_from({k.encode(): v for k, v in fields.items()})
                                     for name, fields in hdr.items()})
        pld = self.lua.globals()[b"__luabpf_view"](payload)
        try:
            result = self.filter(table, pld)
        except lua54.LuaError:
            return "pass"                      # a runtime error passes the packet
        if isinstance(result, tuple):
            result = result[0] if result else None
        if result is False:
            return "drop"
        if result is None or result is True:
            return "pass"
        drops = {"xdp": (0, 1), "tc": (2,)}[self.hook]
        return "drop" if result in drops else "pass"
