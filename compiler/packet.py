"""The packet-filter hook: `filter(hdr, pld)` on XDP and tc.

Owns the hook records (program type, context offsets, verdict mapping); the
`hdr` table and its parser are `headers`'. The parser runs once at entry and
only if the script reads `hdr` or `pld`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.headers import HeaderParser, Headers
from luabpf.compiler.values import FALSE, INT, TRUE, Val
from luabpf.compiler.views import Packet

PROG_TYPE_SCHED_CLS, PROG_TYPE_XDP = 3, 6
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
TC_ACT_OK, TC_ACT_SHOT = 0, 2
VERDICTS_MAP = "luabpf_verdicts"


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

__all__ = ["PacketHook", "filter_hook", "ACTIONS", "TRUE"]
