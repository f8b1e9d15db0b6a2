"""The packet-filter hooks: `filter(hdr, pld)` on XDP and tc.

Owns the two hook records, `XdpHook` and `TcHook`, and what they share (`PacketHook`:
the context's packet pointers, the verdict mapping of `filter`'s result); the verdict
constants (`ACTIONS`) and the rule that one hook's constants are an error under the
other; and which packet hook a script is meant for (`packet_hook_for`). The `hdr`
table and its parser are `headers`'. The parser runs once at entry and only if the
script reads `hdr` or `pld`.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.bpf.uapi import (TC_ACT_OK, TC_ACT_PIPE, TC_ACT_QUEUED, TC_ACT_RECLASSIFY,
                                      TC_ACT_REDIRECT, TC_ACT_REPEAT, TC_ACT_SHOT, TC_ACT_STOLEN,
                                      TC_ACT_TRAP, XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT,
                                      XDP_TX, ProgType)
from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Source
from luabpf.compiler.hooks.base import Environment, Hook, top_functions
from luabpf.compiler.hooks.headers import HeaderParser, Headers
from luabpf.compiler.lib.views import Packet
from luabpf.compiler.lower.values import FALSE, INT, Val

VERDICTS_MAP = "luabpf_verdicts"


class PacketHook(Hook):
    """`filter(hdr, pld)` on a packet hook: what XDP and tc share. A subclass says where
    the hook's context keeps the packet's pointers and what its verdicts are."""
    entry = "filter"
    params = ("hdr", "pld")
    drop: int                            # what `false` returns
    max_action: int                      # the highest verdict; a larger integer passes
    article: str                         # "an xdp", "a tc" (in messages)
    data_offsets: tuple[int, int]        # the context's data and data_end fields
    pulls_data: bool = False             # bpf_skb_pull_data before reading headers
    loop_bound = 1024
    pattern_steps = 4096
    budget = 200_000

    def __init__(self, count_verdicts: bool = False):
        self.count_verdicts = count_verdicts
        self.headers = Headers()
        self.ctx: ir.VReg | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count_verdicts={self.count_verdicts})"

    @classmethod
    def entries(cls, chunk: ast.Chunk) -> list:
        return top_functions(chunk, ["filter"])

    @classmethod
    def chosen(cls, chunk: ast.Chunk, source: Source) -> str:
        """xdp or tc, by the verdict constants the script uses (`packet_hook_for`)."""
        return packet_hook_for(chunk, source)

    @classmethod
    def plan(cls, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list]:
        return chunk, [cls(count_verdicts=env.count_verdicts)]

    @property
    def returns(self) -> str:
        """What `filter` may return, for errors."""
        return f"true or nil (pass), false (drop) or {self.article} {self.name}.* verdict"

    @property
    def verdict_names(self) -> tuple:
        """The name of each verdict the program can return, by its number."""
        names = {v: self.verdict_name(n) for (m, n), v in ACTIONS.items() if m == self.name}
        return tuple(names.get(i, str(i)) for i in range(self.max_action + 1))

    def verdict_name(self, constant: str) -> str:
        return f"{self.name.upper()}_{constant}"

    def prologue(self, lw) -> list[Val]:
        b = lw.b
        self.headers = Headers()
        self.ctx = b.copy(ir.Phys(1), "ctx")
        lw.packet = Packet(b.vreg("data"), b.vreg("data_end"))
        return [Val.object(self.headers), self.headers.payload(lw)]

    def finish_prologue(self, lw) -> None:
        """Called with the entry block current, after the body: pointers and the header parse."""
        b = lw.b
        off_data, off_end = self.data_offsets
        parses = bool(self.headers.tags or self.headers.pld)
        if self.pulls_data and parses:
            skb_len = b.vreg("skb_len")                                # __sk_buff.len
            b.emit(ir.Load(4, skb_len, self.ctx, 0))
            b.emit(ir.Call(Helper.skb_pull_data, [self.ctx, skb_len]))  # make every byte direct
        data, end = lw.packet.data, lw.packet.data_end
        b.emit(ir.Load(4, data, self.ctx, off_data))
        b.emit(ir.Load(4, end, self.ctx, off_end))
        if parses:
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

    def exit(self, lw, verdict) -> None:
        """Return `verdict`, counted in VERDICTS_MAP first when the hook counts verdicts."""
        if self.count_verdicts:
            lw.count_in(VERDICTS_MAP, verdict, "verdict_key", atomic=False)   # per-CPU counters
        lw.b.terminate(ir.Exit(verdict))

    def verdict_of(self, value, lw) -> int:
        if value is None or value is True:
            return self.default_return
        if value is False:
            return self.drop
        if isinstance(value, int) and 0 <= value <= self.max_action:
            return value
        lw.error_at_loc(f"a filter returns true, false, nil or a {self.name}.* action, not {value!r}")
        return self.default_return


class XdpHook(PacketHook):
    """`filter(hdr, pld)` at a device's XDP hook (struct xdp_md)."""
    name = "xdp"
    missing = "an xdp program needs a function filter(hdr, pld)"
    prog_type = ProgType.XDP
    section = "xdp"
    default_return = XDP_PASS
    drop = XDP_DROP
    max_action = XDP_REDIRECT
    data_offsets = (0, 4)                 # xdp_md.data, .data_end
    load_bytes = Helper.xdp_load_bytes
    article = "an"


class TcHook(PacketHook):
    """`filter(hdr, pld)` at a device's tc hook, ingress or egress (struct __sk_buff)."""
    name = "tc"
    missing = "a tc program needs a function filter(hdr, pld)"
    prog_type = ProgType.SCHED_CLS
    section = "tc"
    default_return = TC_ACT_OK
    drop = TC_ACT_SHOT
    max_action = TC_ACT_TRAP
    data_offsets = (76, 80)               # __sk_buff.data, .data_end
    pulls_data = True
    load_bytes = Helper.skb_load_bytes
    article = "a"

    def verdict_name(self, constant: str) -> str:
        return f"TC_ACT_{constant}"


PACKET_HOOKS = {hook.name: hook for hook in (XdpHook, TcHook)}


def filter_hook(name: str, count_verdicts: bool = False) -> PacketHook:
    """A new record of the packet hook `name` ('xdp' or 'tc')."""
    if name not in PACKET_HOOKS:
        raise ValueError(f"unknown packet hook {name!r}")
    return PACKET_HOOKS[name](count_verdicts)


ACTIONS = {
    ("xdp", "ABORTED"): XDP_ABORTED, ("xdp", "DROP"): XDP_DROP, ("xdp", "PASS"): XDP_PASS,
    ("xdp", "TX"): XDP_TX, ("xdp", "REDIRECT"): XDP_REDIRECT,
    ("tc", "OK"): TC_ACT_OK, ("tc", "SHOT"): TC_ACT_SHOT, ("tc", "RECLASSIFY"): TC_ACT_RECLASSIFY,
    ("tc", "PIPE"): TC_ACT_PIPE, ("tc", "STOLEN"): TC_ACT_STOLEN, ("tc", "QUEUED"): TC_ACT_QUEUED,
    ("tc", "REPEAT"): TC_ACT_REPEAT, ("tc", "REDIRECT"): TC_ACT_REDIRECT,
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
    return (f"{module}.{name} is {PACKET_HOOKS[module].article} {module} verdict; this program is compiled for {kind}: {use}",
            PORTABLE_HINT)


def check_action(lw, path: tuple[str, ...], node) -> None:
    """The guard of a verdict constant: an error at node when it is another hook's."""
    if not isinstance(lw.hook, PacketHook):
        return                                   # other hooks take them as plain integers
    found = foreign_action(path, lw.hook.name)
    if found is not None:
        lw.error(node, *found)


def verdict_uses(chunk) -> dict[str, list]:
    """The spans of `xdp.*` and `tc.*` verdict constants in a parsed chunk, by hook; a file
    that binds `xdp` or `tc` itself (a local, a parameter) counts as using neither."""
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


def packet_hook_for(chunk: ast.Chunk, source: Source) -> str:
    """The packet hook a parsed script is meant for when none is given: tc when it uses
    tc.* verdicts, else xdp. A script that uses both hooks' verdicts is a compile error
    that names the first use of each."""
    uses = verdict_uses(chunk)
    if uses["xdp"] and uses["tc"]:
        x, t = uses["xdp"][0], uses["tc"][0]
        second = max(x, t, key=lambda s: (s.line, s.col))
        raise CompileError([Diagnostic(
            f"this script uses verdicts of both packet hooks: {_constant(source, x)} (xdp) at line "
            f"{x.line} and {_constant(source, t)} (tc) at line {t.line}; a filter's verdict constants "
            f"belong to the hook it is compiled for",
            second, f"{PORTABLE_HINT}; or keep one hook's constants (and give --hook for it)")],
            source)
    return "tc" if uses["tc"] else "xdp"


def _constant(text, span) -> str:
    line = text.line_text(span.line)
    return line[span.col - 1:span.end_col - 1] if span.end_line == span.line else "a constant"


__all__ = ["PacketHook", "XdpHook", "TcHook", "PACKET_HOOKS", "filter_hook", "ACTIONS", "check_action",
           "packet_hook_for"]
