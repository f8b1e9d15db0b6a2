"""The packet-filter hook: `filter(hdr, pld)` on XDP and tc.

Owns the hook records (program type, context offsets, verdict mapping) and
the header parser: eth, stacked VLAN tags (802.1Q/802.1ad; `hdr.vlan` is the
outer one), IPv4 (with options; fragments after the first carry no L4 header),
IPv6 (no extension headers), then TCP (with options), UDP or ICMP/ICMPv6. A
header is nil when absent or truncated; `pld` is the bytes after the last
header parsed, cut at the IP length (Ethernet padding is not payload). The
parser runs once at entry and only if the script reads `hdr` or `pld`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.layout import stdlib_layouts
from luabpf.compiler.values import FALSE, INT, LVIEW, NIL, TRUE, Val
from luabpf.compiler.views import Packet, load_bytes_be, window

PROG_TYPE_SCHED_CLS, PROG_TYPE_XDP = 3, 6
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
TC_ACT_OK, TC_ACT_SHOT = 0, 2
ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
HEADERS = ("eth", "vlan", "ip", "ip6", "tcp", "udp", "icmp")
VERDICTS_MAP = "luabpf_verdicts"


@dataclass
class Headers:
    """The compile-time `hdr` table: which headers the script reads, and their registers."""
    tags: dict[str, ir.VReg] = field(default_factory=dict)
    starts: dict[str, ir.VReg] = field(default_factory=dict)
    pld: tuple[ir.VReg, ir.VReg] | None = None

    def demand(self, lw, name: str) -> Val:
        if name not in self.tags:
            self.tags[name] = lw.b.vreg(name + ".present")
            self.starts[name] = lw.b.vreg(name + ".start")
        layout = stdlib_layouts()[name]
        return Val(self.tags[name], self.starts[name], frozenset({"nil", "lview"}),
                   (layout.size, 0xFFFF), layout.size, None, layout)

    def index(self, lw, key: str, node) -> Val:
        if key not in HEADERS:
            lw.error(node, f"hdr has no header '{key}' (it has {', '.join(HEADERS)})")
            return Val.nil()
        return self.demand(lw, key)

    def payload(self, lw) -> Val:
        if self.pld is None:
            self.pld = (lw.b.vreg("pld.start"), lw.b.vreg("pld.len"))
        return Val.view(*self.pld)


@dataclass
class PacketHook:
    """`filter(hdr, pld)` for XDP (`kind='xdp'`) or tc (`kind='tc'`, ingress or egress)."""
    kind: str = "xdp"
    entry: str = "filter"
    count_errors: bool = True
    count_verdicts: bool = False          # count each verdict in VERDICTS_MAP (`luabpf run`)
    params: tuple = ("hdr", "pld")
    headers: Headers = field(default_factory=Headers)

    @property
    def name(self) -> str:
        return self.kind

    @property
    def prog_type(self) -> int:
        return PROG_TYPE_XDP if self.kind == "xdp" else PROG_TYPE_SCHED_CLS

    @property
    def default_return(self) -> int:
        return XDP_PASS if self.kind == "xdp" else TC_ACT_OK

    @property
    def returns(self) -> str:
        """What `filter` may return, for errors."""
        return f"true or nil (pass), false (drop) or {'an' if self.kind == 'xdp' else 'a'} {self.kind}.* verdict"

    @property
    def drop(self) -> int:
        return XDP_DROP if self.kind == "xdp" else TC_ACT_SHOT

    def prologue(self, lw) -> list[Val]:
        b = lw.b
        self.headers = Headers()
        self.ctx = b.copy(ir.Phys(1), "ctx")
        lw.packet = Packet(b.vreg("data"), b.vreg("data_end"))
        return [Val.object(self.headers), self.headers.payload(lw)]

    def finish_prologue(self, lw) -> None:
        """Called with the entry block current, after the body: pointers and the header parse."""
        b = lw.b
        off_data, off_end = (0, 4) if self.kind == "xdp" else (76, 80)
        if self.kind == "tc" and (self.headers.tags or self.headers.pld):
            skb_len = b.vreg("skb_len")                                # __sk_buff.len
            b.emit(ir.Load(4, skb_len, self.ctx, 0))
            b.emit(ir.Call(Helper.skb_pull_data, [self.ctx, skb_len]))  # make every byte direct
        data, end = lw.packet.data, lw.packet.data_end
        b.emit(ir.Load(4, data, self.ctx, off_data))
        b.emit(ir.Load(4, end, self.ctx, off_end))
        if self.headers.tags or self.headers.pld:
            HeaderParser(lw, self.headers).emit()

    def epilogue(self, lw, results: list[Val], nret) -> None:
        b = lw.b
        v = results[0] if results else Val.nil()
        if v.is_const:
            self.exit(lw, self.verdict_of(v.python(), lw))
            return
        # a value known only at run time: nil/true pass, false drops, an integer is the action
        out = b.vreg("verdict")
        b.mov(out, self.default_return)
        done = b.block("verdict_done")
        if "bool" in v.kinds:
            is_false, other = b.block("v_false"), b.block("v_other")
            b.branch("eq", v.tag, FALSE, is_false, other)
            b.start(is_false)
            b.mov(out, self.drop)
            b.jump(done)
            b.start(other)
        if "int" in v.kinds:
            is_int, action = b.block("v_int"), b.block("v_action")
            if v.kinds != frozenset({"int"}):
                b.branch("eq", v.tag, INT, is_int, done)
            else:
                b.jump(is_int)
            b.start(is_int)
            b.branch("le", v.payload, self.max_action, action, done)     # unknown actions pass
            b.start(action)
            b.mov(out, v.payload)
        b.jump(done)
        b.start(done)
        self.exit(lw, out)

    @property
    def verdict_names(self) -> list[str]:
        """The name of each verdict the program can return, by its number."""
        names = {v: f"{k[0].upper()}_{k[1]}" if k[0] == "xdp" else f"TC_ACT_{k[1]}"
                 for k, v in ACTIONS.items() if k[0] == self.kind}
        return [names.get(i, str(i)) for i in range(self.max_action + 1)]

    def exit(self, lw, verdict) -> None:
        """Return `verdict`, counted in VERDICTS_MAP first when the hook counts verdicts."""
        b = lw.b
        if self.count_verdicts:
            lw.count_in(VERDICTS_MAP, verdict, "verdict_key", atomic=False)   # per-CPU counters
        b.terminate(ir.Exit(verdict))

    @property
    def max_action(self) -> int:
        return XDP_REDIRECT if self.kind == "xdp" else 8

    def verdict_of(self, value, lw) -> int:
        if value is None or value is True:
            return self.default_return
        if value is False:
            return self.drop
        if isinstance(value, int) and 0 <= value <= self.max_action:
            return value
        lw.error_at_loc(f"a filter returns true, false, nil or a {self.kind}.* action, not {value!r}")
        return self.default_return

    def on_error(self, lw, site) -> None:
        pass


class HeaderParser:
    """Emits the parse of eth → vlan* → ip/ip6 → tcp/udp/icmp into the entry block."""

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
        for _ in range(2):                                  # up to two VLAN tags
            tagged, untagged, check = b.block("vlan"), b.block("no_vlan"), b.block("vlan_q")
            b.branch("eq", etype, ETH_P_8021Q, tagged, check)
            b.start(check)
            b.branch("eq", etype, ETH_P_8021AD, tagged, untagged)
            b.start(tagged)
            q = window(lw, off, 4, self.done, bounded=True)
            if "vlan" in h.tags:                            # hdr.vlan is the outer tag
                outer, inner = b.block("vlan_outer"), b.block("vlan_inner")
                b.branch("eq", h.tags["vlan"], NIL, outer, inner)
                b.start(outer)
                self.publish("vlan", off)
                b.jump(inner)
                b.start(inner)
            b.emit(ir.Mov(etype, load_bytes_be(lw, q, 2, 2)))
            b.emit(ir.Bin("add", off, off, 4))
            b.jump(untagged)
            b.start(untagged)
        self.payload_from(off, size)
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
        self.l4(proto, l4, end, icmp_proto=1)

    def ipv6(self, off, size) -> None:
        lw, b = self.lw, self.b
        p = window(lw, off, 40, self.done, bounded=True)
        b0 = b.vreg("ip6.b0")
        b.emit(ir.Load(1, b0, p, 0))
        ok = b.block("ip6_v6")
        b.branch("eq", b.bin("rsh", b0, 4), 6, ok, self.done)
        b.start(ok)
        plen = load_bytes_be(lw, p, 4, 2)
        l4 = b.bin("add", off, 40, "l4")
        end = b.bin("add", l4, plen, "ip6_end")
        cut, keep = b.block("ip6_cut"), b.block("ip6_end_ok")
        b.branch("gt", end, size, cut, keep)
        b.start(cut)
        b.mov(end, size)
        b.jump(keep)
        b.start(keep)
        self.publish("ip6", off)
        self.payload_from(l4, end)
        nh = b.vreg("ip6.nh")
        b.emit(ir.Load(1, nh, p, 6))
        self.l4(nh, l4, end, icmp_proto=58)

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


def filter_hook(kind: str) -> PacketHook:
    if kind not in ("xdp", "tc"):
        raise ValueError(f"unknown packet hook {kind!r}")
    return PacketHook(kind)


ACTIONS = {
    ("xdp", "ABORTED"): XDP_ABORTED, ("xdp", "DROP"): XDP_DROP, ("xdp", "PASS"): XDP_PASS,
    ("xdp", "TX"): XDP_TX, ("xdp", "REDIRECT"): XDP_REDIRECT,
    ("tc", "OK"): TC_ACT_OK, ("tc", "SHOT"): TC_ACT_SHOT, ("tc", "RECLASSIFY"): 1,
    ("tc", "PIPE"): 3, ("tc", "STOLEN"): 4, ("tc", "QUEUED"): 5, ("tc", "REPEAT"): 6,
    ("tc", "REDIRECT"): 7,
}

# ---- verdict constants belong to their hook -------------------------------------------
# The numbers of one hook mean something else under the other (tc.SHOT = 2 = XDP_PASS), so
# a verdict constant of the other hook is a compile error wherever it appears.

# What to write instead, for each constant, under the other hook.
COUNTERPART = {
    ("tc", "OK"): "xdp.PASS (or true)", ("tc", "SHOT"): "xdp.DROP (or false)",
    ("tc", "REDIRECT"): "xdp.REDIRECT",
    ("xdp", "PASS"): "tc.OK (or true)", ("xdp", "DROP"): "tc.SHOT (or false)",
    ("xdp", "ABORTED"): "tc.SHOT (or false) to drop", ("xdp", "REDIRECT"): "tc.REDIRECT",
}
PORTABLE_HINT = "a filter for both hooks returns true (or nil) to pass and false to drop"


def foreign_action(path: tuple[str, ...], kind: str) -> tuple[str, str] | None:
    """(message, hint) when the constant `path` (('tc', 'SHOT')) is a verdict of another
    packet hook than `kind`; None when it is this hook's (or not a verdict)."""
    if path not in ACTIONS or path[0] == kind:
        return None
    module, name = path
    instead = COUNTERPART.get(path)
    if instead is not None:
        use = f"use {instead}"
    else:
        own = ", ".join(f"{kind}.{n}" for (m, n) in ACTIONS if m == kind)
        use = f"{kind} has no such verdict (it has {own})"
    article = "an" if module == "xdp" else "a"
    return (f"{module}.{name} is {article} {module} verdict; this program is compiled for {kind}: {use}",
            PORTABLE_HINT)


def check_action(lw, path: tuple[str, ...], node) -> None:
    """The guard of a verdict constant: an error at node when it is another hook's."""
    if not isinstance(lw.hook, PacketHook):
        return                                   # other hooks take them as plain integers
    found = foreign_action(path, lw.hook.kind)
    if found is not None:
        lw.error(node, *found)


def verdict_uses(chunk) -> dict[str, list]:
    """The spans of `xdp.*` and `tc.*` verdict constants in a parsed chunk, by hook; a file
    that binds `xdp` or `tc` itself (a local, a parameter) counts as using neither."""
    from luabpf.compiler import ast
    uses: dict[str, list] = {"xdp": [], "tc": []}
    shadowed = False
    for n in ast.walk(chunk):
        if isinstance(n, ast.Index) and n.dot and isinstance(n.obj, ast.Name) \
                and isinstance(n.key, ast.String):
            path = (n.obj.name, n.key.value.decode("utf-8", "replace"))
            if path in ACTIONS:
                uses[path[0]].append(n.span)
        for name in _bound_names(n):
            shadowed |= name in uses
    return {"xdp": [], "tc": []} if shadowed else uses


def _bound_names(n) -> list[str]:
    """The names a node binds (a local, a parameter, a loop variable, a global)."""
    from luabpf.compiler import ast
    if isinstance(n, ast.Local):
        return [x.name for x in n.names]
    if isinstance(n, ast.Function):
        return list(n.params)
    if isinstance(n, ast.Assign):
        return [t.name for t in n.targets if isinstance(t, ast.Name)]
    if isinstance(n, ast.LocalFunction):
        return [n.name]
    if isinstance(n, ast.NumericFor):
        return [n.var]
    if isinstance(n, ast.GenericFor):
        return list(n.names)
    return []


def infer_packet_hook(source: str, filename: str = "<string>") -> str:
    """The packet hook a script is meant for when none is given: tc when it uses tc.*
    verdicts, else xdp. A script that uses both hooks' verdicts is a compile error that
    names the first use of each."""
    from luabpf.compiler.diagnostics import CompileError, Diagnostic
    from luabpf.compiler.parser import parse
    from luabpf.compiler.source import Source
    uses = verdict_uses(parse(source, filename))
    if uses["xdp"] and uses["tc"]:
        x, t = uses["xdp"][0], uses["tc"][0]
        second = max(x, t, key=lambda s: (s.line, s.col))
        text = Source(source, filename)
        raise CompileError([Diagnostic(
            f"this script uses verdicts of both packet hooks: {_constant(text, x)} (xdp) at line "
            f"{x.line} and {_constant(text, t)} (tc) at line {t.line}; a filter's verdict constants "
            f"belong to the hook it is compiled for",
            second, f"{PORTABLE_HINT}; or keep one hook's constants (and give --hook for it)")],
            text)
    return "tc" if uses["tc"] else "xdp"


def _constant(text, span) -> str:
    line = text.line_text(span.line)
    return line[span.col - 1:span.end_col - 1] if span.end_line == span.line else "a constant"


__all__ = ["PacketHook", "filter_hook", "ACTIONS", "TRUE", "check_action", "infer_packet_hook"]
