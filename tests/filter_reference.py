"""The reference model of a packet filter: the same Lua script, run by Lua 5.4.

`reference_verdict(source, frame)` dissects the frame with scapy, builds the
`hdr` table from scapy's fields (a header that scapy did not find whole is
nil) and the payload `pld` as a view over Lua strings implemented in plain
Lua below (segment, sub, byte, layout, match, find, #, tostring), calls the
script's `filter` in lupa, and returns "pass" or "drop" — what the kernel
must answer for the same frame.
"""
from __future__ import annotations

from lupa import lua54
from scapy.all import ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6, Raw  # noqa: F401

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


def _ip4(addr: str) -> int:
    return int.from_bytes(bytes(map(int, addr.split("."))), "big")


def headers(frame: bytes) -> tuple[dict, bytes]:
    """hdr's fields and the payload bytes, as the kernel parser must find them."""
    pkt = Ether(frame)
    hdr: dict = {"eth": {"dst": int(pkt.dst.replace(":", ""), 16), "src": int(pkt.src.replace(":", ""), 16),
                         "type": pkt.type}}
    payload = frame[14:]
    vlan = pkt.getlayer(Dot1Q) or pkt.getlayer(Dot1AD)
    if vlan is not None:
        hdr["vlan"] = {"prio": vlan.prio, "dei": vlan.dei, "vlan": vlan.vlan, "type": vlan.type}
        depth = 1 + (pkt.getlayer(Dot1Q, 2) is not None or (pkt.haslayer(Dot1AD) and pkt.haslayer(Dot1Q)))
        payload = frame[14 + 4 * depth:]
    ip, ip6 = pkt.getlayer(IP), pkt.getlayer(IPv6)
    l4 = None
    if ip is not None and isinstance(ip, IP):
        raw = bytes(ip)
        if len(raw) >= 20 and ip.version == 4 and ip.ihl >= 5 and ip.len >= ip.ihl * 4 \
                and len(raw) >= ip.ihl * 4:
            hdr["ip"] = {f: getattr(ip, f) for f in ("version", "ihl", "tos", "len", "id", "ttl", "proto")}
            hdr["ip"].update(flags=int(ip.flags), frag=ip.frag, chksum=ip.chksum, src=_ip4(ip.src),
                             dst=_ip4(ip.dst))
            end = min(len(raw), ip.len)
            payload = raw[ip.ihl * 4:end]
            if ip.frag == 0:
                l4 = (ip.proto, payload, 1)
    elif ip6 is not None and len(bytes(ip6)) >= 40 and ip6.version == 6:
        raw = bytes(ip6)
        hdr["ip6"] = {"version": 6, "tc": ip6.tc, "fl": ip6.fl, "plen": ip6.plen, "nh": ip6.nh,
                      "hlim": ip6.hlim, "src": raw[8:24], "dst": raw[24:40]}
        payload = raw[40:40 + ip6.plen]
        l4 = (ip6.nh, payload, 58)
    if l4 is not None:
        proto, body, icmp = l4
        if proto == 6 and len(body) >= 20 and 20 <= (body[12] >> 4) * 4 <= len(body):
            t = TCP(body)
            hdr["tcp"] = {"sport": t.sport, "dport": t.dport, "seq": t.seq, "ack": t.ack,
                          "dataofs": t.dataofs, "reserved": t.reserved, "flags": int(t.flags),
                          "window": t.window, "chksum": t.chksum, "urgptr": t.urgptr}
            payload = body[t.dataofs * 4:]
        elif proto == 17 and len(body) >= 8:
            hdr["udp"] = {"sport": int.from_bytes(body[0:2], "big"), "dport": int.from_bytes(body[2:4], "big"),
                          "len": int.from_bytes(body[4:6], "big"), "chksum": int.from_bytes(body[6:8], "big")}
            payload = body[8:]
        elif proto == icmp and len(body) >= 8:
            hdr["icmp"] = {"type": body[0], "code": body[1], "chksum": int.from_bytes(body[2:4], "big"),
                           "id": int.from_bytes(body[4:6], "big"), "seq": int.from_bytes(body[6:8], "big")}
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
