"""Views: strings and layouts over the packet, and the string operations on them.

Owns packet memory access in the form the verifier proves (`window`: a
bounded offset, one `ptr + n > data_end` check per access window), reading
layout fields (big-endian bits to host-order integers, or string views),
and Lua's string operations on views and constants: `#s`, `s:byte(i)`,
`s:sub(i, j)`, `s:segment(off, len)`, `s:layout(L)`, `tostring(s)`, `==`,
and `s:match`/`s:find` through `patterns_codegen`. Indexes follow Lua's string
rules (1-based, negative from the end, clamped as `string.sub` clamps).
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.layout import Field, Layout
from luabpf.compiler.values import INT, LVIEW, STR, Val

MAX_OFF = 0x7FFF     # variable packet offsets are bounded so that offset + window <= 0xffff,
                     # the most the verifier marks as checked (find_good_pkt_pointers)


class Packet:
    """The packet a filter sees: its data and data_end pointers (set by the hook)."""

    def __init__(self, data: ir.VReg, data_end: ir.VReg):
        self.data, self.data_end = data, data_end


def window(lw, start, nbytes: int, missing: ir.Block | None = None, bounded: bool = False) -> ir.VReg:
    """A packet pointer to `start` proven (to the verifier) to have `nbytes` bytes after it.
    Without `missing`, the caller knows the bytes are there and the failing path is a
    runtime error that a correct view never takes; with it, a short packet goes there.
    `bounded`: the verifier already knows start is small (no 0xffff check needed)."""
    b = lw.b
    pkt = lw.packet
    ok = b.block("pkt_ok")
    bad = missing or b.block("pkt_oob")
    if isinstance(start, int):
        p = b.bin("add", pkt.data, start, "p") if start else pkt.data
    else:
        if not bounded:
            small = b.block("pkt_off_ok")
            b.branch("gt", start, MAX_OFF, bad, small)
            b.start(small)
        p = b.bin("add", pkt.data, start, "p")
    q = b.bin("add", p, nbytes)
    b.terminate(ir.Branch("gt", q, pkt.data_end, bad, ok))
    if missing is None:
        b.start(bad)
        lw.runtime_error(b.loc, "packet access out of bounds")
    b.start(ok)
    return p


def load_bytes_be(lw, ptr: ir.VReg, off: int, n: int) -> ir.VReg:
    """The n bytes at ptr + off (already in a proven window) as a big-endian number."""
    b = lw.b
    parts = []
    pos = off
    remaining = n
    while remaining:
        size = 8 if remaining >= 8 else 4 if remaining >= 4 else 2 if remaining >= 2 else 1
        v = b.vreg("bytes")
        b.emit(ir.Load(size, v, ptr, pos))
        if size > 1:
            w = b.vreg("host")
            b.emit(ir.Swap(w, v, size * 8))
            v = w
        parts.append((v, size))
        pos += size
        remaining -= size
    acc = parts[0][0]
    for v, size in parts[1:]:
        acc = b.bin("or", b.bin("lsh", acc, size * 8), v)
    return acc


def read_field(lw, view: Val, f: Field, node) -> Val:
    """view.field: an integer (host order) or a string view; nil past the view's end."""
    if f.reg is not None:                # computed by the header parser (hdr.ip6.proto)
        return Val.int_(f.reg, (0, (1 << f.bit_width) - 1))
    b = lw.b
    start = view.payload
    known_len = view.range[0] if view.range else 0
    result = None
    if f.byte_end > known_len:            # the view may be too short: nil then
        result = lw.new_var((lw._inst_id(), id(node), "field"), f.name,
                            frozenset({"nil", "str" if f.is_string else "int"}))
        fits, short, done = b.block("field_fits"), b.block("field_short"), b.block("field_done")
        b.branch("lt", b.reg(view.length), f.byte_end, short, fits)
        b.start(short)
        lw.assign(result, Val.nil())
        b.jump(done)
        b.start(fits)
    if f.is_string:
        v = Val.view(b.bin("add", b.reg(start), f.byte_start) if f.byte_start else start,
                     f.byte_end - f.byte_start)
    else:
        p = window(lw, start, f.byte_end)
        raw = load_bytes_be(lw, p, f.byte_start, f.byte_end - f.byte_start)
        shift = (f.byte_end * 8) - (f.bit_offset + f.bit_width)
        if shift:
            raw = b.bin("rsh", raw, shift)
        if f.bit_width < (f.byte_end - f.byte_start) * 8:
            mask = (1 << f.bit_width) - 1
            raw = b.bin("and", raw, mask) if mask < (1 << 31) else b.bin("and", raw, b.copy(mask))
        v = Val.int_(raw, (0, (1 << f.bit_width) - 1) if f.bit_width < 63 else None)
    if result is None:
        return v
    lw.assign(result, v)
    b.jump(done)
    b.start(done)
    return result.read()


def index_layout(lw, v: Val, key: str, node) -> Val:
    layout: Layout = v.obj
    f = layout.fields.get(key)
    if f is None:
        lw.error(node, f"layout '{layout.name}' has no field '{key}'")
        return Val.nil()
    v = require(lw, v, "lview", node, f"attempt to index a nil value ({describe_holder(node)})")
    return read_field(lw, v, f, node)


def describe_holder(node) -> str:
    """How Lua names the value being indexed: (field 'tcp'), (local 'h'), (global 'g')."""
    from luabpf.compiler import ast
    obj = getattr(node, "obj", None)
    if isinstance(obj, ast.Index) and isinstance(obj.key, ast.String):
        return f"field '{obj.key.value.decode()}'"
    if isinstance(obj, ast.Name):
        return f"local '{obj.name}'"
    return "a value"


def require(lw, v: Val, kind: str, node, message: str) -> Val:
    """v as a value of `kind`, a runtime error (Lua's message) where it is something else."""
    if v.kinds == frozenset({kind}):
        return v
    b = lw.b
    tag = {"lview": LVIEW, "str": STR, "int": INT}[kind]
    if kind not in v.kinds:
        lw.runtime_error(node.span, message)
    else:
        ok, bad = b.block("is_" + kind), b.block("not_" + kind)
        b.branch("eq", v.tag, tag, ok, bad)
        b.start(bad)
        lw.runtime_error(node.span, message)
        b.start(ok)
    return Val(tag, v.payload, frozenset({kind}), v.range, v.length, v.data, v.obj)


# ---- strings ------------------------------------------------------------------------

def length(lw, v: Val):
    return len(v.data) if v.data is not None else v.length


def lua_index(lw, i, n, default_end: bool = False):
    """Lua's posrelat for string positions: i < 0 counts from the end (n + i + 1)."""
    b = lw.b
    if isinstance(i, int) and isinstance(n, int):
        return i if i >= 0 else max(n + i + 1, 0)
    if isinstance(i, int) and i >= 0:
        return i
    r = b.copy(i, "pos")
    neg, done = b.block("pos_neg"), b.block("pos_done")
    b.branch("slt", r, 0, neg, done)
    b.start(neg)
    b.emit(ir.Bin("add", r, r, b.small(n) if isinstance(n, int) else n))
    b.emit(ir.Bin("add", r, r, 1))
    b.limit(r, "slt", 0, "pos_clamp")
    b.jump(done)
    b.start(done)
    return r


def clamp_range(lw, i, j, n):
    """string.sub's [i, j] as (start offset, length) within a string of n bytes."""
    b = lw.b
    i = lua_index(lw, i, n)
    j = lua_index(lw, j, n)
    if all(isinstance(x, int) for x in (i, j, n)):
        i = max(i, 1)
        j = min(j, n)
        return (i - 1, j - i + 1) if i <= j else (0, 0)
    start = b.copy(i, "sub_i")
    b.limit(start, "slt", 1, "sub_lo")
    stop = b.copy(j, "sub_j")
    b.limit(stop, "sgt", n, "sub_hi")
    size = b.bin("sub", stop, start)
    b.emit(ir.Bin("add", size, size, 1))
    b.limit(size, "slt", 0, "sub_empty")
    off = b.bin("sub", start, 1)
    return off, size


def substring(lw, v: Val, off, size) -> Val:
    """The view of `size` bytes at `off` within v (both already clamped to v)."""
    b = lw.b
    if v.data is not None and isinstance(off, int) and isinstance(size, int):
        return Val.string(v.data[off:off + size])
    if v.data is not None:
        lw.error_at_loc("a substring of a constant string must have constant bounds in kernel Lua")
        return Val.string(b"")
    start = v.payload
    if isinstance(off, int) and off == 0:
        new_start = start
    else:
        new_start = b.bin("add", b.reg(start), off) if not isinstance(start, int) or not isinstance(off, int) \
            else start + off
    return Val.view(new_start, size)


class ViewSubject:
    """A string view as the subject of a compiled pattern (docs/filters-contract.md)."""

    def __init__(self, v: Val):
        self.v = v
        self.length = v.length

    def load_byte(self, lw, index):
        b = lw.b
        if self.v.data is not None:
            raise AssertionError("constant subjects are matched at compile time")
        start = self.v.payload
        if isinstance(start, int) and isinstance(index, int):
            off = start + index
        elif isinstance(index, int) and index == 0:
            off = start
        else:
            off = b.bin("add", b.reg(start) if isinstance(start, int) else start, index)
        p = window(lw, off, 1)
        byte = b.vreg("byte")
        b.emit(ir.Load(1, byte, p, 0))
        return byte


def byte_at(lw, v: Val, i, node) -> Val:
    """s:byte(i): the byte at Lua position i, or nil when outside the string."""
    b = lw.b
    n = length(lw, v)
    pos = lua_index(lw, i, n)
    if v.data is not None and isinstance(pos, int):
        return Val.int_(v.data[pos - 1]) if 1 <= pos <= len(v.data) else Val.nil()
    result = lw.new_var((lw._inst_id(), id(node), "byte"), "byte", frozenset({"nil", "int"}))
    inside, outside, done = b.block("byte_in"), b.block("byte_out"), b.block("byte_done")
    above = b.block("byte_above")
    b.branch("slt", b.reg(pos), 1, outside, above)
    b.start(above)
    b.branch("sgt", pos, n, outside, inside)
    b.start(inside)
    idx = b.bin("sub", b.reg(pos), 1)
    if v.data is not None:
        lw.error(node, "s:byte(i) on a constant string needs a constant i in kernel Lua")
        return Val.nil()
    byte = ViewSubject(v).load_byte(lw, idx)
    lw.assign(result, Val.int_(byte, (0, 255)))
    b.jump(done)
    b.start(outside)
    lw.assign(result, Val.nil())
    b.jump(done)
    b.start(done)
    return result.read()


def equal_strings(lw, a: Val, c: Val, yes: ir.Block, no: ir.Block) -> None:
    """Branch on the equality of two strings (constants, views)."""
    b = lw.b
    if a.data is not None and c.data is not None:
        b.jump(yes if a.data == c.data else no)
        return
    if a.data is None and c.data is None:
        lw.error_at_loc("comparing two packet views is not available yet in kernel Lua: "
                        "compare a view with a constant string")
        b.jump(no)
        return
    view, const = (a, c) if a.data is None else (c, a)
    data = const.data
    same_len = b.block("streq_len")
    if isinstance(view.length, int):
        b.jump(same_len if view.length == len(data) else no)
    else:
        b.branch("eq", view.length, len(data), same_len, no)
    b.start(same_len)
    if not data:
        b.jump(yes)
        return
    p = window(lw, view.payload, len(data))
    pos = 0
    while pos < len(data):                   # wide loads against immediates
        size = next(s for s in (8, 4, 2, 1) if len(data) - pos >= s)
        word = int.from_bytes(data[pos:pos + size], "little")
        got = b.vreg("bytes")
        b.emit(ir.Load(size, got, p, pos))
        nxt = b.block("streq_next")
        if size == 8 or word >= (1 << 31):
            want = b.copy(word - (1 << 64) if size == 8 and word >= (1 << 63) else word)
            b.branch("eq", got, want, nxt, no)
        else:
            b.branch("eq", got, word, nxt, no)
        b.start(nxt)
        pos += size
    b.jump(yes)


# ---- dispatch: indexing and methods ---------------------------------------------------

def index_value(lw, obj: Val, key: str, node) -> Val:
    """obj.key for a value that is not a global path: hdr.ip, ip.src, …"""
    from luabpf.compiler.values import type_name
    if "obj" in obj.kinds and hasattr(obj.obj, "index"):
        return obj.obj.index(lw, key, node)
    if "lview" in obj.kinds:
        return index_layout(lw, obj, key, node)
    if obj.kinds <= {"nil", "bool", "int"} and obj.kinds:
        if not obj.kinds - {"nil"}:
            lw.runtime_error(node.span, f"attempt to index a nil value (field '{key}')")
            return Val.nil()
    lw.error(node, f"indexing a {type_name(obj.kinds)} value is not available in kernel Lua")
    return Val.nil()


def call_method(lw, obj: Val, method: str, args: list[Val], node) -> list[Val]:
    from luabpf.compiler.values import type_name
    handler = STRING_METHODS.get(method)
    if "str" not in obj.kinds or handler is None:
        what = type_name(obj.kinds)
        known = ", ".join(sorted(STRING_METHODS))
        lw.error(node, f"method '{method}' is not available on a {what} value in kernel Lua"
                       + (f" (strings have: {known})" if "str" in obj.kinds else ""))
        return [Val.nil()]
    s = require(lw, obj, "str", node, f"attempt to index a {type_name(obj.kinds - {'str'})} value")
    return handler(lw, s, args, node)


def _int_arg(lw, args, i: int, default, node, name: str):
    if i >= len(args) or args[i].kinds == frozenset({"nil"}):
        if default is None:
            lw.error(node, f"bad argument #{i + 1} to '{name}' (number expected, got no value)")
            return 0
        return default
    return lw.int_operand(args[i], node, f"bad argument #{i + 1} to '{name}' (number expected)")


def _byte(lw, s, args, node):
    return [byte_at(lw, s, _int_arg(lw, args, 0, 1, node, "byte"), node)]


def _sub(lw, s, args, node):
    i = _int_arg(lw, args, 0, None, node, "sub")
    j = _int_arg(lw, args, 1, -1, node, "sub")
    off, size = clamp_range(lw, i, j, length(lw, s))
    return [substring(lw, s, off, size)]


def _len(lw, s, args, node):
    return [Val.int_(length(lw, s), (0, 0xFFFF))]


def _segment(lw, s, args, node):
    """Luadata's view:segment(offset, length): 0-based, cut at the end of the view."""
    b = lw.b
    off = _int_arg(lw, args, 0, 0, node, "segment")
    size = _int_arg(lw, args, 1, None, node, "segment") if len(args) > 1 else None
    n = length(lw, s)
    if all(isinstance(x, int) for x in (off, n)) and (size is None or isinstance(size, int)):
        off = min(max(off, 0), n)
        size = n - off if size is None else min(max(size, 0), n - off)
        return [substring(lw, s, off, size)]
    start = b.copy(off, "seg_off")
    b.limit(start, "slt", 0, "seg_lo")
    b.limit(start, "sgt", n, "seg_hi")
    room = b.bin("sub", b.reg(n), start, "seg_room")
    if size is None:
        return [substring(lw, s, start, room)]
    want = b.copy(size, "seg_len")
    b.limit(want, "slt", 0, "seg_neg")
    b.limit(want, "gt", room, "seg_cut")
    return [substring(lw, s, start, want)]


def _layout(lw, s, args, node):
    if not args or "obj" not in args[0].kinds or not isinstance(args[0].obj, Layout):
        lw.error(node, "view:layout(L) takes a layout made with data.layout{…}")
        return [Val.nil()]
    return [Val(LVIEW, s.payload, frozenset({"lview"}), None, s.length, None, args[0].obj)]


def _match(lw, s, args, node):
    from luabpf.compiler import matching
    return matching.lower_match(lw, s, args, node, find=False)


def _find(lw, s, args, node):
    from luabpf.compiler import matching
    return matching.lower_match(lw, s, args, node, find=True)


STRING_METHODS = {"byte": _byte, "sub": _sub, "len": _len, "segment": _segment,
                  "layout": _layout, "match": _match, "find": _find}
