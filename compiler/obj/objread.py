"""What is in a BPF object file: `luabpf inspect OUT.o`.

Owns reading an object's meaning: its programs (section, symbol, instructions, the
maps they load), its BTF-defined maps (decoded from `.BTF`: the `int (*name)[value]`
members libbpf reads), its data sections, license, and the line records of
`.BTF.ext`, to print the disassembly annotated with the source lines the object
carries. Works on luabpf's objects and on clang's (whose `.text` subprograms and
call relocations it leaves out: it lists programs and the maps they load). Pure:
reads bytes; a damaged object is an ObjectError, never a crash.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from luabpf.compiler.bpf import disasm, encode
from luabpf.compiler.bpf.opcode import PSEUDO_MAP_FD, PSEUDO_MAP_VALUE
from luabpf.compiler.bpf.uapi import MapType
from luabpf.compiler.obj.elfread import STT_FUNC, ElfObject

MAP_TYPES = {t: t.name.lower() for t in (MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH,
                                         MapType.PERCPU_ARRAY, MapType.LRU_HASH, MapType.RINGBUF)}
KINDS = {1: "int", 2: "ptr", 3: "array", 4: "struct", 5: "union", 6: "enum", 7: "fwd",
         8: "typedef", 9: "volatile", 10: "const", 11: "restrict", 12: "func", 13: "func_proto",
         14: "var", 15: "datasec", 16: "float", 17: "decl_tag", 18: "type_tag", 19: "enum64"}


class ObjectError(Exception):
    """The file is not a BPF object luabpf can read; str() is one sentence."""


@dataclass
class Program:
    name: str
    section: str
    code: bytes
    relocations: list[tuple[int, str]]          # (instruction, map) of each map load
    lines: list[tuple[int, str, int, str]] = field(default_factory=list)  # (insn, file, line, text)

    data_symbols: set = field(default_factory=set)  # symbols of data sections (map values)

    @property
    def maps(self) -> list[str]:
        return sorted({name for _, name in self.relocations})

    @property
    def insn_count(self) -> int:
        return len(self.code) // 8


@dataclass
class MapDef:
    name: str
    attrs: dict[str, int]

    @property
    def kind(self) -> str:
        t = self.attrs.get("type")
        return MAP_TYPES.get(t, str(t))


@dataclass
class ObjectInfo:
    programs: list[Program]
    maps: list[MapDef]
    data: dict[str, int]          # data section → size
    license: str
    btf_types: int


DAMAGE = (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, struct.error)


def read_object(raw: bytes) -> ObjectInfo:
    """The object's programs, maps and data; ObjectError (one sentence) for what is not a
    BPF object or is damaged."""
    try:
        elf = ElfObject(raw)
    except DAMAGE as e:
        raise ObjectError(f"not a BPF object file ({e})") from None
    if struct.unpack_from("<H", raw, 18)[0] != 247:
        raise ObjectError("an ELF file, but not for the BPF machine (e_machine is not EM_BPF)")
    try:
        return _read(elf)
    except DAMAGE as e:
        raise ObjectError(f"a damaged BPF object ({type(e).__name__}: {e})") from None


def _read(elf: ElfObject) -> ObjectInfo:
    types, strings = _btf(elf)
    lines = _line_info(elf, strings)
    programs = []
    in_section = {s.name: elf.sections[s.section].name for s in elf.symbols
                  if 0 < s.section < len(elf.sections)}
    data_symbols = {n for n, sec in in_section.items() if sec.startswith((".data", ".rodata", ".bss"))}
    map_symbols = data_symbols | {n for n, sec in in_section.items() if sec == ".maps"}
    for name, (section, code) in elf.programs(relocatable=True).items():
        if section == ".text":                 # a subprogram that programs call, not a program
            continue
        sec = elf.section(section)
        sym = next(s for s in elf.symbols if s.name == name and s.type == STT_FUNC)
        start = sym.value // 8
        relocs = [(off // 8 - start, n) for off, n in elf.relocations(sec)
                  if sym.value <= off < sym.value + sym.size and n in map_symbols]
        own = [(i - start, f, ln, t) for i, f, ln, t in lines.get(section, [])
               if start <= i < start + sym.size // 8]
        programs.append(Program(name, section, code, relocs, own))
    maps = [MapDef(name, attrs) for name, attrs in _map_defs(types, strings)]
    data = {s.name: len(s.data) for s in elf.sections
            if s.name in (".data", ".rodata", ".bss") or s.name.startswith(".data.")}
    for p in programs:
        p.data_symbols = data_symbols
    return ObjectInfo(programs, maps, data, elf.license(), len(types))


# ---- BTF --------------------------------------------------------------------------------

def _btf(elf: ElfObject) -> tuple[list[tuple], bytes]:
    """[(kind, name_off, vlen, size_or_type, extra bytes)] indexed from type 1, and strings."""
    try:
        raw = elf.section(".BTF").data
    except KeyError:
        return [], b""
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = \
        struct.unpack_from("<HBBIIIII", raw, 0)
    if magic != 0xEB9F:
        raise ObjectError("its .BTF section is not BTF (bad magic)")
    base = hdr_len
    blob = raw[base + type_off: base + type_off + type_len]
    strings = raw[base + str_off: base + str_off + str_len]
    types, off = [], 0
    while off < len(blob):
        name_off, info, size = struct.unpack_from("<III", blob, off)
        kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
        off += 12
        extra_len = {1: 4, 3: 12, 4: 12 * vlen, 5: 12 * vlen, 6: 8 * vlen, 13: 8 * vlen, 14: 4,
                     15: 12 * vlen, 17: 4, 19: 12 * vlen}.get(kind, 0)
        types.append((kind, name_off, vlen, size, blob[off:off + extra_len]))
        off += extra_len
    return types, strings


def _name(strings: bytes, off: int) -> str:
    end = strings.find(b"\0", off)
    return strings[off:end if end >= 0 else None].decode(errors="replace")


def _map_defs(types, strings) -> list[tuple[str, dict[str, int]]]:
    """The VARs of DATASEC .maps, each struct's `int (*m)[N]` members as {m: N}."""
    out = []
    for kind, name_off, vlen, _size, extra in types:
        if kind != 15 or _name(strings, name_off) != ".maps":
            continue
        for i in range(vlen):
            var_id, _off, _sz = struct.unpack_from("<III", extra, 12 * i)
            _, vname, _, vtype, _ = types[var_id - 1]
            struct_t = types[vtype - 1]
            attrs = {}
            for j in range(struct_t[2]):
                mname, mtype, _moff = struct.unpack_from("<III", struct_t[4], 12 * j)
                ptr = types[mtype - 1]
                if ptr[0] == 2 and types[ptr[3] - 1][0] == 3:
                    _elem, _index, nelems = struct.unpack_from("<III", types[ptr[3] - 1][4], 0)
                    attrs[_name(strings, mname)] = nelems
            out.append((_name(strings, vname), attrs))
    return out


def _line_info(elf: ElfObject, strings: bytes) -> dict[str, list[tuple[int, str, int, str]]]:
    """Line records of .BTF.ext by section: (instruction, file, line, text)."""
    try:
        raw = elf.section(".BTF.ext").data
    except KeyError:
        return {}
    _magic, _v, _f, hdr_len, _fo, _fl, line_off, line_len = struct.unpack_from("<HBBIIIII", raw, 0)
    blob = raw[hdr_len + line_off: hdr_len + line_off + line_len]
    if len(blob) < 4:
        return {}
    rec_size = struct.unpack_from("<I", blob, 0)[0]
    out, off = {}, 4
    while off + 8 <= len(blob):
        sec_off, n = struct.unpack_from("<II", blob, off)
        off += 8
        recs = []
        for _ in range(n):
            insn_off, file_off, line_str, line_col = struct.unpack_from("<IIII", blob, off)
            recs.append((insn_off // 8, _name(strings, file_off), line_col >> 10,
                         _name(strings, line_str)))
            off += rec_size
        out[_name(strings, sec_off)] = recs
    return out


# ---- presenting ---------------------------------------------------------------------------

def describe(info: ObjectInfo, path: str) -> str:
    """The summary `luabpf inspect` prints."""
    out = [f"{path}: BPF object, license {info.license!r}, {info.btf_types} BTF types"]
    for p in info.programs:
        uses = f", maps {', '.join(p.maps)}" if p.maps else ""
        out.append(f"  program {p.name}: section {p.section}, {p.insn_count} instructions{uses}")
    for m in info.maps:
        a = m.attrs
        sizes = (f", key {a['key_size']} B, value {a['value_size']} B"
                 if "key_size" in a else "")
        flags = f", flags {a['map_flags']:#x}" if a.get("map_flags") else ""
        out.append(f"  map {m.name}: {m.kind}, {a.get('max_entries', '?')} entries{sizes}{flags}")
    for name, size in info.data.items():
        out.append(f"  data {name}: {size} bytes (an array map of one entry, made by the loader)")
    return "\n".join(out)


def disassemble(program: Program) -> str:
    """The program's instructions, each source line the object records before its code."""
    insns = [i.replace(src=PSEUDO_MAP_VALUE if i.map_ref in program.data_symbols else PSEUDO_MAP_FD)
             if i.map_ref else i for i in encode.decode(program.code, program.relocations)]
    at = {i: (f, ln, t) for i, f, ln, t in program.lines}
    out, slot = [], 0
    for insn in insns:
        if slot in at:
            f, ln, t = at[slot]
            out.append(f"; {t}  @ {f}:{ln}")
        out.append(f"{slot}: {disasm.format_insn(insn)}")
        slot += insn.slots
    return "\n".join(out)
