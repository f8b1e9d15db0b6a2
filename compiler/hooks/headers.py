"""The `hdr` table of a packet filter and the parser that fills it.

Owns which headers `hdr` has, their layouts (stdlib/net.lua) and the parse,
emitted once at the filter's entry and only if the script reads `hdr` or `pld`:
eth → up to two VLAN tags (`hdr.vlan` the outer, `hdr.vlan2` the inner) →
IPv4 (with options) or IPv6 and its extension-header chain (Hop-by-Hop,
Routing, Fragment, Destination Options, AH; at most MAX_EXT_HEADERS of them)
→ TCP (with options), UDP or ICMP/ICMPv6. A header is nil when absent or
truncated; a fragment after the first (IPv4 or IPv6) has no L4 header. `pld`
is the bytes after the last header parsed, cut at the IP length.
docs/language.md states the rules and why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.back import cost
from luabpf.compiler.lib.layout import Field, Layout, stdlib_layouts
from luabpf.compiler.lower.values import LVIEW, NIL, Val
from luabpf.compiler.lib.views import MAX_OFF, Packet, load_bytes_be, window

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
HEADERS = ("eth", "vlan", "vlan2", "ip", "ip6", "frag6", "tcp", "udp", "icmp")
LAYOUT_OF = {"vlan2": "vlan"}                 # headers that share another's layout

# IPv6 extension headers the parser walks: the ones Linux's own stack skips to reach
# the transport header (ipv6_skip_exthdr), so a filter sees the L4 header a host sees.
HOP_BY_HOP, ROUTING, FRAGMENT, AUTH, DEST_OPTS = 0, 43, 44, 51, 60
EXT_HEADERS = (HOP_BY_HOP, ROUTING, DEST_OPTS, AUTH, FRAGMENT)
EXT_MASK = sum(1 << t for t in EXT_HEADERS)
END_BOUND = 0x1FFFF          # above any IPv6 packet's end: (14 + 8 + 40) + 0xFFFF
MAX_EXT_HEADERS = 8
ICMP, ICMPV6 = 1, 58


@dataclass
class Headers:
    """The compile-time `hdr` table: which headers the script reads, and their registers."""
    tags: dict[str, ir.VReg] = field(default_factory=dict)
    starts: dict[str, ir.VReg] = field(default_factory=dict)
    layouts: dict[str, Layout] = field(default_factory=dict)
    pld: tuple[ir.VReg, ir.VReg] | None = None
    ip6_proto: ir.VReg | None = None          # hdr.ip6.proto, computed by the parser

    def demand(self, lw, name: str) -> Val:
        if name not in self.tags:
            self.tags[name] = lw.b.vreg(name + ".present")
            self.starts[name] = lw.b.vreg(name + ".start")
            self.layouts[name] = self.layout(lw, name)
        layout = self.layouts[name]
        return Val(self.tags[name], self.starts[name], frozenset({"nil", "lview"}),
                   (layout.size, 0xFFFF), layout.size, None, layout)

    def layout(self, lw, name: str) -> Layout:
        base = stdlib_layouts()[LAYOUT_OF.get(name, name)]
        if name != "ip6":
            return base
        # ip6.proto is no bytes of the IPv6 header: the parser leaves it in a register
        self.ip6_proto = lw.b.vreg("ip6.proto")
        proto = Field("proto", 0, 8, reg=self.ip6_proto)
        return Layout(base.name, {**base.fields, "proto": proto})

    def index(self, lw, key: str, node) -> Val:
        if key not in HEADERS:
            lw.error(node, f"hdr has no header '{key}' (it has {', '.join(HEADERS)})")
            return Val.nil()
        return self.demand(lw, key)

    def payload(self, lw) -> Val:
        if self.pld is None:
            self.pld = (lw.b.vreg("pld.start"), lw.b.vreg("pld.len"))
        return Val.view(*self.pld)


class HeaderParser:
    """Emits the parse of eth → vlan* → ip/ip6 (+ extension headers) → tcp/udp/icmp."""

    def __init__(self, lw, headers: Headers):
        self.lw, self.h, self.b = lw, headers, lw.b

    def publish(self, name: str, start) -> None:
        if name in self.h.tags:
            self.b.mov(self.h.tags[name], LVIEW)
            self.b.mov(self.h.starts[name], start)

    def emit(self) -> None:
        lw, b, h = self.lw, self.b, self.h
        pkt: Packet = lw.packet
        for name in h.tags:
            b.mov(h.tags[name], NIL)
            b.mov(h.starts[name], 0)
        if h.ip6_proto is not None:
            b.mov(h.ip6_proto, 0)
        pld_start, pld_len = h.pld if h.pld else (b.vreg(), b.vreg())
        size = b.bin("sub", pkt.data_end, pkt.data, "pkt_len")
        b.mov(pld_start, 0)
        b.mov(pld_len, size)
        self.done = b.block("parsed")
        self.pld_start, self.pld_len, self.size = pld_start, pld_len, size
        p = window(lw, 0, 14, self.done)
        self.publish("eth", 0)
        etype = load_bytes_be(lw, p, 12, 2)
        off = b.copy(14, "l3")
        self.payload_from(off, size)
        for name in ("vlan", "vlan2"):                      # up to two tags, outer first
            tagged, untagged, check = b.block("vlan"), b.block("no_vlan"), b.block("vlan_q")
            b.branch("eq", etype, ETH_P_8021Q, tagged, check)
            b.start(check)
            b.branch("eq", etype, ETH_P_8021AD, tagged, untagged)
            b.start(tagged)
            q = window(lw, off, 4, self.done, bounded=True)
            self.publish(name, off)
            b.emit(ir.Mov(etype, load_bytes_be(lw, q, 2, 2)))
            b.emit(ir.Bin("add", off, off, 4))
            self.payload_from(off, size)
            b.jump(untagged)
            b.start(untagged)
        v4, not_v4, v6 = b.block("ipv4"), b.block("not_ipv4"), b.block("ipv6")
        b.branch("eq", etype, ETH_P_IP, v4, not_v4)
        b.start(not_v4)
        b.branch("eq", etype, ETH_P_IPV6, v6, self.done)
        b.start(v4)
        self.ipv4(off, size)
        b.start(v6)
        self.ipv6(off, size)
        b.start(self.done)
        b.jump(self.lw.after_prologue)

    def payload_from(self, start, end) -> None:
        b = self.b
        b.mov(self.pld_start, start)
        b.emit(ir.Bin("sub", self.pld_len, end, start))

    def ipv4(self, off, size) -> None:
        lw, b = self.lw, self.b
        p = window(lw, off, 20, self.done, bounded=True)
        b0 = b.vreg("ip.b0")
        b.emit(ir.Load(1, b0, p, 0))
        version = b.bin("rsh", b0, 4)
        ok, ihl_ok = b.block("ip_v4"), b.block("ip_ihl")
        b.branch("eq", version, 4, ok, self.done)
        b.start(ok)
        ihl = b.bin("lsh", b.bin("and", b0, 15), 2)
        b.branch("ge", ihl, 20, ihl_ok, self.done)
        b.start(ihl_ok)
        total = load_bytes_be(lw, p, 2, 2)
        l4 = b.bin("add", off, ihl, "l4")
        len_ok, cut = b.block("ip_len"), b.block("ip_cut")
        b.branch("lt", total, ihl, self.done, len_ok)       # a total length below the header
        b.start(len_ok)
        end = b.bin("add", off, total, "ip_end")
        keep = b.block("ip_end_ok")
        b.branch("gt", end, size, cut, keep)
        b.start(cut)
        b.mov(end, size)
        b.jump(keep)
        b.start(keep)
        present = b.block("ip_present")
        b.branch("gt", l4, end, self.done, present)
        b.start(present)
        self.publish("ip", off)
        self.payload_from(l4, end)
        frag = b.bin("and", load_bytes_be(lw, p, 6, 2), 0x1FFF)
        first, proto_blk = b.block("ip_first"), b.block("ip_proto")
        b.branch("eq", frag, 0, first, self.done)
        b.start(first)
        proto = b.vreg("ip.proto")
        b.emit(ir.Load(1, proto, p, 9))
        b.jump(proto_blk)
        b.start(proto_blk)
        self.l4(proto, l4, end, icmp_proto=ICMP)

    def ipv6(self, off, size) -> None:
        lw, b = self.lw, self.b
        p = window(lw, off, 40, self.done, bounded=True)
        b0 = b.vreg("ip6.b0")
        b.emit(ir.Load(1, b0, p, 0))
        ok = b.block("ip6_v6")
        b.branch("eq", b.bin("rsh", b0, 4), 6, ok, self.done)
        b.start(ok)
        plen = load_bytes_be(lw, p, 4, 2)
        cur = b.bin("add", off, 40, "ext")
        end = b.bin("add", cur, plen, "ip6_end")
        cut, keep = b.block("ip6_cut"), b.block("ip6_end_ok")
        b.branch("gt", end, size, cut, keep)
        b.start(cut)
        b.mov(end, size)
        b.jump(keep)
        b.start(keep)
        self.publish("ip6", off)
        nh = b.vreg("ip6.nh")
        b.emit(ir.Load(1, nh, p, 6))
        self.extension_headers(nh, cur, end)

    def opaque_zero(self, ptr: ir.VReg) -> ir.VReg:
        """0, but not to the verifier: two loads of the same 8 packet bytes at `ptr`, subtracted."""
        b = self.b
        word, again = b.vreg("word"), b.vreg("word_again")
        b.emit(ir.Load(8, word, ptr, 0))
        b.emit(ir.Load(8, again, ptr, 0))
        return b.bin("sub", word, again, "zero")

    def blind(self, reg: ir.VReg, zero: ir.VReg, missing: ir.Block, bound: int = MAX_OFF) -> None:
        """Add the opaque `zero` to `reg`, then bound it again (a branch to `missing` that is
        never taken: `reg` is at most `bound`). The verifier then knows only
        0 <= reg <= bound, the same whatever path led here, so its states merge instead of
        multiplying with the paths (the kinds of header in the chain, the VLAN tags before it)."""
        b = self.b
        b.emit(ir.Bin("add", reg, reg, zero))
        sane = b.block("blinded")
        b.branch("gt", reg, bound, missing, sane)
        b.start(sane)

    def extension_headers(self, nh: ir.VReg, cur: ir.VReg, end: ir.VReg) -> None:
        """Walk the IPv6 extension headers, `nh` the type of the one at `cur`, then the L4
        header. A real loop of at most MAX_EXT_HEADERS trips; the walk stops (no L4 header,
        `ip6.proto` = the type of the header not walked) at a header cut short by `end` or
        past the bound, and after a Fragment header with a non-zero offset (`ip6.proto` =
        that header's next header, as `ip.proto` of an IPv4 fragment).

        For the verifier, every register the loop carries is blinded (`blind`), so its
        states merge whatever kinds of header came before; with may_goto (the loop's head)
        the trip count is blinded too and the loop verifies in two trips, without it the
        verifier walks the MAX_EXT_HEADERS trips."""
        lw, b = self.lw, self.b
        may_goto = lw.options.loops == "may_goto"
        count = b.copy(0, "ext_count")
        head, ext, upper, stopped = (b.block("ext_head"), b.block("ext"), b.block("upper"),
                                     b.block("ext_stopped"))
        head.loop = cost.LoopInfo(MAX_EXT_HEADERS + 1, MAX_EXT_HEADERS, None,
                                  "IPv6 extension-header walk")
        b.jump(head)
        b.start(head)
        small = b.block("ext_small")                        # every extension header's type is < 64:
        b.branch("gt", nh, 63, upper, small)                # one bit test, and the verifier does not
        b.start(small)                                      # learn the type (no path per type)
        bit = b.bin("rsh", b.copy(EXT_MASK, "ext_mask"), nh)
        b.branch("set", bit, 1, ext, upper)

        b.start(ext)
        if may_goto:                                        # here, so that only a chain pays for it;
            counted = b.block("ext_counted")                # never exhausted: the parse runs first
            b.terminate(ir.MayGoto(stopped, counted))
            b.start(counted)
        walk = b.block("ext_walk")
        b.branch("ge", count, MAX_EXT_HEADERS, stopped, walk)
        b.start(walk)
        p = window(lw, cur, 8, stopped, bounded=True)      # every extension header has 8 bytes or more
        zero = self.opaque_zero(p)
        self.blind(cur, zero, stopped)
        self.blind(end, zero, stopped, END_BOUND)
        nxt = b.vreg("ext_nh")
        b.emit(ir.Load(1, nxt, p, 0))
        hlen = b.vreg("ext_len")
        units = b.vreg("ext_units")
        b.emit(ir.Load(1, units, p, 1))
        ah, not_ah, frag, generic, step = (b.block("ext_ah"), b.block("ext_not_ah"), b.block("ext_frag"),
                                           b.block("ext_generic"), b.block("ext_step"))
        b.branch("eq", nh, AUTH, ah, not_ah)
        b.start(not_ah)
        b.branch("eq", nh, FRAGMENT, frag, generic)
        b.start(ah)                                         # AH: (len + 2) 4-octet units
        b.emit(ir.Bin("add", hlen, units, 2))
        b.emit(ir.Bin("lsh", hlen, hlen, 2))
        b.jump(step)
        b.start(generic)                                    # the others: (len + 1) 8-octet units
        b.emit(ir.Bin("add", hlen, units, 1))
        b.emit(ir.Bin("lsh", hlen, hlen, 3))
        b.jump(step)
        b.start(frag)                                       # always 8 bytes (its second byte is reserved)
        whole, first, later = b.block("frag_whole"), b.block("frag_first"), b.block("frag_later")
        b.branch("gt", b.bin("add", cur, 8), end, stopped, whole)
        b.start(whole)
        self.publish("frag6", cur)
        offset = b.bin("and", load_bytes_be(lw, p, 2, 2), 0xFFF8)
        b.branch("eq", offset, 0, first, later)
        b.start(later)                                      # a later fragment: no L4 header
        self.set_proto(nxt)
        self.payload_from(b.bin("add", cur, 8), end)
        b.jump(self.done)
        b.start(first)
        b.mov(hlen, 8)
        b.jump(step)

        b.start(step)
        after = b.bin("add", cur, hlen, "ext_next")
        fits = b.block("ext_fits")
        b.branch("gt", after, end, stopped, fits)
        b.start(fits)
        self.blind(after, zero, stopped)
        b.mov(cur, after)
        b.mov(nh, nxt)
        b.emit(ir.Bin("add", count, count, 1))
        if may_goto:
            b.emit(ir.Bin("add", count, count, zero))
        b.jump(head)

        b.start(stopped)                                    # cut short or past the bound: no L4
        self.set_proto(nh)
        self.payload_from(cur, end)
        b.jump(self.done)

        b.start(upper)
        self.set_proto(nh)
        self.payload_from(cur, end)
        self.l4(nh, cur, end, icmp_proto=ICMPV6)

    def set_proto(self, value) -> None:
        """Leave the walk: hdr.ip6.proto is `value`. hdr.frag6's start, carried around the
        loop, is masked to the bound it has: the verifier widens what a may_goto loop
        carries, and the mask (no change at run time) bounds it again for the body."""
        b, h = self.b, self.h
        if h.ip6_proto is not None:
            b.mov(h.ip6_proto, value)
        if "frag6" in h.starts:
            b.emit(ir.Bin("and", h.starts["frag6"], h.starts["frag6"], MAX_OFF))

    def l4(self, proto, off, end, icmp_proto: int) -> None:
        lw, b = self.lw, self.b
        tcp, not_tcp, udp, not_udp, icmp = (b.block("tcp"), b.block("not_tcp"), b.block("udp"),
                                            b.block("not_udp"), b.block("icmp"))
        b.branch("eq", proto, 6, tcp, not_tcp)
        b.start(not_tcp)
        b.branch("eq", proto, 17, udp, not_udp)
        b.start(not_udp)
        b.branch("eq", proto, icmp_proto, icmp, self.done)
        b.start(tcp)
        self.fits(off, 20, end)
        p = window(lw, off, 20, self.done, bounded=True)
        doff_byte = b.vreg("tcp.doff")
        b.emit(ir.Load(1, doff_byte, p, 12))
        doff = b.bin("lsh", b.bin("rsh", doff_byte, 4), 2)
        opts_ok, has_room = b.block("tcp_doff"), b.block("tcp_room")
        b.branch("ge", doff, 20, opts_ok, self.done)
        b.start(opts_ok)
        pld = b.bin("add", off, doff, "tcp_pld")
        b.branch("gt", pld, end, self.done, has_room)
        b.start(has_room)
        self.publish("tcp", off)
        self.payload_from(pld, end)
        b.jump(self.done)
        b.start(udp)
        self.fits(off, 8, end)
        self.publish("udp", off)
        self.payload_from(b.bin("add", off, 8), end)
        b.jump(self.done)
        b.start(icmp)
        self.fits(off, 8, end)
        self.publish("icmp", off)
        self.payload_from(b.bin("add", off, 8), end)
        b.jump(self.done)

    def fits(self, off, n: int, end) -> None:
        b = self.b
        need = b.bin("add", off, n)
        ok = b.block("fits")
        b.branch("gt", need, end, self.done, ok)
        b.start(ok)


__all__ = ["Headers", "HeaderParser", "HEADERS", "MAX_EXT_HEADERS", "EXT_HEADERS"]
