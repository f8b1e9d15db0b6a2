"""Label resolution and the binary form of eBPF instructions.

This module owns the step where symbolic jump targets become slot offsets (``resolve``;
"no instructions will be added after this point") and the conversion between ``Insn``
lists and the kernel's little-endian ``struct bpf_insn`` array::

    u8 code | u8 dst:4 (low nibble), src:4 (high nibble) | s16 off | s32 imm

``ld_imm64`` occupies two slots: the first holds the low 32 bits of the value in ``imm``,
the second has ``code == 0`` and the high 32 bits in ``imm``.  Map loads are encoded with
whatever ``imm`` the ``Insn`` carries (0 until the loader patches in an fd);
``map_relocations`` tells the loader or ELF writer which slots to patch.

It does not own the instruction model (``insn``) or any text (``asm``, ``disasm``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from .insn import LD_IMM64, Insn, Label
from .opcode import Class, JumpOp

_SLOT = struct.Struct("<BBhi")
_LDDW_HALF = struct.Struct("<BBhI")
SLOT_SIZE = _SLOT.size  # 8
_S16 = (-(1 << 15), (1 << 15) - 1)
_S32 = (-(1 << 31), (1 << 31) - 1)

Item = Insn | Label


def _where(item) -> str:
    line = getattr(getattr(item, "loc", None), "line", None)
    return f" (line {line})" if line is not None else ""


def label_slots(items: Iterable[Item]) -> dict[str, int]:
    """The slot index of every label in ``items``; ValueError on a duplicate."""
    slots: dict[str, int] = {}
    slot = 0
    for item in items:
        if isinstance(item, Label):
            if item.name in slots:
                raise ValueError(f"duplicate label {item.name!r}{_where(item)}")
            slots[item.name] = slot
        else:
            slot += item.slots
    return slots


def needs_resolve(items: Iterable[Item]) -> bool:
    return any(isinstance(i, Label) or i.label is not None for i in items)


def resolve(items: Sequence[Item]) -> list[Insn]:
    """Drop ``Label`` markers and turn every symbolic ``label`` into a slot offset.

    The offset is ``target_slot - (this_slot + 1)``, counting ld_imm64 as two slots.  It
    goes in ``off`` (16 bits), or in ``imm`` for ``gotol`` and bpf-to-bpf calls.  A ``goto``
    whose offset does not fit 16 bits becomes ``gotol`` (same size, so nothing moves).
    Raises ValueError for an unknown or duplicate label or an out-of-range offset."""
    targets = label_slots(items)
    out: list[Insn] = []
    slot = 0
    for item in items:
        if isinstance(item, Label):
            continue
        if item.label is not None:
            if item.label not in targets:
                raise ValueError(f"unknown label {item.label!r}{_where(item)}")
            item = _retarget(item, targets[item.label] - (slot + 1))
        out.append(item)
        slot += item.slots
    return out


def _retarget(insn: Insn, delta: int) -> Insn:
    if insn.target_in_imm:
        if not _S32[0] <= delta <= _S32[1]:
            raise ValueError(f"jump to {insn.label!r} is out of 32-bit range{_where(insn)}")
        if insn.code == LD_IMM64:      # ld_func: the offset in the low half, the high half 0
            delta &= 0xFFFFFFFF
        return insn.replace(imm=delta, label=None)
    if _S16[0] <= delta <= _S16[1]:
        return insn.replace(off=delta, label=None)
    if insn.code == Class.JMP | JumpOp.JA:
        return insn.replace(code=Class.JMP32 | JumpOp.JA, off=0, imm=delta, label=None)
    raise ValueError(
        f"jump to {insn.label!r} needs offset {delta}, which does not fit in 16 bits"
        f"{_where(insn)}")


def encode(items: Sequence[Item]) -> bytes:
    """The kernel's byte form of ``items`` (labels are resolved first if present)."""
    if needs_resolve(items):
        items = resolve(items)
    out = bytearray()
    for insn in items:
        regs = (insn.src << 4) | insn.dst
        if insn.code == LD_IMM64:
            out += _LDDW_HALF.pack(insn.code, regs, insn.off, insn.imm & 0xFFFFFFFF)
            out += _LDDW_HALF.pack(0, 0, 0, insn.imm >> 32)
        else:
            out += _SLOT.pack(insn.code, regs, insn.off, insn.imm)
    return bytes(out)


def decode(data: bytes, relocations: Iterable[tuple[int, str]] = ()) -> list[Insn]:
    """The inverse of ``encode``.  Map loads come back with src 1 (or 2) and the fd in
    ``imm``; pass ``relocations`` (as from ``map_relocations``) to restore ``map_ref``."""
    if len(data) % SLOT_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of instructions")
    names = dict(relocations)
    out: list[Insn] = []
    nslots = len(data) // SLOT_SIZE
    slot = 0
    while slot < nslots:
        code, regs, off, imm = _SLOT.unpack_from(data, slot * SLOT_SIZE)
        dst, src = regs & 0xF, regs >> 4
        if code == LD_IMM64:
            if slot + 1 >= nslots:
                raise ValueError(f"ld_imm64 at slot {slot} is missing its second half")
            code2, regs2, off2, hi = _LDDW_HALF.unpack_from(data, (slot + 1) * SLOT_SIZE)
            if code2 or regs2 or off2:
                raise ValueError(f"bad second half of ld_imm64 at slot {slot}")
            imm = (imm & 0xFFFFFFFF) | (hi << 32)
        out.append(Insn(code, dst, src, off, imm, map_ref=names.get(slot)))
        slot += 2 if code == LD_IMM64 else 1
    return out


def map_relocations(items: Iterable[Item]) -> list[tuple[int, str]]:
    """``(slot_index, map_name)`` for every map load, in order, for the loader to patch
    the map's fd into the low ``imm`` of that slot.  Works before or after ``resolve``."""
    relocs: list[tuple[int, str]] = []
    slot = 0
    for item in items:
        if isinstance(item, Insn) and item.map_ref is not None:
            relocs.append((slot, item.map_ref))
        slot += item.slots
    return relocs
