"""Views: strings and layouts over the packet, and the string operations on them.

Owns packet memory access in the form the verifier proves (`window`: a
bounded offset, one `ptr + n > data_end` check per access window), reading
layout fields (big-endian bits to host-order integers, or string views),
and Lua's string operations on views and constants: `#s`, `s:byte(i, j)`,
`s:sub(i, j)`, `s:segment(off, len)`, `s:layout(L)`, `tostring(s)`, `==` and
the byte-wise order of `<`/`<=`/`>`/`>=` (`s:match`/`s:find` are `matching`'s). Indexes follow Lua's string rules (1-based, negative from the
end, clamped as `string.sub` clamps).
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.front import ast
from luabpf.compiler.lib.layout import Field, Layout
from luabpf.compiler.lower.values import INT, LVIEW, NIL, STR, Val, Values, type_name

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
    return prove(lw, p, nbytes, bad, ok, missing is None)


def prove(lw, p: ir.VReg, nbytes: int, bad: ir.Block | None = None, ok: ir.Block | None = None,
          fails: bool = True) -> ir.VReg:
    """Prove (to the verifier) that the packet pointer p has nbytes bytes after it; a
    failing check is the runtime error a correct view never reaches (unless not `fails`)."""
    b = lw.b
    bad = bad or b.block("pkt_oob")
    ok = ok or b.block("pkt_ok")
    q = b.bin("add", p, nbytes)
    b.terminate(ir.Branch("gt", q, lw.packet.data_end, bad, ok))
    if fails:
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


def lua_index(lw, i, n):
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


def clamped(i: int, j: int, n: int) -> tuple[int, int]:
    """Lua 5.4's posrelatI(i) and getendpos(j) on a string of n bytes, as (0-based start,
    length): the bytes string.sub(s, i, j) and string.byte(s, i, j) take."""
    i = i if i >= 0 else max(n + i + 1, 0)
    j = j if j >= 0 else max(n + j + 1, 0)
    i = max(i, 1)
    j = min(j, n)
    return (i - 1, j - i + 1) if i <= j else (0, 0)


def clamp_range(lw, i, j, n):
    """string.sub's [i, j] as (start offset, length) within a string of n bytes."""
    b = lw.b
    if all(isinstance(x, int) for x in (i, j, n)):
        return clamped(i, j, n)
    i = lua_index(lw, i, n)
    j = lua_index(lw, j, n)
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

    def window(self, lw, base, stop: int):
        """Bytes [base, base + stop) of the view (the matcher knows they are in it) behind
        one packet check: the matcher compares literals several bytes at a time."""
        start = self.v.payload
        off = base if isinstance(start, int) and start == 0 else \
            lw.b.bin("add", base, start if isinstance(start, int) else start)
        return _PacketWindow(window(lw, off, stop))


class _PacketWindow:
    """Loads at constant offsets from a proven packet pointer (patterns_codegen's Window)."""
    wide = True

    def __init__(self, p: ir.VReg):
        self.p = p

    def load(self, lw, offset: int, size: int) -> ir.VReg:
        v = lw.b.vreg("bytes")
        lw.b.emit(ir.Load(size, v, self.p, offset))
        return v


MAX_BYTE_VALUES = 16      # values s:byte(i, j) may give on a packet view (docs/language.md)
MAX_VIEW = 0xFFFF         # the longest view: a packet's bytes


def most_bytes(i, j, n) -> int | None:
    """The most values s:byte(i, j) can give on a string of length n (each an int, or a
    VReg known only at run time); None when nothing bounds it at compile time."""
    if all(isinstance(x, int) for x in (i, j, n)):
        return clamped(i, j, n)[1]
    if isinstance(i, int) and isinstance(j, int):
        # the count is piecewise linear in n, with corners at |i| - 1, |i|, |j| - 1, |j|
        near = {x + d for x in (abs(i), abs(j)) for d in (-1, 0, 1)}
        return max(clamped(i, j, m)[1] for m in near | {0, MAX_VIEW} if 0 <= m <= MAX_VIEW)
    if i is j:                                  # the same register (j omitted: it is i)
        return 1
    return n if isinstance(n, int) else None


def byte_values(lw, v: Val, i, j, node) -> list[Val]:
    """s:byte(i, j): the bytes of s:sub(i, j) (Lua 5.4 clamps both alike) as integers; on a
    view of run-time length, as many as there can be (`Values`), nil past the real count."""
    b = lw.b
    n = length(lw, v)
    if v.data is not None:
        if not (isinstance(i, int) and isinstance(j, int)):
            lw.error(node, "s:byte(i, j) on a constant string needs constant positions in kernel Lua")
            return [Val.nil()]
        off, size = clamped(i, j, n)
        return [Val.int_(c) for c in v.data[off:off + size]]
    most = most_bytes(i, j, n)
    if most is None or most > MAX_BYTE_VALUES:
        lw.error(node, f"s:byte(i, j) on a packet view gives at most {MAX_BYTE_VALUES} values in "
                       "kernel Lua, each held until used; here "
                       + (f"it can give {most}" if most is not None else
                          "their number is not bounded at compile time (i and j known only at run time)"),
                 hint=f"use constant i and j at most {MAX_BYTE_VALUES} apart with the same sign "
                      "(both from the start, or both from the end), or s:byte(i) one at a time")
        return [Val.nil()]
    # clamps and loads work on copies the verifier does not link to the view (_Untracked)
    u = _Untracked(lw, "byte_view", [n, v.payload])
    n = u[0]
    off, size = clamp_range(lw, i, j, n)
    start = substring(lw, Val.view(u[1], n), off, size).payload
    if isinstance(size, int):
        if not size:
            return []
        p = window(lw, start, size)
        return [Val.int_(_load(b, 1, p, k), (0, 255)) for k in range(size)]
    outs = [lw.new_var((lw._inst_id(), id(node), "byte", k), "byte", frozenset({"nil", "int"}))
            for k in range(most)]
    for var in outs:
        lw.assign(var, Val.nil())
    done = b.block("bytes_done")
    p = None
    for k, var in enumerate(outs):
        more = b.block("byte_more")
        b.branch("le", size, k, done, more)          # size: 0 ≤ size ≤ most
        b.start(more)
        p = window(lw, start, 1) if p is None else prove(lw, p, k + 1)
        lw.assign(var, Val.int_(_load(b, 1, p, k), (0, 255)))
    b.jump(done)
    b.start(done)
    return Values([var.read() for var in outs], size)


def _load(b, size: int, p, off: int) -> ir.VReg:
    v = b.vreg("byte" if size == 1 else "bytes")
    b.emit(ir.Load(size, v, p, off))
    return v


def equal_strings(lw, a: Val, c: Val, yes: ir.Block, no: ir.Block) -> None:
    """Branch on the equality of two strings (constants, views)."""
    b = lw.b
    if a.data is not None and c.data is not None:
        b.jump(yes if a.data == c.data else no)
        return
    if a.data is None and c.data is None:
        _compare_views(lw, a, c, no, yes, no, order=False)
        return
    view, const = (a, c) if a.data is None else (c, a)
    data = const.data
    same_len = b.block("streq_len")
    u = _Untracked(lw, "scmp_view", [view.length, view.payload])
    if isinstance(view.length, int):
        b.jump(same_len if view.length == len(data) else no)
    else:
        b.branch("eq", u[0], len(data), same_len, no)
    b.start(same_len)
    if not data:
        b.jump(yes)
        return
    p = window(lw, u[1], len(data))
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


def order_strings(lw, a: Val, c: Val, less: ir.Block, same: ir.Block, more: ir.Block) -> None:
    """Branch on how string a compares with string c: byte-wise, as Lua 5.4 compares
    strings in the C locale (memcmp order; a proper prefix comes first)."""
    b = lw.b
    if a.data is not None and c.data is not None:
        b.jump(less if a.data < c.data else same if a.data == c.data else more)
    elif a.data is None and c.data is None:
        _compare_views(lw, a, c, less, same, more, order=True)
    elif c.data is not None:
        _compare_view_const(lw, a, c.data, less, same, more)
    else:
        _compare_view_const(lw, c, a.data, more, same, less)


def _branch_order(b, got, want, less, more, equal) -> None:
    """got and want are big-endian numbers of the same bytes: different ones order as
    their bytes do (unsigned)."""
    if isinstance(want, int):
        if want >= (1 << 63):
            want -= 1 << 64                       # the same 64 bits, as the IR holds them
        want = b.small(want)
    diff = b.block("scmp_diff")
    b.branch("ne", got, want, diff, equal)
    b.start(diff)
    b.branch("lt", got, want, less, more)


class _Untracked:
    """Integers below 2^31 (a view's start and length, never a Lua integer) kept in a
    stack slot the verifier sees as plain bytes (4-byte stores at offsets that are not
    8-aligned are not register spills) and loaded afresh at each use; an int stays an
    int. String operations branch on lengths and do pointer arithmetic with starts many
    times: on the registers the program keeps (or copies, which share their scalar id),
    that would make them precise and give them different ranges on each path, so every
    state reaching the next operation would walk it again. Measured: one view against
    view took 21,604 verified instructions (6,701 so), four in a print went past the
    1,000,000 budget; two print(pld:byte(1, 3)) took 10,507 (2,636 so)."""

    def __init__(self, lw, name: str, values: list):
        self.b = lw.b
        self.values = list(values)
        self.slot = lw.scratch(8 * len(values), name)
        for k, v in enumerate(values):
            if not isinstance(v, int):
                self.b.emit(ir.Store(4, self.slot, 8 * k + 4, v))

    def __getitem__(self, k: int):
        if isinstance(self.values[k], int):
            return self.values[k]
        v = self.b.vreg("len")
        self.b.emit(ir.Load(4, v, self.slot, 8 * k + 4))
        return v

    def store(self, k: int, v) -> None:
        self.values[k] = None
        self.b.emit(ir.Store(4, self.slot, 8 * k + 4, v))


def _window_at(lw, start, off, size: int) -> tuple[ir.VReg, int]:
    """A proven window of size bytes at start + off (either may be a register): the
    pointer and the offset to load at."""
    b = lw.b
    if isinstance(start, int) and isinstance(off, int):
        return window(lw, start + off, size), 0
    if isinstance(off, int) and off == 0:
        return window(lw, start, size), 0
    return window(lw, b.bin("add", b.reg(start), off), size), 0


def _compare_view_const(lw, v: Val, data: bytes, less, same, more) -> None:
    """v against constant bytes: chunk by chunk with wide loads (8, 4, 2, 1 bytes) while
    the view has the whole chunk; byte by byte in the chunk where the view ends."""
    b = lw.b
    view = _Untracked(lw, "scmp_view", [v.length, v.payload])       # n, start
    pos = 0
    while pos < len(data):
        size = next(s for s in (8, 4, 2, 1) if len(data) - pos >= s)
        full, part = b.block("scmp_full"), b.block("scmp_part")
        b.branch("ge", view[0], pos + size, full, part)
        b.start(part)                             # pos <= n < pos + size
        for t in range(size - 1):
            go, nxt = b.block("scmp_byte"), b.block("scmp_byte_eq")
            b.branch("le", view[0], pos + t, less, go)  # the view is a proper prefix
            b.start(go)
            p, o = _window_at(lw, view[1], pos + t, 1)
            _branch_order(b, _load(b, 1, p, o), data[pos + t], less, more, nxt)
            b.start(nxt)
        b.jump(less)
        b.start(full)
        got = _load_chunk(lw, view[1], pos, size, True)
        nxt = b.block("scmp_next")
        _branch_order(b, got, int.from_bytes(data[pos:pos + size], "big"), less, more, nxt)
        b.start(nxt)
        pos += size
    b.branch("eq", view[0], len(data), same, more)      # n >= len(data) here


def _compare_views(lw, a: Val, c: Val, less, same, more, order: bool) -> None:
    """Two packet views byte-wise: 8 bytes a trip in a loop bounded by the shorter length
    (at most MAX_VIEW / 8 trips), then the last bytes as one overlapping 8-byte chunk (or,
    under 8 bytes, two overlapping 4-, 2- or one 1-byte chunk), then the lengths. Without
    `order` only equality counts (less and more are the same block): the lengths first."""
    b = lw.b
    NA, NC, M, SA, SC = range(5)
    u = _Untracked(lw, "scmp_views", [a.length, c.length, 0, a.payload, c.payload])
    if order:
        m = b.reg(u[NA])
        b.limit(m, "gt", u[NC], "smin_c")
        u.store(M, m)
    else:
        equal_length = b.block("sveq_len")
        b.branch("eq", b.reg(u[NA]), u[NC], equal_length, less)
        b.start(equal_length)
        u.store(M, b.reg(u[NA]))

    def chunk(off, size, equal):
        x, y = (_load_chunk(lw, u[k], off, size, order) for k in (SA, SC))
        if order:
            _branch_order(b, x, y, less, more, equal)
        else:
            b.branch("ne", x, y, less, equal)
    lengths = b.block("scmp_lengths")
    pos = b.copy(0, "scmp_pos")
    head = lw.raw_loop([pos])
    body, tail = b.block("scmp_body"), b.block("scmp_tail")
    b.branch("slt", b.bin("sub", u[M], pos, "scmp_rem"), 8, tail, body)
    b.start(body)
    nxt = b.block("scmp_next")
    chunk(pos, 8, nxt)
    b.start(nxt)
    b.emit(ir.Bin("add", pos, pos, 8))
    lw.back_edge(head, [pos])
    b.start(tail)                                 # pos <= m < pos + 8
    wide, short = b.block("scmp_wide"), b.block("scmp_short")
    b.branch("ge", u[M], 8, wide, short)
    b.start(wide)
    last = b.block("scmp_last")
    b.branch("eq", pos, u[M], lengths, last)
    b.start(last)
    chunk(b.bin("sub", u[M], 8), 8, lengths)
    b.start(short)                                # m < 8: pos is 0
    for size in (4, 2):
        here, smaller = b.block(f"scmp_{size}"), b.block(f"scmp_lt{size}")
        b.branch("ge", u[M], size, here, smaller)
        b.start(here)
        second = b.block("scmp_second")
        chunk(0, size, second)
        b.start(second)
        chunk(b.bin("sub", u[M], size), size, lengths)
        b.start(smaller)
    one = b.block("scmp_1")
    b.branch("eq", u[M], 0, lengths, one)
    b.start(one)
    chunk(0, 1, lengths)
    b.start(lengths)                              # the first m bytes are equal
    if not order:
        b.jump(same)
        return
    shorter = b.block("scmp_len")
    b.branch("lt", b.reg(u[NA]), u[NC], less, shorter)
    b.start(shorter)
    b.branch("eq", b.reg(u[NA]), u[NC], same, more)


def _load_chunk(lw, start, off, size: int, order: bool) -> ir.VReg:
    """The size bytes at start + off: as loaded (equality) or big-endian (order)."""
    b = lw.b
    p, o = _window_at(lw, start, off, size)
    got = _load(b, size, p, o)
    if order and size > 1:
        swapped = b.vreg("be")
        b.emit(ir.Swap(swapped, got, size * 8))
        got = swapped
    return got


# ---- indexing, and the string methods (the library table lists them) -----------------

def index_value(lw, obj: Val, key: str, node) -> Val:
    """obj.key for a value that is not a global path: hdr.ip, ip.src, …"""
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


def int_arg(lw, args, i: int, default, node, name: str):
    """Argument i as an integer; an absent or nil one is `default` (Lua's luaL_optinteger),
    or an error when there is none (luaL_checkinteger)."""
    if i >= len(args) or args[i].kinds == frozenset({"nil"}):
        if default is None:
            lw.error(node, f"bad argument #{i + 1} to '{name}' (number expected, got no value)")
            return 0
        return default
    v = args[i]
    message = (lambda got: f"bad argument #{i + 1} to '{name}' (number expected, got {got})")
    if default is None and isinstance(args, Values):   # the call may give fewer values
        b = lw.b
        given, absent = b.block("arg_given"), b.block("arg_absent")
        b.branch("gt", args.count, i, given, absent)
        b.start(absent)
        lw.runtime_error(node.span, message("no value"))
        b.start(given)
    if default is None or "nil" not in v.kinds:
        return lw.int_operand(v, node, message)
    b = lw.b                                    # nil only known at run time: the default then
    r = b.copy(default, name + "_arg")
    given, done = b.block("arg_given"), b.block("arg_done")
    b.branch("eq", v.tag, NIL, done, given)
    b.start(given)
    b.mov(r, lw.int_operand(v, node, message))
    b.jump(done)
    b.start(done)
    return r


def method_byte(lw, s, args, node):
    i = int_arg(lw, args, 0, 1, node, "byte")
    return byte_values(lw, s, i, int_arg(lw, args, 1, i, node, "byte"), node)


def method_sub(lw, s, args, node):
    i = int_arg(lw, args, 0, None, node, "sub")
    j = int_arg(lw, args, 1, -1, node, "sub")
    n = length(lw, s)
    if not isinstance(n, int):                     # see _Untracked: clamp on a copy
        n = _Untracked(lw, "sub_len", [n])[0]
    off, size = clamp_range(lw, i, j, n)
    return [substring(lw, s, off, size)]


def method_len(lw, s, args, node):
    return [Val.int_(length(lw, s), (0, 0xFFFF))]


def method_segment(lw, s, args, node):
    """Luadata's view:segment(offset, length): 0-based, cut at the end of the view."""
    b = lw.b
    off = int_arg(lw, args, 0, 0, node, "segment")
    size = int_arg(lw, args, 1, None, node, "segment") if len(args) > 1 else None
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


def method_layout(lw, s, args, node):
    if not args or "obj" not in args[0].kinds or not isinstance(args[0].obj, Layout):
        lw.error(node, "view:layout(L) takes a layout made with data.layout{…}")
        return [Val.nil()]
    return [Val(LVIEW, s.payload, frozenset({"lview"}), None, s.length, None, args[0].obj)]
