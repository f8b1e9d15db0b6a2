"""BTF, the kernel's type format, and .BTF.ext's function and line records.

Owns `Btf` (a builder of the `.BTF` blob: types and their string table, laid out
as in the kernel's Documentation/bpf/btf.rst) and `BtfExt` (the `.BTF.ext` blob of
an object file: func_info and line_info per program section, offsets in bytes),
and `program_btf`: the types, func_info and line_info of one compiled program,
which both the object writer (`compiler/obj/objfile.py`) and luabpf's own loader use,
so that the kernel's tools show Lua lines for luabpf's programs either way.

Line records point at the Lua source: the file's name and the text of the line,
with `line << 10 | column` as BTF encodes them.
"""
from __future__ import annotations

import struct

MAGIC = 0xEB9F
KIND = {"int": 1, "ptr": 2, "array": 3, "struct": 4, "func": 12, "func_proto": 13, "var": 14,
        "datasec": 15}
FUNC_STATIC, FUNC_GLOBAL = 0, 1     # a FUNC's linkage (its vlen)
VAR_GLOBAL = 1
INT_SIGNED = 1


class Btf:
    """Types are numbered from 1 in the order they are added (0 is void)."""

    def __init__(self):
        self.types: list[bytes] = []
        self.strings = bytearray(b"\0")
        self._string_offsets: dict[str, int] = {"": 0}
        self._ints: dict[tuple, int] = {}

    def str(self, s: str) -> int:
        off = self._string_offsets.get(s)
        if off is None:
            off = self._string_offsets[s] = len(self.strings)
            self.strings += s.encode() + b"\0"
        return off

    def _add(self, name: str, kind: str, vlen: int, size_or_type: int, extra: bytes = b"") -> int:
        self.types.append(struct.pack("<III", self.str(name), KIND[kind] << 24 | vlen, size_or_type)
                          + extra)
        return len(self.types)

    def int_(self, name: str, size: int, signed: bool) -> int:
        key = (name, size, signed)
        if key not in self._ints:
            encoding = (INT_SIGNED if signed else 0) << 24 | 8 * size
            self._ints[key] = self._add(name, "int", 0, size, struct.pack("<I", encoding))
        return self._ints[key]

    def ptr(self, target: int) -> int:
        return self._add("", "ptr", 0, target)

    def array(self, elem: int, nelems: int) -> int:
        index = self.int_("int", 4, True)
        return self._add("", "array", 0, 0, struct.pack("<III", elem, index, nelems))

    def struct(self, name: str, members: list[tuple[str, int, int]], size: int) -> int:
        """members: (name, type, byte offset)."""
        body = b"".join(struct.pack("<III", self.str(n), t, 8 * off) for n, t, off in members)
        return self._add(name, "struct", len(members), size, body)

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        body = b"".join(struct.pack("<II", self.str(n), t) for n, t in params)
        return self._add("", "func_proto", len(params), ret, body)

    def func(self, name: str, proto: int, linkage: int = FUNC_GLOBAL) -> int:
        """A function; the kernel verifies a global one once, on its own, and requires
        the callbacks of helpers such as bpf_loop to be static."""
        return self._add(name, "func", linkage, proto)

    def var(self, name: str, type_: int) -> int:
        return self._add(name, "var", 0, type_, struct.pack("<I", VAR_GLOBAL))

    def datasec(self, name: str, entries: list[tuple[int, int, int]], size: int) -> int:
        """entries: (var type id, offset, size)."""
        body = b"".join(struct.pack("<III", *e) for e in entries)
        return self._add(name, "datasec", len(entries), size, body)

    def encode(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack("<HBBIIIII", MAGIC, 1, 0, 24, 0, len(types), len(types),
                             len(self.strings))
        return header + types + bytes(self.strings)


class BtfExt:
    """func_info and line_info by program section, for an object file's `.BTF.ext`."""

    def __init__(self, btf: Btf):
        self.btf = btf
        self.funcs: list[tuple[str, list[tuple[int, int]]]] = []
        self.lines: list[tuple[str, list[tuple[int, int, int, int]]]] = []

    def add(self, section: str, funcs: list[tuple[int, int]], lines: list[tuple[int, int, int, int]]):
        """Records with insn_off in instructions; written in bytes, as object files hold them."""
        self.funcs.append((section, [(8 * off, t) for off, t in funcs]))
        self.lines.append((section, [(8 * off, f, l, c) for off, f, l, c in lines]))

    def encode(self) -> bytes:
        func = struct.pack("<I", 8)
        for section, recs in self.funcs:
            func += struct.pack("<II", self.btf.str(section), len(recs))
            func += b"".join(struct.pack("<II", *r) for r in recs)
        line = struct.pack("<I", 16)
        for section, recs in self.lines:
            line += struct.pack("<II", self.btf.str(section), len(recs))
            line += b"".join(struct.pack("<IIII", *r) for r in recs)
        header = struct.pack("<HBBIIIIIII", MAGIC, 1, 0, 32, 0, len(func), len(func), len(line),
                             len(func) + len(line), 0)
        return header + func + line


# ---- one program --------------------------------------------------------------------------

def program_func(btf: Btf, name: str) -> int:
    """`int name(void *ctx)`: the FUNC of a program's entry."""
    int_t = btf.int_("int", 4, True)
    proto = btf.func_proto(int_t, [("ctx", btf.ptr(0))])
    return btf.func(name, proto)


def sub_func(btf: Btf, name: str, frame_bytes: int) -> int:
    """`int name(struct luabpf_frame *frame)`: the FUNC of a BPF function luabpf calls,
    global, so the kernel verifies it once, whatever its callers (its frame is a struct
    of 64-bit words: the verifier checks each caller passes that many bytes)."""
    int_t = btf.int_("int", 4, True)
    u64 = btf.int_("long long unsigned int", 8, False)
    frame = btf.struct(f"luabpf_frame_{name}", [("w", btf.array(u64, frame_bytes // 8), 0)],
                       frame_bytes)
    proto = btf.func_proto(int_t, [("frame", btf.ptr(frame))])
    return btf.func(name, proto)


def funcs_of(btf: Btf, compiled, entry_name: str) -> list[tuple[int, int]]:
    """(insn_off, FUNC type) of the program and of each BPF function it calls."""
    out = []
    for name, start in compiled.funcs:
        if not name:
            out.append((start, program_func(btf, entry_name)))
        else:
            out.append((start, sub_func(btf, name, compiled.frame_bytes[name])))
    return out


def line_records(btf: Btf, insns, lines_of, starts=(0,)) -> list[tuple[int, int, int, int]]:
    """(insn_off, file_name_off, line_off, line_col) where the Lua line changes (not at
    every column: tools print one source line per record); one at the first instruction
    of each function (`starts`, in slots), as the kernel requires. `lines_of(file)` gives
    a file's lines."""
    records, slot, last = [], 0, None
    starts = set(starts)
    for insn in insns:
        loc = getattr(insn, "loc", None)
        here = (loc.file, loc.line) if loc is not None else None
        if slot in starts:
            last = None
            if here is None:
                here = ("", 0)
        if here is not None and here != last:
            file, line = here
            col = loc.col if loc is not None else 0
            text = lines_of(file)
            source = text[line - 1].strip() if text and 0 < line <= len(text) else ""
            records.append((slot, btf.str(file), btf.str(source), line << 10 | min(col, 1023)))
            last = here
        slot += insn.slots
    return records


def load_info(compiled, name: str) -> tuple[bytes, bytes, bytes]:
    """(BTF blob, func_info, line_info) for loading `compiled` with BPF_PROG_LOAD
    (records of 8 and 16 bytes, insn_off in instructions)."""
    btf = Btf()
    funcs = funcs_of(btf, compiled, name)
    lines = line_records(btf, compiled.insns, compiled.lines_of, [s for s, _ in funcs])
    func_info = b"".join(struct.pack("<II", *f) for f in funcs)
    line_info = b"".join(struct.pack("<IIII", *r) for r in lines)
    return btf.encode(), func_info, line_info
