"""ELF object files, as libbpf, bpftool, ip and tc load clang's.

Owns `write_object(programs) -> bytes`: the programs compiled from one script
as an ELF64 relocatable object for the BPF machine, laid out by libbpf's conventions:
- one code section per program kind, named as libbpf names them (`SECTIONS`: `xdp`,
  `tc`, `tracepoint/CATEGORY/EVENT`, `perf_event`, `syscall`), each program a global
  STT_FUNC symbol in it;
- `license` ("GPL": the helpers luabpf uses need it), with its `_license` symbol;
- maps as BTF-defined maps in `.maps`: a global symbol and a BTF VAR per map, whose
  struct says `type`, `max_entries`, `key_size`, `value_size`, `map_flags` as
  `int (*member)[value]` (libbpf's `__uint`). The globals are `.data`, whose bytes are
  their initial values: libbpf makes it the mmap-able one-entry array luabpf's own
  loader makes, and the code reaches it with BPF_PSEUDO_MAP_VALUE;
- `.rel<section>`: an R_BPF_64_64 relocation for each instruction that loads a map;
- `.BTF` (the maps' types, a FUNC per program, the data sections) and `.BTF.ext`
  (func_info, and line_info that quotes the Lua source), so `bpftool prog dump xlated`
  and the verifier's log show Lua lines.
- the BPF functions a program calls (compiler/lower/calls.py) in `.text`, as clang puts them:
  a global STT_FUNC symbol `PROGRAM_FUNCTION` each, a BTF FUNC of global linkage and its
  func_info; each call has imm -1 and an R_BPF_64_32 relocation against the callee, which
  libbpf resolves when it appends the functions to each program that calls them.
Pure: builds bytes, touches no file and no kernel.
"""
from __future__ import annotations

import struct

from luabpf.compiler.bpf import encode
from luabpf.compiler.bpf.opcode import PSEUDO_CALL, PSEUDO_MAP_VALUE, Class, JumpOp
from luabpf.compiler.bpf.uapi import MapType
from luabpf.compiler.obj.btf import Btf, BtfExt, line_records, program_func, sub_func
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Span
from luabpf.compiler.program import merged_map_specs

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_REL = 1, 2, 3, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_INFO_LINK = 0x1, 0x2, 0x4, 0x40
STB_GLOBAL = 1
STT_OBJECT, STT_FUNC = 1, 2
R_BPF_64_64 = 1
R_BPF_64_32 = 10                    # a call of a function in .text
GLOBALS_MAP = "luabpf_globals"


def section_of(hook) -> str:
    """libbpf's section name for a hook's programs (the record's `section`)."""
    if not hook.section:
        raise ValueError(f"no object section for the {hook.name!r} hook")
    return hook.section


def symbol_of(hook) -> str:
    """The program's symbol (and the name the kernel shows): its entry function."""
    return hook.entry.rsplit(".", 1)[-1]


class _Strtab:
    def __init__(self):
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        if s not in self.offsets:
            self.offsets[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self.offsets[s]


class _Section:
    def __init__(self, name, type_, flags, data=b"", align=8, link=0, info=0, entsize=0):
        self.name, self.type, self.flags, self.data = name, type_, flags, bytes(data)
        self.align, self.link, self.info, self.entsize = align, link, info, entsize


def write_object(programs: list) -> bytes:
    """The object of a script's programs (compiled together, so they share maps)."""
    maps = merged_map_specs(programs)
    _check_names(programs, maps)
    btf = Btf()
    ext = BtfExt(btf)
    sections = [_Section("", 0, 0, align=0)]
    strtab = _Strtab()
    symbols: list[tuple] = []          # (name, info, shndx, value, size)

    def add_section(sec: _Section) -> int:
        sections.append(sec)
        return len(sections) - 1

    # code, grouped by section name
    by_section: dict[str, list] = {}
    for compiled in programs:
        by_section.setdefault(section_of(compiled.hook), []).append(compiled)
    code_sections = []
    text = _Code()                      # the BPF functions programs call: libbpf's `.text`
    for name, group in by_section.items():
        sec = _Code()
        for compiled in group:
            prog = symbol_of(compiled.hook)
            for fname, insns in _functions(compiled):
                here = sec if not fname else text
                symbol = prog if not fname else f"{prog}_{fname}"
                start = here.slot
                for k, insn in enumerate(insns):
                    if insn.map_ref:
                        here.relocs.append((8 * here.slot, insn.map_ref, R_BPF_64_64))
                    if _is_call(insn):          # libbpf: imm -1, a relocation to the callee
                        here.relocs.append((8 * here.slot, f"{prog}_{insn.label}", R_BPF_64_32))
                        insns[k] = insn.replace(imm=-1, label=None)
                    here.slot += insn.slots
                here.code += encode.encode([_for_object(i) for i in insns])
                func = program_func(btf, prog) if not fname else \
                    sub_func(btf, symbol, compiled.frame_bytes[fname])
                here.funcs.append((start, func))
                here.lines += [(start + off, f, ln, col) for off, f, ln, col in
                               line_records(btf, insns, compiled.lines_of)]
                symbols.append((symbol, _info(STB_GLOBAL, STT_FUNC), name if not fname else ".text",
                                8 * start, 8 * (here.slot - start)))
        ext.add(name, sec.funcs, sec.lines)
        index = add_section(_Section(name, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, sec.code))
        code_sections.append((index, sec.relocs))
    if text.funcs:
        ext.add(".text", text.funcs, text.lines)
        index = add_section(_Section(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, text.code))
        code_sections.append((index, text.relocs))

    add_section(_Section("license", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, b"GPL\0", align=1))
    symbols.append(("_license", _info(STB_GLOBAL, STT_OBJECT), "license", 0, 4))
    _license_btf(btf)

    defined = [m for m in maps if m.name != GLOBALS_MAP]
    if defined:
        entries, data = [], bytearray()
        for spec in defined:
            type_id, size = _map_struct(btf, spec)
            var = btf.var(spec.name, type_id)
            entries.append((var, len(data), size))
            symbols.append((spec.name, _info(STB_GLOBAL, STT_OBJECT), ".maps", len(data), size))
            data += bytes(size)
        btf.datasec(".maps", entries, len(data))
        add_section(_Section(".maps", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, data))
    globals_spec = next((m for m in maps if m.name == GLOBALS_MAP), None)
    if globals_spec is not None:
        value = next(iter(globals_spec.initial.values()), bytes(globals_spec.value_size))
        u64 = btf.int_("long long unsigned int", 8, False)
        var = btf.var(GLOBALS_MAP, btf.array(u64, len(value) // 8))
        btf.datasec(".data", [(var, 0, len(value))], len(value))
        add_section(_Section(".data", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, value))
        symbols.append((GLOBALS_MAP, _info(STB_GLOBAL, STT_OBJECT), ".data", 0, len(value)))

    index_of = {s.name: i for i, s in enumerate(sections)}
    symbols = [("", 0, 0, 0, 0)] + [(n, i, index_of[sec], v, sz) for n, i, sec, v, sz in symbols]
    sym_index = {s[0]: i for i, s in enumerate(symbols)}
    symtab_index = len(sections) + len(code_sections) + 2      # after the .rel, .BTF, .BTF.ext
    for index, relocs in code_sections:
        rel = b"".join(struct.pack("<QQ", off, sym_index[name] << 32 | kind)
                       for off, name, kind in relocs)
        add_section(_Section(".rel" + sections[index].name, SHT_REL, SHF_INFO_LINK, rel,
                             link=symtab_index, info=index, entsize=16))
    add_section(_Section(".BTF", SHT_PROGBITS, 0, b"", align=4))
    btf_index = len(sections) - 1
    add_section(_Section(".BTF.ext", SHT_PROGBITS, 0, ext.encode(), align=4))
    sections[btf_index].data = btf.encode()                    # after .BTF.ext added its strings
    symtab = b"".join(struct.pack("<IBBHQQ", strtab.add(n), info, 0, shndx, value, size)
                      for n, info, shndx, value, size in symbols)
    assert len(sections) == symtab_index
    add_section(_Section(".symtab", SHT_SYMTAB, 0, symtab, link=0, info=1, entsize=24))
    strtab_index = add_section(_Section(".strtab", SHT_STRTAB, 0, b"", align=1))
    sections[symtab_index].link = strtab_index
    for sec in sections:
        strtab.add(sec.name)
    sections[strtab_index].data = bytes(strtab.data)
    return _place_sections(sections, strtab, strtab_index)


class _Code:
    """A code section being built: bytes, relocations, func and line records."""

    def __init__(self):
        self.code, self.relocs, self.funcs, self.lines, self.slot = bytearray(), [], [], [], 0


def _functions(compiled) -> list[tuple[str, list]]:
    """(name, instructions) of the program ("") and of each BPF function it calls; each
    call keeps, in `target`, the name of the function it calls."""
    starts = {start: name for name, start in compiled.funcs}
    out, slot = [], 0
    for insn in compiled.insns:
        if slot in starts:
            out.append((starts[slot], []))
        if _is_call(insn):
            insn = insn.replace(label=starts[slot + 1 + insn.imm])
        out[-1][1].append(insn)
        slot += insn.slots
    return out


def _is_call(insn) -> bool:
    return insn.code == Class.JMP | JumpOp.CALL and insn.src == PSEUDO_CALL


def _for_object(insn):
    """An instruction as an object file holds it: a map load's fd is the loader's to fill,
    and a map value's offset sits in the first half (libbpf moves it)."""
    if not insn.map_ref:
        return insn
    if insn.src == PSEUDO_MAP_VALUE:
        return insn.replace(src=0, imm=insn.imm >> 32)
    return insn.replace(src=0, imm=0)


def _info(bind: int, type_: int) -> int:
    return bind << 4 | type_


def _check_names(programs, maps) -> None:
    """Every symbol once: a map may not be named like a program."""
    programs_by_symbol = {symbol_of(c.hook): c for c in programs}
    for spec in maps:
        if spec.name in programs_by_symbol or spec.name == "_license":
            if spec.name == "_license":
                programs_by_symbol[spec.name] = programs[0]
            c = programs_by_symbol.get(spec.name, programs[0])
            raise CompileError([Diagnostic(
                f"map '{spec.name}' has the name of a program (or of the object's license): "
                "an object file's symbols must differ (rename the map)", Span(c.source.filename, 1, 1, 1, 2))], c.source)


def _map_struct(btf: Btf, spec) -> tuple[int, int]:
    """libbpf's map definition: `int (*member)[value]` for each attribute."""
    int_t = btf.int_("int", 4, True)
    attrs = [("type", spec.type), ("max_entries", spec.max_entries)]
    if spec.type != MapType.RINGBUF:
        attrs += [("key_size", spec.key_size), ("value_size", spec.value_size)]
    if spec.flags:
        attrs.append(("map_flags", spec.flags))
    members = [(name, btf.ptr(btf.array(int_t, value)), 8 * i) for i, (name, value) in enumerate(attrs)]
    size = 8 * len(members)
    return btf.struct("", members, size), size


def _license_btf(btf: Btf) -> None:
    char = btf.int_("char", 1, True)
    var = btf.var("_license", btf.array(char, 4))
    btf.datasec("license", [(var, 0, 4)], 4)


def _place_sections(sections: list[_Section], strtab: _Strtab, shstrndx: int) -> bytes:
    """The file's bytes: the ELF header, each section's data at its aligned offset, then
    the section headers."""
    out = bytearray(64)
    offsets = []
    for sec in sections:
        if sec.type == 0:
            offsets.append(0)
            continue
        align = max(sec.align, 1)
        out += bytes(-len(out) % align)
        offsets.append(len(out))
        out += sec.data
    out += bytes(-len(out) % 8)
    shoff = len(out)
    for sec, off in zip(sections, offsets):
        out += struct.pack("<IIQQQQIIQQ", strtab.offsets[sec.name] if sec.name or sec.type else 0,
                           sec.type, sec.flags, 0, off, len(sec.data), sec.link, sec.info,
                           sec.align, sec.entsize)
    header = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, bytes(7), ET_REL,
                         EM_BPF, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(sections), shstrndx)
    out[:64] = header
    return bytes(out)
