"""Object files without the kernel: what `write_object` writes, `read_object` reads back.

The kernel's and the standard tools' verdict on these objects is tests/kernel/test_objects.py;
here: the layout libbpf expects (sections, symbols, relocations, BTF map definitions,
line records quoting the Lua source), for luabpf's objects and for clang's.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import luabpf
from luabpf.compiler.bpf import encode
from luabpf.compiler.elfread import ElfObject
from luabpf.compiler.objfile import write_object
from luabpf.compiler.objread import ObjectError, describe, disassemble, read_object

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def example(name: str) -> str:
    with open(os.path.join(ROOT, "examples", name), encoding="utf-8") as f:
        return f.read()


def compiled(name: str, hook: str = "xdp"):
    return luabpf.compile(example(name), f"examples/{name}", hook=hook, loops="may_goto").compiled


@pytest.mark.parametrize("name,hook,section", [("icmp_guard.lua", "xdp", "xdp"),
                                               ("rate_limit.lua", "tc", "tc")])
def test_a_filter_object_round_trips(name, hook, section):
    c = compiled(name, hook)
    info = read_object(write_object([c]))
    [prog] = info.programs
    assert (prog.name, prog.section) == ("filter", section)
    assert prog.code == encode.encode([i.replace(imm=0, src=0) if i.map_ref and i.src == 1 else
                                       i.replace(imm=i.imm >> 32, src=0) if i.map_ref else i
                                       for i in c.insns])
    assert [n for _, n in prog.relocations] == [i.map_ref for i in c.insns if i.map_ref]
    expected_maps = {s.name for s in c.maps} - {"luabpf_globals"}
    assert {m.name for m in info.maps} == expected_maps
    for m in info.maps:
        spec = next(s for s in c.maps if s.name == m.name)
        assert m.attrs["type"] == spec.type and m.attrs["max_entries"] == spec.max_entries
    assert info.license == "GPL"


def test_line_records_quote_the_lua_source():
    c = compiled("icmp_guard.lua")
    [prog] = read_object(write_object([c])).programs
    source = example("icmp_guard.lua").splitlines()
    assert prog.lines[0][0] == 0                                  # the kernel wants one at 0
    for insn, file, line, text in prog.lines:
        assert file == "examples/icmp_guard.lua"
        assert text == source[line - 1].strip()
    assert len({line for _, _, line, _ in prog.lines}) >= 5
    listing = disassemble(prog)
    assert "; if hdr.ip and hdr.ip.ttl < MIN_TTL then return false end  @ examples/icmp_guard.lua:10" \
        in listing
    assert "map[id:luabpf_globals]" in listing


def test_globals_are_a_data_section_with_their_initial_values():
    c = compiled("icmp_guard.lua")
    elf = ElfObject(write_object([c]))
    data = elf.section(".data").data
    words = [int.from_bytes(data[i:i + 8], "little", signed=True) for i in range(0, len(data), 8)]
    assert words == [0, 64, 2]                         # the opaque zero, MAX_PING, MIN_TTL
    assert any(s.name == "luabpf_globals" for s in elf.symbols)


def test_function_programs_share_one_syscall_section():
    text = example("intmath.lua")
    programs = [luabpf.api.compile_function(text, name, ("int",) * n, "examples/intmath.lua",
                                            loops="may_goto").compiled
                for name, n in luabpf.api.entry_points(text)]
    info = read_object(write_object(programs))
    assert {p.section for p in info.programs} == {"syscall"}
    assert sorted(p.name for p in info.programs) == sorted(c.hook.entry for c in programs)
    for p in info.programs:
        assert p.lines and p.lines[0][0] == 0


def test_describe_names_programs_and_maps():
    c = compiled("rate_limit.lua")
    text = describe(read_object(write_object([c])), "rl.o")
    assert "program filter: section xdp" in text
    assert "map window: lru_hash, 65536 entries, key 8 B, value 8 B" in text


@pytest.mark.parametrize("raw,words", [(b"not an object", "not a BPF object file"),
                                       (b"\x7fELF" + bytes(60), "not a BPF object file")])
def test_what_is_not_an_object_is_one_sentence(raw, words):
    with pytest.raises(ObjectError, match=words):
        read_object(raw)


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 compiles the C object")
def test_inspect_reads_clangs_objects_too(tmp_path):
    c = tmp_path / "p.c"
    c.write_text('#define SEC(n) __attribute__((section(n), used))\n'
                 'SEC("xdp") int pass_all(void *ctx) { return 2; }\n'
                 'char _license[] SEC("license") = "GPL";\n')
    obj = tmp_path / "p.o"
    subprocess.run(["clang-19", "-O2", "-g", "-target", "bpf", "-c", str(c), "-o", str(obj)],
                   check=True)
    info = read_object(obj.read_bytes())
    [prog] = info.programs
    assert (prog.name, prog.section, prog.insn_count) == ("pass_all", "xdp", 2)
    assert any("return 2" in text for _, _, _, text in prog.lines)
