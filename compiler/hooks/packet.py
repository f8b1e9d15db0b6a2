"""The packet-filter hook: `filter(hdr, pld)` on XDP and tc.

Owns the hook records (program type, context offsets, verdict mapping); the
`hdr` table and its parser are `headers`'. The parser runs once at entry and
only if the script reads `hdr` or `pld`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.hooks.headers import HeaderParser, Headers
from luabpf.compiler.lower.values import FALSE, INT, TRUE, Val
from luabpf.compiler.lib.views import Packet

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
    from luabpf.compiler.front import ast
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
    from luabpf.compiler.front import ast
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
    from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
    from luabpf.compiler.front.parser import parse
    from luabpf.compiler.front.source import Source
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
