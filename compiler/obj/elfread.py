"""A small reader of BPF object files (ELF64, little-endian): clang's and luabpf's.

Owns reading: sections by name, symbols (name, section, offset, size, type),
relocations of a section, and the programs (function symbols and their bytes).
`luabpf inspect` (`compiler/obj/objread.py`) and the benchmark (which loads clang's
objects raw, so `programs(relocatable=False)` refuses a section with relocations)
use it. Writing objects is `compiler/obj/objfile.py`'s.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SHT_SYMTAB, SHT_RELA, SHT_REL = 2, 4, 9
STT_FUNC = 2


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    data: bytes
    link: int
    info: int


@dataclass(frozen=True)
class Symbol:
    name: str
    section: int
    value: int
    size: int
    type: int


class ElfObject:
    def __init__(self, raw: bytes):
        if raw[:4] != b"\x7fELF" or len(raw) < 64 or raw[4] != 2 or raw[5] != 1:
            raise ValueError("not a little-endian ELF64 object")
        shoff, = struct.unpack_from("<Q", raw, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", raw, 0x3A)
        headers = [struct.unpack_from("<IIQQQQIIQQ", raw, shoff + i * shentsize) for i in range(shnum)]
        shstr = self._blob(raw, headers[shstrndx])
        self.sections = []
        for i, (name, typ, _flags, _addr, _off, _size, link, info, _align, _ent) in enumerate(headers):
            data = b"" if typ == 8 else self._blob(raw, headers[i])      # SHT_NOBITS
            self.sections.append(Section(i, _cstr(shstr, name), typ, data, link, info))
        self.symbols: list[Symbol] = []
        for sec in self.sections:
            if sec.type == SHT_SYMTAB:
                strtab = self.sections[sec.link].data
                for off in range(0, len(sec.data), 24):
                    name, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", sec.data, off)
                    self.symbols.append(Symbol(_cstr(strtab, name), shndx, value, size, info & 15))

    @staticmethod
    def _blob(raw: bytes, header) -> bytes:
        off, size = header[4], header[5]
        return raw[off:off + size]

    def section(self, name: str) -> Section:
        for sec in self.sections:
            if sec.name == name:
                return sec
        raise KeyError(name)

    def relocated(self, sec: Section) -> bool:
        return any(s.type in (SHT_REL, SHT_RELA) and s.info == sec.index and s.data for s in self.sections)

    def programs(self, relocatable: bool = False) -> dict[str, tuple[str, bytes]]:
        """{function name: (section name, instruction bytes)} for every function symbol;
        unless `relocatable`, a section with relocations is refused (ValueError)."""
        out = {}
        for sym in self.symbols:
            if sym.type != STT_FUNC or not sym.size:
                continue
            sec = self.sections[sym.section]
            if not relocatable and self.relocated(sec):
                raise ValueError(f"section {sec.name} has relocations: the benchmark loads "
                                 "objects without maps or calls only")
            out[sym.name] = (sec.name, sec.data[sym.value:sym.value + sym.size])
        return out

    def relocations(self, sec: Section) -> list[tuple[int, str]]:
        """(byte offset in `sec`, symbol name) of each REL relocation against it."""
        out = []
        for rel in self.sections:
            if rel.type != SHT_REL or rel.info != sec.index:
                continue
            symbols = self._symbols_of(rel.link)
            for off in range(0, len(rel.data), 16):
                offset, info = struct.unpack_from("<QQ", rel.data, off)
                out.append((offset, symbols[info >> 32].name))
        return out

    def _symbols_of(self, symtab_index: int) -> list[Symbol]:
        sec = self.sections[symtab_index]
        strtab = self.sections[sec.link].data
        out = []
        for off in range(0, len(sec.data), 24):
            name, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", sec.data, off)
            out.append(Symbol(_cstr(strtab, name), shndx, value, size, info & 15))
        return out

    def license(self) -> str:
        try:
            return self.section("license").data.split(b"\0")[0].decode()
        except KeyError:
            return "GPL"


def _cstr(blob: bytes, off: int) -> str:
    end = blob.index(b"\0", off)
    return blob[off:end].decode()


def read(path: str) -> ElfObject:
    with open(path, "rb") as f:
        return ElfObject(f.read())
