"""`print(...)`: events a program sends to user space through a ring buffer.

Owns the record format the runtime decodes (`runtime/events.py`) and the print
sites. A record is

    u32 print-site id, u32 values absent, then per value known only at run time
        (u64 tag, u64 payload)                        an integer, a boolean, nil
        (u64 STR, u64 n, MAX_BYTES bytes)             a packet string: its first n bytes

Values known at compile time (constant strings, literals) stay in the `PrintSite`
and cost nothing in the record. A text (`..`, `string.format`, `tostring` of values
known only at run time: `compiler/lib/text.py`) is its template in the site and a
slot per value of it in the record; user space renders it. "Values absent" counts the last values of the site
that this print did not get: a final `s:byte(i, j)` on a packet view gives only the
bytes there are (Lua prints that many), 0 otherwise. Every record is written with one
`bpf_ringbuf_output`; when the ring buffer is full the kernel refuses it, the
program goes on, and the drop is counted at the print's line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.lib import maps, text
from luabpf.compiler.lower import strconst
from luabpf.compiler.lower.values import Val, Values, type_name

EVENTS_MAP = "luabpf_events"
EVENTS_SIZE = 256 * 1024        # bytes of ring buffer (a power of two, a multiple of a page)
HEADER = 8
SLOT = 16
MAX_VALUES = 16                 # values known only at run time, per print
MAX_BYTES = 64                  # bytes of a packet string a print carries (the rest is cut)
MAX_RECORD = 336                # bytes of stack one print's record may take (4 packet strings)


@dataclass
class PrintSite:
    line: int
    col: int
    file: str = ""
    error_site: int | None = None   # the runtime error whose message this record carries
    values: list = field(default_factory=list)   # per argument: ('const', value) | ('run',)
    #                                              | ('bytes',) | ('text', template)

    @property
    def record_size(self) -> int:
        return HEADER + sum(_slot_size(kind) for kind in _slots(self.values))


def _slots(values: list) -> list[str]:
    """The record's slots, in order: 'run' (tag, payload) or 'bytes' (a packet string),
    a text's run parts among them."""
    out = []
    for v in values:
        if v[0] == "text":
            out += ["bytes" if p[0] == "bytes" else "run" for p in v[1] if p[0] != "lit"]
        elif v[0] != "const":
            out.append(v[0])
    return out


def _slot_size(kind: str) -> int:
    return SLOT + MAX_BYTES if kind == "bytes" else SLOT


def lua_text(value) -> str:
    """What Lua's tostring gives for a constant (strings as UTF-8, bad bytes replaced)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def const_value(value):
    """A constant argument as the manifest keeps it (JSON): None, a bool, an int, or a
    string's text, so an event's values are the values printed (nil is None, not "nil")."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def lower_print(lw, args: list[Val], node, scope):
    site = PrintSite(node.span.line, node.span.col, node.span.file)
    dynamic = []
    for i, v in enumerate(args):
        t = text.text_of(v)
        if t is not None:
            parts = [p.value for p in t.parts if isinstance(p, text.Part)]
            if any(p.kinds == frozenset({"str"}) for p in parts) and (
                    lw.packet is None or lw.hook.load_bytes is None):
                lw.error(node, "print cannot send a string known only at run time here")
                return []
            site.values.append(("text", text.template(lw, t, lw.kinds.get(strconst.TABLE, []))))
            dynamic += parts
        elif v.is_const:
            site.values.append(("const", const_value(v.python())))
        elif v.kinds <= {"nil", "bool", "int"}:
            site.values.append(("run",))
            dynamic.append(v)
        elif "str" in v.kinds and v.kinds <= {"nil", "str"} and lw.packet is not None \
                and lw.hook.load_bytes is not None:
            site.values.append(("bytes",))          # a view of the packet: its first bytes
            dynamic.append(v)
        elif maps.decl_of(v) is not None:
            name = maps.decl_of(v).name or "m"
            lw.error(node, f"print cannot send a map (argument #{i + 1}, '{name}'); print its "
                           f"entries: print(k, {name}[k])")
            return []
        else:
            lw.error(node, f"print takes integers, booleans, nil and constant strings in kernel "
                           f"Lua; argument #{i + 1} is a {type_name(v.kinds)} known only at run time")
            return []
    if len(dynamic) > MAX_VALUES or site.record_size > MAX_RECORD:
        lw.error(node, f"print sends at most {MAX_VALUES} values known only at run time, and "
                       f"at most {MAX_RECORD} bytes (a packet string takes {SLOT + MAX_BYTES})")
        return []
    if not lw.b.reachable:
        return []
    _send(lw, site, args, dynamic, node)
    return []


def send_error_text(lw, node, t: text.Text) -> bool:
    """Before the runtime error at the next site: one record with the values of its
    message (a text), which user space renders as the error's message. False after a
    located error."""
    site = PrintSite(node.span.line, node.span.col, node.span.file)
    site.values.append(("text", text.template(lw, t, lw.kinds.get(strconst.TABLE, []))))
    dynamic = [p.value for p in t.parts if isinstance(p, text.Part)]
    if any(v.kinds == frozenset({"str"}) for v in dynamic) and (
            lw.packet is None or lw.hook.load_bytes is None):
        lw.error(node, "error cannot send a string known only at run time here")
        return False
    if len(dynamic) > MAX_VALUES or site.record_size > MAX_RECORD:
        lw.error(node, f"an error message sends at most {MAX_VALUES} values known only at run "
                       f"time, and at most {MAX_RECORD} bytes")
        return False
    _send(lw, site, [], dynamic, node)
    site.error_site = lw.options.first_site + len(lw.sites)     # the caller's, next
    return True


def _send(lw, site: PrintSite, args, dynamic: list, node) -> None:
    b = lw.b
    sid = lw.options.first_print + len(lw.prints)
    lw.prints.append(site)
    record = lw.scratch(site.record_size, "print_record")
    b.emit(ir.Store(8, record, 0, sid))
    if isinstance(args, Values):             # values past args.count were not given
        absent = b.copy(len(args), "absent")
        b.emit(ir.Bin("sub", absent, absent, args.count))
        b.emit(ir.Store(4, record, 4, absent))
    off = HEADER
    for spec, v in zip(_slots(site.values), dynamic):
        if spec == "bytes":
            _packet_bytes(lw, record, off, v)
            off += SLOT + MAX_BYTES
        else:
            b.emit(ir.Store(8, record, off, v.tag))
            b.emit(ir.Store(8, record, off + 8, v.payload))
            off += SLOT
    m, p, r = b.vreg("events"), b.vreg("record"), b.vreg("sent")
    b.emit(ir.LoadMap(m, EVENTS_MAP))
    b.emit(ir.SlotAddr(p, record))
    b.emit(ir.Call(Helper.ringbuf_output, [m, p, site.record_size, 0], r))
    dropped, ok = b.block("print_dropped", cold=True), b.block("printed")
    b.branch("ne", r, 0, dropped, ok)
    b.start(dropped)
    lw.count_at(node.span, "print dropped: the ring buffer was full" if site.error_site is None
                else "an error's message dropped: the ring buffer was full")
    b.jump(ok)
    b.start(ok)


def _packet_bytes(lw, record, off: int, v: Val) -> None:
    """At record+off: STR (or NIL), n, then the view's first n bytes (n ≤ MAX_BYTES; the
    rest of the area zeroed, so the whole record is initialised for bpf_ringbuf_output)."""
    b = lw.b
    for i in range(0, MAX_BYTES, 8):
        b.emit(ir.Store(8, record, off + SLOT + i, 0))
    n = b.copy(v.length, "n")
    b.limit(n, "gt", MAX_BYTES, "print_cut")
    b.emit(ir.Store(8, record, off, v.tag))          # STR, or NIL (a nil has no length)
    b.emit(ir.Store(8, record, off + 8, n))
    copy, done = b.block("print_copy"), b.block("print_copied")
    b.branch("eq", n, 0, done, copy)
    b.start(copy)
    base = b.vreg("dst")
    b.emit(ir.SlotAddr(base, record))
    dst = b.bin("add", base, off + SLOT, "dst")
    start = v.payload if isinstance(v.payload, ir.VReg) else b.copy(v.payload)
    b.emit(ir.Call(lw.hook.load_bytes, [lw.hook.ctx, start, dst, n], b.vreg("copied")))
    b.jump(done)
    b.start(done)
