"""compiler/bpf: builders, encoding, decoding, assembly and disassembly (no kernel).

Every byte string below was written by hand from the kernel UAPI (include/uapi/linux/
bpf.h, bpf_common.h) -- not produced by the code under test -- and every text line in the
spelling of kernel/bpf/disasm.c.
"""

from types import SimpleNamespace

import pytest

from luabpf.compiler.bpf import insn as I
from luabpf.compiler.bpf.asm import AsmError, assemble
from luabpf.compiler.bpf.disasm import disassemble, format_insn
from luabpf.compiler.bpf.encode import decode, encode, map_relocations, resolve
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.bpf.insn import R0, R1, R2, R10, Insn, Label, Register
from luabpf.compiler.bpf.opcode import ALUOp, AtomicOp, JumpOp, Size

W, H, B, DW = Size.W, Size.H, Size.B, Size.DW

ALU_NAMES = [  # (op, text, opcode low nibble 7/f/4/c added below)
    (ALUOp.ADD, "+=", 0x00), (ALUOp.SUB, "-=", 0x10), (ALUOp.MUL, "*=", 0x20),
    (ALUOp.DIV, "/=", 0x30), (ALUOp.OR, "|=", 0x40), (ALUOp.AND, "&=", 0x50),
    (ALUOp.LSH, "<<=", 0x60), (ALUOp.RSH, ">>=", 0x70), (ALUOp.MOD, "%=", 0x90),
    (ALUOp.XOR, "^=", 0xa0), (ALUOp.MOV, "=", 0xb0), (ALUOp.ARSH, "s>>=", 0xc0),
]
JMP_NAMES = [
    (JumpOp.JEQ, "==", 0x10), (JumpOp.JGT, ">", 0x20), (JumpOp.JGE, ">=", 0x30),
    (JumpOp.JSET, "&", 0x40), (JumpOp.JNE, "!=", 0x50), (JumpOp.JSGT, "s>", 0x60),
    (JumpOp.JSGE, "s>=", 0x70), (JumpOp.JLT, "<", 0xa0), (JumpOp.JLE, "<=", 0xb0),
    (JumpOp.JSLT, "s<", 0xc0), (JumpOp.JSLE, "s<=", 0xd0),
]


def _alu_rows():
    # The hex here is spelled out per family; the nibble arithmetic only picks the
    # operation byte, whose value is asserted literally in test_known_bytes.
    rows = []
    for op, s, hi in ALU_NAMES:
        rows.append((op.imm(R1, 22), f"{hi | 0x07:02x} 01 00 00 16 00 00 00", f"r1 {s} 22"))
        rows.append((op.reg(R1, R2), f"{hi | 0x0f:02x} 21 00 00 00 00 00 00", f"r1 {s} r2"))
        rows.append((op.imm32(R1, 22), f"{hi | 0x04:02x} 01 00 00 16 00 00 00", f"w1 {s} 22"))
        rows.append((op.reg32(R1, R2), f"{hi | 0x0c:02x} 21 00 00 00 00 00 00", f"w1 {s} w2"))
    return rows


def _jmp_rows():
    rows = []
    for op, s, hi in JMP_NAMES:
        rows.append((op.imm(R1, 4, 3), f"{hi | 0x05:02x} 01 03 00 04 00 00 00",
                     f"if r1 {s} 0x4 goto pc+3"))
        rows.append((op.reg(R1, R2, -3), f"{hi | 0x0d:02x} 21 fd ff 00 00 00 00",
                     f"if r1 {s} r2 goto pc-3"))
        rows.append((op.imm32(R1, 4, 3), f"{hi | 0x06:02x} 01 03 00 04 00 00 00",
                     f"if w1 {s} 0x4 goto pc+3"))
        rows.append((op.reg32(R1, R2, 0), f"{hi | 0x0e:02x} 21 00 00 00 00 00 00",
                     f"if w1 {s} w2 goto pc+0"))
    return rows


ROWS = _alu_rows() + _jmp_rows() + [
    # ALU specials
    (ALUOp.ADD.imm(R1, -1), "07 01 00 00 ff ff ff ff", "r1 += -1"),
    (I.mov(R1, 5), "b7 01 00 00 05 00 00 00", "r1 = 5"),
    (I.mov(R1, R2), "bf 21 00 00 00 00 00 00", "r1 = r2"),
    (I.mov32(R1, 0xffffffff), "b4 01 00 00 ff ff ff ff", "w1 = -1"),
    (I.mov32(R1, R2), "bc 21 00 00 00 00 00 00", "w1 = w2"),
    (I.neg(R1), "87 01 00 00 00 00 00 00", "r1 = -r1"),
    (I.neg32(R1), "84 01 00 00 00 00 00 00", "w1 = -w1"),
    (I.sdiv(R1, R2), "3f 21 01 00 00 00 00 00", "r1 s/= r2"),
    (I.sdiv(R1, 3), "37 01 01 00 03 00 00 00", "r1 s/= 3"),
    (I.smod(R1, R2), "9f 21 01 00 00 00 00 00", "r1 s%= r2"),
    (I.smod32(R1, 3), "94 01 01 00 03 00 00 00", "w1 s%= 3"),
    (I.sdiv32(R1, R2), "3c 21 01 00 00 00 00 00", "w1 s/= w2"),
    (I.movsx(R1, R2, 8), "bf 21 08 00 00 00 00 00", "r1 = (s8)r2"),
    (I.movsx(R1, R2, 16), "bf 21 10 00 00 00 00 00", "r1 = (s16)r2"),
    (I.movsx(R1, R2, 32), "bf 21 20 00 00 00 00 00", "r1 = (s32)r2"),
    (I.movsx32(R1, R2, 8), "bc 21 08 00 00 00 00 00", "w1 = (s8)w2"),
    (I.movsx32(R1, R2, 16), "bc 21 10 00 00 00 00 00", "w1 = (s16)w2"),
    (I.to_be(R1, 16), "dc 01 00 00 10 00 00 00", "r1 = be16 r1"),
    (I.to_be(R1, 32), "dc 01 00 00 20 00 00 00", "r1 = be32 r1"),
    (I.to_be(R1, 64), "dc 01 00 00 40 00 00 00", "r1 = be64 r1"),
    (I.to_le(R1, 16), "d4 01 00 00 10 00 00 00", "r1 = le16 r1"),
    (I.to_le(R1, 32), "d4 01 00 00 20 00 00 00", "r1 = le32 r1"),
    (I.bswap(R1, 16), "d7 01 00 00 10 00 00 00", "r1 = bswap16 r1"),
    (I.bswap(R1, 32), "d7 01 00 00 20 00 00 00", "r1 = bswap32 r1"),
    (I.bswap(R1, 64), "d7 01 00 00 40 00 00 00", "r1 = bswap64 r1"),
    # control flow
    (I.ja(5), "05 00 05 00 00 00 00 00", "goto pc+5"),
    (I.ja(-2), "05 00 fe ff 00 00 00 00", "goto pc-2"),
    (I.gotol(70000), "06 00 00 00 70 11 01 00", "gotol pc+70000"),
    (I.may_goto(3), "e5 00 03 00 00 00 00 00", "may_goto pc+3"),
    (JumpOp.JNE.imm(R1, -1, 1), "55 01 01 00 ff ff ff ff", "if r1 != 0xffffffff goto pc+1"),
    (I.call(Helper.map_lookup_elem), "85 00 00 00 01 00 00 00", "call bpf_map_lookup_elem#1"),
    (I.call(Helper.loop), "85 00 00 00 b5 00 00 00", "call bpf_loop#181"),
    (I.call(Helper.ringbuf_output), "85 00 00 00 82 00 00 00", "call bpf_ringbuf_output#130"),
    (I.call_local(4), "85 10 00 00 04 00 00 00", "call pc+4"),
    (I.exit_(), "95 00 00 00 00 00 00 00", "exit"),
    # loads
    (I.load(DW, R0, R10, -8), "79 a0 f8 ff 00 00 00 00", "r0 = *(u64 *)(r10 -8)"),
    (I.load(W, R1, R2, 4), "61 21 04 00 00 00 00 00", "r1 = *(u32 *)(r2 +4)"),
    (I.load(H, R1, R2, 4), "69 21 04 00 00 00 00 00", "r1 = *(u16 *)(r2 +4)"),
    (I.load(B, R1, R2, 0), "71 21 00 00 00 00 00 00", "r1 = *(u8 *)(r2 +0)"),
    (I.load_sx(W, R1, R2, 4), "81 21 04 00 00 00 00 00", "r1 = *(s32 *)(r2 +4)"),
    (I.load_sx(H, R1, R2, 4), "89 21 04 00 00 00 00 00", "r1 = *(s16 *)(r2 +4)"),
    (I.load_sx(B, R1, R2, -1), "91 21 ff ff 00 00 00 00", "r1 = *(s8 *)(r2 -1)"),
    # stores
    (I.store(DW, R10, -16, R1), "7b 1a f0 ff 00 00 00 00", "*(u64 *)(r10 -16) = r1"),
    (I.store(W, R10, -8, R1), "63 1a f8 ff 00 00 00 00", "*(u32 *)(r10 -8) = r1"),
    (I.store(H, R10, -2, R1), "6b 1a fe ff 00 00 00 00", "*(u16 *)(r10 -2) = r1"),
    (I.store(B, R10, -1, R1), "73 1a ff ff 00 00 00 00", "*(u8 *)(r10 -1) = r1"),
    (I.store_imm(DW, R10, -16, 5), "7a 0a f0 ff 05 00 00 00", "*(u64 *)(r10 -16) = 5"),
    (I.store_imm(W, R10, -8, -1), "62 0a f8 ff ff ff ff ff", "*(u32 *)(r10 -8) = -1"),
    (I.store_imm(H, R10, -2, 7), "6a 0a fe ff 07 00 00 00", "*(u16 *)(r10 -2) = 7"),
    (I.store_imm(B, R10, -1, 255), "72 0a ff ff ff 00 00 00", "*(u8 *)(r10 -1) = 255"),
    # atomics
    (I.atomic_add(DW, R0, 0, R1), "db 10 00 00 00 00 00 00", "lock *(u64 *)(r0 +0) += r1"),
    (I.atomic_add(W, R0, 4, R1), "c3 10 04 00 00 00 00 00", "lock *(u32 *)(r0 +4) += r1"),
    (I.atomic_or(W, R0, 8, R1), "c3 10 08 00 40 00 00 00", "lock *(u32 *)(r0 +8) |= r1"),
    (I.atomic_and(DW, R0, 0, R1), "db 10 00 00 50 00 00 00", "lock *(u64 *)(r0 +0) &= r1"),
    (I.atomic_xor(DW, R0, 0, R1), "db 10 00 00 a0 00 00 00", "lock *(u64 *)(r0 +0) ^= r1"),
    (I.atomic_add(DW, R0, 0, R1, fetch=True), "db 10 00 00 01 00 00 00",
     "r1 = atomic64_fetch_add((u64 *)(r0 +0), r1)"),
    (I.atomic_xor(W, R0, 0, R1, fetch=True), "c3 10 00 00 a1 00 00 00",
     "r1 = atomic_fetch_xor((u32 *)(r0 +0), r1)"),
    (I.atomic_or(DW, R0, -8, R1, fetch=True), "db 10 f8 ff 41 00 00 00",
     "r1 = atomic64_fetch_or((u64 *)(r0 -8), r1)"),
    (I.atomic_and(DW, R0, 0, R1, fetch=True), "db 10 00 00 51 00 00 00",
     "r1 = atomic64_fetch_and((u64 *)(r0 +0), r1)"),
    (I.atomic_xchg(DW, R1, 0, R2), "db 21 00 00 e1 00 00 00",
     "r2 = atomic64_xchg((u64 *)(r1 +0), r2)"),
    (I.atomic_cmpxchg(DW, R1, 0, R2), "db 21 00 00 f1 00 00 00",
     "r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)"),
    (I.atomic_cmpxchg(W, R1, 0, R2), "c3 21 00 00 f1 00 00 00",
     "r0 = atomic_cmpxchg((u32 *)(r1 +0), r0, r2)"),
    # 16-byte ld_imm64 and map loads
    (I.ld_imm64(R1, 0x1234), "18 01 00 00 34 12 00 00 00 00 00 00 00 00 00 00", "r1 = 0x1234 ll"),
    (I.ld_imm64(R2, 0x123456789abcdef0),
     "18 02 00 00 f0 de bc 9a 00 00 00 00 78 56 34 12", "r2 = 0x123456789abcdef0 ll"),
    (I.ld_imm64(R1, -1), "18 01 00 00 ff ff ff ff 00 00 00 00 ff ff ff ff",
     "r1 = 0xffffffffffffffff ll"),
    (I.ld_map_fd(R1, "counts"), "18 11 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
     "r1 = map[id:counts] ll"),
    (Insn(0x18, 1, 1, 0, 3), "18 11 00 00 03 00 00 00 00 00 00 00 00 00 00 00",
     "r1 = map[fd:3] ll"),
    (I.ld_map_value(R1, "globals", 16), "18 21 00 00 00 00 00 00 00 00 00 00 10 00 00 00",
     "r1 = map[id:globals][0]+16 ll"),
    # legacy packet loads
    (I.ld_abs(B, 14), "30 00 00 00 0e 00 00 00", "r0 = *(u8 *)skb[14]"),
    (I.ld_ind(H, R1, 2), "48 10 00 00 02 00 00 00", "r0 = *(u16 *)skb[r1 + 2]"),
]


def _hex(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


@pytest.mark.parametrize("insn,hexbytes,text", ROWS, ids=[r[2] for r in ROWS])
def test_table(insn, hexbytes, text):
    data = _hex(hexbytes)
    assert encode([insn]) == data
    assert decode(data, map_relocations([insn])) == [insn]
    assert format_insn(insn) == text
    assert assemble(text) == [insn]
    assert insn.slots == len(data) // 8


def test_known_bytes():
    # Independent anchors: the opcode byte of each family, straight from the UAPI.
    assert encode([ALUOp.ADD.imm(R1, 22)]) == _hex("07 01 00 00 16 00 00 00")
    assert encode([ALUOp.MOV.reg(R1, R2)])[0] == 0xbf
    assert encode([ALUOp.ARSH.reg32(R1, R2)])[0] == 0xcc
    assert encode([JumpOp.JSLE.reg32(R1, R2, 0)])[0] == 0xde
    assert encode([I.atomic_add(DW, R0, 0, R1)])[0] == 0xdb
    assert encode([I.exit_()]) == _hex("95 00 00 00 00 00 00 00")
    assert encode([I.load(DW, R0, R10, -8)]) == _hex("79 a0 f8 ff 00 00 00 00")
    assert len(ROWS) > 150


@pytest.mark.parametrize("name,number", [
    ("map_lookup_elem", 1), ("map_update_elem", 2), ("map_delete_elem", 3),
    ("probe_read", 4), ("ktime_get_ns", 5), ("trace_printk", 6), ("get_prandom_u32", 7),
    ("get_smp_processor_id", 8), ("tail_call", 12), ("get_current_pid_tgid", 14),
    ("get_current_comm", 16), ("perf_event_output", 25), ("skb_load_bytes", 26),
    ("get_numa_node_id", 42), ("xdp_adjust_head", 44), ("probe_read_kernel", 113),
    ("jiffies64", 118), ("ktime_get_boot_ns", 125), ("ringbuf_output", 130),
    ("ringbuf_reserve", 131), ("ringbuf_submit", 132), ("ringbuf_discard", 133),
    ("for_each_map_elem", 164), ("loop", 181), ("xdp_load_bytes", 189),
    ("map_lookup_percpu_elem", 195), ("user_ringbuf_drain", 209), ("cgrp_storage_delete", 211),
])
def test_helper_ids(name, number):
    assert Helper[name] == number


def test_call_spellings():
    want = [I.call(Helper.map_lookup_elem)]
    for text in ("call 1", "call map_lookup_elem", "call bpf_map_lookup_elem",
                 "call bpf_map_lookup_elem#1"):
        assert assemble(text) == want
    with pytest.raises(AsmError, match="#1, not #2"):
        assemble("call bpf_map_lookup_elem#2")


def test_builders_reject_bad_immediates():
    with pytest.raises(ValueError, match="ld_imm64"):
        ALUOp.AND.imm(R1, 0xffffffff)  # would sign-extend to all ones
    assert ALUOp.AND.imm32(R1, 0xffffffff).imm == -1
    with pytest.raises(ValueError):
        I.movsx(R1, R2, 64)
    with pytest.raises(ValueError):
        I.atomic_add(B, R0, 0, R1)
    with pytest.raises(TypeError):
        I.load(8, R0, R10, -8)


def _label_program():
    return [
        I.label("top"),
        I.mov(R0, 0),                        # slot 0
        JumpOp.JEQ.imm(R1, 0, "out"),        # slot 1 -> 6: off 4
        I.ld_map_fd(R2, "counts"),           # slots 2-3
        JumpOp.JGT.reg(R1, R2, "top"),       # slot 4 -> 0: off -5
        ALUOp.ADD.imm(R0, 1),                # slot 5
        I.label("out"),
        I.exit_(),                           # slot 6
    ]


def test_label_resolution_across_ld_imm64():
    prog = _label_program()
    out = resolve(prog)
    assert len(out) == 6 and not any(isinstance(i, Label) for i in out)
    assert all(i.label is None for i in out)
    assert out[1] == JumpOp.JEQ.imm(R1, 0, 4)
    assert out[3] == JumpOp.JGT.reg(R1, R2, -5)
    data = encode(prog)
    assert len(data) == 7 * 8
    assert data[8:16] == _hex("15 01 04 00 00 00 00 00")
    assert data[32:40] == _hex("2d 21 fb ff 00 00 00 00")
    assert map_relocations(prog) == [(2, "counts")]
    assert encode(out) == data


def test_ld_func_loads_a_callback_by_label():
    # libbpf's form: ld_imm64 src 4 (BPF_PSEUDO_FUNC), the callback's offset from the next
    # instruction in the low imm, the high half 0; a callback before the load is negative
    prog = [I.mov(R1, 4), I.ld_func(R2, "cb"), I.call(Helper.loop), I.exit_(),
            I.label("cb"), I.mov(R0, 0), I.exit_()]
    data = encode(prog)
    assert data[8:24] == _hex("18 42 00 00 03 00 00 00  00 00 00 00 00 00 00 00")
    back = encode([I.label("cb"), I.exit_(), I.ld_func(R2, "cb"), I.exit_()])
    assert back[8:24] == _hex("18 42 00 00 fe ff ff ff  00 00 00 00 00 00 00 00")   # 1 + -2 + 1 = 0
    assert I.ld_func(R2, 3) == resolve(prog)[1]


def test_unknown_and_duplicate_labels():
    with pytest.raises(ValueError, match="unknown label 'nowhere'"):
        encode([I.ja("nowhere"), I.exit_()])
    with pytest.raises(ValueError, match="duplicate label 'a'"):
        resolve([I.label("a"), I.exit_(), I.label("a")])
    with pytest.raises(AsmError, match="line 2: unknown label 'Lx'"):
        assemble("r0 = 0\ngoto Lx\nexit")


def test_long_jumps():
    body = [I.mov(R0, 0)] * 40000
    far = resolve([I.ja("end"), *body, I.label("end"), I.exit_()])
    assert far[0] == I.gotol(40000)
    with pytest.raises(ValueError, match="16 bits"):
        resolve([JumpOp.JEQ.imm(R1, 0, "end"), *body, I.label("end"), I.exit_()])


def test_asm_errors_carry_line_numbers():
    with pytest.raises(AsmError) as e:
        assemble("r1 = 5\n\n  r1 +== 3 ; comment\nexit")
    assert e.value.line == 3
    for bad in ("r11 = 1", "w1 = r2", "if r1 ~ 3 goto pc+1", "r1 = map[id:5]",
                "lock *(u8 *)(r0 +0) += r1", "r1 = *(u32 *)(r2 +4", "frobnicate"):
        with pytest.raises(AsmError):
            assemble(bad)


PROGRAM = """\
; a 20-instruction program using most families
    r6 = r1
    r1 = 0 ; key
    *(u32 *)(r10 -4) = r1
    r2 = r10
    r2 += -4
    r1 = map[id:counts] ll
    call bpf_map_lookup_elem#1
    if r0 == 0x0 goto Lmiss
    r1 = 1
    lock *(u64 *)(r0 +0) += r1
    r7 = *(u32 *)(r6 +0)
    w7 s%= 7
    r7 = be16 r7
Lloop:
    may_goto Ldone
    r7 s>>= 1
    if w7 s> 0x4 goto Lloop
    r0 = 0xdeadbeefcafe ll
Ldone:
    goto Lout
Lmiss:
    r0 = 2
Lout:
    exit
"""


def test_round_trip_program():
    prog = assemble(PROGRAM)
    insns = [i for i in prog if isinstance(i, Insn)]
    assert len(insns) == 20
    relocs = map_relocations(prog)
    assert relocs == [(5, "counts")]
    data = encode(prog)
    back = decode(data, relocs)
    listing = disassemble(back)
    again = assemble(listing)
    assert again == back
    assert encode(again) == data
    # The symbolic form keeps the labels exactly.
    assert assemble(disassemble(prog, with_offsets=False)) == prog
    # The verifier-style listing of the unresolved program shows labels and pc offsets.
    text = disassemble(prog)
    assert "7: (85) call bpf_map_lookup_elem#1\n8: (15) if r0 == 0x0 goto pc+11" in text
    assert "Lloop:\n14: (e5) may_goto pc+4" in text
    assert "16: (66) if w7 s> 0x4 goto pc-3\n17: (18) r0 = 0xdeadbeefcafe ll\nLdone:\n19:" in text
    assert encode(assemble(text)) == data


def test_source_interleave():
    src = ["local x = 1", "", "return x + 2  "]
    at = lambda n: SimpleNamespace(line=n)  # noqa: E731
    prog = [I.mov(R0, 1, loc=at(1)), ALUOp.ADD.imm(R0, 2, loc=at(3)),
            I.label("end"), I.exit_(loc=at(3))]
    assert disassemble(prog, src) == (
        "; local x = 1  @ line 1\n"
        "0: (b7) r0 = 1\n"
        "; return x + 2  @ line 3\n"
        "1: (07) r0 += 2\n"
        "end:\n"
        "2: (95) exit\n")
    # loc does not take part in equality
    assert I.mov(R0, 1, loc=at(1)) == I.mov(R0, 1)


def test_register_and_insn_model():
    assert Register.FP is Register.R10
    assert str(I.ld_imm64(R1, 5)) == "r1 = 0x5 ll"
    assert I.ld_imm64(R1, 5).slots == 2 and I.exit_().slots == 1 and I.label("x").slots == 0
    with pytest.raises(ValueError):
        Insn(0x07, dst=16)
    with pytest.raises(ValueError):
        Insn(0x05, off=1 << 15)
    assert AtomicOp.FETCH_ADD.fetch and not AtomicOp.ADD.fetch
