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
from luabpf.compiler.obj.elfread import ElfObject
from luabpf.compiler.obj.objfile import write_object
from luabpf.compiler.obj.objread import DAMAGE, ObjectError, describe, disassemble, read_object

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
    """A clang object with a BTF-defined map, global data and a subprogram: the program is
    listed (not the subprogram), with the maps it loads (not its call)."""
    c = tmp_path / "p.c"
    c.write_text(
        '#define SEC(n) __attribute__((section(n), used))\n'
        'struct { int (*type)[1]; int (*max_entries)[16]; int *key; long *value; } counts SEC(".maps");\n'
        'long seen = 7;\n'
        'static void *(*lookup)(void *map, void *key) = (void *) 1;\n'
        '__attribute__((noinline)) static int twice(int x) { return x * 2 + (int) seen; }\n'
        'SEC("xdp") int pass_all(void *ctx) {\n'
        '  int k = 1;\n'
        '  long *v = lookup(&counts, &k);\n'
        '  return v ? twice((int) *v) : 2;\n'
        '}\n'
        'char _license[] SEC("license") = "GPL";\n')
    obj = tmp_path / "p.o"
    subprocess.run(["clang-19", "-O2", "-g", "-target", "bpf", "-c", str(c), "-o", str(obj)],
                   check=True)
    info = read_object(obj.read_bytes())
    assert [p.name for p in info.programs] == ["pass_all"]
    [prog] = info.programs
    assert prog.section == "xdp" and prog.maps == ["counts"]
    assert [m.name for m in info.maps] == ["counts"] and info.maps[0].attrs["max_entries"] == 16
    assert ".data" in info.data
    assert any("lookup(&counts, &k)" in text for _, _, _, text in prog.lines)
    assert "map[id:counts]" in disassemble(prog)


def test_damaged_objects_are_one_sentence_never_a_crash():
    """Single-byte corruptions of a real object (positions and values in a fixed
    pseudo-random order) read, or raise ObjectError; disassembling what reads raises at
    most what `luabpf inspect --asm` turns into one sentence (DAMAGE)."""
    import random
    good = write_object([compiled("rate_limit.lua")])
    rng = random.Random(7)
    for _ in range(1500):
        raw = bytearray(good)
        raw[rng.randrange(len(raw))] = rng.randrange(256)
        try:
            info = read_object(bytes(raw))
        except ObjectError:
            continue
        for p in info.programs:
            try:
                disassemble(p)
            except DAMAGE:
                pass
